package admin

import (
	"context"
	"errors"
	"slices"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/access"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/storage"
	"google.golang.org/protobuf/proto"
)

// snapshot is the policy set in force with its rollout settings and group
// scopes, of one reload, when the source gives them (access.Snapshotter);
// else the set alone.
func (s *Server) snapshot() access.PolicySnapshot {
	if sn, ok := s.Policies.(access.Snapshotter); ok {
		return sn.Snapshot()
	}
	return access.PolicySnapshot{Set: s.Policies.Current()}
}

// directory says, once per call that needs it, whether the directory holds
// anyone (see forecastPeople).
type directory struct {
	s      *Server
	known  bool
	holds  bool
	failed error
}

func (d *directory) get(ctx context.Context) (bool, error) {
	if !d.known && d.failed == nil {
		count, err := d.s.Store.CountPeople(ctx)
		if err != nil {
			d.failed = d.s.internal("counting users", err)
		}
		d.known, d.holds = err == nil, count.Users > 0
	}
	return d.holds, d.failed
}

// scopeOut moves out of sum's failing, into failing_out_of_scope, the
// required policies scoped to groups that hold none of the people who use
// the device (boundPeople), and sets compliant from what is left: a policy
// for Engineering that fails on a Mac nobody in Engineering uses stops
// none of its sign-ins. Unless every person who may use the Mac is known
// and in the directory, the Mac is held to every policy, as such a
// person's sign-in is. report is the device's latest (nil: none, and
// nothing is compliant without one).
func (s *Server) scopeOut(ctx context.Context, deviceID string, report *agentv1.PostureReport, sum *adminv1.PostureSummary, scopes map[string]decision.Scope, dir *directory) error {
	scoped := func(id string) bool {
		sc := scopes[id]
		return len(sc.Groups) > 0 || len(sc.Exclude) > 0
	}
	if sum == nil || report == nil || !slices.ContainsFunc(sum.GetFailing(), scoped) {
		return nil
	}
	holds, err := dir.get(ctx)
	if err != nil || !holds {
		// Without a directory no one's groups are known: every policy
		// holds everyone.
		return err
	}
	people, err := s.boundPeople(ctx, deviceID, report)
	if err != nil || people == nil {
		return err
	}
	persons := make([]*decision.Person, 0, len(people))
	for _, u := range people {
		gs, err := s.Store.UserGroups(ctx, u.ID)
		if err != nil {
			return s.internal("reading a user's groups", err)
		}
		person := &decision.Person{Known: true, Active: u.Active}
		for _, g := range gs {
			person.Groups = append(person.Groups, g.DisplayName)
		}
		persons = append(persons, person)
	}
	holdsSomeone := func(id string) bool {
		return slices.ContainsFunc(persons, func(p *decision.Person) bool { return decision.Applies(scopes[id], p) })
	}
	var kept, out []string
	for _, id := range sum.GetFailing() {
		if holdsSomeone(id) {
			kept = append(kept, id)
		} else {
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return nil
	}
	sum.Failing, sum.FailingOutOfScope = kept, out
	sum.FailingError = slices.DeleteFunc(sum.FailingError, func(id string) bool { return slices.Contains(out, id) })
	sum.FailingMissing = slices.DeleteFunc(sum.FailingMissing, func(id string) bool { return slices.Contains(out, id) })
	sum.Compliant = proto.Bool(len(kept) == 0)
	return nil
}

// boundPeople are everyone who may use the device, when all of them are
// known to the directory; nil when some may not be. They are the active
// users assigned to it (at most maxForecastPeople), and, for each local
// account in report (the console user and the others that have logged
// in), the directory user the binding rule binds it to among those
// assigned and those whose sign-ins from the Mac the log does not mark
// not bound (its latest forecastSignIns). An account that binds none of
// them may be anyone's (a console user who never signed in from it, an
// IT account, someone whose sign-ins are older than those read): nil.
// So is a Mac with no account and no one assigned, one with more people
// assigned than are read, or no binding rule for accounts to bind by.
func (s *Server) boundPeople(ctx context.Context, deviceID string, report *agentv1.PostureReport) ([]storage.User, error) {
	assigned, err := s.Store.DeviceUsers(ctx, deviceID)
	if err != nil {
		return nil, s.internal("reading the device's users", err)
	}
	if len(assigned) > maxForecastPeople {
		return nil, nil
	}
	var candidates, people []storage.User
	add := func(u storage.User) {
		if u.Active && !slices.ContainsFunc(people, func(p storage.User) bool { return p.ID == u.ID }) {
			people = append(people, u)
		}
	}
	for _, b := range assigned {
		u, err := s.Store.GetUser(ctx, b.UserID)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			continue
		case err != nil:
			return nil, s.internal("reading a user", err)
		}
		candidates = append(candidates, u)
		add(u)
	}
	accounts := report.GetAccounts()
	if len(accounts) > 0 {
		binder, ok := s.Access.(AccountBinder)
		if !ok {
			return nil, nil
		}
		recs, err := s.Store.ListDecisions(ctx, storage.DecisionFilter{DeviceID: deviceID, SignIns: true, Bound: true, Limit: forecastSignIns})
		if err != nil {
			return nil, s.internal("reading the device's sign-ins", err)
		}
		seen := map[string]bool{}
		for _, r := range recs {
			key := storage.UserNameKey(r.Username)
			if r.Username == "" || seen[key] {
				continue
			}
			seen[key] = true
			u, err := s.Store.GetUserByName(ctx, r.Username)
			switch {
			case errors.Is(err, storage.ErrNotFound):
				continue // nobody's, while there is a directory
			case err != nil:
				return nil, s.internal("reading a user", err)
			}
			candidates = append(candidates, u)
		}
		for _, a := range accounts {
			one := &agentv1.PostureReport{DeviceId: deviceID, Accounts: []*agentv1.LocalAccount{a}}
			bound := false
			for _, u := range candidates {
				if binder.BoundAccount(one, u) != "" {
					bound = true
					add(u)
				}
			}
			if !bound {
				return nil, nil
			}
		}
	}
	if len(people) == 0 {
		return nil, nil
	}
	return people, nil
}
