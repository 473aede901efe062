package osquery_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/clearance/clearance/agent/osquery"
	"github.com/clearance/clearance/internal/osquerysim"
)

// The built-in Mac: alice at the console; root, daemon and the service
// accounts are not people.
func TestLocalAccountsBuiltinFixture(t *testing.T) {
	socket := filepath.Join(shortDir(t), "osquery.em")
	serveSim(t, "compliant-mac", socket)
	got, err := osquery.LocalAccounts(context.Background(), attach(t, socket))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].GetName() != "alice" || !got[0].GetConsole() || got[0].GetLastLogin().GetSeconds() != 1785747131 {
		t.Errorf("LocalAccounts = %v, want alice at the console", got)
	}
}

// Two people: the one at the console first, then by latest login; hidden
// and never-logged-in accounts are left out.
func TestLocalAccounts(t *testing.T) {
	f, err := osquerysim.LoadFixture("compliant-mac")
	if err != nil {
		t.Fatal(err)
	}
	user := func(name, uid, hidden string) osquerysim.Row {
		return osquerysim.Row{"username": name, "uid": uid, "gid": "20", "uid_signed": uid, "gid_signed": "20",
			"directory": "/Users/" + name, "shell": "/bin/zsh", "is_hidden": hidden}
	}
	f.Tables["users"] = []osquerysim.Row{user("root", "0", "0"), user("alice", "501", "0"), user("bob", "502", "0"),
		user("carol", "503", "0"), user("_hidden", "504", "1")}
	f.Tables["last"] = []osquerysim.Row{
		{"username": "alice", "tty": "console", "type": "7", "time": "100"},
		{"username": "carol", "tty": "console", "type": "7", "time": "300"},
		{"username": "_hidden", "tty": "console", "type": "7", "time": "400"},
	}
	f.Tables["logged_in_users"] = []osquerysim.Row{{"type": "user", "user": "bob", "tty": "console", "time": "200"}}
	socket := filepath.Join(shortDir(t), "osquery.em")
	sim, _ := serveSim(t, "compliant-mac", socket)
	if err := sim.SetState(f); err != nil {
		t.Fatal(err)
	}
	got, err := osquery.LocalAccounts(context.Background(), attach(t, socket))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range got {
		names = append(names, a.GetName())
	}
	if len(names) != 3 || names[0] != "bob" || names[1] != "carol" || names[2] != "alice" || !got[0].GetConsole() || got[1].GetConsole() {
		t.Errorf("LocalAccounts = %v, want bob (console), carol, alice", got)
	}
}
