package decision_test

import (
	"testing"

	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/reason"
)

func TestDecidePerson(t *testing.T) {
	t.Parallel()
	person := func(p decision.Person) func(*decision.Input) {
		return func(in *decision.Input) { in.Person = &p }
	}
	active := decision.Person{Known: true, Active: true}
	runCases(t, []ruleCase{
		{name: "unchecked", mod: nil, allow: true, reason: reason.Allowed},
		{name: "provisioned and active", mod: person(decision.Person{RequireProvisioned: true, Known: true, Active: true}), allow: true, reason: reason.Allowed},
		{name: "not provisioned, required", mod: person(decision.Person{RequireProvisioned: true}), reason: reason.UserUnknown},
		{name: "not provisioned, not required", mod: person(decision.Person{}), allow: true, reason: reason.Allowed},
		{name: "deactivated, required", mod: person(decision.Person{RequireProvisioned: true, Known: true}), reason: reason.UserDeactivated},
		// Deactivation has teeth even where provisioning is not required.
		{name: "deactivated, not required", mod: person(decision.Person{Known: true}), reason: reason.UserDeactivated},
		{name: "unbound under enforce", mod: person(decision.Person{Known: true, Active: true, Binding: decision.BindingEnforce}), reason: reason.UserNotBound},
		{name: "bound under enforce", mod: person(decision.Person{Known: true, Active: true, Binding: decision.BindingEnforce, BoundHere: true}), allow: true, reason: reason.Allowed},
		{name: "unbound under warn", mod: person(decision.Person{Known: true, Active: true, Binding: decision.BindingWarn}), allow: true, reason: reason.Allowed},
		{name: "revoked device beats the user", mod: func(in *decision.Input) {
			in.Device = revoked()
			in.Person = &decision.Person{RequireProvisioned: true}
		}, reason: reason.DeviceRevoked},
		{name: "user beats stale posture", mod: func(in *decision.Input) { in.Report = nil; in.Person = &decision.Person{Known: true} }, reason: reason.UserDeactivated},
		{name: "active user, failing policy", mod: func(in *decision.Input) {
			in.Person = &active
			in.Report = report(now, "v1", statuses(fail, pass, pass, pass)...)
		}, reason: reason.PolicyFailed, failing: []string{"filevault:FAIL"}},
	})
	in := base()
	in.Person = &decision.Person{Known: true, Active: true, Binding: decision.BindingWarn}
	if d := decision.Decide(in); !d.Allow || !d.BindingMismatch {
		t.Errorf("warn: allow %v mismatch %v, want allowed with the mismatch recorded", d.Allow, d.BindingMismatch)
	}
}

// A group-scoped policy holds only its group's members to it.
func TestDecideScopes(t *testing.T) {
	t.Parallel()
	failingSIP := func(in *decision.Input) {
		in.Report = report(now, "v1", statuses(pass, pass, fail, pass)...)
		in.Scopes = map[string]decision.Scope{"sip": {Groups: []string{"Engineering"}, Exclude: []string{"Contractors"}}}
	}
	groups := func(known bool, gs ...string) func(*decision.Input) {
		return func(in *decision.Input) {
			failingSIP(in)
			in.Person = &decision.Person{Known: known, Active: known, Groups: gs}
		}
	}
	runCases(t, []ruleCase{
		{name: "member", mod: groups(true, "engineering"), reason: reason.PolicyFailed, failing: []string{"sip:FAIL"}},
		{name: "not a member", mod: groups(true, "Sales"), allow: true, reason: reason.Allowed},
		{name: "excluded member", mod: groups(true, "Engineering", "Contractors"), allow: true, reason: reason.Allowed},
		// A group the directory keeps apart from the scope's (policy.GroupKey)
		// is not the scope's group: "Contractorſ" (U+017F for the s) does
		// not exclude.
		{name: "look-alike of an excluded group", mod: groups(true, "Engineering", "Contractor\u017f"), reason: reason.PolicyFailed, failing: []string{"sip:FAIL"}},
		{name: "another case of the same group", mod: groups(true, "ENGINEERING"), reason: reason.PolicyFailed, failing: []string{"sip:FAIL"}},
		// Groups unknown: every policy applies (fail closed).
		{name: "unknown user", mod: groups(false), reason: reason.PolicyFailed, failing: []string{"sip:FAIL"}},
		{name: "no person", mod: failingSIP, reason: reason.PolicyFailed, failing: []string{"sip:FAIL"}},
	})
}
