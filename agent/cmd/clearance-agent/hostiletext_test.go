package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/agent/state"
	"github.com/clearance/clearance/pkg/printable"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// What a hostile policy author or verifier pushes to steer the terminal of
// whoever runs `clearance-agent check` or `status`: clear the screen, set
// the window title (OSC 0, ended by BEL), show a fake green "ALL PASS", a
// hidden hyperlink (OSC 8), CSI as a single C1 character, and a
// right-to-left override.
const (
	hostileName       = "Disk \x1b[2J\x1b[H\x1b]0;owned\a\x1b[32mALL PASS\x1b[0m"
	hostileResolution = "Fix \x1b]8;;https://evil.example/\aclick here\x1b]8;;\a \u009b31m\u202eTXEN"
)

// checkInert asserts that out holds nothing a terminal acts on or
// reorders: only printable text, spaces and line ends.
func checkInert(t *testing.T, what, out string) {
	t.Helper()
	for _, r := range out {
		if r != '\n' && r != ' ' && printable.Hidden(r) {
			t.Fatalf("%s carries %U raw:\n%q", what, r, out)
		}
	}
}

// TestCheckPrintsPushedTextInert: the policy set the daemon last received
// (cached in the state dir, as pushed by the verifier) names and resolves
// its policies with terminal escapes, and osquery's error message carries
// one; check shows all of them escaped, one row per policy.
func TestCheckPrintsPushedTextInert(t *testing.T) {
	t.Parallel()
	dir, socket := startSim(t, "compliant-mac")
	stateDir := filepath.Join(dir, "state")
	sd, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	ps := &agentv1.PolicySet{Version: "v1\x1b[2J", Policies: []*agentv1.Policy{
		{Id: "evil-name", Name: hostileName, Query: "SELECT 1 FROM os_version WHERE 0", Resolution: hostileResolution, Required: true},
		// osquery's message quotes the bad JSON path, escapes and all.
		{Id: "evil-error", Name: "Error", Query: "SELECT json_extract('{}', '\x1b]0;owned\a')", Required: false},
		{Id: "fine", Name: "Fine", Query: "SELECT 1 FROM os_version", Required: true},
	}}
	if err := sd.SavePolicySet(ps); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := realMain([]string{"check", "--osquery-socket", socket, "--state-dir", stateDir,
		"--managed-plist", filepath.Join(dir, "none.plist")}, &stdout, &stderr)
	out := stdout.String()
	if code != 1 {
		t.Errorf("exit code %d, want 1 (a required policy fails)\nstdout:\n%s\nstderr:\n%s", code, out, stderr.String())
	}
	checkInert(t, "check's table", out)
	checkInert(t, "check's stderr", stderr.String())
	for _, want := range []string{
		`evil-name   FAIL    Disk \x1b[2J\x1b[H\x1b]0;owned\x07\x1b[32mALL PASS\x1b[0m  Fix \x1b]8;;https://evil.example/\x07click here\x1b]8;;\x07 \u009b31m\u202eTXEN`,
		`evil-error  ERROR   Error`,
		`\x1b]0;owned\x07`,
		`fine        PASS    Fine`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(strings.TrimSpace(out), "\n"); n != 3 {
		t.Errorf("%d lines after the header, want one per policy:\n%s", n, out)
	}
}

// TestStatusPrintsVerifierTextInert: status shows what the verifier said
// (the device id from enrollment, a pending request's id and reason, the
// policy set's version) escaped.
func TestStatusPrintsVerifierTextInert(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	sd, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	cert := selfSigned(t)
	id := &state.Identity{DeviceID: "dev\x1b]0;owned\a\u202e", Verifier: "verifier.example:8443", EnrolledAt: time.Now(), Cert: cert, Chain: []*x509.Certificate{cert}}
	if err := sd.SaveIdentity(id); err != nil {
		t.Fatal(err)
	}
	if err := sd.SavePending(state.Pending{RequestID: "req\x1b[2J", Reason: "new_device\x1b[32m ALL GOOD", RequestedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := sd.SavePolicySet(&agentv1.PolicySet{Version: "v1\u009b2J"}); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := realMain([]string{"status", "--state-dir", stateDir, "--managed-plist", filepath.Join(dir, "none.plist")}, &stdout, &stderr); code != standingNotEnrolled.code {
		t.Fatalf("exit code %d, want %d (pending approval)\nstderr:\n%s", code, standingNotEnrolled.code, stderr.String())
	}
	out := stdout.String()
	checkInert(t, "status", out)
	for _, want := range []string{
		`dev\x1b]0;owned\x07\u202e`,
		`request req\x1b[2J, new_device\x1b[32m ALL GOOD`,
		`v1\u009b2J (0 policies)`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}

func selfSigned(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "device"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
