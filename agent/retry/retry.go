// Package retry decides what the agent does after each gRPC status the
// verifier (or the network on its behalf) returns from Enroll, Connect and
// Renew: try again after the usual backoff, enroll again first, drop the
// report the verifier refused and go on, or stop and say why. Every code
// has an answer for every call, so no status leaves the agent retrying
// something that cannot succeed, or giving up on something that can.
package retry

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// Call names the RPC whose status is decided on.
type Call int

// The agent's calls.
const (
	Enroll Call = iota + 1
	Connect
	Renew
)

func (c Call) String() string {
	switch c {
	case Enroll:
		return "Enroll"
	case Connect:
		return "Connect"
	case Renew:
		return "Renew"
	}
	return fmt.Sprintf("Call(%d)", int(c))
}

// Action is what the agent does next.
type Action int

// Actions.
const (
	// Again: nothing is known to be wrong with what was sent (the verifier
	// is restarting, overloaded, unreachable, or replaced the stream):
	// retry after the usual capped exponential backoff.
	Again Action = iota + 1
	// Reenroll: the verifier does not accept this device certificate
	// (unknown, expired): discard it, enroll again with the same key and
	// retry. Needs an enroll secret; without one it is Stop.
	Reenroll
	// Drop: the verifier refused the report in flight and would refuse it
	// again (malformed, stale, seq not above its last, nonce spent or
	// expired, too large): drop that report, then reconnect as for Again.
	// The next report is built afresh.
	Drop
	// Stop: retrying the same thing cannot succeed until someone changes
	// something (the device is revoked, its key was replaced by another
	// enrollment, the enroll secret is wrong, the server is not a
	// Clearance verifier): say why at ERROR and try again only after a
	// long wait (StopWait), so a fix is picked up without a restart.
	Stop
	// Pending: the verifier holds the enrollment for the security team's
	// approval (FAILED_PRECONDITION with an EnrollmentPending detail):
	// ask again, with the same key, after the usual backoff; the first
	// answer after approval carries the certificate.
	Pending
)

func (a Action) String() string {
	switch a {
	case Again:
		return "again"
	case Reenroll:
		return "reenroll"
	case Drop:
		return "drop"
	case Stop:
		return "stop"
	case Pending:
		return "pending"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// StopWait is how long the agent waits after Stop before trying again.
const StopWait = 30 * time.Minute

// transient are codes that say nothing about the request: the same request
// may succeed later.
func transient(code codes.Code) bool {
	switch code {
	case codes.OK, // a stream the verifier ended without an error
		codes.Canceled, codes.Unknown, codes.DeadlineExceeded, codes.ResourceExhausted,
		codes.Aborted, codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

// Decide returns the action after call ended with code.
func Decide(call Call, code codes.Code) Action {
	switch call {
	case Connect:
		switch code {
		case codes.Unauthenticated:
			return Reenroll
		// The verifier refused one report (see verifier/ingest): the
		// report, not the device, is what will never be accepted.
		case codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists, codes.OutOfRange,
			codes.DeadlineExceeded, codes.ResourceExhausted:
			return Drop
		// The device or this key may not report at all, or this is not
		// a verifier that has Connect.
		case codes.PermissionDenied, codes.NotFound, codes.Unimplemented:
			return Stop
		}
	case Enroll:
		if transient(code) {
			return Again
		}
		// FAILED_PRECONDITION is Pending only with its detail (see
		// Of); without it the request is refused as such.
		// A wrong or revoked secret, a revoked device, a request the
		// verifier rejects as such: the same request fails again.
		return Stop
	case Renew:
		switch {
		case code == codes.Unauthenticated:
			return Reenroll
		case transient(code):
			return Again
		}
		// Revoked, or a renewal for a key the device did not enroll.
		return Stop
	}
	if transient(code) {
		return Again
	}
	return Stop
}

// permanent marks a local error after which retrying cannot help.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// Permanent marks err, a failure of the agent's own (no enroll secret, an
// unusable answer, a damaged state dir), as one that retrying cannot fix:
// Of returns Stop for it.
func Permanent(err error) error { return permanent{err} }

// Of is the action after call failed with err: Stop for a Permanent error,
// Pending for an Enroll the verifier holds for approval, else Decide on
// err's gRPC code (Unknown, so Again, for an error that is not a gRPC
// status: the network, osquery, a full disk).
func Of(call Call, err error) Action {
	var p permanent
	if errors.As(err, &p) {
		return Stop
	}
	if call == Enroll && PendingOf(err) != nil {
		return Pending
	}
	return Decide(call, status.Code(err))
}

// PendingOf returns the EnrollmentPending detail of an Enroll error that
// says the request waits for approval, nil otherwise.
func PendingOf(err error) *agentv1.EnrollmentPending {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return nil
	}
	for _, d := range st.Details() {
		if p, ok := d.(*agentv1.EnrollmentPending); ok {
			return p
		}
	}
	return nil
}

// MaxRetryAfter bounds the wait a verifier's RetryInfo can ask for: no
// longer than after Stop, so that a verifier cannot silence an agent for
// long.
const MaxRetryAfter = StopWait

// After returns the wait the status err carries in a RetryInfo detail (a
// verifier that refused a device's request over its limit on certificates
// says when another may be issued), at most MaxRetryAfter; 0 if none.
func After(err error) time.Duration {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return 0
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().IsValid() {
			return min(max(ri.GetRetryDelay().AsDuration(), 0), MaxRetryAfter)
		}
	}
	return 0
}
