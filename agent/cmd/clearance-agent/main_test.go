package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clearance/clearance/internal/osquerysim"
)

const policiesYAML = `policies:
  - id: filevault-on
    name: FileVault is on
    query: SELECT 1 FROM disk_encryption WHERE filevault_status = 'on' LIMIT 1
    resolution: Turn on FileVault in System Settings.
    required: true
    interval: 60s
  - id: broken
    name: Broken query
    query: SELECT sid FROM certificates
  - id: linux-only
    name: Not for Macs
    query: SELECT 1
    platforms: [windows]
`

func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		fixture  string
		wantCode int
		want     []string
	}{
		{"compliant-mac", 0, []string{"filevault-on  PASS", "broken        ERROR", "no such column"}},
		{"failing-mac", 1, []string{"filevault-on  FAIL", "Turn on FileVault"}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			t.Parallel()
			dir, err := os.MkdirTemp("", "ck")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			socket := filepath.Join(dir, "osquery.em")
			f, err := osquerysim.LoadFixture(tt.fixture)
			if err != nil {
				t.Fatal(err)
			}
			sim, err := osquerysim.New(f)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); sim.Serve(ctx, socket) }()
			t.Cleanup(func() { cancel(); <-done; sim.Close() })

			policies := filepath.Join(dir, "policies.yaml")
			if err := os.WriteFile(policies, []byte(policiesYAML), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			code := realMain([]string{"check", "--policies", policies, "--osquery-socket", socket,
				"--state-dir", filepath.Join(dir, "state"), "--managed-plist", filepath.Join(dir, "none.plist")}, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout.String(), stderr.String())
			}
			out := stdout.String()
			if !strings.HasPrefix(out, "ID") || strings.Contains(out, "linux-only") {
				t.Errorf("table:\n%s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"bogus"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "unknown command") {
		t.Errorf("code %d, stderr %q", code, stderr.String())
	}
	if code := realMain([]string{"run", "--verifier", "nope", "--managed-plist", "/nonexistent"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "not HOST:PORT") {
		t.Errorf("bad flag: code %d, stderr %q", code, stderr.String())
	}
}
