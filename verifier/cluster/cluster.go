// Package cluster owns the contract between verifier replicas that share one
// database: which replica holds a device's agent stream (presence), and the
// two signals a live check needs when the sign-in and the stream are on
// different replicas — "send this device a CheckNow" and "the report that
// answers this nonce is stored". The hub uses a Relay; storage backends
// that serve several replicas implement one (storage/postgres, over
// LISTEN/NOTIFY). A single verifier needs none.
package cluster

import (
	"context"
	"time"
)

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

// Handler receives what other replicas publish. Its functions are called
// one at a time from the relay's own goroutine and must not block.
type Handler struct {
	Check    func(Check)
	Answered func(Answered)
	// Devices lists the devices whose streams are on this replica; the
	// relay re-asserts their presence whenever it (re)connects, so presence
	// survives the database restarting.
	Devices func() map[string]string // device ID → session ID
}

// Relay carries presence and signals between replicas.
type Relay interface {
	// Run delivers other replicas' signals to h and keeps this replica's
	// presence alive until ctx ends, reconnecting by itself when the
	// connection is lost. It returns nil when ctx ends.
	Run(ctx context.Context, h Handler) error
	// PublishCheck and PublishAnswered reach every other replica that is
	// running; signals sent while a replica is disconnected are lost (the
	// asking side times out, as it would with a silent agent).
	PublishCheck(ctx context.Context, c Check) error
	PublishAnswered(ctx context.Context, a Answered) error
	// Join records that session holds deviceID's stream on this replica;
	// Leave removes that record, unless a newer session replaced it.
	Join(ctx context.Context, deviceID, session string) error
	Leave(ctx context.Context, deviceID, session string) error
	// Elsewhere reports whether deviceID's stream is on another replica
	// whose heartbeat is recent: a replica that died stops counting once
	// its heartbeat goes stale.
	Elsewhere(ctx context.Context, deviceID string) (bool, error)
	// ID names this replica (in logs and presence rows).
	ID() string
}
