package devicewire

import (
	"context"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

var helloMsg = &agentv1.AgentMessage{Message: &agentv1.AgentMessage_Hello{Hello: &agentv1.Hello{AgentVersion: "late"}}}

// openNoHello opens a Connect stream and sends no Hello: the verifier has
// authenticated the device (open runs Authenticate before Recv) and waits
// for Hello, before Hub.Register.
func (e *env) openNoHello(r *raw, id uint32) *rawStream {
	s := &rawStream{r: r, id: id, ended: make(chan struct{})}
	r.headers(id, false, reqFields(connectPath)...)
	go s.read()
	return s
}

func (s *rawStream) waitMsgs(n int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		s.mu.Lock()
		k := len(s.msgs)
		s.mu.Unlock()
		if k >= n || time.Now().After(deadline) {
			return k
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLateHelloAfterRevoke: a stream authenticated before the device's
// revocation, whose Hello comes after it, is refused (it registered with
// the hub and received the policy set before).
func TestLateHelloAfterRevoke(t *testing.T) {
	e := start(t)
	r := e.dialRaw(e.dev)
	r.preface()
	s := e.openNoHello(r, 1)
	time.Sleep(500 * time.Millisecond) // Authenticate done, waiting for Hello
	if _, err := e.admin().RevokeDevice(e.adminCtx(), &adminv1.RevokeDeviceRequest{DeviceId: e.dev.DeviceID, Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if note, ended := s.waitEnd(100 * time.Millisecond); ended {
		t.Logf("stream ended at revocation: %s", note)
		return
	}
	if err := r.data(1, false, frameMsg(helloMsg)); err != nil {
		t.Fatal(err)
	}
	n := s.waitMsgs(2, 3*time.Second)
	if n != 0 {
		t.Errorf("the revoked device's stream got %d messages after its late Hello", n)
	}
	note, ended := s.waitEnd(2 * time.Second)
	d, err := e.admin().GetDevice(e.adminCtx(), &adminv1.GetDeviceRequest{DeviceId: e.dev.DeviceID})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("revoked device after late Hello: messages received %d, stream ended %v (%s), GetDevice connected=%v revoked_at=%v",
		n, ended, note, d.GetDevice().GetConnected(), d.GetDevice().GetRevokedAt())
	s.mu.Lock()
	for _, m := range s.msgs {
		t.Logf("  got %T", m.GetMessage())
	}
	s.mu.Unlock()
	if !ended || d.GetDevice().GetConnected() {
		t.Errorf("a revoked device's stream registered after its revocation and stays open (connected=%v)", d.GetDevice().GetConnected())
	}
	// Does a policy broadcast / admin check reach it?
	_, err = e.admin().RequestCheck(e.adminCtx(), &adminv1.RequestCheckRequest{DeviceId: e.dev.DeviceID})
	t.Logf("RequestCheck on revoked device: %v", err)
	time.Sleep(300 * time.Millisecond)
	s.mu.Lock()
	for _, m := range s.msgs[n:] {
		t.Logf("  later got %T", m.GetMessage())
	}
	s.mu.Unlock()
}

// TestLateHelloAfterReenroll: a stream of the old key, opened before the
// device enrolled again with a new key, sends Hello afterwards: it is
// refused, and the new key's live session stays (it used to be replaced).
func TestLateHelloAfterReenroll(t *testing.T) {
	e := start(t)
	old := e.dev
	const k = 3
	var olds []*rawStream
	var rs []*raw
	for i := 0; i < k; i++ {
		r := e.dialRaw(old)
		r.preface()
		rs = append(rs, r)
		olds = append(olds, e.openNoHello(r, 1))
	}
	r := rs[0]
	time.Sleep(500 * time.Millisecond)

	// Re-enroll with a new key (the legitimate owner rotates).
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	secret, err := e.p.EnrollSecret(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nu, err := protoagent.New(e.p.GRPCAddr, e.p.RootPEM, old.Facts.GetHardwareUuid())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nu.EnrollRotating(ctx, secret, old.Key); err != nil {
		t.Fatal(err)
	}
	if nu.DeviceID != old.DeviceID {
		t.Fatalf("new device id %s != %s", nu.DeviceID, old.DeviceID)
	}
	st, err := nu.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i, s := range olds {
		if note, ended := s.waitEnd(10 * time.Millisecond); ended {
			t.Logf("old stream %d ended at re-enrollment: %s", i, note)
		}
	}
	// The old key's holder now sends Hello on its first held stream.
	if err := r.data(1, false, frameMsg(helloMsg)); err != nil {
		t.Fatal(err)
	}
	if n := olds[0].waitMsgs(2, 3*time.Second); n != 0 {
		t.Errorf("the old key's stream got %d messages after its late Hello", n)
	}
	newEnded := make(chan error, 1)
	go func() {
		for {
			if _, err := st.Client.Recv(); err != nil {
				newEnded <- err
				return
			}
		}
	}()
	select {
	case err := <-newEnded:
		t.Errorf("the new key's stream was ended by the old key's late Hello: %v", err)
	case <-time.After(2 * time.Second):
		t.Logf("new key's stream still open")
	}
	d, _ := e.admin().GetDevice(e.adminCtx(), &adminv1.GetDeviceRequest{DeviceId: old.DeviceID})
	t.Logf("device connected=%v", d.GetDevice().GetConnected())
	if note, ended := olds[0].waitEnd(time.Second); ended {
		t.Logf("old-key stream ended: %s", note)
	} else {
		t.Errorf("the old key's stream registered after the re-enrollment and stays open")
	}
	olds[0].mu.Lock()
	for _, m := range olds[0].msgs {
		t.Logf("  old-key stream got %T", m.GetMessage())
	}
	olds[0].mu.Unlock()
}
