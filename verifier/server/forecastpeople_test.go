package server_test

import (
	"testing"

	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
)

// TestForecastLocalAccounts: a Mac not assigned is decided for the people
// its local accounts are (by the rule sign-in binds by), not for a visitor
// or an unknown username who signed in last; with no one bound that way,
// for the latest sign-in by someone the directory holds.
func TestForecastLocalAccounts(t *testing.T) {
	t.Parallel()
	h := startWith(t, engOnly(t))
	for _, name := range []string{"alice", "bob", "erin", "henry"} {
		h.user(t, "u-"+name, name+"@example.com")
	}
	h.group(t, "g-eng", "Engineering", "u-bob")
	alices := accountMac(t, h, []string{"alice"}, "eng-only")
	erins := accountMac(t, h, []string{"erin"}, "eng-only")
	bobs := accountMac(t, h, []string{"bob"}, "eng-only")
	lent := accountMac(t, h, []string{"admin"}, "eng-only")
	strangers := accountMac(t, h, []string{"admin"}, "eng-only")
	h.signedIn(t, alices, "alice@example.com", "bob@example.com")
	h.signedIn(t, erins, "erin@example.com", "zed@example.com")
	h.signedIn(t, bobs, "bob@example.com")
	h.signedIn(t, lent, "henry@example.com", "bob@example.com", "zed@example.com")
	h.signedIn(t, strangers, "zed@example.com")

	rows := forecastAll(t, h)
	for _, want := range []struct {
		what, user, source string
		mac                *protoagent.Agent
		blocked            bool
	}{
		{"alice's Mac, bob signed in last", "alice@example.com", "local_account", alices, false},
		{"erin's Mac, unknown zed signed in last", "erin@example.com", "local_account", erins, false},
		{"bob's Mac", "bob@example.com", "local_account", bobs, true},
		{"a Mac whose accounts bind no one", "bob@example.com", "latest_sign_in", lent, true},
		{"a Mac only an unknown username signed in on", "", "", strangers, true},
	} {
		r := rows[want.mac.DeviceID]
		if len(r) != 1 || r[0].GetUsername() != want.user || r[0].GetUsernameSource() != want.source || r[0].GetEnforced().GetAllow() == want.blocked {
			t.Errorf("%s: %v, want one row for %q (%s), blocked %v", want.what, r, want.user, want.source, want.blocked)
		}
	}
}

// TestForecastWithoutDirectory: a tenant without SCIM or the API sync has
// no directory: a sign-in's username is whom a Mac is decided for, and
// the binding rule still finds the Mac's own user among them.
func TestForecastWithoutDirectory(t *testing.T) {
	t.Parallel()
	h := startWith(t, engOnly(t))
	alices := accountMac(t, h, []string{"alice"})
	strangers := accountMac(t, h, []string{"admin"})
	h.signedIn(t, alices, "alice@example.com", "bob@example.com")
	h.signedIn(t, strangers, "zed@example.com")
	rows := forecastAll(t, h)
	if r := rows[alices.DeviceID]; len(r) != 1 || r[0].GetUsername() != "alice@example.com" || r[0].GetUsernameSource() != "local_account" {
		t.Errorf("alice's Mac: %v, want decided for alice, bound by her account", r)
	}
	if r := rows[strangers.DeviceID]; len(r) != 1 || r[0].GetUsername() != "zed@example.com" || r[0].GetUsernameSource() != "latest_sign_in" {
		t.Errorf("a Mac zed signed in on: %v, want decided for zed, its latest sign-in", r)
	}
}

func forecastAll(t *testing.T, h *harness) map[string][]*adminv1.DeviceForecast {
	t.Helper()
	out := map[string][]*adminv1.DeviceForecast{}
	tok := ""
	for {
		resp, err := h.admin.ForecastEnforcement(h.ctx(), &adminv1.ForecastEnforcementRequest{PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range resp.GetDevices() {
			out[d.GetDeviceId()] = append(out[d.GetDeviceId()], d)
		}
		if tok = resp.GetNextPageToken(); tok == "" {
			return out
		}
	}
}
