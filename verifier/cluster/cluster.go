// Package cluster owns the contract between verifier replicas that share one
// database: which replica holds a device's agent stream (presence), the
// two signals a live check needs when the sign-in and the stream are on
// different replicas — "send this device a CheckNow" and "the report that
// answers this nonce is stored" — and "this device enrolled again" (or was
// revoked: the signal then names no key), which ends the replaced key's
// stream wherever it is. The hub uses a Relay; storage backends
// that serve several replicas implement one (storage/postgres, over
// LISTEN/NOTIFY). A single verifier needs none.
package cluster

import (
	"context"
	"errors"
	"time"
)

// ErrPresenceStale is Elsewhere's answer when the only replicas recorded as
// holding a device's stream have stale heartbeats: each may have died, or
// may still hold the stream and have lost only its way to the database. A
// caller for whom "no agent" would grant something must not read it as no.
var ErrPresenceStale = errors.New("the device's stream is recorded only on replicas whose heartbeat is stale")

// Check asks the replica that holds DeviceID's stream to send it a CheckNow
// with Nonce. The asking replica has already recorded the nonce, so the
// report that answers it is verified like any other.
type Check struct {
	DeviceID  string
	Nonce     []byte
	ExpiresAt time.Time
}

// Answered says that the report carrying Nonce, with sequence number Seq,
// is stored: the asking replica reads it from the database.
type Answered struct {
	DeviceID string
	Nonce    []byte
	Seq      uint64
}

// Enrolled says that DeviceID enrolled again: its current key is the one
// whose SHA-256 is KeyHash, and a stream holding any other key must end.
// With no KeyHash the device was revoked: every stream of it must end.
type Enrolled struct {
	DeviceID string
	KeyHash  []byte
}

// Handler receives what other replicas publish. Its functions are called
// one at a time from the relay's own goroutine and must not block.
type Handler struct {
	Check    func(Check)
	Answered func(Answered)
	Enrolled func(Enrolled)
	// Devices lists the devices whose streams are on this replica (and,
	// once it stops, those cut as it stopped, whose records it keeps); the
	// relay re-asserts their presence whenever it (re)connects, so presence
	// survives the database restarting, and removes every other record of
	// this replica's as stale.
	Devices func() map[string]string // device ID → session ID
	// Lost reports, and forgets, whether a presence record (a Join or a
	// Leave) failed since it was last asked: the relay then records every
	// stream again at its next heartbeat, since agent streams live for
	// days and a failed Join would otherwise hide one until then. nil:
	// never.
	Lost func() bool
	// Streams is how many streams Devices lists: the relay checks its
	// records against it at each heartbeat, and records every stream again
	// when fewer or more are recorded twice running. nil: len(Devices()).
	Streams func() int
}

// Hearer is a Relay that can say whether it hears the other replicas'
// signals now: one that is still starting, or whose connection was lost,
// does not, and an answer published meanwhile never reaches it.
type Hearer interface {
	// Hearing returns a channel that is closed while the relay hears
	// signals, or once it next does.
	Hearing() <-chan struct{}
}

// Relay carries presence and signals between replicas.
type Relay interface {
	// Run delivers other replicas' signals to h and keeps this replica's
	// presence alive until ctx ends, reconnecting by itself when the
	// connection is lost. It returns nil when ctx ends.
	Run(ctx context.Context, h Handler) error
	// PublishCheck and PublishAnswered reach every other replica that is
	// running; signals sent while a replica is disconnected are lost (the
	// asking side times out, as it would with a silent agent; a replaced
	// key's stream ends at its next report, which storage refuses). A hub
	// asks no check through a Hearer that does not hear.
	PublishCheck(ctx context.Context, c Check) error
	PublishAnswered(ctx context.Context, a Answered) error
	// PublishEnrolled reaches the other replicas like the signals above.
	PublishEnrolled(ctx context.Context, e Enrolled) error
	// Join records that session holds deviceID's stream on this replica;
	// Leave removes that record, unless a newer session replaced it.
	Join(ctx context.Context, deviceID, session string) error
	Leave(ctx context.Context, deviceID, session string) error
	// Elsewhere reports whether deviceID's stream is on another replica
	// whose heartbeat is recent. Where the only replicas recorded as
	// holding it have stale heartbeats it reports false with an error
	// wrapping ErrPresenceStale: a replica that died stops counting as
	// holding the stream (a live check does not wait for it), but one cut
	// off from the database may still hold it. Records of replicas silent
	// for long are forgotten, and then count for nothing.
	Elsewhere(ctx context.Context, deviceID string) (bool, error)
	// ID names this replica (in logs and presence rows).
	ID() string
}
