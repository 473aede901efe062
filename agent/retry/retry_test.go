package retry

import (
	"errors"
	"fmt"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestDecide names the action for every code of every call: a new code or a
// changed answer is a deliberate edit here.
func TestDecide(t *testing.T) {
	t.Parallel()
	want := map[Call]map[codes.Code]Action{
		Enroll: {
			codes.OK:                 Again,
			codes.Canceled:           Again,
			codes.Unknown:            Again,
			codes.InvalidArgument:    Stop, // CSR or facts rejected
			codes.DeadlineExceeded:   Again,
			codes.NotFound:           Stop,
			codes.AlreadyExists:      Stop,
			codes.PermissionDenied:   Stop, // revoked device
			codes.ResourceExhausted:  Again,
			codes.FailedPrecondition: Stop,
			codes.Aborted:            Again, // a concurrent enrollment of this Mac won
			codes.OutOfRange:         Stop,
			codes.Unimplemented:      Stop,
			codes.Internal:           Again, // e.g. the store could not write
			codes.Unavailable:        Again,
			codes.DataLoss:           Again,
			codes.Unauthenticated:    Stop, // wrong or revoked enroll secret
		},
		Connect: {
			codes.OK:                 Again,
			codes.Canceled:           Again,
			codes.Unknown:            Again,
			codes.InvalidArgument:    Drop, // malformed, stale, future, seq too large
			codes.DeadlineExceeded:   Drop, // nonce expired
			codes.NotFound:           Stop,
			codes.AlreadyExists:      Drop,  // seq not above the last stored
			codes.PermissionDenied:   Stop,  // revoked, key replaced, bad signature
			codes.ResourceExhausted:  Drop,  // report too large
			codes.FailedPrecondition: Drop,  // nonce unknown, used, or another device's
			codes.Aborted:            Again, // replaced by a newer connection
			codes.OutOfRange:         Drop,
			codes.Unimplemented:      Stop,
			codes.Internal:           Again,
			codes.Unavailable:        Again, // e.g. the report could not be stored
			codes.DataLoss:           Again,
			codes.Unauthenticated:    Reenroll,
		},
		Renew: {
			codes.OK:                 Again,
			codes.Canceled:           Again,
			codes.Unknown:            Again,
			codes.InvalidArgument:    Stop,
			codes.DeadlineExceeded:   Again,
			codes.NotFound:           Stop,
			codes.AlreadyExists:      Stop,
			codes.PermissionDenied:   Stop, // revoked, or not the enrolled key
			codes.ResourceExhausted:  Again,
			codes.FailedPrecondition: Stop,
			codes.Aborted:            Again,
			codes.OutOfRange:         Stop,
			codes.Unimplemented:      Stop,
			codes.Internal:           Again,
			codes.Unavailable:        Again,
			codes.DataLoss:           Again,
			codes.Unauthenticated:    Reenroll,
		},
	}
	for call, codesWant := range want {
		if len(codesWant) != 17 {
			t.Fatalf("%s: %d codes in the table, want all 17", call, len(codesWant))
		}
		for code := codes.OK; code <= codes.Unauthenticated; code++ {
			t.Run(call.String()+"/"+code.String(), func(t *testing.T) {
				t.Parallel()
				w, ok := codesWant[code]
				if !ok {
					t.Fatalf("no expectation for %s", code)
				}
				if got := Decide(call, code); got != w {
					t.Errorf("Decide(%s, %s) = %s, want %s", call, code, got, w)
				}
			})
		}
	}
	// A code grpc does not define is never retried blindly as a report
	// problem: it is treated as not understood.
	for _, call := range []Call{Enroll, Connect, Renew} {
		if got := Decide(call, codes.Code(99)); got != Stop {
			t.Errorf("Decide(%s, 99) = %s, want stop", call, got)
		}
	}
}

func TestOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want Action
	}{
		{"a status", status.Error(codes.PermissionDenied, "revoked"), Stop},
		{"a wrapped status", fmt.Errorf("connecting: %w", status.Error(codes.Unavailable, "down")), Again},
		{"not a status", errors.New("connection reset by peer"), Again},
		{"permanent", Permanent(errors.New("no enroll secret")), Stop},
		{"wrapped permanent", fmt.Errorf("enrolling: %w", Permanent(errors.New("bad answer"))), Stop},
	} {
		if got := Of(Connect, tc.err); got != tc.want {
			t.Errorf("%s: Of = %s, want %s", tc.name, got, tc.want)
		}
	}
	sentinel := errors.New("sentinel")
	if !errors.Is(Permanent(sentinel), sentinel) {
		t.Error("Permanent hides the error it wraps")
	}
}

// An Enroll held for approval is Pending only with its detail; the same
// code without it, or on another call, is decided by the code.
func TestPending(t *testing.T) {
	t.Parallel()
	st, err := status.New(codes.FailedPrecondition, "enrollment waits for approval").
		WithDetails(&agentv1.EnrollmentPending{RequestId: "req-1", Reason: "unproven_key"})
	if err != nil {
		t.Fatal(err)
	}
	pending := fmt.Errorf("enrolling with verifier:8443: %w", st.Err())
	if got := Of(Enroll, pending); got != Pending {
		t.Errorf("Of(Enroll, pending) = %s, want pending", got)
	}
	if p := PendingOf(pending); p.GetRequestId() != "req-1" || p.GetReason() != "unproven_key" {
		t.Errorf("PendingOf = %v", p)
	}
	if got := Of(Enroll, status.Error(codes.FailedPrecondition, "no detail")); got != Stop {
		t.Errorf("Of(Enroll, FAILED_PRECONDITION without detail) = %s, want stop", got)
	}
	if got := Of(Connect, pending); got != Drop {
		t.Errorf("Of(Connect, pending detail) = %s, want drop (the detail means nothing there)", got)
	}
	if PendingOf(status.Error(codes.Unavailable, "down")) != nil || PendingOf(errors.New("x")) != nil {
		t.Error("PendingOf found a detail where there is none")
	}
	if Pending.String() != "pending" {
		t.Errorf("Pending.String() = %q", Pending.String())
	}
}

// A refusal over the device's limit on certificates says when to ask
// again: the agent waits that long (bounded), and Again it stays.
func TestAfter(t *testing.T) {
	t.Parallel()
	withDelay := func(d time.Duration) error {
		st, err := status.New(codes.ResourceExhausted, "device issued too many certificates").
			WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Errorf("enrolling with verifier:8443: %w", st.Err())
	}
	for _, tc := range []struct {
		name string
		err  error
		want time.Duration
	}{
		{"a delay", withDelay(20 * time.Minute), 20 * time.Minute},
		{"a delay past the bound", withDelay(48 * time.Hour), MaxRetryAfter},
		{"a negative delay", withDelay(-time.Minute), 0},
		{"no detail", status.Error(codes.ResourceExhausted, "busy"), 0},
		{"not a status", errors.New("connection reset by peer"), 0},
		{"nil", nil, 0},
	} {
		if got := After(tc.err); got != tc.want {
			t.Errorf("%s: After = %s, want %s", tc.name, got, tc.want)
		}
	}
	if got := Of(Enroll, withDelay(time.Minute)); got != Again {
		t.Errorf("Of(Enroll, over the limit) = %s, want again", got)
	}
}
