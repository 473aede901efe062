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

// maxIndexedUsers bounds the directory read to find who a Mac's accounts
// bind: past it, Macs are held to every policy.
const maxIndexedUsers = 200_000

// directory is what one call that judges Macs for their people reads of
// the directory, once: the people rules sign-in applies, and, when those
// let only provisioned users bound to a Mac sign in from it, the active
// users by the keys the binding rule finds them under (access.UserKeys).
type directory struct {
	s      *Server
	read   bool
	rules  access.PeopleRules
	byKey  map[string][]storage.User // nil: Macs are not judged for their people
	failed error
}

// index returns the users by binding key, or nil when Macs are held to
// every policy: unless --user-binding enforce and --scim-users required,
// anyone may sign in from any Mac, and their groups may be unknown.
func (d *directory) index(ctx context.Context) (map[string][]storage.User, access.PeopleRules, error) {
	if d.read {
		return d.byKey, d.rules, d.failed
	}
	d.read = true
	pr, ok := d.s.Access.(PeopleRuler)
	if !ok {
		return nil, d.rules, nil
	}
	d.rules = pr.PeopleRulesInForce()
	if d.rules.Binding != decision.BindingEnforce || !d.rules.RequireProvisioned {
		return nil, d.rules, nil
	}
	byKey := map[string][]storage.User{}
	after, n := "", 0
	for {
		page, err := d.s.Store.ListUsers(ctx, storage.PeopleQuery{After: after, Limit: storage.MaxPeoplePage})
		if err != nil {
			d.failed = d.s.internal("reading the directory", err)
			return nil, d.rules, d.failed
		}
		for _, u := range page.Users {
			if n++; n > maxIndexedUsers {
				d.s.log().Warn("the directory is too large to judge Macs for their people; every Mac is held to every policy", "users_read", n-1)
				return nil, d.rules, nil
			}
			if !u.Active {
				continue // denied wherever they sign in
			}
			for _, k := range access.UserKeys(d.rules.BindingRule, u) {
				byKey[k] = append(byKey[k], u)
			}
		}
		if len(page.Users) < storage.MaxPeoplePage {
			break
		}
		after = page.Users[len(page.Users)-1].ID
	}
	d.byKey = byKey
	return byKey, d.rules, nil
}

// PeopleRuler is the people rules sign-in applies; access.Gate implements
// it.
type PeopleRuler interface {
	PeopleRulesInForce() access.PeopleRules
}

var _ PeopleRuler = (*access.Gate)(nil)

// scopeOut moves out of sum's failing, into failing_out_of_scope, the
// required policies scoped to groups that hold none of the people who use
// the device (boundPeople), and sets compliant from what is left: a policy
// for Engineering that fails on a Mac nobody in Engineering uses stops
// none of its sign-ins. Unless every person who may use the Mac is known
// and in the directory, the Mac is held to every policy, as such a
// person's sign-in is. report is the device's latest (nil: none, and
// nothing is compliant without one). It reports whether it moved any.
func (s *Server) scopeOut(ctx context.Context, deviceID string, report *agentv1.PostureReport, sum *adminv1.PostureSummary, scopes map[string]decision.Scope, dir *directory) (bool, error) {
	scoped := func(id string) bool {
		sc := scopes[id]
		return len(sc.Groups) > 0 || len(sc.Exclude) > 0
	}
	if sum == nil || report == nil || !slices.ContainsFunc(sum.GetFailing(), scoped) {
		return false, nil
	}
	byKey, rules, err := dir.index(ctx)
	if err != nil || byKey == nil {
		return false, err
	}
	people, err := s.boundPeople(ctx, deviceID, report, byKey, rules.BindingRule)
	if err != nil || people == nil {
		return false, err
	}
	persons := make([]*decision.Person, 0, len(people))
	for _, u := range people {
		gs, err := s.Store.UserGroups(ctx, u.ID)
		if err != nil {
			return false, s.internal("reading a user's groups", err)
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
		return false, nil
	}
	sum.Failing, sum.FailingOutOfScope = kept, out
	sum.FailingError = slices.DeleteFunc(sum.FailingError, func(id string) bool { return slices.Contains(out, id) })
	sum.FailingMissing = slices.DeleteFunc(sum.FailingMissing, func(id string) bool { return slices.Contains(out, id) })
	sum.Compliant = proto.Bool(len(kept) == 0)
	return true, nil
}

// boundPeople are everyone who may sign in from the device under
// --user-binding enforce and --scim-users required, as sign-in admits them:
// the active users assigned to it (at most maxForecastPeople) and every
// active user the binding rule binds to one of the local accounts in its
// latest report (found by key in byKey: access.AccountKey). nil when there
// are more assigned than that, or no one at all.
func (s *Server) boundPeople(ctx context.Context, deviceID string, report *agentv1.PostureReport, byKey map[string][]storage.User, rule string) ([]storage.User, error) {
	assigned, err := s.Store.DeviceUsers(ctx, deviceID)
	if err != nil {
		return nil, s.internal("reading the device's users", err)
	}
	if len(assigned) > maxForecastPeople {
		return nil, nil
	}
	var people []storage.User
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
		add(u)
	}
	for _, a := range report.GetAccounts() {
		if k := access.AccountKey(rule, a.GetName()); k != "" {
			for _, u := range byKey[k] {
				add(u)
			}
		}
	}
	if len(people) == 0 || len(people) > maxScopePeople {
		return nil, nil
	}
	return people, nil
}

// maxScopePeople bounds the people a Mac is judged for (each one's groups
// are read): past it, the Mac is held to every policy.
const maxScopePeople = 64

// unrecordedRun takes the summary's failing_since and compliant_since away
// when scopeOut moved policies out of it: the run they come from is
// recorded against every required policy, so it would date a Mac's
// failing from a policy that holds none of its people, or leave its
// compliance without a start.
func unrecordedRun(sum *adminv1.PostureSummary, narrowed bool) {
	if narrowed {
		sum.FailingSince, sum.CompliantSince = nil, nil
	}
}
