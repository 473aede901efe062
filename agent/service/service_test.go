package service

import (
	"strings"
	"testing"

	"github.com/groob/plist"
)

func TestLaunchdPlist(t *testing.T) {
	t.Parallel()
	raw, err := LaunchdPlist()
	if err != nil {
		t.Fatal(err)
	}
	// Parse into a generic dictionary, as launchd would read it, not back
	// into the struct that wrote it.
	var got map[string]any
	if err := plist.Unmarshal(raw, &got); err != nil {
		t.Fatalf("parsing generated plist: %v\n%s", err, raw)
	}
	tests := []struct {
		key  string
		want any
	}{
		{"Label", "com.clearance.agent"},
		{"RunAtLoad", true},
		{"KeepAlive", true},
		{"StandardOutPath", "/var/log/clearance-agent.log"},
		{"StandardErrorPath", "/var/log/clearance-agent.log"},
		// Not Background: launchd throttles those, and a person waits
		// at sign-in for the agent's answer.
		{"ProcessType", "Standard"},
	}
	for _, tt := range tests {
		if got[tt.key] != tt.want {
			t.Errorf("%s = %#v, want %#v", tt.key, got[tt.key], tt.want)
		}
	}
	args, _ := got["ProgramArguments"].([]any)
	// The root-owned directory the package creates, never /usr/local/bin.
	if len(args) != 2 || args[0] != "/usr/local/clearance/bin/clearance-agent" || args[1] != "run" {
		t.Errorf("ProgramArguments = %#v, want [/usr/local/clearance/bin/clearance-agent run]", got["ProgramArguments"])
	}
	if !strings.HasPrefix(string(raw), "<?xml") || !strings.Contains(string(raw), "<!DOCTYPE plist") {
		t.Errorf("not an XML plist with the Apple doctype:\n%s", raw)
	}
	// kardianos parses the plist as its own template: it must hold no
	// template actions, or installation would change it.
	if strings.Contains(string(raw), "{{") {
		t.Errorf("plist contains template syntax:\n%s", raw)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	if _, err := New(); err != nil {
		t.Fatal(err)
	}
}

// The newsyslog entry names the launchd job's log, with the fields
// newsyslog.conf(5) gives them: owner:group, mode, count, size in KiB,
// when, flags. N: nobody is signalled (the agent moves by itself); no
// Z/J/X: archives are not compressed.
func TestNewsyslogConf(t *testing.T) {
	var entries [][]string
	for _, line := range strings.Split(string(NewsyslogConf()), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		entries = append(entries, strings.Fields(line))
	}
	// root:admin 0640: administrators read it, other users do not.
	want := []string{LaunchdJob().StandardErrorPath, "root:admin", "640", "5", "1024", "*", "N"}
	if len(entries) != 1 || strings.Join(entries[0], " ") != strings.Join(want, " ") {
		t.Fatalf("entries %q, want one: %q", entries, want)
	}
	if LaunchdJob().StandardOutPath != LogPath || LaunchdJob().StandardErrorPath != LogPath {
		t.Errorf("the job's output is not the rotated log")
	}
}
