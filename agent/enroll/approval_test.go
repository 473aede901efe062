package enroll_test

import (
	"context"
	"crypto/x509"
	"os"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/agent/devicekey"
	"github.com/clearance/clearance/agent/internal/fakeverifier"
	"github.com/clearance/clearance/agent/retry"
	"github.com/clearance/clearance/agent/state"
	"github.com/clearance/clearance/pkg/keyrotation"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// While the verifier holds the enrollment for approval, Enroll fails with
// retry.Pending and the state dir says so (for status); the first answer
// after approval enrolls and clears it.
func TestEnrollPendingThenApproved(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	var mu sync.Mutex
	approved := false
	v.EnrollHook = func(*agentv1.EnrollRequest) error {
		mu.Lock()
		defer mu.Unlock()
		if approved {
			return nil
		}
		st, _ := status.New(codes.FailedPrecondition, "enrollment waits for approval by the security team (request req-1, manual)").
			WithDetails(&agentv1.EnrollmentPending{RequestId: "req-1", Reason: "manual", RequestedAt: timestamppb.Now()})
		return st.Err()
	}
	m := manager(t, v, t.TempDir(), v.Secret)
	// A refusal recorded before (a revoked Mac, now asking with a new key)
	// gives way to the wait: status shows where the Mac is now.
	if err := m.Dir.SaveRefusal(state.Refusal{Code: "PermissionDenied", Message: "device is revoked"}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		_, err := m.Ensure(context.Background())
		if got := retry.Of(retry.Enroll, err); got != retry.Pending {
			t.Fatalf("Ensure while pending: %v (action %s), want pending", err, got)
		}
	}
	p, err := m.Dir.LoadPending()
	if err != nil || p == nil || p.RequestID != "req-1" || p.Reason != "manual" || p.Verifier != v.Addr {
		t.Fatalf("recorded wait = %+v, %v", p, err)
	}
	if _, err := m.Dir.LoadIdentity(); err == nil {
		t.Fatal("an identity was stored while pending")
	}
	if r, err := m.Dir.LoadRefusal(); err != nil || r != nil {
		t.Fatalf("refusal still recorded while the request waits: %+v %v", r, err)
	}

	mu.Lock()
	approved = true
	mu.Unlock()
	if _, err := m.Ensure(context.Background()); err != nil {
		t.Fatalf("Ensure after approval: %v", err)
	}
	if p, err := m.Dir.LoadPending(); err != nil || p != nil {
		t.Errorf("wait still recorded after enrolling: %+v %v", p, err)
	}
}

// A rotation: the new key's CSR carries the previous key's proof, and the
// previous key is forgotten once the verifier took the new one.
func TestEnrollRotationProof(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	dir := t.TempDir()
	m := enrolled(t, v, dir)
	oldPKIX, _ := x509.MarshalPKIXPublicKey(m.Signer.Public())

	newKey, err := devicekey.Rotate(context.Background(), m.Dir, devicekey.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := devicekey.Rotate(context.Background(), m.Dir, devicekey.Options{}); err == nil {
		t.Error("a second rotation started while one is under way")
	}
	previous, err := devicekey.OpenPrevious(context.Background(), m.Dir)
	if err != nil || previous == nil {
		t.Fatalf("OpenPrevious: %v %v", previous, err)
	}
	var proven bool
	v.EnrollHook = func(req *agentv1.EnrollRequest) error {
		proven = keyrotation.Verify(oldPKIX, req.GetCsr(), req.GetKeyProof()) == nil
		return nil
	}
	r := manager(t, v, dir, v.Secret)
	if fp1, _ := devicekey.Fingerprint(r.Signer.Public()); fp1 != mustFingerprint(t, newKey) {
		t.Fatal("the state dir does not open the new key")
	}
	r.Previous = previous
	r.OnRotated = func(ctx context.Context) error { return devicekey.ForgetPrevious(ctx, r.Dir) }
	if _, err := r.Enroll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !proven {
		t.Fatal("the enrollment did not carry the previous key's proof over the new CSR")
	}
	if _, err := os.Stat(r.Dir.File(state.PreviousKeyURIFile)); !os.IsNotExist(err) {
		t.Errorf("previous key still recorded: %v", err)
	}
	if _, err := os.Stat(r.Dir.File(state.KeyFile)); !os.IsNotExist(err) {
		t.Errorf("previous key file still there: %v", err)
	}
	if r.Previous != nil {
		t.Error("the manager still holds the previous key")
	}
}

func mustFingerprint(t *testing.T, k *devicekey.Key) string {
	t.Helper()
	fp, err := devicekey.Fingerprint(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// pendingUntil has v hold every enrollment for approval (request req-1)
// until the returned func is called, and answer with then after it.
func pendingUntil(v *fakeverifier.Verifier, then error) func() {
	var mu sync.Mutex
	answered := false
	v.EnrollHook = func(*agentv1.EnrollRequest) error {
		mu.Lock()
		defer mu.Unlock()
		if answered {
			return then
		}
		st, _ := status.New(codes.FailedPrecondition, "enrollment waits for approval by the security team (request req-1, manual)").
			WithDetails(&agentv1.EnrollmentPending{RequestId: "req-1", Reason: "manual", RequestedAt: timestamppb.Now()})
		return st.Err()
	}
	return func() {
		mu.Lock()
		answered = true
		mu.Unlock()
	}
}

// When the security team rejects the held request, the verifier's final
// refusal ends the wait: the pending record goes, so that status says
// refused, not pending approval as well.
func TestEnrollPendingThenRejected(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	reject := pendingUntil(v, status.Error(codes.PermissionDenied, "enrollment request req-1 was rejected by the security team; this key cannot enroll"))
	m := manager(t, v, t.TempDir(), v.Secret)
	if _, err := m.Ensure(context.Background()); retry.Of(retry.Enroll, err) != retry.Pending {
		t.Fatalf("Ensure while pending: %v, want pending", err)
	}
	if p, err := m.Dir.LoadPending(); err != nil || p == nil {
		t.Fatalf("wait not recorded: %+v %v", p, err)
	}

	reject()
	if _, err := m.Ensure(context.Background()); retry.Of(retry.Enroll, err) != retry.Stop {
		t.Fatalf("Ensure after the rejection: %v, want a refusal that stops", err)
	}
	if p, err := m.Dir.LoadPending(); err != nil || p != nil {
		t.Errorf("wait still recorded after the verifier refused for good: %+v %v", p, err)
	}
}

// A verifier that cannot be reached, or answers with a passing fault,
// says nothing of the request: the wait stays recorded.
func TestEnrollPendingKeptOverFaults(t *testing.T) {
	t.Parallel()
	v := fakeverifier.New(t)
	fault := pendingUntil(v, status.Error(codes.Unavailable, "restarting"))
	m := manager(t, v, t.TempDir(), v.Secret)
	if _, err := m.Ensure(context.Background()); retry.Of(retry.Enroll, err) != retry.Pending {
		t.Fatalf("Ensure while pending: %v, want pending", err)
	}
	fault()
	if _, err := m.Ensure(context.Background()); retry.Of(retry.Enroll, err) != retry.Again {
		t.Fatalf("Ensure with the verifier restarting: %v, want again", err)
	}
	if p, err := m.Dir.LoadPending(); err != nil || p == nil || p.RequestID != "req-1" {
		t.Errorf("wait forgotten over a passing fault: %+v %v", p, err)
	}
}
