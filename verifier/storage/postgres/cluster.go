package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/clearance/clearance/pkg/logsample"
	"github.com/clearance/clearance/verifier/cluster"
)

// notifyChannel is the LISTEN/NOTIFY channel replicas signal each other on.
// NOTIFY is scoped to the database, so replicas of separate deployments on
// one server never hear each other.
const notifyChannel = "clearance_cluster"

// RelayApplicationName is the application_name of a relay's listening
// connection.
const RelayApplicationName = "clearance-relay"

// Defaults for RelayOptions' zero fields.
const (
	DefaultHeartbeat = 5 * time.Second
	// A replica whose heartbeat is older than Stale no longer counts as
	// holding its devices' streams for certain: a live check is not routed
	// to it, but its rows still count as "cannot tell" until forgotten.
	DefaultStaleAfter = 3 * DefaultHeartbeat
	// Rows of replicas silent for this long, on every connection, are
	// deleted.
	forgetReplicaAfter = time.Hour
	// A replica that stops cleanly is forgotten this long after: its agents
	// reconnect elsewhere well within it (clearance-agent's backoff is at
	// most a minute), and until they do their Macs are not taken for
	// having no agent.
	forgetRetiredAfter = 2 * time.Minute
	minBackoff         = 100 * time.Millisecond
	maxBackoff         = 5 * time.Second
)

// RelayOptions configure Store.Relay.
type RelayOptions struct {
	// ReplicaID names this replica; default: the host name and a random suffix.
	ReplicaID string
	// Heartbeat is how often the replica says it is alive; StaleAfter is how
	// long after its last heartbeat it stops counting (default 3 heartbeats).
	Heartbeat, StaleAfter time.Duration
	Logger                *slog.Logger
}

// Relay is a cluster.Relay over this database: presence in the
// cluster_replicas and cluster_presence tables, signals by NOTIFY, heard on
// a connection of its own that LISTENs and is re-opened with backoff when
// PostgreSQL goes away.
type Relay struct {
	pool      *Store
	cc        *pgx.ConnConfig
	id        string
	heartbeat time.Duration
	stale     time.Duration
	log       *slog.Logger
	// resyncing lets one resync run at a time, the listening connection's
	// or keep's; waiting for it gives up with the caller's context.
	resyncing chan struct{}
	// owed is nonzero while every stream is to be recorded again (a record
	// failed, this replica was forgotten, records are missing): whichever
	// of the listening connection and the pool works first does it. Each
	// reason stores a new value (from owes), so that a resync which began
	// before it does not clear it.
	owed, owes atomic.Uint64

	// sl seals and opens signals (seal.go), once sealing has read the key.
	sealMu sync.Mutex
	sl     *sealer
	now    func() time.Time
	// refusedLog spaces the lines of refused signals, which any role that
	// may connect to the database can send.
	refusedLog logsample.Sample

	// heard is closed while the listening connection LISTENs (Hearing);
	// a new one replaces it when that connection is lost.
	hearMu sync.Mutex
	heard  chan struct{}
	// beforeListen, when set (tests), runs before each listening
	// connection is opened.
	beforeListen func(context.Context) error
}

var _ cluster.Relay = (*Relay)(nil)

// Relay returns the relay this replica uses to reach the others.
func (s *Store) Relay(o RelayOptions) *Relay {
	r := &Relay{pool: s, cc: s.pool.Config().ConnConfig, id: o.ReplicaID, heartbeat: o.Heartbeat, stale: o.StaleAfter, log: o.Logger,
		resyncing: make(chan struct{}, 1), now: time.Now, refusedLog: logsample.Sample{Every: refusedSignalLogEvery},
		heard: make(chan struct{})}
	// Named, so an operator can tell the listening connection in
	// pg_stat_activity.
	if r.cc.RuntimeParams == nil {
		r.cc.RuntimeParams = map[string]string{}
	}
	r.cc.RuntimeParams["application_name"] = RelayApplicationName
	if r.id == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b) // never fails
		r.id = host + "-" + hex.EncodeToString(b)
	}
	if r.heartbeat <= 0 {
		r.heartbeat = DefaultHeartbeat
	}
	if r.stale <= 0 {
		r.stale = 3 * r.heartbeat
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.log = r.log.With("component", "relay", "replica_id", r.id)
	return r
}

// ID implements cluster.Relay.
func (r *Relay) ID() string { return r.id }

var _ cluster.Hearer = (*Relay)(nil)

// Hearing implements cluster.Hearer.
func (r *Relay) Hearing() <-chan struct{} {
	r.hearMu.Lock()
	defer r.hearMu.Unlock()
	return r.heard
}

// hearing records whether the listening connection LISTENs.
func (r *Relay) hearing(on bool) {
	r.hearMu.Lock()
	defer r.hearMu.Unlock()
	select {
	case <-r.heard:
		if !on {
			r.heard = make(chan struct{})
		}
	default:
		if on {
			close(r.heard)
		}
	}
}

// refusedSignalLogEvery is how often a refused signal is logged at warn;
// the others are counted in the next line.
const refusedSignalLogEvery = 10 * time.Second

// signal is a NOTIFY payload, sealed (seal.go; well under PostgreSQL's
// 8000-byte limit).
type signal struct {
	ID        []byte    `json:"id"`
	At        time.Time `json:"at"`
	From      string    `json:"from"`
	Kind      string    `json:"kind"` // "check", "answered" or "enrolled"
	DeviceID  string    `json:"device_id"`
	Nonce     []byte    `json:"nonce"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Seq       uint64    `json:"seq,omitempty"`
	KeyHash   []byte    `json:"key_hash,omitempty"`
}

// PublishCheck implements cluster.Relay.
func (r *Relay) PublishCheck(ctx context.Context, c cluster.Check) error {
	return r.publish(ctx, signal{Kind: "check", DeviceID: c.DeviceID, Nonce: c.Nonce, ExpiresAt: c.ExpiresAt})
}

// PublishAnswered implements cluster.Relay.
func (r *Relay) PublishAnswered(ctx context.Context, a cluster.Answered) error {
	return r.publish(ctx, signal{Kind: "answered", DeviceID: a.DeviceID, Nonce: a.Nonce, Seq: a.Seq})
}

// PublishEnrolled implements cluster.Relay.
func (r *Relay) PublishEnrolled(ctx context.Context, e cluster.Enrolled) error {
	return r.publish(ctx, signal{Kind: "enrolled", DeviceID: e.DeviceID, KeyHash: e.KeyHash})
}

func (r *Relay) publish(ctx context.Context, s signal) error {
	s.From = r.id
	sl, err := r.sealing(ctx)
	if err != nil {
		return fmt.Errorf("publishing %s signal: %w", s.Kind, err)
	}
	payload, err := sl.seal(s)
	if err != nil {
		return fmt.Errorf("encoding %s signal: %w", s.Kind, err)
	}
	if _, err := r.pool.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, payload); err != nil {
		return fmt.Errorf("publishing %s signal: %w", s.Kind, err)
	}
	return nil
}

// Join implements cluster.Relay.
func (r *Relay) Join(ctx context.Context, deviceID, session string) error {
	_, err := r.pool.pool.Exec(ctx, `INSERT INTO cluster_presence (device_id, replica_id, session, since)
		VALUES ($1, $2, $3, now())
		ON CONFLICT (device_id, replica_id) DO UPDATE SET session = excluded.session, since = excluded.since, rev = excluded.rev`,
		deviceID, r.id, session)
	if err != nil {
		return fmt.Errorf("recording presence: %w", err)
	}
	return nil
}

// Leave implements cluster.Relay.
func (r *Relay) Leave(ctx context.Context, deviceID, session string) error {
	_, err := r.pool.pool.Exec(ctx, `DELETE FROM cluster_presence WHERE device_id = $1 AND replica_id = $2 AND session = $3`,
		deviceID, r.id, session)
	if err != nil {
		return fmt.Errorf("removing presence: %w", err)
	}
	return nil
}

// Elsewhere implements cluster.Relay. A record on a replica whose
// heartbeat is stale, or that never had one (its listening connection
// never came up), is "cannot tell" until the replica is forgotten:
// cluster.ErrPresenceStale.
func (r *Relay) Elsewhere(ctx context.Context, deviceID string) (bool, error) {
	var fresh *bool // NULL: no record on another replica
	err := r.pool.pool.QueryRow(ctx, `SELECT bool_or(coalesce(c.heartbeat_at > now() - make_interval(secs => $3), false))
		FROM cluster_presence p LEFT JOIN cluster_replicas c ON c.replica_id = p.replica_id
		WHERE p.device_id = $1 AND p.replica_id <> $2 AND (c.forget_at IS NULL OR c.forget_at > now())`,
		deviceID, r.id, r.stale.Seconds()).Scan(&fresh)
	switch {
	case err != nil:
		return false, fmt.Errorf("reading presence: %w", err)
	case fresh == nil:
		return false, nil
	case !*fresh:
		return false, fmt.Errorf("device %s: %w", deviceID, cluster.ErrPresenceStale)
	}
	return true, nil
}

// Run implements cluster.Relay. When it returns, this replica is marked
// stopped, so the others stop routing checks to it at once, and forgotten
// a little later (retire).
func (r *Relay) Run(ctx context.Context, h cluster.Handler) error {
	// Alive over the pool, whatever becomes of the listening connection,
	// and keeping this replica's records; retired once that has stopped.
	keepCtx, stopKeeping := context.WithCancel(ctx)
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		r.keep(keepCtx, h)
	}()
	defer func() {
		stopKeeping()
		<-kept
		r.settleLast(h)
		r.retire()
	}()
	wait := minBackoff
	for reconnect := false; ; reconnect = true {
		listened, err := r.listen(ctx, h, reconnect)
		if ctx.Err() != nil {
			return nil
		}
		if listened {
			wait = minBackoff
		}
		r.log.Warn("relay connection lost; reconnecting", "err", err, "retry_in", wait.String())
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
		wait = min(2*wait, maxBackoff)
	}
}

// listen holds one LISTEN connection until it fails or ctx ends; listened
// says whether it got as far as listening.
func (r *Relay) listen(ctx context.Context, h cluster.Handler, reconnect bool) (listened bool, err error) {
	sl, err := r.sealing(ctx)
	if err != nil {
		return false, err
	}
	if r.beforeListen != nil {
		if err := r.beforeListen(ctx); err != nil {
			return false, err
		}
	}
	cc := r.cc.Copy()
	// Each signal is handled as it is read, including those that arrive
	// while the heartbeat waits for its answer: the driver would otherwise
	// hold those in a list without bound (a flood of 720 MB took a replica
	// to 2.7 GB).
	cc.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) { r.dispatch(sl, n.Payload, h) }
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return false, fmt.Errorf("connecting: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	// 1. Listen first, so nothing published after the presence rows are
	// written is missed.
	if _, err := conn.Exec(ctx, `LISTEN `+notifyChannel); err != nil {
		return false, fmt.Errorf("listening: %w", err)
	}
	r.hearing(true)
	defer r.hearing(false)
	// 2. Alive, and holding exactly the streams this process holds.
	if _, err := r.beat(ctx, conn); err != nil {
		return false, err
	}
	r.owe()
	r.settleListening(ctx, conn, h.Devices)
	if reconnect {
		r.log.Info("relay reconnected")
	} else {
		r.log.Info("relay listening", "channel", notifyChannel)
	}
	// 3. Signals until the connection fails; a heartbeat whenever the wait
	// times out. The heartbeat goes over this connection, so a replica that
	// cannot hear signals stops claiming its devices.
	next := time.Now().Add(r.heartbeat)
	for {
		wctx, cancel := context.WithDeadline(ctx, next)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			// Handled as it was read (OnNotification).
		case ctx.Err() != nil:
			return true, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			missing, err := r.beat(ctx, conn)
			if err != nil {
				return true, err
			}
			if missing {
				r.log.Warn("this replica was forgotten while running; recording its streams again")
				r.owe()
			}
			// What keep found owed, when the pool could not settle it: this
			// connection's heartbeat is what makes the records count.
			r.settleListening(ctx, conn, h.Devices)
			next = time.Now().Add(r.heartbeat)
		default:
			return true, fmt.Errorf("waiting for signals: %w", err)
		}
	}
}

// dispatch hands a signal another replica sealed to h; any other payload
// on the channel is refused, and logged (sampled) without its contents.
func (r *Relay) dispatch(sl *sealer, payload string, h cluster.Handler) {
	s, err := sl.open(payload)
	if err != nil {
		if ok, skipped := r.refusedLog.Take(time.Now()); ok {
			r.log.Warn("signal on the relay channel refused: not from a replica of this deployment, or sent again",
				"err", err, "bytes", len(payload), "others_not_logged", skipped)
		}
		return
	}
	if s.From == r.id {
		return
	}
	switch s.Kind {
	case "check":
		if h.Check != nil {
			h.Check(cluster.Check{DeviceID: s.DeviceID, Nonce: s.Nonce, ExpiresAt: s.ExpiresAt})
		}
	case "answered":
		if h.Answered != nil {
			h.Answered(cluster.Answered{DeviceID: s.DeviceID, Nonce: s.Nonce, Seq: s.Seq})
		}
	case "enrolled":
		if h.Enrolled != nil {
			h.Enrolled(cluster.Enrolled{DeviceID: s.DeviceID, KeyHash: s.KeyHash})
		}
	default:
		r.log.Warn("unknown signal ignored", "kind", s.Kind)
	}
}

// keep runs beside the listening connection, over the pool, every
// heartbeat until ctx ends: it says this replica is alive, whatever
// becomes of the listening connection (its presence rows are not forgotten
// while it is; a replica whose listening connection never came up gets its
// row here, with no heartbeat), and it checks this replica's records
// against the streams it holds. It records every stream again when a
// record failed to be written (h.Lost), when this replica's row was
// missing (it was forgotten, its rows with it: the database's clock
// jumped, or someone cleaned the tables), or when fewer streams are
// recorded than it holds at two checks running (rows deleted by another
// replica's beat or by hand; a Join in flight explains one check, not
// two), or more (a record left by an ended stream: a Join the database
// committed after its caller gave up on it, or a row written by hand),
// which would count its Mac as connected here for as long as it stayed.
func (r *Relay) keep(ctx context.Context, h cluster.Handler) {
	streams := h.Streams
	if streams == nil {
		streams = func() int {
			if h.Devices == nil {
				return 0
			}
			return len(h.Devices())
		}
	}
	short, excess := false, false
	t := time.NewTicker(r.heartbeat)
	defer t.Stop()
	for first := true; ; first = false {
		why := ""
		if h.Lost != nil && h.Lost() {
			why = "a failed write"
		}
		missing, recorded, err := r.alive(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("replica liveness not recorded", "err", err)
			}
		} else {
			held := streams()
			switch {
			case why != "":
			case missing && !first:
				why = "this replica was forgotten"
			case recorded < held && short:
				why = "records missing"
			case recorded > held && excess:
				why = "records of ended streams"
			}
			short, excess = recorded < held, recorded > held
		}
		if why != "" {
			r.log.Warn("recording every stream again", "after", why)
			r.owe()
		}
		if r.owed.Load() != 0 {
			if err := r.settlePool(ctx, h.Devices); err != nil {
				if ctx.Err() == nil {
					r.log.Warn("presence not re-recorded over the pool; tried again at the next heartbeat", "err", err)
				}
			} else {
				r.log.Info("presence re-recorded")
				short, excess = false, false
			}
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// owe marks a resync as due.
func (r *Relay) owe() { r.owed.Store(r.owes.Add(1)) }

// settle records every stream again over conn if that is owed, and clears
// what it covered; did says whether it ran.
func (r *Relay) settle(ctx context.Context, conn *pgx.Conn, devices func() map[string]string) (did bool, err error) {
	seq := r.owed.Load()
	if seq == 0 {
		return false, nil
	}
	if err := r.resync(ctx, conn, devices); err != nil {
		return true, err
	}
	r.owed.CompareAndSwap(seq, 0)
	return true, nil
}

// alive refreshes this replica's row over the pool: missing says it was
// not there, recorded how many presence rows it has.
func (r *Relay) alive(ctx context.Context) (missing bool, recorded int, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.heartbeat)
	defer cancel()
	err = r.pool.pool.QueryRow(ctx, `WITH up AS (
			INSERT INTO cluster_replicas (replica_id, started_at, heartbeat_at, forget_at)
			VALUES ($1, now(), '-infinity', now() + make_interval(secs => $2))
			ON CONFLICT (replica_id) DO UPDATE SET forget_at = excluded.forget_at
			RETURNING xmax = 0 AS inserted)
		SELECT (SELECT inserted FROM up), (SELECT count(*) FROM cluster_presence WHERE replica_id = $1)`,
		r.id, forgetReplicaAfter.Seconds()).Scan(&missing, &recorded)
	return missing, recorded, err
}

// beat refreshes this replica's heartbeat, then forgets replicas long
// silent. missing says this replica's row was not there: it was forgotten,
// its presence rows with it. A replica's row and its presence rows go in
// one statement, and the row's lock orders that against the replica's own
// refresh: either the refresh comes first and nothing of it is deleted, or
// it waits, finds its row missing and records its streams again. Rows of
// no known replica go once written long ago. The forgetting waits for no
// lock long (another session's, on a presence row): it is tried again at
// the next beat, and never holds the heartbeat back.
func (r *Relay) beat(ctx context.Context, conn *pgx.Conn) (missing bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.heartbeat)
	defer cancel()
	forget := forgetReplicaAfter.Seconds()
	if err := conn.QueryRow(ctx, `INSERT INTO cluster_replicas (replica_id, started_at, heartbeat_at, forget_at)
		VALUES ($1, now(), now(), now() + make_interval(secs => $2))
		ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at = now(), forget_at = excluded.forget_at
		RETURNING xmax = 0`, r.id, forget).Scan(&missing); err != nil {
		return false, fmt.Errorf("heartbeat: %w", err)
	}
	err = pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '1s'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `WITH gone AS (DELETE FROM cluster_replicas WHERE forget_at < now() RETURNING replica_id)
			DELETE FROM cluster_presence p USING gone WHERE p.replica_id = gone.replica_id`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM cluster_presence p WHERE p.since < now() - make_interval(secs => $1)
			AND NOT EXISTS (SELECT 1 FROM cluster_replicas c WHERE c.replica_id = p.replica_id)`, forget)
		return err
	})
	if err != nil {
		r.log.Warn("forgetting dead replicas failed; tried again at the next beat", "err", err)
	}
	return missing, nil
}

// settleListening is settle over the listening connection, within a
// heartbeat. A failure is logged, not returned: the resync stays owed for
// the next heartbeat or keep, and signals go on being heard meanwhile (a
// connection that broke shows at the next wait for them).
func (r *Relay) settleListening(ctx context.Context, conn *pgx.Conn, devices func() map[string]string) {
	ctx, cancel := context.WithTimeout(ctx, r.heartbeat)
	defer cancel()
	switch did, err := r.settle(ctx, conn, devices); {
	case err != nil:
		r.log.Warn("presence not re-recorded; tried again at the next heartbeat", "err", err)
	case did:
		r.log.Info("presence re-recorded")
	}
}

// settlePool is settle over a connection of the pool: the listening one
// may be down.
func (r *Relay) settlePool(ctx context.Context, devices func() map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, r.heartbeat)
	defer cancel()
	c, err := r.pool.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("re-recording presence: %w", err)
	}
	defer c.Release()
	_, err = r.settle(ctx, c.Conn(), devices)
	return err
}

// resync replaces this replica's presence rows with the streams it holds:
// joins and leaves made while the database was away are caught up.
//
// Streams start and end while it runs, and their own Join and Leave race
// with it. A row written after t, a number drawn from the rows' sequence
// before the snapshot of the streams, is left as it is: its Join came after
// the snapshot could see its stream, and it is newer than anything the
// snapshot holds. The sequence, not the database's clock, tells which came
// first: a clock set back would make a later Join read as older. A stream in the
// snapshot that has ended by the time the rows are written is removed
// again afterwards: its Leave may have run before the rows were written.
// One that was replaced meanwhile (its agent reconnected here, with no
// Leave) has its record set to its successor's session instead.
//
// A device the snapshot holds never loses its row to the removal of stale
// ones, whatever session the row names: an agent that reconnected to this
// replica replaced its stream without a Leave, and until the new stream's
// Join lands (or after it failed) the row still names the old session. The
// row is set to the snapshot's session instead, so that the stream's own
// Leave removes it when it ends.
func (r *Relay) resync(ctx context.Context, conn *pgx.Conn, devices func() map[string]string) error {
	select {
	case r.resyncing <- struct{}{}:
		defer func() { <-r.resyncing }()
	case <-ctx.Done():
		return fmt.Errorf("re-recording presence: %w", ctx.Err())
	}
	var t int64
	if err := conn.QueryRow(ctx, `SELECT nextval('cluster_presence_rev')`).Scan(&t); err != nil {
		return fmt.Errorf("re-recording presence: %w", err)
	}
	snap := map[string]string{}
	if devices != nil {
		snap = devices()
	}
	ids, sessions := make([]string, 0, len(snap)), make([]string, 0, len(snap))
	for id, sess := range snap {
		ids, sessions = append(ids, id), append(sessions, sess)
	}
	// The streams' rows first, on their own: a lock that fails the
	// statements below does not keep a live stream unrecorded. A row left
	// standing is the snapshot's own, one written after t, or one naming
	// a session its device's stream replaced.
	if err := execBounded(ctx, conn, `INSERT INTO cluster_presence (device_id, replica_id, session, since)
		SELECT d, $1, s, now() FROM unnest($2::text[], $3::text[]) AS u(d, s)
		ON CONFLICT (device_id, replica_id) DO NOTHING`, r.id, ids, sessions); err != nil {
		return fmt.Errorf("re-recording presence: %w", err)
	}
	replaced := execBounded(ctx, conn, `UPDATE cluster_presence p SET session = u.s, since = now(), rev = nextval('cluster_presence_rev')
		FROM unnest($2::text[], $3::text[]) AS u(d, s)
		WHERE p.replica_id = $1 AND p.device_id = u.d AND p.session <> u.s AND p.rev < $4`,
		r.id, ids, sessions, t)
	// NOT EXISTS, not device_id <> ALL($3): once pgx's prepared statement
	// gets PostgreSQL's generic plan (from its sixth run on a connection),
	// <> ALL checks every row against the whole array, 4 s at 20,000
	// streams; the anti-join is hashed, 15-20 ms.
	stale := execBounded(ctx, conn, `DELETE FROM cluster_presence p WHERE replica_id = $1 AND rev < $2
		AND NOT EXISTS (SELECT 1 FROM unnest($3::text[]) AS u(d) WHERE u.d = p.device_id)`, r.id, t, ids)
	if devices != nil {
		current := devices()
		var endedIDs, endedSessions []string
		var movedIDs, movedFrom, movedTo []string
		for id, sess := range snap {
			switch cur := current[id]; cur {
			case sess:
			case "":
				endedIDs, endedSessions = append(endedIDs, id), append(endedSessions, sess)
			default: // replaced here: still held, its record stays
				movedIDs, movedFrom, movedTo = append(movedIDs, id), append(movedFrom, sess), append(movedTo, cur)
			}
		}
		if len(movedIDs) > 0 && replaced == nil {
			replaced = execBounded(ctx, conn, `UPDATE cluster_presence p SET session = u.n, since = now(), rev = nextval('cluster_presence_rev')
				FROM unnest($2::text[], $3::text[], $4::text[]) AS u(d, o, n)
				WHERE p.replica_id = $1 AND p.device_id = u.d AND p.session = u.o`, r.id, movedIDs, movedFrom, movedTo)
		}
		if len(endedIDs) > 0 {
			if err := execBounded(ctx, conn, `DELETE FROM cluster_presence p USING unnest($2::text[], $3::text[]) AS u(d, s)
				WHERE p.replica_id = $1 AND p.device_id = u.d AND p.session = u.s`, r.id, endedIDs, endedSessions); err != nil {
				return fmt.Errorf("re-recording presence: removing ended streams: %w", err)
			}
		}
	}
	if replaced != nil {
		return fmt.Errorf("re-recording presence: naming replaced streams' successors: %w", replaced)
	}
	if stale != nil {
		return fmt.Errorf("re-recording presence: removing stale records: %w", stale)
	}
	return nil
}

// execBounded runs one statement in a transaction of its own that waits
// at most a second for a row lock: a lock held on a presence row (an
// operator's open transaction) fails it, to be tried again, rather than
// holding the connection it runs on past its deadline, which would close
// it.
func execBounded(ctx context.Context, conn *pgx.Conn, sql string, args ...any) error {
	return pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '1s'`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, sql, args...)
		return err
	})
}

// settleLast records every stream again, once, as the relay stops: the
// records of the streams cut as this replica stops must stand until their
// agents have reconnected elsewhere, and no heartbeat comes after this to
// write one whose Join failed, or found deleted at a single count. It goes
// over a connection of its own, since the pool may be what failed (every
// connection busy), and else over the pool, since a new connection may be
// what is refused (max_connections reached as a deploy starts replicas);
// it gives up after two seconds.
func (r *Relay) settleLast(h cluster.Handler) {
	r.owe()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := func() error {
		connCtx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		conn, err := pgx.ConnectConfig(connCtx, r.cc.Copy())
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		_, err = r.settle(ctx, conn, h.Devices)
		return err
	}()
	if err != nil && ctx.Err() == nil {
		err = r.settlePool(ctx, h.Devices)
	}
	if err != nil {
		r.log.Warn("presence not re-recorded as the relay stops", "err", err)
	}
}

// retire marks this replica stopped when it stops: no longer one to route
// a live check to, and forgotten, its rows with it, forgetRetiredAfter
// from now. Its rows are kept until then: the agents whose streams it cut
// have not reconnected yet, and until they have (their rows elsewhere then
// count) their Macs must not be taken for having no agent.
func (r *Relay) retire() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := r.pool.pool.Exec(ctx, `UPDATE cluster_replicas SET heartbeat_at = '-infinity',
		forget_at = now() + make_interval(secs => $2) WHERE replica_id = $1`, r.id, forgetRetiredAfter.Seconds())
	if err != nil {
		r.log.Warn("marking this replica stopped failed; it goes stale instead", "err", err)
	}
}
