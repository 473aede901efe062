package admin

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/rollout"
	"github.com/clearance/clearance/verifier/storage"
)

// GrantExemption implements AdminService.GrantExemption.
func (s *Server) GrantExemption(ctx context.Context, req *adminv1.GrantExemptionRequest) (*adminv1.GrantExemptionResponse, error) {
	if t := req.GetExpiresAt(); t == nil || t.CheckValid() != nil {
		return nil, status.Error(codes.InvalidArgument, "expires_at is required and must be a valid timestamp")
	}
	now := s.now()
	g := rollout.Grant{
		DeviceID: req.GetDeviceId(), Username: req.GetUsername(), PolicyIDs: req.GetPolicyIds(),
		ExpiresAt: req.GetExpiresAt().AsTime(), Reason: req.GetReason(),
	}
	err := g.Check(now)
	if err == nil && len(g.PolicyIDs) > 0 && !req.GetAllowUnknownPolicies() {
		ids, version := s.policyIDs()
		err = g.CheckPolicies(ids, rollout.SetDescription("the policy set in force", version))
	}
	var e storage.Exemption
	if err == nil {
		e, err = rollout.GrantExemption(ctx, s.Store, g, actor(ctx), now)
	}
	switch {
	case rollout.IsGrantError(err):
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, rollout.ErrNoDevice):
		return nil, status.Error(codes.NotFound, err.Error())
	case err != nil:
		return nil, s.internal("granting exemption", err)
	}
	resp := &adminv1.GrantExemptionResponse{Exemption: ExemptionProto(e, now)}
	if e.Username != "" {
		known, err := rollout.KnownUsername(ctx, s.Store, e.Username)
		if err != nil {
			// Granted already: the hint is not worth failing the call.
			s.log().Warn("could not tell whether the exemption's username is known", "exemption_id", e.ID, "err", err)
		}
		resp.UsernameUnknown = err == nil && !known
	}
	s.log().Info("exemption granted", "exemption_id", e.ID, "device_id", e.DeviceID, "user", e.Username, "expires_at", e.ExpiresAt,
		"username_unknown", resp.UsernameUnknown)
	return resp, nil
}

// policyIDs returns the ids and version of the policy set in force.
func (s *Server) policyIDs() ([]string, string) {
	var ps *agentv1.PolicySet
	if s.Policies != nil {
		ps = s.Policies.Current()
	}
	ids := make([]string, 0, len(ps.GetPolicies()))
	for _, p := range ps.GetPolicies() {
		ids = append(ids, p.GetId())
	}
	return ids, ps.GetVersion()
}

// Exemption listing pages: 100 unless asked, at most 1000.
const (
	defaultExemptionPage = 100
	maxExemptionPage     = storage.MaxDecisionLimit
)

// ListExemptions implements AdminService.ListExemptions. A device is named
// by its id or the start of one, as elsewhere; pages go by exemption id,
// newest first, with the id cursor decisions use.
func (s *Server) ListExemptions(ctx context.Context, req *adminv1.ListExemptionsRequest) (*adminv1.ListExemptionsResponse, error) {
	if err := boundedName("username", req.GetUsername()); err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize(), defaultExemptionPage, maxExemptionPage)
	if err != nil {
		return nil, err
	}
	f := storage.ExemptionFilter{Username: req.GetUsername()}
	if tok := req.GetPageToken(); tok != "" {
		id, ok := parseDecisionToken(tok)
		if !ok {
			return nil, status.Error(codes.InvalidArgument, "page_token is not one this server returned")
		}
		f.BeforeID = id
	}
	if req.GetDeviceId() != "" {
		// A start of an id that matched nothing would read as "this Mac
		// has no exemptions": it names the device, or is refused.
		if f.DeviceID, err = s.deviceID(ctx, req.GetDeviceId()); err != nil {
			return nil, err
		}
	}
	now := s.now()
	if !req.GetIncludeInactive() {
		f.ActiveAt = now
	}
	// One more than the page says whether there is a next; at the
	// backend's cap, a full page is taken to mean there may be.
	f.Limit = min(size+1, maxExemptionPage)
	es, err := s.Store.ListExemptions(ctx, f)
	if err != nil {
		return nil, s.internal("listing exemptions", err)
	}
	more := len(es) > size || (len(es) == size && f.Limit == size)
	if len(es) > size {
		es = es[:size]
	}
	resp := &adminv1.ListExemptionsResponse{Exemptions: make([]*adminv1.Exemption, 0, len(es))}
	for _, e := range es {
		resp.Exemptions = append(resp.Exemptions, ExemptionProto(e, now))
	}
	if more && len(es) > 0 {
		resp.NextPageToken = decisionToken(es[len(es)-1].ID)
	}
	return resp, nil
}

// RevokeExemption implements AdminService.RevokeExemption.
func (s *Server) RevokeExemption(ctx context.Context, req *adminv1.RevokeExemptionRequest) (*adminv1.RevokeExemptionResponse, error) {
	now := s.now()
	e, err := rollout.RevokeExemption(ctx, s.Store, req.GetId(), actor(ctx), now)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, status.Errorf(codes.NotFound, "no exemption %d", req.GetId())
	case errors.Is(err, rollout.ErrRevoked):
		return nil, status.Errorf(codes.FailedPrecondition, "exemption %d is already revoked", req.GetId())
	case err != nil:
		return nil, s.internal("revoking exemption", err)
	}
	s.log().Info("exemption revoked", "exemption_id", e.ID)
	return &adminv1.RevokeExemptionResponse{Exemption: ExemptionProto(e, now)}, nil
}

// ExemptionProto is e as the admin API returns it, active or not at now.
func ExemptionProto(e storage.Exemption, now time.Time) *adminv1.Exemption {
	return &adminv1.Exemption{
		Id: e.ID, DeviceId: e.DeviceID, Username: e.Username, PolicyIds: e.PolicyIDs, Reason: e.Reason,
		CreatedBy: e.CreatedBy, CreatedAt: ts(e.CreatedAt), ExpiresAt: ts(e.ExpiresAt),
		RevokedAt: ts(e.RevokedAt), RevokedBy: e.RevokedBy, Active: e.Active(now),
	}
}
