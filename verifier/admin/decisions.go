package admin

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/web"
)

// Explainer runs the sign-in decision for a device without signing anyone in.
type Explainer interface {
	Explain(ctx context.Context, deviceID, username string, liveCheck bool) (decision.Decision, error)
}

const (
	// maxFilterLen bounds the identifiers a caller may send: longer ones name
	// nothing that exists, and are refused before they reach the database.
	maxFilterLen = 256
	// defaultDecisionPage and maxDecisionPage bound ListDecisions pages.
	// maxDecisionPage is also the backends' own cap (storage.DecisionFilter).
	defaultDecisionPage = 100
	maxDecisionPage     = 1000
)

// ListDecisions implements AdminService.ListDecisions.
func (s *Server) ListDecisions(ctx context.Context, req *adminv1.ListDecisionsRequest) (*adminv1.ListDecisionsResponse, error) {
	f, size, err := decisionFilter(req)
	if err != nil {
		return nil, err
	}
	if id := req.GetId(); id != 0 {
		if id < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "id %d is not a decision's id", id)
		}
		// The newest at or below it: it, when it exists and matches.
		f.BeforeID, size = id+1, 1
	}
	if f.DeviceID != "" {
		// The start of an id, as the tables show it, names its device; an
		// id no device has is an error, not an empty log.
		if f.DeviceID, err = s.deviceID(ctx, f.DeviceID); err != nil {
			return nil, err
		}
	}
	// One extra row tells whether another page exists, except at the
	// backends' cap: there a full page is taken to mean there may be more.
	f.Limit = min(size+1, maxDecisionPage)
	recs, err := s.Store.ListDecisions(ctx, f)
	if err != nil {
		return nil, s.internal("listing decisions", err)
	}
	more := len(recs) > size || (len(recs) == size && f.Limit == size)
	if len(recs) > size {
		recs = recs[:size]
	}
	if id := req.GetId(); id != 0 {
		more = false
		if len(recs) > 0 && recs[0].ID != id {
			recs = nil
		}
	}
	resp := &adminv1.ListDecisionsResponse{Decisions: make([]*adminv1.Decision, 0, len(recs))}
	for _, r := range recs {
		resp.Decisions = append(resp.Decisions, decisionProto(r))
	}
	if more && len(recs) > 0 {
		resp.NextPageToken = decisionToken(recs[len(recs)-1].ID)
	}
	return resp, nil
}

// decisionFilter checks a ListDecisions request and turns it into the
// storage filter (without Limit) and the page size.
func decisionFilter(req *adminv1.ListDecisionsRequest) (storage.DecisionFilter, int, error) {
	var f storage.DecisionFilter
	if err := boundedName("username", req.GetUsername()); err != nil {
		return f, 0, err
	}
	if err := bounded("device_id", req.GetDeviceId()); err != nil {
		return f, 0, err
	}
	if err := bounded("claimed_device_id", req.GetClaimedDeviceId()); err != nil {
		return f, 0, err
	}
	f.Username, f.DeviceID, f.ClaimedDeviceID = req.GetUsername(), req.GetDeviceId(), req.GetClaimedDeviceId()
	f.UserNotBound = req.GetUserNotBound()

	switch o := req.GetOrigin(); o {
	case adminv1.DecisionOrigin_DECISION_ORIGIN_UNSPECIFIED:
	case adminv1.DecisionOrigin_DECISION_ORIGIN_OKTA:
		f.SignIns = true
	case adminv1.DecisionOrigin_DECISION_ORIGIN_CLOUDFLARE:
		f.Cloudflare = true
	default:
		return f, 0, status.Errorf(codes.InvalidArgument, "origin %d is not a DecisionOrigin", int32(o))
	}
	switch r := req.GetResult(); r {
	case adminv1.DecisionResult_DECISION_RESULT_UNSPECIFIED:
	case adminv1.DecisionResult_DECISION_RESULT_ALLOW, adminv1.DecisionResult_DECISION_RESULT_DENY:
		allow := r == adminv1.DecisionResult_DECISION_RESULT_ALLOW
		f.Allow = &allow
	default:
		return f, 0, status.Errorf(codes.InvalidArgument, "result %d is not a DecisionResult", int32(r))
	}

	var err error
	if f.Since, f.Until, err = window(req.GetSince(), req.GetUntil()); err != nil {
		return f, 0, err
	}
	if len(req.GetModes()) > len(decision.Modes) {
		return f, 0, status.Errorf(codes.InvalidArgument, "modes names %d modes; there are %d", len(req.GetModes()), len(decision.Modes))
	}
	for _, m := range req.GetModes() {
		if !slices.Contains(decision.Modes, decision.Mode(m)) {
			return f, 0, status.Errorf(codes.InvalidArgument, "mode %q is not one of enforce, monitor, warn, warned, bypassed, exempt", clipped(m))
		}
		f.Modes = append(f.Modes, m)
	}
	size, err := pageSize(req.GetPageSize(), defaultDecisionPage, maxDecisionPage)
	if err != nil {
		return f, 0, err
	}

	if tok := req.GetPageToken(); tok != "" {
		id, ok := parseDecisionToken(tok)
		if !ok {
			return f, 0, status.Error(codes.InvalidArgument, "page_token is not one this server returned")
		}
		f.BeforeID = id
	}
	return f, size, nil
}

// window checks a request's since and until (either may be unset) and
// returns them: INVALID_ARGUMENT for a timestamp that is not valid, or a
// since after the until.
func window(since, until *timestamppb.Timestamp) (from, to time.Time, err error) {
	if since != nil {
		if err := since.CheckValid(); err != nil {
			return from, to, status.Error(codes.InvalidArgument, "since is not a valid timestamp")
		}
		from = since.AsTime()
	}
	if until != nil {
		if err := until.CheckValid(); err != nil {
			return from, to, status.Error(codes.InvalidArgument, "until is not a valid timestamp")
		}
		to = until.AsTime()
	}
	if since != nil && until != nil && from.After(to) {
		return from, to, status.Errorf(codes.InvalidArgument, "since (%s) is after until (%s)",
			from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano))
	}
	return from, to, nil
}

// pageSize is a request's page size: def when unset, capped at max;
// INVALID_ARGUMENT when negative.
func pageSize(n int32, def, max int) (int, error) {
	switch size := int(n); {
	case size < 0:
		return 0, status.Error(codes.InvalidArgument, "page_size must not be negative")
	case size == 0:
		return def, nil
	default:
		return min(size, max), nil
	}
}

// clipped bounds a caller's value quoted in an error.
func clipped(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

func bounded(field, v string) error {
	return boundedTo(field, v, maxFilterLen)
}

// boundedName is bounded for a person's name or id, which may be as long
// as the directory keeps one (storage.MaxNameLen): a filter shorter than
// the names SCIM accepts would leave some people impossible to ask about.
func boundedName(field, v string) error {
	return boundedTo(field, v, storage.MaxNameLen)
}

func boundedTo(field, v string, limit int) error {
	if len(v) > limit {
		return status.Errorf(codes.InvalidArgument, "%s is longer than %d bytes", field, limit)
	}
	// No name or id holds one, and a database may refuse a NUL as an
	// error rather than find nothing.
	if strings.ContainsFunc(v, unicode.IsControl) {
		return status.Errorf(codes.InvalidArgument, "%s holds a control character", field)
	}
	return nil
}

// A decisions page token is the paging cursor (storage.DecisionFilter's
// BeforeID: the id of the last decision returned) as base64url of its
// decimal digits. Clients treat it as opaque.
func decisionToken(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(id, 10)))
}

// parseDecisionToken accepts exactly what decisionToken makes.
func parseDecisionToken(tok string) (int64, bool) {
	if len(tok) > 32 {
		return 0, false
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, false
	}
	id, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != string(b) {
		return 0, false
	}
	return id, true
}

func decisionProto(r storage.DecisionRecord) *adminv1.Decision {
	d := &adminv1.Decision{
		Id:               r.ID,
		At:               ts(r.At),
		Username:         r.Username,
		DeviceId:         r.DeviceID,
		CertSerial:       r.CertSerial,
		Allow:            r.Allow,
		Reason:           r.Reason,
		PolicySetVersion: r.PolicySetVersion,
		ReportSeq:        r.ReportSeq,
		LiveCheck:        r.LiveCheck,
		Latency:          durationpb.New(r.Latency),
		Source:           r.Source,
		RequestId:        r.RequestID,
		Binding:          r.Binding,
		ClaimedDeviceId:  r.ClaimedDeviceID,
		Score:            int32(r.Score),
		Mode:             r.Mode,
		UserNotBound:     r.UserNotBound,
	}
	for _, res := range r.Results {
		d.Results = append(d.Results, &adminv1.DecisionPolicyResult{
			PolicyId:          res.PolicyID,
			Status:            policyStatus(decision.Status(res.Status)),
			Required:          res.Required,
			Critical:          res.Critical,
			Message:           res.Message,
			Enforcement:       res.Enforcement,
			Waiver:            res.Waiver,
			GraceEnds:         ts(res.GraceEnds),
			ExemptionId:       res.ExemptionID,
			OtherExemptionIds: res.OtherExemptionIDs,
		})
	}
	return d
}

// policyStatus maps the decision's status words to the enum grpcurl shows
// (POLICY_STATUS_PASS …). A word this server does not know is UNSPECIFIED.
func policyStatus(s decision.Status) adminv1.PolicyStatus {
	switch s {
	case decision.StatusPass:
		return adminv1.PolicyStatus_POLICY_STATUS_PASS
	case decision.StatusFail:
		return adminv1.PolicyStatus_POLICY_STATUS_FAIL
	case decision.StatusError:
		return adminv1.PolicyStatus_POLICY_STATUS_ERROR
	case decision.StatusMissing:
		return adminv1.PolicyStatus_POLICY_STATUS_MISSING
	}
	return adminv1.PolicyStatus_POLICY_STATUS_UNSPECIFIED
}

// ExplainAccess implements AdminService.ExplainAccess. It only asks Access
// for a decision: nothing is stored, so the decision log stays a record of
// real sign-ins.
func (s *Server) ExplainAccess(ctx context.Context, req *adminv1.ExplainAccessRequest) (*adminv1.ExplainAccessResponse, error) {
	id := req.GetDeviceId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "device_id is required")
	}
	if err := bounded("device_id", id); err != nil {
		return nil, err
	}
	if err := boundedName("username", req.GetUsername()); err != nil {
		return nil, err
	}
	if s.Access == nil {
		return nil, status.Error(codes.Unavailable, "ExplainAccess is not available: this verifier has no access decision engine configured")
	}
	caller := CallerFrom(ctx)
	if req.GetLiveCheck() && caller.Role != storage.AdminRoleAdmin {
		// A live check has the Mac run its policies, and its report is
		// stored and decides later sign-ins: RequestCheck's effect.
		return nil, status.Errorf(codes.PermissionDenied,
			"the admin token of %s has role %s, which lists and reads only; live_check asks the Mac for a new report, as RequestCheck does, and needs a token with role %s (without it, the explanation is from the latest report)",
			caller.Name, caller.Role, storage.AdminRoleAdmin)
	}
	id, err := s.deviceID(ctx, id)
	if err != nil {
		return nil, err
	}
	d, err := s.Access.Explain(ctx, id, req.GetUsername(), req.GetLiveCheck())
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, status.Errorf(codes.NotFound, "device %q is not enrolled", id)
	case errors.Is(err, context.Canceled):
		return nil, status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return nil, status.Error(codes.DeadlineExceeded, "no decision within the call's deadline")
	case err != nil:
		return nil, s.internal("explaining access", err)
	}
	if req.GetLiveCheck() && d.LiveCheck != decision.LiveCheckNone {
		s.audit(ctx, storage.AuditEvent{At: s.now(), Actor: caller.Actor(), Action: "device.check", DeviceID: id,
			Detail: "live check for an explanation: " + d.LiveCheck.String()})
	}
	s.log().Info("access explained", "device_id", id, "allow", d.Allow, "reason", string(d.Reason), "live_check", d.LiveCheck.String(), "by", caller.Actor())
	var ss sinces
	if !d.ObservedAt.IsZero() && s.Policies != nil {
		ss = s.sincesOf(ctx, id, querySums(s.Policies.Current()), d.ObservedAt)
	}
	return explainProto(d, ss), nil
}

// explainProto is d in the admin API's words, each policy's since from ss.
func explainProto(d decision.Decision, ss sinces) *adminv1.ExplainAccessResponse {
	resp := &adminv1.ExplainAccessResponse{
		Allow:                  d.Allow,
		Reason:                 string(d.Reason),
		Message:                web.Message(d.Reason, d.LiveCheck),
		Failing:                findings(d.Failing, ss),
		Advisory:               findings(d.Advisory, ss),
		Results:                findings(d.Results, ss),
		ObservedAt:             ts(d.ObservedAt),
		ReportSeq:              d.ReportSeq,
		PolicySetVersion:       d.PolicySetVersion,
		LiveCheck:              d.LiveCheck.String(),
		Bypassable:             d.Bypassable(),
		ReportPolicySetVersion: d.ReportPolicySetVersion,
		DeviceId:               d.DeviceID,
		DeviceName:             d.DeviceName,
		Username:               d.Username,
		Mode:                   string(d.Mode),
		WouldDeny:              string(d.WouldDeny),
		CanContinue:            d.CanContinue,
		CanResolveLater:        d.CanResolveLater,
		BlockFrom:              ts(d.BlockFrom),
	}
	// Zero means freshness was not measured (see decision.Decision).
	if d.PostureAge != 0 {
		resp.PostureAge = durationpb.New(d.PostureAge)
	}
	return resp
}

func findings(fs []decision.Finding, ss sinces) []*adminv1.PolicyFinding {
	out := make([]*adminv1.PolicyFinding, 0, len(fs))
	for _, f := range fs {
		out = append(out, &adminv1.PolicyFinding{
			PolicyId:          f.PolicyID,
			Name:              f.Name,
			Required:          f.Required,
			Critical:          f.Critical,
			Status:            policyStatus(f.Status),
			Message:           f.Message,
			Resolution:        f.Resolution,
			Description:       f.Description,
			Enforcement:       string(f.Enforcement),
			Waiver:            string(f.Waiver),
			GraceEnds:         ts(f.GraceEnds),
			ExemptionId:       f.ExemptionID,
			OtherExemptionIds: f.OtherExemptionIDs,
			// Offered only on a page that would show Resolve later.
			BypassOffered: f.BypassOffered,
			BlocksFrom:    ts(f.BlocksFrom),
			Since:         ss.of(f.PolicyID, f.Status),
		})
	}
	return out
}
