package admin

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/oktaapi"
	"github.com/clearance/clearance/verifier/storage"
)

// OktaAPI is the Okta management API client and how it authenticates; the
// zero value means no Okta org is configured.
type OktaAPI struct {
	Client     *oktaapi.Client
	Credential string
}

// oktaStatusTimeout bounds OktaStatus's four reads, rate-limit waits included.
const oktaStatusTimeout = time.Minute

var oktaStates = map[oktaapi.State]adminv1.OktaCapabilityState{
	oktaapi.StateOn:    adminv1.OktaCapabilityState_OKTA_CAPABILITY_STATE_ON,
	oktaapi.StateOff:   adminv1.OktaCapabilityState_OKTA_CAPABILITY_STATE_OFF,
	oktaapi.StateError: adminv1.OktaCapabilityState_OKTA_CAPABILITY_STATE_ERROR,
}

// OktaStatus implements AdminService.OktaStatus.
func (s *Server) OktaStatus(ctx context.Context, _ *adminv1.OktaStatusRequest) (*adminv1.OktaStatusResponse, error) {
	if s.Okta.Client == nil {
		return nil, status.Error(codes.FailedPrecondition, "no Okta org is configured (--okta-org-url)")
	}
	s.oktaMu.Lock()
	now := s.now()
	if last := s.oktaStatus; last != nil && now.Sub(last.GetCheckedAt().AsTime()) < oktaStatusReuse && !now.Before(last.GetCheckedAt().AsTime()) {
		s.oktaMu.Unlock()
		return proto.Clone(last).(*adminv1.OktaStatusResponse), nil
	}
	// One round at a time, whoever asks, run apart from the callers: one
	// that gives up neither stops the round nor keeps its answer from the
	// next caller, and callers meanwhile wait for the same answer.
	flight := s.oktaFlight
	if flight == nil {
		flight = make(chan struct{})
		s.oktaFlight = flight
		go s.askOkta(now, flight)
	}
	s.oktaMu.Unlock()
	select {
	case <-flight:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	s.oktaMu.Lock()
	defer s.oktaMu.Unlock()
	return proto.Clone(s.oktaStatus).(*adminv1.OktaStatusResponse), nil
}

// askOkta runs one OktaStatus round, keeps its answer (a read that failed
// or timed out says so in it) and closes flight.
func (s *Server) askOkta(now time.Time, flight chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), oktaStatusTimeout)
	defer cancel()
	resp := &adminv1.OktaStatusResponse{OrgUrl: s.Okta.Client.Org.String(), Credential: s.Okta.Credential, CheckedAt: timestamppb.New(now)}
	for _, c := range s.Okta.Client.Status(ctx) {
		resp.Capabilities = append(resp.Capabilities, &adminv1.OktaCapability{
			Name: c.Name, State: oktaStates[c.State], Scope: c.Scope, Role: c.Role, UsedFor: c.Used, Detail: c.Detail,
		})
	}
	s.oktaMu.Lock()
	defer s.oktaMu.Unlock()
	s.oktaStatus, s.oktaFlight = resp, nil
	close(flight)
}

// oktaStatusReuse is how long an OktaStatus answer is given again instead
// of asking Okta: each answer costs four requests against the org's API
// rate limit, which the sync and the System Log reads share.
const oktaStatusReuse = 30 * time.Second

// ListOktaSignIns implements AdminService.ListOktaSignIns.
func (s *Server) ListOktaSignIns(ctx context.Context, req *adminv1.ListOktaSignInsRequest) (*adminv1.ListOktaSignInsResponse, error) {
	f := storage.OktaSignInFilter{Unmatched: req.GetUnmatchedOnly(), DecisionID: req.GetDecisionId()}
	if f.DecisionID < 0 {
		return nil, status.Error(codes.InvalidArgument, "decision_id must not be negative")
	}
	if t := req.GetSince(); t != nil {
		if err := t.CheckValid(); err != nil {
			return nil, status.Error(codes.InvalidArgument, "since is not a valid timestamp")
		}
		f.Since = t.AsTime()
	}
	if req.GetPageSize() < 0 {
		return nil, status.Error(codes.InvalidArgument, "page_size must not be negative")
	}
	f.Limit = int(req.GetPageSize()) // the store applies the default and the cap
	es, err := s.Store.ListOktaSignIns(ctx, f)
	if err != nil {
		return nil, s.internal("listing Okta sign-ins", err)
	}
	resp := &adminv1.ListOktaSignInsResponse{}
	for _, e := range es {
		resp.SignIns = append(resp.SignIns, &adminv1.OktaSignIn{
			Uuid: e.UUID, Published: timestamppb.New(e.Published), EventType: e.EventType, Username: e.Username,
			ClientIp: e.ClientIP, UserAgent: e.UserAgent, Os: e.OS, Outcome: e.Outcome, DecisionId: e.DecisionID,
			Unmatched: e.Unmatched,
		})
	}
	return resp, nil
}
