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
	if err == nil && len(g.PolicyIDs) > 0 {
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
	resp := &adminv1.GrantExemptionResponse{Exemption: exemptionProto(e, now)}
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

// ListExemptions implements AdminService.ListExemptions.
func (s *Server) ListExemptions(ctx context.Context, req *adminv1.ListExemptionsRequest) (*adminv1.ListExemptionsResponse, error) {
	if err := bounded("device_id", req.GetDeviceId()); err != nil {
		return nil, err
	}
	if err := bounded("username", req.GetUsername()); err != nil {
		return nil, err
	}
	if req.GetPageSize() < 0 {
		return nil, status.Error(codes.InvalidArgument, "page_size must not be negative")
	}
	now := s.now()
	f := storage.ExemptionFilter{DeviceID: req.GetDeviceId(), Username: req.GetUsername(), Limit: int(req.GetPageSize())}
	if !req.GetIncludeInactive() {
		f.ActiveAt = now
	}
	es, err := s.Store.ListExemptions(ctx, f)
	if err != nil {
		return nil, s.internal("listing exemptions", err)
	}
	resp := &adminv1.ListExemptionsResponse{Exemptions: make([]*adminv1.Exemption, 0, len(es))}
	for _, e := range es {
		resp.Exemptions = append(resp.Exemptions, exemptionProto(e, now))
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
	return &adminv1.RevokeExemptionResponse{Exemption: exemptionProto(e, now)}, nil
}

func exemptionProto(e storage.Exemption, now time.Time) *adminv1.Exemption {
	return &adminv1.Exemption{
		Id: e.ID, DeviceId: e.DeviceID, Username: e.Username, PolicyIds: e.PolicyIDs, Reason: e.Reason,
		CreatedBy: e.CreatedBy, CreatedAt: ts(e.CreatedAt), ExpiresAt: ts(e.ExpiresAt),
		RevokedAt: ts(e.RevokedAt), RevokedBy: e.RevokedBy, Active: e.Active(now),
	}
}
