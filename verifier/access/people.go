package access

import (
	"context"
	"errors"
	"fmt"
	"strings"

	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/storage"
)

// People is what the gate reads about who signs in; storage.Store
// implements it.
type People interface {
	GetUserByName(ctx context.Context, userName string) (storage.User, error)
	UserGroups(ctx context.Context, userID string) ([]storage.Group, error)
	DeviceUsers(ctx context.Context, deviceID string) ([]storage.DeviceUser, error)
}

// PeopleRules say what the gate requires of who signs in.
type PeopleRules struct {
	// RequireProvisioned: the username must be a user Okta provisioned
	// over SCIM or the API sync read (--scim-users required).
	RequireProvisioned bool
	// Binding is --user-binding.
	Binding decision.UserBinding
	// BindingRule binds a Mac's local accounts to directory users
	// (--user-binding-rule): see Binds.
	BindingRule string
}

// Scopes returns the policies' group scopes, by policy id; the policy
// source implements it.
type Scopes interface {
	Scopes() map[string]decision.Scope
}

// person reads the directory's view of username for a sign-in from
// device, and the user's record: for a username not provisioned, a record
// with only that username, which the binding rule can still match a local
// account to (so binding works without SCIM). A user not assigned to the
// Mac may still be bound by its accounts: see bindByAccounts, which needs
// the report.
func (g *Gate) person(ctx context.Context, username string, dev *storage.Device, scoped bool) (*decision.Person, storage.User, error) {
	p := &decision.Person{RequireProvisioned: g.Rules.RequireProvisioned, Binding: g.Rules.Binding}
	u, err := g.People.GetUserByName(ctx, username)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		u = storage.User{UserName: username}
	case err != nil:
		return nil, storage.User{}, fmt.Errorf("%w: user: %w", ErrStorage, err)
	default:
		p.Known, p.Active = true, u.Active
		if scoped {
			gs, err := g.People.UserGroups(ctx, u.ID)
			if err != nil {
				return nil, storage.User{}, fmt.Errorf("%w: user's groups: %w", ErrStorage, err)
			}
			for _, grp := range gs {
				p.Groups = append(p.Groups, grp.DisplayName)
			}
		}
	}
	if p.Binding == "" || p.Binding == decision.BindingOff || dev == nil || !p.Known {
		// Only a provisioned user can have been assigned a Mac.
		return p, u, nil
	}
	bound, err := g.People.DeviceUsers(ctx, dev.ID)
	if err != nil {
		return nil, storage.User{}, fmt.Errorf("%w: device users: %w", ErrStorage, err)
	}
	for _, b := range bound {
		if b.UserID == u.ID {
			p.BoundHere = true
			break
		}
	}
	return p, u, nil
}

// bindByAccounts binds the user to the Mac when the report names one of
// its local accounts that the binding rule maps to the user: the
// console user, or another account that has logged in.
func (g *Gate) bindByAccounts(p *decision.Person, u storage.User, r *agentv1.PostureReport, deviceID string) {
	if p == nil || u.UserName == "" || p.BoundHere || p.Binding == "" || p.Binding == decision.BindingOff ||
		r.GetDeviceId() != deviceID {
		return
	}
	if g.BoundAccount(r, u) != "" {
		p.BoundHere = true
	}
}

// BoundAccount is the name of the first of the report's local accounts
// (the console user, or another account that has logged in) that the
// binding rule maps to user u, or "" when none does: what binds a user to
// a Mac at sign-in besides an assignment. It applies the rule whatever
// --user-binding says, so the admin API can say who uses a Mac.
func (g *Gate) BoundAccount(r *agentv1.PostureReport, u storage.User) string {
	if u.UserName == "" {
		return ""
	}
	for _, a := range r.GetAccounts() {
		if Binds(g.Rules.BindingRule, a.GetName(), u) {
			return a.GetName()
		}
	}
	return ""
}

// Rules are the people rules the gate applies (for a view that must agree
// with what sign-in admits).
func (g *Gate) PeopleRulesInForce() PeopleRules { return g.Rules }

// AccountKey and UserKeys index Binds: rule binds account to u exactly
// when AccountKey(rule, account) is not empty and is one of UserKeys(rule,
// u), so the users an account binds are found by key, without trying
// Binds on every user. (FuzzBindingKeys holds the two to Binds.)
func AccountKey(rule, account string) string {
	if account == "" {
		return ""
	}
	if strings.Contains(rule, "{local}") {
		return storage.UserNameKey(strings.ReplaceAll(rule, "{local}", account))
	}
	return storage.UserNameKey(account)
}

// UserKeys are the keys AccountKey gives the accounts rule binds to u.
func UserKeys(rule string, u storage.User) []string {
	local := func(s string) string {
		if strings.Contains(rule, "{local}") {
			return s
		}
		l, _, _ := strings.Cut(s, "@")
		return l
	}
	keys := []string{storage.UserNameKey(local(u.UserName))}
	if u.Email != "" {
		keys = append(keys, storage.UserNameKey(local(u.Email)))
	}
	return keys
}

// DefaultBindingRule binds a local account to the directory user whose
// userName or e-mail address has it as its local part (jdoe ↔
// jdoe@example.com).
const DefaultBindingRule = "email-local-part"

// Binds reports whether rule binds the Mac's local account to user u. A
// rule holding "{local}" (e.g. "{local}@example.com") binds the user whose
// userName or e-mail is the rule with the account's name in place of
// {local}; DefaultBindingRule (or empty) compares the account's name with
// the local part of the userName and of the e-mail. Names compare as
// storage.SameUserName does, regardless of the case of ASCII letters only:
// an account named with a look-alike (a Kelvin sign for a k) binds no one.
func Binds(rule, account string, u storage.User) bool {
	if account == "" {
		return false
	}
	if strings.Contains(rule, "{local}") {
		want := strings.ReplaceAll(rule, "{local}", account)
		return storage.SameUserName(want, u.UserName) || (u.Email != "" && storage.SameUserName(want, u.Email))
	}
	local := func(s string) string {
		l, _, _ := strings.Cut(s, "@")
		return l
	}
	return storage.SameUserName(account, local(u.UserName)) || (u.Email != "" && storage.SameUserName(account, local(u.Email)))
}
