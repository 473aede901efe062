package postgres

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// The replicas' signals go over NOTIFY, which any role that may connect to
// the database can LISTEN to and send, with no grant on any table. So each
// signal is sealed (AES-256-GCM) under a key the replicas share in the
// server_keys table, which such a role cannot read: a signal it makes, or
// alters, is refused, and it learns nothing from the ones it hears. A
// signal it records and sends again is refused too: each carries a random
// id and its time, and a replica takes a signal only within signalWindow of
// its own clock, and each id once.
const (
	// relayKeyName names the server key the signals are sealed under.
	relayKeyName = "relay-signals"
	// sealContext derives the sealing key from the server key, and is the
	// sealed signal's additional data.
	sealContext = "clearance relay signal v1"
	// sealPrefix starts every sealed signal.
	sealPrefix = "s1:"
	// signalWindow is how far a signal's time may be from the receiving
	// replica's clock either way: replicas keep within a minute of the
	// database's clock (deploy-verifier.md), so within two of each other.
	signalWindow = 2 * time.Minute
	// maxSeen bounds the signal ids remembered (each for twice
	// signalWindow after it was taken). Past it the oldest is forgotten
	// early: a replay of it within its window would then be taken, which
	// needs more than maxSeen genuine signals in four minutes.
	maxSeen = 1 << 16
)

// errSignalRefused wraps every reason a sealed signal is not taken.
var errSignalRefused = errors.New("signal refused")

// sealer seals and opens signals under one key, and remembers the ids of
// the signals it took.
type sealer struct {
	aead cipher.AEAD
	now  func() time.Time

	mu    sync.Mutex
	seen  map[[16]byte]struct{}
	order []seenID // oldest first
}

type seenID struct {
	id     [16]byte
	forget time.Time
}

// newSealer derives the sealing key from the replicas' shared server key.
func newSealer(serverKey []byte, now func() time.Time) (*sealer, error) {
	if len(serverKey) < 16 {
		return nil, fmt.Errorf("relay key of %d bytes, want at least 16", len(serverKey))
	}
	m := hmac.New(sha256.New, serverKey)
	m.Write([]byte(sealContext))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &sealer{aead: aead, now: now, seen: map[[16]byte]struct{}{}}, nil
}

// seal gives s a fresh id and the time now, and returns it sealed.
func (sl *sealer) seal(s signal) (string, error) {
	s.ID = make([]byte, 16)
	_, _ = rand.Read(s.ID) // never fails
	s.At = sl.now()
	plain, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, sl.aead.NonceSize())
	_, _ = rand.Read(nonce)
	sealed := sl.aead.Seal(nonce, nonce, plain, []byte(sealContext))
	return sealPrefix + base64.RawStdEncoding.EncodeToString(sealed), nil
}

// open returns the signal payload holds, if it was sealed under this key,
// is within signalWindow of now, and its id was not taken before; an error
// wrapping errSignalRefused otherwise. It never echoes the payload.
func (sl *sealer) open(payload string) (signal, error) {
	var s signal
	refuse := func(why string) (signal, error) { return signal{}, fmt.Errorf("%w: %s", errSignalRefused, why) }
	rest, ok := strings.CutPrefix(payload, sealPrefix)
	if !ok {
		return refuse("not sealed")
	}
	raw, err := base64.RawStdEncoding.DecodeString(rest)
	if err != nil || len(raw) < sl.aead.NonceSize()+sl.aead.Overhead() {
		return refuse("malformed")
	}
	n := sl.aead.NonceSize()
	plain, err := sl.aead.Open(nil, raw[:n], raw[n:], []byte(sealContext))
	if err != nil {
		return refuse("not sealed under this deployment's key")
	}
	if err := json.Unmarshal(plain, &s); err != nil {
		return refuse("sealed but unreadable")
	}
	if len(s.ID) != 16 {
		return refuse("no id")
	}
	now := sl.now()
	if d := now.Sub(s.At); d > signalWindow || d < -signalWindow {
		return refuse(fmt.Sprintf("dated %s from this replica's clock (more than %s)", d.Round(time.Second), signalWindow))
	}
	var id [16]byte
	copy(id[:], s.ID)
	sl.mu.Lock()
	defer sl.mu.Unlock()
	sl.forget(now)
	if _, dup := sl.seen[id]; dup {
		return refuse("sent again")
	}
	if len(sl.order) >= maxSeen {
		delete(sl.seen, sl.order[0].id)
		sl.order = sl.order[1:]
	}
	sl.seen[id] = struct{}{}
	sl.order = append(sl.order, seenID{id: id, forget: now.Add(2 * signalWindow)})
	return s, nil
}

// forget drops the ids whose time has passed (sl.mu held).
func (sl *sealer) forget(now time.Time) {
	i := 0
	for i < len(sl.order) && !now.Before(sl.order[i].forget) {
		delete(sl.seen, sl.order[i].id)
		i++
	}
	if i > 0 {
		sl.order = append(sl.order[:0], sl.order[i:]...)
	}
}

// sealing returns the relay's sealer, reading (or making) the replicas'
// shared key the first time; a failure is tried again at the next call.
func (r *Relay) sealing(ctx context.Context) (*sealer, error) {
	r.sealMu.Lock()
	defer r.sealMu.Unlock()
	if r.sl != nil {
		return r.sl, nil
	}
	candidate := make([]byte, 32)
	_, _ = rand.Read(candidate)
	key, err := r.pool.ServerKey(ctx, relayKeyName, candidate)
	if err != nil {
		return nil, fmt.Errorf("reading the relay key: %w", err)
	}
	sl, err := newSealer(key, r.now)
	if err != nil {
		return nil, err
	}
	r.sl = sl
	return sl, nil
}

// PublicMayConnect says whether every role on the database server may
// connect to this database (PUBLIC's CONNECT, which a new database grants):
// each such role may then LISTEN and NOTIFY on the relay's channel.
func (s *Store) PublicMayConnect(ctx context.Context) (bool, error) {
	var may bool
	if err := s.pool.QueryRow(ctx, `SELECT has_database_privilege('public', current_database(), 'CONNECT')`).Scan(&may); err != nil {
		return false, fmt.Errorf("reading who may connect: %w", err)
	}
	return may, nil
}
