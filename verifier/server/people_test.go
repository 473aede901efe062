package server_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/storage"
)

// A policy for Engineering only, failing on every Mac: whom a Mac's
// sign-ins are decided for decides whether it blocks.
const engOnlyPolicies = `policies:
  - id: eng-only
    name: Engineering check
    query: SELECT 1
    resolution: Ask Engineering.
    groups: [Engineering]
    enforcement: warn
`

// accountMac enrolls a Mac whose one report lists these local accounts
// (the first at the console) and fails the policies named.
func accountMac(t *testing.T, h *harness, accounts []string, failing ...string) *protoagent.Agent {
	t.Helper()
	a := h.enrolled(h.secret())
	st := h.connect(a)
	defer st.Close()
	r := a.Report(st.PolicySet, 1, h.clock.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS)
	for _, res := range r.Results {
		if slices.Contains(failing, res.GetPolicyId()) {
			res.Status = agentv1.PolicyStatus_POLICY_STATUS_FAIL
		}
	}
	for i, name := range accounts {
		r.Accounts = append(r.Accounts, &agentv1.LocalAccount{Name: name, Console: i == 0})
	}
	if m, err := st.Exchange(protoagent.Sign(a.Key, r)); err != nil || m.GetAck().GetSeq() != 1 {
		t.Fatalf("report: %v %v", m, err)
	}
	return a
}

func engOnly(t *testing.T) func(*config.Config) {
	file := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(file, []byte(engOnlyPolicies), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(c *config.Config) { c.Policies = file }
}

func (h *harness) user(t *testing.T, id, name string) {
	t.Helper()
	at := h.clock.Now()
	if _, err := h.srv.Store.CreateUser(context.Background(), storage.User{ID: id, UserName: name, Email: name, Active: true, CreatedAt: at, UpdatedAt: at},
		storage.AuditEvent{At: at, Actor: "test", Action: "user.create"}); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) group(t *testing.T, id, name string, members ...string) {
	t.Helper()
	at := h.clock.Now()
	if _, err := h.srv.Store.CreateGroup(context.Background(), storage.Group{ID: id, DisplayName: name, Members: members, CreatedAt: at, UpdatedAt: at},
		storage.AuditEvent{At: at, Actor: "test", Action: "group.create"}); err != nil {
		t.Fatal(err)
	}
}

// signedIn records Okta sign-ins from the Mac, oldest first.
func (h *harness) signedIn(t *testing.T, a *protoagent.Agent, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := h.srv.Store.AppendDecision(context.Background(), storage.DecisionRecord{At: h.clock.Now(), DeviceID: a.DeviceID,
			Username: name, Source: "sso", Reason: "allowed", Allow: true}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGetUserDevices: the Macs a person uses are those assigned to them,
// those whose local account the binding rule maps to them (the console
// user who never signed in included), and those they signed in from; each
// says how, and a revoked Mac's accounts bind no one.
func TestGetUserDevices(t *testing.T) {
	t.Parallel()
	h := startWith(t, engOnly(t))
	h.user(t, "u-henry", "henry@example.com")
	h.user(t, "u-erin", "erin@example.com")
	console := accountMac(t, h, []string{"henry", "admin"})
	shared := accountMac(t, h, []string{"erin", "henry"})
	assigned := accountMac(t, h, []string{"erin"})
	visited := accountMac(t, h, []string{"erin"})
	revoked := accountMac(t, h, []string{"henry"})
	if _, err := h.admin.RevokeDevice(h.ctx(), &adminv1.RevokeDeviceRequest{DeviceId: revoked.DeviceID, Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.AssignDevice(h.ctx(), &adminv1.AssignDeviceRequest{DeviceId: assigned.DeviceID, User: "henry@example.com"}); err != nil {
		t.Fatal(err)
	}
	h.signedIn(t, visited, "HENRY@example.com")

	resp, err := h.admin.GetUser(h.ctx(), &adminv1.GetUserRequest{User: "henry@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*adminv1.UserDevice{}
	for _, d := range resp.GetDevices() {
		got[d.GetDeviceId()] = d
	}
	for _, want := range []struct {
		what    string
		mac     *protoagent.Agent
		sources []string
		account string
	}{
		{"the Mac at whose console he is", console, []string{"local_account"}, "henry"},
		{"the Mac he has an account on", shared, []string{"local_account"}, "henry"},
		{"the Mac assigned to him", assigned, []string{"admin"}, ""},
		{"the Mac he signed in from", visited, []string{"sign_in"}, ""},
	} {
		d := got[want.mac.DeviceID]
		if d == nil || !slices.Equal(d.GetSources(), want.sources) || d.GetSource() != want.sources[0] || d.GetLocalAccount() != want.account || d.GetHostname() == "" {
			t.Errorf("%s: %v, want sources %v, account %q, a hostname", want.what, d, want.sources, want.account)
		}
	}
	if len(got) != 4 {
		t.Errorf("henry's Macs: %v, want 4 (not the revoked one)", resp.GetDevices())
	}
	if resp.GetLastSignInDeviceId() != visited.DeviceID {
		t.Errorf("last sign-in from %q, want the visited Mac", resp.GetLastSignInDeviceId())
	}

	// A Mac bound several ways says each.
	if _, err := h.admin.AssignDevice(h.ctx(), &adminv1.AssignDeviceRequest{DeviceId: console.DeviceID, User: "henry@example.com"}); err != nil {
		t.Fatal(err)
	}
	h.signedIn(t, console, "henry@example.com")
	resp, err = h.admin.GetUser(h.ctx(), &adminv1.GetUserRequest{User: "u-henry"})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range resp.GetDevices() {
		if d.GetDeviceId() == console.DeviceID && (!slices.Equal(d.GetSources(), []string{"admin", "local_account", "sign_in"}) || d.GetSource() != "admin") {
			t.Errorf("the console Mac, assigned and signed in from: %v, want admin, local_account, sign_in", d)
		}
	}

	// ListUsers counts each person's Macs when asked, as GetUser lists
	// them, and names their groups.
	h.group(t, "g-night", "Night shift", "u-henry")
	list, err := h.admin.ListUsers(h.ctx(), &adminv1.ListUsersRequest{Details: true})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint32{}
	for _, u := range list.GetUsers() {
		counts[u.GetUserName()] = u.GetDevices()
		if u.GetUserName() == "henry@example.com" && !slices.Equal(u.GetGroups(), []string{"Night shift"}) {
			t.Errorf("henry's groups: %v, want Night shift", u.GetGroups())
		}
	}
	if counts["henry@example.com"] != 4 || counts["erin@example.com"] != 3 {
		t.Errorf("Mac counts %v, want henry 4, erin 3", counts)
	}
	list, err = h.admin.ListUsers(h.ctx(), &adminv1.ListUsersRequest{})
	if err != nil || list.GetUsers()[0].GetDevices() != 0 {
		t.Errorf("ListUsers without details: %v %v, want no counts", list, err)
	}
}

// TestListUsersPages: users and groups are paged by key, so people created
// between pages neither repeat nor hide others; offset tokens of older
// verifiers are refused by name; a group's members are listed by its name.
func TestListUsersPages(t *testing.T) {
	t.Parallel()
	h := startWith(t, engOnly(t))
	for _, id := range []string{"u2", "u4", "u6"} {
		h.user(t, id, id+"@example.com")
	}
	page, err := h.admin.ListUsers(h.ctx(), &adminv1.ListUsersRequest{PageSize: 2})
	if err != nil || len(page.GetUsers()) != 2 || page.GetNextPageToken() == "" {
		t.Fatalf("first page: %v %v", page, err)
	}
	seen := []string{}
	for _, u := range page.GetUsers() {
		seen = append(seen, u.GetUserId())
	}
	// Created before and after the first page's end.
	for _, id := range []string{"u1", "u3", "u5"} {
		h.user(t, id, id+"@example.com")
	}
	for tok := page.GetNextPageToken(); tok != ""; tok = page.GetNextPageToken() {
		if page, err = h.admin.ListUsers(h.ctx(), &adminv1.ListUsersRequest{PageSize: 2, PageToken: tok}); err != nil {
			t.Fatal(err)
		}
		for _, u := range page.GetUsers() {
			seen = append(seen, u.GetUserId())
		}
	}
	if want := []string{"u2", "u4", "u5", "u6"}; !slices.Equal(seen, want) {
		t.Errorf("the walk: %v, want %v (each once, in id order)", seen, want)
	}
	if page.GetTotal() != 6 {
		t.Errorf("total %d, want 6", page.GetTotal())
	}
	// A last page that is exactly full has no next page.
	if p, err := h.admin.ListUsers(h.ctx(), &adminv1.ListUsersRequest{PageSize: 6}); err != nil || len(p.GetUsers()) != 6 || p.GetNextPageToken() != "" {
		t.Errorf("a page of all six: %v %v, want no next page", p, err)
	}

	h.group(t, "g2", "Engineering", "u4", "u1")
	h.group(t, "g1", "Sales", "u2")
	h.group(t, "g3", "Support")
	var names []string
	gp, err := h.admin.ListGroups(h.ctx(), &adminv1.ListGroupsRequest{PageSize: 2})
	for err == nil {
		for _, g := range gp.GetGroups() {
			names = append(names, g.GetDisplayName())
		}
		if gp.GetNextPageToken() == "" {
			break
		}
		gp, err = h.admin.ListGroups(h.ctx(), &adminv1.ListGroupsRequest{PageSize: 2, PageToken: gp.GetNextPageToken()})
	}
	if err != nil || !slices.Equal(names, []string{"Sales", "Engineering", "Support"}) {
		t.Errorf("groups paged: %v %v, want Sales, Engineering, Support (by id)", names, err)
	}

	for _, call := range []struct {
		what string
		err  func(tok string) error
	}{
		{"ListUsers", func(tok string) error {
			_, err := h.admin.ListUsers(h.ctx(), &adminv1.ListUsersRequest{PageToken: tok})
			return err
		}},
		{"ListGroups", func(tok string) error {
			_, err := h.admin.ListGroups(h.ctx(), &adminv1.ListGroupsRequest{PageToken: tok})
			return err
		}},
	} {
		if err := call.err("2"); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "is an offset") {
			t.Errorf("%s with an offset token: %v, want INVALID_ARGUMENT naming it an offset", call.what, err)
		}
		if err := call.err("%%"); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "not one this server returned") {
			t.Errorf("%s with a made-up token: %v, want INVALID_ARGUMENT", call.what, err)
		}
	}

	members, err := h.admin.ListUsers(h.ctx(), &adminv1.ListUsersRequest{Group: "engineering"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, u := range members.GetUsers() {
		ids = append(ids, u.GetUserId())
	}
	if !slices.Equal(ids, []string{"u1", "u4"}) || members.GetTotal() != 2 {
		t.Errorf("Engineering's members: %v (total %d), want u1, u4", ids, members.GetTotal())
	}
	if m, err := h.admin.ListUsers(h.ctx(), &adminv1.ListUsersRequest{Group: "g1"}); err != nil || len(m.GetUsers()) != 1 {
		t.Errorf("members of g1 by id: %v %v", m, err)
	}
	if m, err := h.admin.ListUsers(h.ctx(), &adminv1.ListUsersRequest{Group: "g3"}); err != nil || len(m.GetUsers()) != 0 {
		t.Errorf("members of an empty group: %v %v", m, err)
	}
	if _, err := h.admin.ListUsers(h.ctx(), &adminv1.ListUsersRequest{Group: "Engineers"}); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `no group "Engineers"`) {
		t.Errorf("an unknown group: %v, want NOT_FOUND naming it", err)
	}
}
