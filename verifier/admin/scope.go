package admin

import (
	"context"
	"errors"
	"slices"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
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
// required policies scoped to groups that hold none of the people bound
// to the device (assigned to it, or bound by a local account, as
// forecastPeople finds them), and sets compliant from what is left: a
// policy for Engineering that fails on a Mac nobody in Engineering uses
// stops none of its sign-ins. A Mac bound to no one (whoever signed in on
// it last may be a visitor), with more people than are read, or with one
// the directory does not hold, is held to every policy, as their sign-ins
// are. hasReport: the summary was judged from a report (without one
// nothing is compliant).
func (s *Server) scopeOut(ctx context.Context, deviceID string, sum *adminv1.PostureSummary, scopes map[string]decision.Scope, dir *directory, hasReport bool) error {
	scoped := func(id string) bool {
		sc := scopes[id]
		return len(sc.Groups) > 0 || len(sc.Exclude) > 0
	}
	if sum == nil || !slices.ContainsFunc(sum.GetFailing(), scoped) {
		return nil
	}
	holds, err := dir.get(ctx)
	if err != nil {
		return err
	}
	people, omitted, err := s.forecastPeople(ctx, deviceID, holds)
	if err != nil || omitted > 0 {
		// People beyond those read may be the group's.
		return err
	}
	persons := make([]*decision.Person, 0, len(people))
	for _, p := range people {
		if p.source != forecastAssigned && p.source != forecastLocalAccount {
			// No one is bound to it (its latest sign-in may be a
			// visitor's): every policy holds the Mac.
			return nil
		}
		u, err := s.Store.GetUserByName(ctx, p.name)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return nil // groups unknown: every policy holds them
		case err != nil:
			return s.internal("reading a user", err)
		}
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
	sum.Compliant = proto.Bool(hasReport && len(kept) == 0)
	return nil
}
