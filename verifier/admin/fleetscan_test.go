package admin

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/storage"
)

// binder binds no one; it only makes fleetAccounts read the fleet.
type binder struct{}

func (binder) Explain(context.Context, string, string, bool) (decision.Decision, error) {
	return decision.Decision{}, nil
}
func (binder) BoundAccount(*agentv1.PostureReport, storage.User) string { return "" }

// While maxFleetScans reads of the whole fleet run, another waits its turn
// and gives up at its deadline, having read nothing.
func TestFleetScansWaitTheirTurn(t *testing.T) {
	s := &Server{Access: binder{}}
	s.fleetScansOnce.Do(func() { s.fleetScans = make(chan struct{}, maxFleetScans) })
	for range maxFleetScans {
		s.fleetScans <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// No store: a call that did not wait would panic reading it.
	if _, err := s.GetUser(ctx, nil); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("GetUser past the limit: %v, want DEADLINE_EXCEEDED", err)
	}
}

// Listings of the audit log take their turns with the fleet scans: while
// maxFleetScans of those run, a listing waits its turn and gives up at its
// deadline, having read nothing, so the two together never hold more of
// the database's read connections than maxFleetScans.
func TestAuditReadsWaitTheirTurn(t *testing.T) {
	s := &Server{}
	s.fleetScansOnce.Do(func() { s.fleetScans = make(chan struct{}, maxFleetScans) })
	for range maxFleetScans {
		s.fleetScans <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	// No store: a call that did not wait would panic reading it.
	if _, err := s.ListAuditEvents(ctx, &adminv1.ListAuditEventsRequest{}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("ListAuditEvents past the limit: %v, want DEADLINE_EXCEEDED", err)
	}
}
