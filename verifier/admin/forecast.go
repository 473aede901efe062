package admin

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/access"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/storage"
)

// Forecaster runs a device's sign-in decision as configured and as it
// would be with some policies enforced; *access.Gate implements it.
type Forecaster interface {
	Forecast(ctx context.Context, dev storage.Device, username string, e access.Enforced) (now, enforced decision.Decision, err error)
}

var _ Forecaster = (*access.Gate)(nil)

// Where a forecast's person comes from (DeviceForecast.username_source).
const (
	forecastAssigned     = "assigned"
	forecastLocalAccount = "local_account"
	forecastLatestSignIn = "latest_sign_in"
	forecastCloudflare   = "cloudflare"
	// forecastSignIns is how many of a device's latest sign-ins are read
	// for the person of one that names someone.
	forecastSignIns = 20
	// maxForecastPolicies bounds policy_ids: more than any policy file holds.
	maxForecastPolicies = 1000
	// maxForecastPeople bounds the people one Mac is decided for, so that
	// a page's work stays in proportion to its size: the first by user id;
	// DeviceForecast.people_omitted counts the others.
	maxForecastPeople = 16
	// maxForecastReads bounds the assigned users read to find them: people
	// who left keep their assignments, and a shared Mac may have hundreds.
	maxForecastReads = 1000
	// maxForecastBytes ends a page once its rows pass it: one Mac's rows
	// more stay under gRPC's default 4 MiB a message even with 1,000
	// failing policies of the longest ids.
	maxForecastBytes = 1 << 20
)

// ForecastEnforcement implements AdminService.ForecastEnforcement: a dry
// run, device by device, of enforcing some policies (every policy when the
// request names none). Revoked devices are left out: no sign-in from one
// is let in, whatever the policies. Nothing is written.
func (s *Server) ForecastEnforcement(ctx context.Context, req *adminv1.ForecastEnforcementRequest) (*adminv1.ForecastEnforcementResponse, error) {
	f, ok := s.Access.(Forecaster)
	if !ok {
		return nil, status.Error(codes.Unavailable, "ForecastEnforcement is not available: this verifier has no access decision engine configured")
	}
	size, after, err := keyPage(req.GetPageSize(), req.GetPageToken(), 64)
	if err != nil {
		return nil, err
	}
	inForce := s.Policies.Current().GetPolicies()
	if len(inForce) == 0 {
		return nil, status.Error(codes.FailedPrecondition, "no policy set is in force")
	}
	ids := req.GetPolicyIds()
	if len(ids) > maxForecastPolicies {
		return nil, status.Errorf(codes.InvalidArgument, "%d policy_ids; at most %d", len(ids), maxForecastPolicies)
	}
	e := access.Enforced{LiftCeiling: req.GetLiftCeiling()}
	resp := &adminv1.ForecastEnforcementResponse{}
	if len(ids) == 0 {
		// Every policy that can block: an advisory one never does,
		// enforced or not.
		for _, p := range inForce {
			if p.GetRequired() {
				resp.PolicyIds = append(resp.PolicyIds, p.GetId())
			}
		}
	} else {
		known := make(map[string]*agentv1.Policy, len(inForce))
		for _, p := range inForce {
			known[p.GetId()] = p
		}
		e.Policies = map[string]bool{}
		var unknown, advisory []string
		for _, id := range ids {
			if err := bounded("policy_ids", id); err != nil {
				return nil, err
			}
			p := known[id]
			switch {
			case id == "":
				return nil, status.Error(codes.InvalidArgument, "policy_ids holds an empty id (leave policy_ids empty to forecast every policy)")
			case p == nil:
				unknown = append(unknown, strconv.Quote(id))
			case !p.GetRequired():
				advisory = append(advisory, strconv.Quote(id))
			case !e.Policies[id]:
				e.Policies[id] = true
				resp.PolicyIds = append(resp.PolicyIds, id)
			}
		}
		switch {
		case len(unknown) > 0:
			return nil, status.Errorf(codes.InvalidArgument, "no policy %s in the set in force (see ListPolicies, or 'clearance-verifier policies')", strings.Join(unknown, ", "))
		case len(advisory) > 0:
			return nil, status.Errorf(codes.InvalidArgument, "policy %s is advisory (required: false): it never blocks, enforced or not; a forecast of it as required needs it required in the policy file", strings.Join(advisory, ", "))
		}
	}
	// A page holds about size rows (a Mac with several people is several
	// rows, and a Mac's rows are never split), and stops early once its
	// encoded size passes maxForecastBytes. One device more than asked for
	// tells whether another page exists.
	devs, err := s.Store.ListDevices(ctx, after, size+1)
	if err != nil {
		return nil, s.internal("listing devices", err)
	}
	maxAge := s.MaxPostureAge
	if maxAge <= 0 {
		maxAge = decision.DefaultMaxPostureAge
	}
	// Whether the directory holds anyone: while it does, a sign-in's
	// username it does not hold is no one's (see forecastPeople).
	count, err := s.Store.CountPeople(ctx)
	if err != nil {
		return nil, s.internal("counting users", err)
	}
	bytes := 0
	for i, d := range devs {
		if len(resp.Devices) >= size || bytes >= maxForecastBytes || i == size {
			resp.NextPageToken = nextKey(devs[i-1].ID)
			break
		}
		if d.Revoked() {
			continue
		}
		people, omitted, err := s.forecastPeople(ctx, d.ID, count.Users > 0)
		if err != nil {
			return nil, err
		}
		for j, p := range people {
			now, enforced, err := f.Forecast(ctx, d, p.name, e)
			switch {
			case errors.Is(err, context.Canceled):
				return nil, status.Error(codes.Canceled, "request canceled")
			case errors.Is(err, context.DeadlineExceeded):
				return nil, status.Error(codes.DeadlineExceeded, "no forecast within the call's deadline")
			case err != nil:
				return nil, s.internal("forecasting a device", err)
			}
			name := enforced.DeviceName
			if name == "" {
				name = d.Hostname
			}
			row := &adminv1.DeviceForecast{
				DeviceId: d.ID, DeviceName: name, Username: p.name, UsernameSource: p.source,
				Now: forecastOutcome(now), Enforced: forecastOutcome(enforced), ObservedAt: ts(enforced.LastReportAt),
				ReportStale: enforced.PostureAge > maxAge,
			}
			if j == len(people)-1 {
				row.PeopleOmitted = uint32(omitted)
			}
			bytes += proto.Size(row)
			resp.Devices = append(resp.Devices, row)
		}
	}
	s.log().Info("enforcement forecast", "policies", len(resp.PolicyIds), "rows", len(resp.Devices), "by", actor(ctx))
	return resp, nil
}

type forecastPerson struct{ name, source string }

// forecastPeople are whom a device's sign-ins are forecast for, the first
// of these that finds anyone:
//  1. the active users assigned to it (at most maxForecastPeople, by user
//     id; omitted counts the others);
//  2. the people among its latest forecastSignIns Okta sign-ins whom the
//     binding rule binds to a local account in its latest report, as
//     sign-in binds them (at most maxForecastPeople, latest first): the
//     Mac's own users, not a visitor who signed in on it once;
//  3. the person of its latest Okta sign-in that named one, else the one
//     Cloudflare last asked about it for;
//  4. else no one.
//
// People who left are passed over. While the directory holds users
// (directory), so are usernames it does not hold, which are a typo or a
// stranger, nobody's work; a tenant without SCIM or the API sync has no
// directory, and any username counts, as it does at sign-in.
func (s *Server) forecastPeople(ctx context.Context, deviceID string, directory bool) (people []forecastPerson, omitted int, err error) {
	bound, err := s.Store.DeviceUsers(ctx, deviceID)
	if err != nil {
		return nil, 0, s.internal("reading the device's users", err)
	}
	slices.SortFunc(bound, func(a, b storage.DeviceUser) int { return strings.Compare(a.UserID, b.UserID) })
	for i, b := range bound {
		// At most maxForecastPeople decided for, and a bounded number of
		// records read to find them (people who left keep their Macs).
		if len(people) == maxForecastPeople || i == maxForecastReads {
			omitted = len(bound) - i
			s.log().Warn("enforcement forecast: a device has more people assigned than are decided for", "device_id", deviceID, "assigned", len(bound), "decided_for", len(people))
			break
		}
		u, err := s.Store.GetUser(ctx, b.UserID)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			continue
		case err != nil:
			return nil, 0, s.internal("reading a user", err)
		case !u.Active:
			// Someone who left signs in nowhere: whoever uses the Mac
			// now is found as for a Mac assigned to no one.
			continue
		}
		people = append(people, forecastPerson{u.UserName, forecastAssigned})
	}
	if len(people) > 0 {
		return people, omitted, nil
	}
	// who is the directory's record of a sign-in's username: ok is false
	// for someone who left, or, while there is a directory, for a
	// username it does not hold.
	who := func(username string) (u storage.User, ok bool, err error) {
		u, err = s.Store.GetUserByName(ctx, username)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return storage.User{UserName: username}, !directory, nil
		case err != nil:
			return storage.User{}, false, s.internal("reading a user", err)
		}
		return u, u.Active, nil
	}
	// The assigned people not read stay omitted whoever is found next.
	people, more, err := s.accountPeople(ctx, deviceID, who)
	if err != nil || len(people) > 0 {
		return people, omitted + more, err
	}
	// Okta's sign-ins first, then Cloudflare's evaluations (a Mac only
	// Cloudflare asks about is signed in to no Okta app). The latest almost
	// always names its person; only when it does not are more read (each
	// row carries its results).
	for _, from := range []struct {
		f      storage.DecisionFilter
		source string
	}{
		// Not a sign-in by someone the Mac is not bound to: a visitor's,
		// or one made to push its own people out of those read.
		{storage.DecisionFilter{DeviceID: deviceID, SignIns: true, Bound: true}, forecastLatestSignIn},
		{storage.DecisionFilter{DeviceID: deviceID, Cloudflare: true}, forecastCloudflare},
	} {
		for _, limit := range []int{1, forecastSignIns} {
			f := from.f
			f.Limit = limit
			recs, err := s.Store.ListDecisions(ctx, f)
			if err != nil {
				return nil, 0, s.internal("reading the device's sign-ins", err)
			}
			for _, r := range recs {
				if r.Username == "" {
					continue
				}
				if _, ok, err := who(r.Username); err != nil {
					return nil, 0, err
				} else if !ok {
					continue
				}
				return []forecastPerson{{r.Username, from.source}}, omitted, nil
			}
			if len(recs) < limit {
				break
			}
		}
	}
	return []forecastPerson{{}}, omitted, nil
}

// accountPeople is step 2 of forecastPeople: the people of the device's
// latest Okta sign-ins whom the binding rule (AccountBinder, the rule
// sign-in binds by) binds to a local account in its latest report.
func (s *Server) accountPeople(ctx context.Context, deviceID string, who func(string) (storage.User, bool, error)) (people []forecastPerson, omitted int, err error) {
	binder, ok := s.Access.(AccountBinder)
	if !ok {
		return nil, 0, nil
	}
	latest, err := s.latest(ctx, deviceID)
	if err != nil || len(latest.GetReport().GetAccounts()) == 0 {
		return nil, 0, err
	}
	// Sign-ins by people the Mac is not bound to bind no account, and
	// would push those that do out of the ones read.
	recs, err := s.Store.ListDecisions(ctx, storage.DecisionFilter{DeviceID: deviceID, SignIns: true, Bound: true, Limit: forecastSignIns})
	if err != nil {
		return nil, 0, s.internal("reading the device's sign-ins", err)
	}
	seen := map[string]bool{}
	for _, r := range recs {
		key := storage.UserNameKey(r.Username)
		if r.Username == "" || seen[key] {
			continue
		}
		seen[key] = true
		u, ok, err := who(r.Username)
		if err != nil {
			return nil, 0, err
		}
		if !ok || binder.BoundAccount(latest.GetReport(), u) == "" {
			continue
		}
		if len(people) == maxForecastPeople {
			omitted++
			continue
		}
		people = append(people, forecastPerson{u.UserName, forecastLocalAccount})
	}
	return people, omitted, nil
}

// forecastOutcome is d in the forecast's words.
func forecastOutcome(d decision.Decision) *adminv1.ForecastOutcome {
	o := &adminv1.ForecastOutcome{
		Allow: d.Allow, Reason: string(d.Reason), Mode: string(d.Mode),
		CanContinue: d.CanContinue, CanResolveLater: d.CanResolveLater, BlockFrom: ts(d.BlockFrom),
	}
	for _, f := range d.Failing {
		switch {
		case f.Waiver == decision.WaiverExempt:
			o.ExemptPolicyIds = append(o.ExemptPolicyIds, f.PolicyID)
		case f.Waiver == decision.WaiverNone && (f.Enforcement == decision.Enforce || !f.BlocksFrom.IsZero()):
			o.BlockingPolicyIds = append(o.BlockingPolicyIds, f.PolicyID)
		}
	}
	return o
}
