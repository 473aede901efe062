// Package admin serves clearance.admin.v1.AdminService: the security team's
// and engineers' view of devices, policies, enroll secrets and live checks.
// Authentication (the bearer token) is enforced by an interceptor in front of
// it; see Auth.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/enroll"
	"github.com/clearance/clearance/verifier/hub"
	"github.com/clearance/clearance/verifier/metrics"
	"github.com/clearance/clearance/verifier/storage"
)

// PolicySource is the policy set in force and a way to re-read it.
type PolicySource interface {
	Current() *agentv1.PolicySet
	// Reload reads the policy file again. It calls record, when set, with
	// the set it read and how it differs from the set in force
	// (policy.Changes), before putting it in force; record's error leaves
	// the set in force as it was and is returned as is (ErrNotRecorded's
	// wrapping tells it from a file that does not load).
	Reload(record func(next *agentv1.PolicySet, changes []string) error) (*agentv1.PolicySet, error)
}

// reloadAuditTimeout bounds a reload's wait for its audit event.
const reloadAuditTimeout = 15 * time.Second

// ErrNotRecorded wraps an audit write a change waited for and did not get:
// the change is not in force.
var ErrNotRecorded = errors.New("the audit log could not record it")

// Server implements AdminService.
type Server struct {
	adminv1.UnimplementedAdminServiceServer

	Store    storage.Store
	Hub      *hub.Hub
	Policies PolicySource
	Metrics  *metrics.Metrics
	Logger   *slog.Logger
	Now      func() time.Time

	// Access runs ExplainAccess's dry-run decisions; nil makes ExplainAccess
	// answer UNAVAILABLE.
	Access Explainer
	// Ceiling is the enforcement ceiling in force (rollout.Source's
	// CurrentCeiling), which ListPolicies shows; nil: enforce.
	Ceiling func() decision.Enforcement
	// CheckTimeout is how long RequestCheck waits when the request names no
	// timeout: serve's --live-check-timeout (config.DefaultLiveCheckTimeout
	// when zero).
	CheckTimeout time.Duration
	// MaxPostureAge is serve's --max-posture-age: a device whose latest
	// report is older is "stale" in Device.state (zero: the default).
	MaxPostureAge time.Duration
	// Okta reads Okta's management API for OktaStatus; zero: not configured.
	Okta OktaAPI

	// oktaMu guards the last OktaStatus answer and the round under way,
	// if any, which calls at once share.
	oktaMu     sync.Mutex
	oktaStatus *adminv1.OktaStatusResponse
	oktaFlight chan struct{}

	// reloadMu makes each ReloadPolicies read the set it replaces and load
	// the next as one step, so two at once cannot both see the same set.
	reloadMu sync.Mutex

	// fleetScans lets maxFleetScans calls at a time read every Mac's
	// latest report (fleetAccounts) or the audit log: the others wait
	// their turn, within their deadline.
	fleetScansOnce sync.Once
	fleetScans     chan struct{}
}

var _ adminv1.AdminServiceServer = (*Server)(nil)

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) log() *slog.Logger {
	l := s.Logger
	if l == nil {
		l = slog.Default()
	}
	return l.With("component", "admin")
}

func (s *Server) internal(what string, err error) error {
	s.log().Error("admin call failed", "step", what, "err", err)
	return status.Errorf(codes.Internal, "%s failed; see the verifier log", what)
}

// ListDevices implements AdminService.ListDevices.
func (s *Server) ListDevices(ctx context.Context, req *adminv1.ListDevicesRequest) (*adminv1.ListDevicesResponse, error) {
	size, after, err := keyPage(req.GetPageSize(), req.GetPageToken(), 64)
	if err != nil {
		return nil, err
	}
	filter, err := s.deviceFilter(req)
	if err != nil {
		return nil, err
	}
	// One extra row tells whether another page exists.
	devs, err := s.devicePage(ctx, filter, req.GetEnrollSecretId(), after, size+1)
	if err != nil {
		return nil, err
	}
	resp := &adminv1.ListDevicesResponse{}
	if len(devs) > size {
		devs = devs[:size]
		resp.NextPageToken = nextKey(devs[len(devs)-1].ID)
	}
	snap := s.snapshot()
	ps := snap.Set
	sums := querySums(ps)
	dir := &directory{s: s}
	for _, d := range devs {
		// Names are facts of the stored device: a Mac they leave out
		// costs no posture reading.
		if !filter.Names(d) {
			continue
		}
		latest, err := s.latest(ctx, d.ID)
		if err != nil {
			return nil, err
		}
		outcomes, summary := Outcomes(ps, latest.GetReport())
		narrowed, err := s.scopeOut(ctx, d.ID, latest.GetReport(), summary, snap.Scopes, dir)
		if err != nil {
			return nil, err
		}
		s.sincesOf(ctx, d.ID, sums, latest.GetReport().GetObservedAt().AsTime()).fill(outcomes, summary)
		unrecordedRun(summary, narrowed)
		dev := s.device(d, summary)
		dev.LocalUser = LocalUser(latest.GetReport())
		if filter.Keep(dev, s.now()) {
			resp.Devices = append(resp.Devices, dev)
		}
	}
	return resp, nil
}

// devicePage reads the devices a ListDevices page looks at: up to limit
// after the id after, in id order, enrolled with secret when one is given.
// When the filter names its devices (a person's Macs, the holders of a
// serial number) those alone are read, not the whole fleet: a lookup is
// answered in one page however large the fleet. f.Names is left to the
// caller.
func (s *Server) devicePage(ctx context.Context, f DeviceFilter, secret, after string, limit int) ([]storage.Device, error) {
	ids, named, err := s.namedDevices(ctx, f)
	if err != nil {
		return nil, err
	}
	if !named {
		var devs []storage.Device
		if secret != "" {
			devs, err = s.Store.ListDevicesBySecret(ctx, secret, after, limit)
		} else {
			devs, err = s.Store.ListDevices(ctx, after, limit)
		}
		if err != nil {
			return nil, s.internal("listing devices", err)
		}
		return devs, nil
	}
	i, found := slices.BinarySearch(ids, after)
	if found {
		i++
	}
	var devs []storage.Device
	for _, id := range ids[i:] {
		if len(devs) == limit {
			break
		}
		d, err := s.Store.GetDevice(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, s.internal("reading device", err)
		}
		if secret == "" || d.SecretID == secret {
			devs = append(devs, d)
		}
	}
	return devs, nil
}

// namedDevices is the ids, sorted, of the devices f names: the Macs its
// user uses, and those enrolled on its serial number when the store finds
// them by it (storage.DeviceFinder, for a serial with a canonical form; a
// virtual machine's, say, has none and is left to f.Names as the fleet
// is walked). named is false when f names neither: every device is a
// candidate.
func (s *Server) namedDevices(ctx context.Context, f DeviceFilter) (ids []string, named bool, err error) {
	if f.User != "" {
		if ids, err = s.macsOf(ctx, f.User); err != nil {
			return nil, false, err
		}
		named = true
	}
	finder, ok := s.Store.(storage.DeviceFinder)
	if serial := storage.CanonicalSerial(f.SerialNumber); ok && serial != "" {
		devs, err := finder.DevicesBySerial(ctx, []string{serial})
		if err != nil {
			return nil, false, s.internal("finding devices by serial number", err)
		}
		var holders []string
		for _, d := range devs {
			if _, theirs := slices.BinarySearch(ids, d.ID); !named || theirs {
				holders = append(holders, d.ID)
			}
		}
		ids, named = holders, true
	}
	slices.Sort(ids)
	return ids, named, nil
}

// deviceFilter checks a ListDevices request's filters.
func (s *Server) deviceFilter(req *adminv1.ListDevicesRequest) (DeviceFilter, error) {
	f := DeviceFilter{Failing: req.GetFailing(), Offline: req.GetOffline(), PolicyID: req.GetPolicyId(), SettingsRejected: req.GetSettingsRejected(),
		Revoked: req.GetIncludeRevoked()}
	for _, name := range []struct {
		field string
		v     *string
		in    string
	}{{"serial_number", &f.SerialNumber, req.GetSerialNumber()}, {"host_name", &f.HostName, req.GetHostName()}, {"user", &f.User, req.GetUser()}} {
		check := bounded
		if name.field == "user" {
			check = boundedName
		}
		if err := check(name.field, name.in); err != nil {
			return f, err
		}
		// Pasted names bring spaces along; none of these is only spaces.
		if *name.v = strings.TrimSpace(name.in); *name.v == "" && name.in != "" {
			return f, status.Errorf(codes.InvalidArgument, "%s is only spaces", name.field)
		}
	}
	if d := req.GetFailingFor(); d != nil {
		if err := d.CheckValid(); err != nil {
			return f, status.Errorf(codes.InvalidArgument, "failing_for: %v", err)
		}
		f.ByFailingFor = true
		if f.FailingFor = d.AsDuration(); f.FailingFor < 0 {
			return f, status.Error(codes.InvalidArgument, "failing_for is negative")
		}
	}
	if f.PolicyID != "" {
		if err := bounded("policy_id", f.PolicyID); err != nil {
			return f, err
		}
		if !slices.ContainsFunc(s.Policies.Current().GetPolicies(), func(p *agentv1.Policy) bool { return p.GetId() == f.PolicyID }) {
			return f, status.Errorf(codes.InvalidArgument, "no policy %q in the set in force (see ListPolicies)", clipped(f.PolicyID))
		}
	}
	if f.Revoked && !f.Health() {
		return f, status.Error(codes.InvalidArgument, "include_revoked keeps revoked devices in failing, failing_for, offline, policy_id or settings_rejected; without one of those revoked devices are listed with the others")
	}
	return f, nil
}

// GetDevice implements AdminService.GetDevice.
func (s *Server) GetDevice(ctx context.Context, req *adminv1.GetDeviceRequest) (*adminv1.GetDeviceResponse, error) {
	d, err := s.getDevice(ctx, req.GetDeviceId())
	if err != nil {
		return nil, err
	}
	latest, err := s.latest(ctx, d.ID)
	if err != nil {
		return nil, err
	}
	snap := s.snapshot()
	ps := snap.Set
	outcomes, summary := Outcomes(ps, latest.GetReport())
	narrowed, err := s.scopeOut(ctx, d.ID, latest.GetReport(), summary, snap.Scopes, &directory{s: s})
	if err != nil {
		return nil, err
	}
	s.sincesOf(ctx, d.ID, querySums(ps), latest.GetReport().GetObservedAt().AsTime()).fill(outcomes, summary)
	unrecordedRun(summary, narrowed)
	dev := s.device(d, summary)
	dev.LocalUser = LocalUser(latest.GetReport())
	if until, err := s.Store.ReinstallExpected(ctx, d.ID); err != nil {
		return nil, s.internal("reading the expected reinstall", err)
	} else if until.After(s.now()) {
		dev.ReinstallExpectedUntil = ts(until)
	}
	return &adminv1.GetDeviceResponse{Device: dev, LatestReport: latest, Policies: outcomes}, nil
}

// revokedWhy is a revocation's reason as a message quotes it.
func revokedWhy(reason string) string {
	if reason == "" {
		return "none given"
	}
	return strconv.Quote(reason)
}

// RevokeDevice implements AdminService.RevokeDevice.
func (s *Server) RevokeDevice(ctx context.Context, req *adminv1.RevokeDeviceRequest) (*adminv1.RevokeDeviceResponse, error) {
	if len(req.GetReason()) > 500 {
		return nil, status.Error(codes.InvalidArgument, "reason is longer than 500 characters")
	}
	id, err := s.deviceID(ctx, req.GetDeviceId())
	if err != nil {
		return nil, err
	}
	now := s.now()
	d, err := s.Store.RevokeDevice(ctx, id, req.GetReason(), now,
		storage.AuditEvent{At: now, Actor: actor(ctx), Action: "device.revoke", DeviceID: id, Detail: req.GetReason()})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "no device %q", req.GetDeviceId())
	}
	if errors.Is(err, storage.ErrDeviceRevoked) {
		// The first revocation stands (of racing ones, one wins); a second
		// would only add an audit event whose reason the device does not
		// carry. Its streams are told again, wherever they are: the first
		// telling may not have reached every replica.
		s.Hub.Revoked(d.ID)
		return nil, status.Errorf(codes.FailedPrecondition, "device %s was revoked already, at %s (reason: %s); nothing changed",
			id, d.RevokedAt.UTC().Format(time.RFC3339), revokedWhy(d.RevokedReason))
	}
	if err != nil {
		return nil, s.internal("revoking device", err)
	}
	s.Hub.Revoked(d.ID)
	s.log().Info("device revoked", "device_id", d.ID, "reason", req.GetReason())
	return &adminv1.RevokeDeviceResponse{Device: s.device(d, nil)}, nil
}

// ListPolicies implements AdminService.ListPolicies: the set in force and,
// when the source gives them (access.Snapshotter), each policy's rollout
// settings and groups from the same reload, with the mode each takes
// under the ceiling.
func (s *Server) ListPolicies(context.Context, *adminv1.ListPoliciesRequest) (*adminv1.ListPoliciesResponse, error) {
	snap := s.snapshot()
	ceiling := decision.Enforce
	if s.Ceiling != nil {
		ceiling = s.Ceiling().Lower(decision.Enforce)
	}
	resp := &adminv1.ListPoliciesResponse{PolicySet: snap.Set, EnforcementCeiling: string(ceiling)}
	for _, p := range snap.Set.GetPolicies() {
		pr, scope := snap.Rollout[p.GetId()], snap.Scopes[p.GetId()]
		r := &adminv1.PolicyRollout{
			PolicyId: p.GetId(), Required: proto.Bool(p.GetRequired()), Critical: proto.Bool(p.GetCritical()),
			Enforcement:          string(pr.Enforcement.Lower(decision.Enforce)),
			AllowBypass:          pr.AllowBypass,
			Groups:               scope.Groups,
			ExcludeGroups:        scope.Exclude,
			EffectiveEnforcement: string(pr.Enforcement.Lower(ceiling)),
		}
		if pr.Grace > 0 {
			r.Grace = durationpb.New(pr.Grace)
		}
		resp.Rollouts = append(resp.Rollouts, r)
	}
	return resp, nil
}

// ReloadPolicies implements AdminService.ReloadPolicies. The new set is
// recorded in the audit log before it is put in force, so the log never
// names a set other than the one deciding sign-ins: a store that cannot
// take the event leaves the previous set in force.
func (s *Server) ReloadPolicies(ctx context.Context, _ *adminv1.ReloadPoliciesRequest) (*adminv1.ReloadPoliciesResponse, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	was := s.Policies.Current().GetVersion()
	// A person's reload is audited whatever it found; SIGHUP's only when
	// the set changed, since the signal is also how the settings file is
	// read again.
	var changes []string
	record := func(next *agentv1.PolicySet, c []string) error {
		changes = c
		changed := next.GetVersion() != was
		if !changed && CallerFrom(ctx).Process != "" {
			return nil
		}
		detail := fmt.Sprintf("policy set %s, %d policies; unchanged", next.GetVersion(), len(next.GetPolicies()))
		if changed {
			detail = fmt.Sprintf("policy set %s (was %s), %d policies", next.GetVersion(), orNone(was), len(next.GetPolicies()))
			if len(c) > 0 {
				detail += ": " + changeList(c, maxChangesDetail)
			}
		}
		ev := storage.AuditEvent{At: s.now(), Actor: actor(ctx), Action: "policies.reload", Detail: detail}
		// Not the caller's deadline (a reload once decided is recorded
		// whole), but a bound: the reload holds its locks meanwhile, and a
		// database that does not answer must not hold every later one.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reloadAuditTimeout)
		defer cancel()
		if err := s.Store.AppendAudit(actx, ev); err != nil {
			s.log().Error("policies not reloaded: the audit log could not record the reload", "version", next.GetVersion(), "was", was, "err", err)
			return fmt.Errorf("%w: %w", ErrNotRecorded, err)
		}
		return nil
	}
	ps, err := s.Policies.Reload(record)
	s.Metrics.Reloaded(metrics.ReloadPolicies, err, s.now())
	switch {
	case errors.Is(err, ErrNotRecorded):
		return nil, status.Error(codes.Unavailable, "policies not reloaded, the previous set stays in force: the audit log could not record the reload; try again once the database answers (see the verifier log)")
	case err != nil:
		// The old set stays in force; say exactly what is wrong with the
		// file, to the caller and in the log, whoever asked (SIGHUP or a
		// person).
		s.log().Error("policy reload failed", "err", err.Error(), "by", actor(ctx))
		return nil, status.Errorf(codes.FailedPrecondition, "policies not reloaded, the previous set stays in force: %v", err)
	}
	n := s.Hub.Broadcast(&agentv1.VerifierMessage{Message: &agentv1.VerifierMessage_PolicySet{PolicySet: ps}})
	s.log().Info("policies reloaded", "version", ps.GetVersion(), "changed", ps.GetVersion() != was, "policies", len(ps.GetPolicies()),
		"changes", changeList(changes, maxChangesDetail), "agents_notified", n, "by", actor(ctx))
	return &adminv1.ReloadPoliciesResponse{PolicySet: ps, AgentsNotified: uint32(n), Changes: changes}, nil
}

// maxChangesDetail bounds the changes a policies.reload event lists, in
// bytes: a set of hundreds of policies rewritten at once is recorded as its
// first changes and how many more.
const maxChangesDetail = 2000

// changeList is changes joined by "; ", cut after the last whole change
// that keeps it within max bytes, with how many were left out.
func changeList(changes []string, max int) string {
	var b strings.Builder
	for i, c := range changes {
		if i > 0 && b.Len()+2+len(c) > max {
			fmt.Fprintf(&b, "; and %d more", len(changes)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		if len(c) > max {
			// One change longer than the whole (a scope of many groups).
			c = strings.ToValidUTF8(c[:max], "") + "…"
		}
		b.WriteString(c)
	}
	return b.String()
}

// CreateEnrollSecret implements AdminService.CreateEnrollSecret.
func (s *Server) CreateEnrollSecret(ctx context.Context, req *adminv1.CreateEnrollSecretRequest) (*adminv1.CreateEnrollSecretResponse, error) {
	if n := len(req.GetDescription()); n > enroll.MaxSecretDescription {
		return nil, status.Errorf(codes.InvalidArgument, "description is %d characters; the limit is %d", n, enroll.MaxSecretDescription)
	}
	var scope enroll.SecretScope
	if d := req.GetExpiresIn(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "expires_in: %v", err)
		}
		if scope.ExpiresIn = d.AsDuration(); scope.ExpiresIn <= 0 {
			return nil, status.Error(codes.InvalidArgument, "expires_in must be positive")
		}
	}
	if req.GetMaxUses() > enroll.MaxSecretUses {
		return nil, status.Errorf(codes.InvalidArgument, "max_uses %d is more than %d", req.GetMaxUses(), enroll.MaxSecretUses)
	}
	scope.MaxUses = int(req.GetMaxUses())
	if err := scope.Check(); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	rec, secret, err := enroll.CreateSecret(ctx, s.Store, req.GetDescription(), scope, actor(ctx), s.now())
	if err != nil {
		return nil, s.internal("creating enroll secret", err)
	}
	s.log().Info("enroll secret created", "secret_id", rec.ID)
	return &adminv1.CreateEnrollSecretResponse{EnrollSecret: secretProto(rec), Secret: secret}, nil
}

// ListEnrollSecrets implements AdminService.ListEnrollSecrets.
func (s *Server) ListEnrollSecrets(ctx context.Context, _ *adminv1.ListEnrollSecretsRequest) (*adminv1.ListEnrollSecretsResponse, error) {
	recs, err := s.Store.ListEnrollSecrets(ctx)
	if err != nil {
		return nil, s.internal("listing enroll secrets", err)
	}
	resp := &adminv1.ListEnrollSecretsResponse{}
	for _, r := range recs {
		resp.EnrollSecrets = append(resp.EnrollSecrets, secretProto(r))
	}
	return resp, nil
}

// RevokeEnrollSecret implements AdminService.RevokeEnrollSecret.
func (s *Server) RevokeEnrollSecret(ctx context.Context, req *adminv1.RevokeEnrollSecretRequest) (*adminv1.RevokeEnrollSecretResponse, error) {
	now := s.now()
	rec, err := s.Store.RevokeEnrollSecret(ctx, req.GetId(), now,
		storage.AuditEvent{At: now, Actor: actor(ctx), Action: "secret.revoke", Detail: "enroll secret " + req.GetId() + " revoked"})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "no enroll secret %q", req.GetId())
	}
	if err != nil {
		return nil, s.internal("revoking enroll secret", err)
	}
	// Whoever holds a leaked secret may have enrolled with it: name the
	// devices whose current key it admitted, for the security team to
	// look at.
	devs, err := s.Store.ListDevicesBySecret(ctx, rec.ID, "", revokedSecretPage+1)
	if err != nil {
		return nil, s.internal("listing the secret's devices", err)
	}
	resp := &adminv1.RevokeEnrollSecretResponse{EnrollSecret: secretProto(rec)}
	if len(devs) > revokedSecretPage {
		devs = devs[:revokedSecretPage]
		resp.NextPageToken = nextKey(devs[len(devs)-1].ID)
	}
	for _, d := range devs {
		resp.Devices = append(resp.Devices, s.device(d, nil))
	}
	s.log().Info("enroll secret revoked", "secret_id", rec.ID, "devices", len(devs))
	return resp, nil
}

// revokedSecretPage is how many devices RevokeEnrollSecret names; the rest
// come from ListDevices by secret.
const revokedSecretPage = 500

// RequestCheck implements AdminService.RequestCheck.
func (s *Server) RequestCheck(ctx context.Context, req *adminv1.RequestCheckRequest) (*adminv1.RequestCheckResponse, error) {
	timeout := s.CheckTimeout
	if timeout <= 0 {
		timeout = config.DefaultLiveCheckTimeout
	}
	if t := req.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil || t.AsDuration() <= 0 || t.AsDuration() > time.Minute {
			return nil, status.Error(codes.InvalidArgument, "timeout must be between 0s and 60s")
		}
		timeout = t.AsDuration()
	}
	d, err := s.getDevice(ctx, req.GetDeviceId())
	if err != nil {
		return nil, err
	}
	if d.Revoked() {
		return nil, status.Errorf(codes.FailedPrecondition, "device %s is revoked", d.ID)
	}
	acc, err := s.Hub.CheckNow(ctx, d.ID, timeout)
	// The request is audited with its outcome, as far as this call knows
	// it: a caller that gives up leaves a check that may have reached the
	// Mac (it goes on without the caller).
	outcome := "answered"
	switch {
	case ctx.Err() != nil:
		outcome = "the caller gave up before the outcome (the Mac may have been asked)"
	case errors.Is(err, hub.ErrNotConnected):
		outcome = "not connected, not asked"
	case errors.Is(err, hub.ErrBusy):
		outcome = "not reading its stream, not asked"
	case errors.Is(err, context.DeadlineExceeded):
		outcome = "asked, no answer within " + timeout.String()
	case err != nil:
		outcome = "failed before an answer"
	}
	s.audit(ctx, storage.AuditEvent{At: s.now(), Actor: actor(ctx), Action: "device.check", DeviceID: d.ID, Detail: "live check requested: " + outcome})
	switch {
	case errors.Is(err, hub.ErrNotConnected):
		s.Metrics.LiveCheck("offline")
		return nil, status.Errorf(codes.FailedPrecondition, "device %s is not connected to this verifier (last seen %s)", d.ID, seen(d.LastSeen))
	case errors.Is(err, hub.ErrBusy):
		s.Metrics.LiveCheck("busy")
		return nil, status.Errorf(codes.Unavailable, "device %s is not reading its stream; try again", d.ID)
	case errors.Is(err, context.DeadlineExceeded):
		s.Metrics.LiveCheck("timeout")
		return nil, status.Errorf(codes.DeadlineExceeded, "device %s did not send a fresh report within %s", d.ID, timeout)
	case errors.Is(err, context.Canceled):
		return nil, status.Error(codes.Canceled, "request canceled")
	case err != nil:
		s.Metrics.LiveCheck("error")
		return nil, s.internal("live check", err)
	}
	s.Metrics.LiveCheck("ok")
	outcomes, _ := Outcomes(s.Policies.Current(), acc.Report)
	return &adminv1.RequestCheckResponse{
		Report:   &adminv1.Report{Report: acc.Report, ReceivedAt: timestamppb.New(acc.Stored.ReceivedAt)},
		Policies: outcomes,
	}, nil
}

func seen(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func (s *Server) getDevice(ctx context.Context, id string) (storage.Device, error) {
	whole, err := s.deviceID(ctx, id)
	if err != nil {
		return storage.Device{}, err
	}
	d, err := s.Store.GetDevice(ctx, whole)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Device{}, status.Errorf(codes.NotFound, "no device %q", id)
	}
	if err != nil {
		return storage.Device{}, s.internal("reading device", err)
	}
	return d, nil
}

// deviceID is the whole id of the enrolled device (revoked or not) that id
// names: itself, or the start of one no other device's id starts with, as
// the tables show ids. NOT_FOUND for none, INVALID_ARGUMENT for a start
// more than one id has, or an id no device could have.
func (s *Server) deviceID(ctx context.Context, id string) (string, error) {
	if id == "" {
		return "", status.Error(codes.InvalidArgument, "device_id is required")
	}
	if err := bounded("device_id", id); err != nil {
		return "", err
	}
	whole, err := storage.ResolveDeviceID(ctx, s.Store, id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return "", status.Errorf(codes.NotFound, "%v (see ListDevices, or 'clearance-verifier devices --wide')", err)
	case errors.Is(err, storage.ErrAmbiguousDevice):
		return "", status.Errorf(codes.InvalidArgument, "%v", err)
	case err != nil:
		return "", s.internal("reading device", err)
	}
	return whole, nil
}

// latest returns the device's latest report, parsed, or nil if it has none.
// Stored reports were verified on the way in; they are parsed, not re-verified.
func (s *Server) latest(ctx context.Context, deviceID string) (*adminv1.Report, error) {
	r, err := s.Store.LatestReport(ctx, deviceID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, s.internal("reading latest report", err)
	}
	pr := new(agentv1.PostureReport)
	if err := proto.Unmarshal(r.Payload, pr); err != nil {
		return nil, s.internal("parsing stored report", err)
	}
	return &adminv1.Report{Report: pr, ReceivedAt: timestamppb.New(r.ReceivedAt)}, nil
}

func (s *Server) device(d storage.Device, summary *adminv1.PostureSummary) *adminv1.Device {
	st := adminv1.DeviceStatus_DEVICE_STATUS_ACTIVE
	if d.Revoked() {
		st = adminv1.DeviceStatus_DEVICE_STATUS_REVOKED
	}
	return &adminv1.Device{
		DeviceId: d.ID,
		Status:   st,
		Facts: &agentv1.DeviceFacts{
			HardwareUuid: d.HardwareUUID, SerialNumber: d.SerialNumber, Model: d.Model, OsName: d.OSName,
			OsVersion: d.OSVersion, Hostname: d.Hostname, Platform: d.Platform, AgentVersion: d.AgentVersion,
		},
		EnrolledAt:        ts(d.EnrolledAt),
		LastSeen:          ts(d.LastSeen),
		LastReportAt:      ts(d.LastReportAt),
		LastSeq:           d.LastSeq,
		Connected:         s.Hub.Connected(d.ID),
		Summary:           summary,
		CertSerial:        d.CertSerial,
		CertNotAfter:      ts(d.CertNotAfter),
		Enrollments:       uint32(d.Enrollments),
		RevokedAt:         ts(d.RevokedAt),
		RevokedReason:     d.RevokedReason,
		EnrollSecretId:    d.SecretID,
		KeyFingerprint:    enroll.KeyFingerprint(d.PublicKey),
		State:             s.deviceState(d, summary),
		SettingsRejection: settingsRejection(d),
	}
}

// settingsRejection is what d's latest report said of its agent's
// settings, as Device.settings_rejection; nil when it runs on those it
// was given.
func settingsRejection(d storage.Device) *agentv1.SettingsRejection {
	if d.SettingsRejectedAt.IsZero() {
		return nil
	}
	return &agentv1.SettingsRejection{At: ts(d.SettingsRejectedAt), Reason: d.SettingsRejected}
}

// EnrollSecretProto is r as ListEnrollSecrets returns it (never its value
// or hash).
func EnrollSecretProto(r storage.EnrollSecret) *adminv1.EnrollSecret { return secretProto(r) }

func secretProto(r storage.EnrollSecret) *adminv1.EnrollSecret {
	return &adminv1.EnrollSecret{Id: r.ID, Description: r.Description, CreatedAt: ts(r.CreatedAt), RevokedAt: ts(r.RevokedAt),
		Uses: uint32(r.Uses), ExpiresAt: ts(r.ExpiresAt), MaxUses: uint32(r.MaxUses)}
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// audit appends e for a change already made; a failure is logged, not the
// caller's (the change stands).
func (s *Server) audit(ctx context.Context, e storage.AuditEvent) {
	if err := s.Store.AppendAudit(context.WithoutCancel(ctx), e); err != nil {
		s.log().Error("audit event not recorded", "action", e.Action, "device_id", e.DeviceID, "err", err)
	}
}

// orNone is v, or "none" when empty.
func orNone(v string) string {
	if v == "" {
		return "none"
	}
	return v
}

// LocalUser is who used the Mac as r saw it: the account logged in at the
// console, or else the one whose login is latest; "" when r lists none.
func LocalUser(r *agentv1.PostureReport) string {
	var last *agentv1.LocalAccount
	for _, a := range r.GetAccounts() {
		if a.GetConsole() {
			return a.GetName()
		}
		if a.GetLastLogin() != nil && (last == nil || a.GetLastLogin().AsTime().After(last.GetLastLogin().AsTime())) {
			last = a
		}
	}
	return last.GetName()
}

// Outcomes is decision.Judge's answer in the admin API's words: each policy
// in force with its outcome, and a summary. A required policy with no result
// counts as missing, and missing is not compliant; without a report nothing
// is compliant.
func Outcomes(ps *agentv1.PolicySet, r *agentv1.PostureReport) ([]*adminv1.PolicyOutcome, *adminv1.PostureSummary) {
	fs := decision.Judge(ps, r)
	sum := &adminv1.PostureSummary{Compliant: proto.Bool(r != nil && decision.Compliant(fs))}
	out := make([]*adminv1.PolicyOutcome, 0, len(fs))
	for _, f := range fs {
		o := &adminv1.PolicyOutcome{PolicyId: f.PolicyID, Name: f.Name, Required: f.Required, Critical: f.Critical, Resolution: f.Resolution, Message: f.Message}
		switch {
		case f.Required && f.Status != decision.StatusPass:
			sum.Failing = append(sum.Failing, f.PolicyID)
			switch f.Status {
			case decision.StatusError:
				sum.FailingError = append(sum.FailingError, f.PolicyID)
			case decision.StatusMissing:
				sum.FailingMissing = append(sum.FailingMissing, f.PolicyID)
			}
		case !f.Required && (f.Status == decision.StatusFail || f.Status == decision.StatusError):
			sum.AdvisoryFailing = append(sum.AdvisoryFailing, f.PolicyID)
		}
		switch f.Status {
		case decision.StatusPass:
			o.Status = agentv1.PolicyStatus_POLICY_STATUS_PASS
			sum.Pass++
		case decision.StatusFail:
			o.Status = agentv1.PolicyStatus_POLICY_STATUS_FAIL
			sum.Fail++
		case decision.StatusError:
			o.Status = agentv1.PolicyStatus_POLICY_STATUS_ERROR
			sum.Error++
		default:
			if f.Required {
				sum.Missing++
			}
		}
		out = append(out, o)
	}
	return out, sum
}

// CreateScepChallenge implements AdminService.CreateScepChallenge.
func (s *Server) CreateScepChallenge(ctx context.Context, req *adminv1.CreateScepChallengeRequest) (*adminv1.CreateScepChallengeResponse, error) {
	var ttl time.Duration
	if req.GetTtl() != nil {
		if err := req.GetTtl().CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "ttl: %v", err)
		}
		ttl = req.GetTtl().AsDuration()
		if ttl < time.Minute || ttl > enroll.MaxChallengeTTL {
			return nil, status.Errorf(codes.InvalidArgument, "ttl %s is outside 1m to %s", ttl, enroll.MaxChallengeTTL)
		}
	}
	challenge, expires, err := enroll.CreateChallenge(ctx, s.Store, ttl, actor(ctx), s.now())
	if err != nil {
		return nil, s.internal("creating SCEP challenge", err)
	}
	s.log().Info("scep challenge created", "expires_at", expires)
	return &adminv1.CreateScepChallengeResponse{Challenge: challenge, ExpiresAt: timestamppb.New(expires)}, nil
}
