package devicewire

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestWakeMidReport: a CheckNow (admin RequestCheck) wakes the stream
// while a report is half-sent; the report must arrive whole and be acked,
// then the CheckNow delivered and its answer accepted.
func TestWakeMidReport(t *testing.T) {
	e := start(t)
	r := e.dialRaw(e.dev)
	r.preface()
	s := e.rawConnect(r, 1)
	ps := s.msgs[1].GetPolicySet()
	rep := protoagent.Sign(e.dev.Key, e.dev.Report(ps, 1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS))
	msg := frameMsg(&agentv1.AgentMessage{Message: &agentv1.AgentMessage_Report{Report: rep}})
	cut := 5 + (len(msg)-5)/2
	if err := r.data(1, false, msg[:3]); err != nil { // inside the prefix
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := r.data(1, false, msg[3:cut]); err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		_, err := e.admin().RequestCheck(e.adminCtx(), &adminv1.RequestCheckRequest{DeviceId: e.dev.DeviceID, Timeout: durationpb.New(8 * time.Second)})
		res <- err
	}()
	time.Sleep(time.Second)
	if err := r.data(1, false, msg[cut:]); err != nil {
		t.Fatal(err)
	}
	var nonce []byte
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && nonce == nil {
		s.mu.Lock()
		for _, m := range s.msgs[2:] {
			if cn := m.GetCheckNow(); cn != nil {
				nonce = cn.GetNonce()
			}
		}
		s.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	s.mu.Lock()
	for _, m := range s.msgs[2:] {
		t.Logf("got %T", m.GetMessage())
	}
	s.mu.Unlock()
	if nonce == nil {
		t.Fatalf("no CheckNow; stream events %v", s.events)
	}
	rep2 := protoagent.Sign(e.dev.Key, e.dev.Report(ps, 2, time.Now(), nonce, agentv1.PolicyStatus_POLICY_STATUS_PASS))
	if err := r.data(1, false, frameMsg(&agentv1.AgentMessage{Message: &agentv1.AgentMessage_Report{Report: rep2}})); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err != nil {
		t.Errorf("RequestCheck: %v", err)
	}
	if note, ended := s.waitEnd(500 * time.Millisecond); ended {
		t.Errorf("stream ended: %s", note)
	}
}
