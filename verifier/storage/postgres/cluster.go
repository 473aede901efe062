package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

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
	// missing is set when the pool's liveness beat found this replica's
	// row gone (alive).
	missing atomic.Bool
}

var _ cluster.Relay = (*Relay)(nil)

// Relay returns the relay this replica uses to reach the others.
func (s *Store) Relay(o RelayOptions) *Relay {
	r := &Relay{pool: s, cc: s.pool.Config().ConnConfig, id: o.ReplicaID, heartbeat: o.Heartbeat, stale: o.StaleAfter, log: o.Logger}
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

// signal is a NOTIFY payload (well under PostgreSQL's 8000-byte limit).
type signal struct {
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
	payload, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encoding %s signal: %w", s.Kind, err)
	}
	if _, err := r.pool.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, string(payload)); err != nil {
		return fmt.Errorf("publishing %s signal: %w", s.Kind, err)
	}
	return nil
}

// Join implements cluster.Relay.
func (r *Relay) Join(ctx context.Context, deviceID, session string) error {
	_, err := r.pool.pool.Exec(ctx, `INSERT INTO cluster_presence (device_id, replica_id, session, since)
		VALUES ($1, $2, $3, now())
		ON CONFLICT (device_id, replica_id) DO UPDATE SET session = excluded.session, since = excluded.since`,
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
	// Alive over the pool, whatever becomes of the listening connection;
	// retired once that has stopped.
	aliveCtx, stopAlive := context.WithCancel(ctx)
	alive := make(chan struct{})
	go func() {
		defer close(alive)
		r.alive(aliveCtx, true)
		t := time.NewTicker(r.heartbeat)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				r.alive(aliveCtx, false)
			case <-aliveCtx.Done():
				return
			}
		}
	}()
	defer func() {
		stopAlive()
		<-alive
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
	conn, err := pgx.ConnectConfig(ctx, r.cc.Copy())
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
	// 2. Alive, and holding exactly the streams this process holds.
	if _, err := r.beat(ctx, conn); err != nil {
		return false, err
	}
	if err := r.resync(ctx, conn, h.Devices); err != nil {
		return false, err
	}
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
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			r.dispatch(n.Payload, h)
		case ctx.Err() != nil:
			return true, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			missing, err := r.beat(ctx, conn)
			if err != nil {
				return true, err
			}
			// A Join or Leave that failed, or this replica's rows deleted
			// as a forgotten replica's (its row was missing: the
			// database's clock jumped, or someone cleaned up), are caught
			// up now, not at the next reconnect, which may be days away.
			lost := h.Lost != nil && h.Lost()
			if missing || r.missing.Swap(false) || lost {
				if err := r.resync(ctx, conn, h.Devices); err != nil {
					return true, err
				}
				why := "a failed write"
				if !lost {
					why = "this replica was forgotten"
				}
				r.log.Info("presence re-recorded", "after", why)
			}
			next = time.Now().Add(r.heartbeat)
		default:
			return true, fmt.Errorf("waiting for signals: %w", err)
		}
	}
}

func (r *Relay) dispatch(payload string, h cluster.Handler) {
	var s signal
	if err := json.Unmarshal([]byte(payload), &s); err != nil {
		r.log.Warn("unreadable signal ignored", "err", err)
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

// alive says over the pool that this replica is running, its listening
// connection up or not: its presence rows are not forgotten while it is.
// A replica whose listening connection never came up gets its row here,
// with no heartbeat. A row found missing after the first means this
// replica was forgotten, its presence rows with it: the listening
// connection records them again at its next heartbeat. A failure is
// logged; the next beat tries again.
func (r *Relay) alive(ctx context.Context, first bool) {
	ctx, cancel := context.WithTimeout(ctx, r.heartbeat)
	defer cancel()
	var inserted bool
	err := r.pool.pool.QueryRow(ctx, `INSERT INTO cluster_replicas (replica_id, started_at, heartbeat_at, forget_at)
		VALUES ($1, now(), '-infinity', now() + make_interval(secs => $2))
		ON CONFLICT (replica_id) DO UPDATE SET forget_at = excluded.forget_at
		RETURNING xmax = 0`, r.id, forgetReplicaAfter.Seconds()).Scan(&inserted)
	switch {
	case err != nil && ctx.Err() == nil:
		r.log.Warn("replica liveness not recorded", "err", err)
	case err == nil && inserted && !first:
		r.missing.Store(true)
	}
}

// beat refreshes this replica's heartbeat and forgets replicas long
// silent: their rows, and rows of no known replica written long ago, in
// one transaction (one now(), so no replica's rows outlive its own).
// missing says this replica's row was not there: it was forgotten, and
// its presence rows are gone.
func (r *Relay) beat(ctx context.Context, conn *pgx.Conn) (missing bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.heartbeat)
	defer cancel()
	forget := forgetReplicaAfter.Seconds()
	err = pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO cluster_replicas (replica_id, started_at, heartbeat_at, forget_at)
			VALUES ($1, now(), now(), now() + make_interval(secs => $2))
			ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at = now(), forget_at = excluded.forget_at
			RETURNING xmax = 0`, r.id, forget).Scan(&missing); err != nil {
			return fmt.Errorf("heartbeat: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM cluster_presence p USING cluster_replicas c
			WHERE c.replica_id = p.replica_id AND c.forget_at < now()`); err != nil {
			return fmt.Errorf("forgetting dead replicas: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM cluster_presence p WHERE p.since < now() - make_interval(secs => $1)
			AND NOT EXISTS (SELECT 1 FROM cluster_replicas c WHERE c.replica_id = p.replica_id)`, forget); err != nil {
			return fmt.Errorf("forgetting dead replicas: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM cluster_replicas WHERE forget_at < now()`); err != nil {
			return fmt.Errorf("forgetting dead replicas: %w", err)
		}
		return nil
	})
	return missing, err
}

// resync replaces this replica's presence rows with the streams it holds:
// joins and leaves made while the database was away are caught up.
//
// Streams start and end while it runs, and their own Join and Leave race
// with it. A row written since t, read before the snapshot of the streams,
// is left as it is: its Join came after the snapshot could see its stream,
// and it is newer than anything the snapshot holds. A stream in the
// snapshot that has ended by the time the rows are written is removed
// again afterwards: its Leave may have run before the rows were written.
func (r *Relay) resync(ctx context.Context, conn *pgx.Conn, devices func() map[string]string) error {
	var t time.Time
	if err := conn.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&t); err != nil {
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
	err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM cluster_presence p WHERE replica_id = $1 AND since < $2
			AND NOT EXISTS (SELECT 1 FROM unnest($3::text[], $4::text[]) AS u(d, s) WHERE u.d = p.device_id AND u.s = p.session)`,
			r.id, t, ids, sessions); err != nil {
			return err
		}
		// A row left standing is the snapshot's own, or written since t.
		_, err := tx.Exec(ctx, `INSERT INTO cluster_presence (device_id, replica_id, session, since)
			SELECT d, $1, s, now() FROM unnest($2::text[], $3::text[]) AS u(d, s)
			ON CONFLICT (device_id, replica_id) DO NOTHING`, r.id, ids, sessions)
		return err
	})
	if err != nil {
		return fmt.Errorf("re-recording presence: %w", err)
	}
	if devices == nil {
		return nil
	}
	current := devices()
	var endedIDs, endedSessions []string
	for id, sess := range snap {
		if current[id] != sess {
			endedIDs, endedSessions = append(endedIDs, id), append(endedSessions, sess)
		}
	}
	if len(endedIDs) == 0 {
		return nil
	}
	if _, err := conn.Exec(ctx, `DELETE FROM cluster_presence p USING unnest($2::text[], $3::text[]) AS u(d, s)
		WHERE p.replica_id = $1 AND p.device_id = u.d AND p.session = u.s`, r.id, endedIDs, endedSessions); err != nil {
		return fmt.Errorf("re-recording presence: removing ended streams: %w", err)
	}
	return nil
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
