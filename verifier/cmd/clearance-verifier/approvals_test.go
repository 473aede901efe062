package main

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/clearance/clearance/internal/protoagent"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/storage"
)

// TestPendingAndRejectByKey: devices pending names the device whose
// serial a new machine claims (revoked, here); devices reject --key
// rejects a key that re-files under a new id at every ask, for each Mac it
// asked as; the forms of reject exclude each other.
func TestPendingAndRejectByKey(t *testing.T) {
	t.Parallel()
	// Under known, with the Mac's serial imported: it enrolls, the others wait.
	s := startServer(t, "--enroll-approval", "known")
	const macUUID = "0A1B2C3D-4E5F-4061-8172-839405A6B7D0"
	export := filepath.Join(t.TempDir(), "serials.csv")
	if err := os.WriteFile(export, []byte(protoagent.SerialFor(macUUID)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := execute(noEnv, "devices", "import", "--data-dir", s.dir, export); err != nil {
		t.Fatal(err)
	}
	out, _, err := execute(noEnv, "secret", "create", "--data-dir", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	secret := lastLine(out)
	mac := s.enroll(t, secret, macUUID, agentv1.PolicyStatus_POLICY_STATUS_PASS)
	now := time.Now()
	if _, err := s.srv.Store.RevokeDevice(t.Context(), mac.DeviceID, "stolen", now, storage.AuditEvent{At: now, Action: "device.revoke"}); err != nil {
		t.Fatal(err)
	}

	root, err := os.ReadFile(filepath.Join(s.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	thief, err := protoagent.New(s.addr, root, "0A1B2C3D-4E5F-4061-8172-839405A6B7D1")
	if err != nil {
		t.Fatal(err)
	}
	ask := func(hardwareUUID, serial string) {
		t.Helper()
		thief.Facts.HardwareUuid, thief.Facts.SerialNumber = hardwareUUID, serial
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := thief.Enroll(ctx, secret)
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("the thief's request: %v, want it to wait", err)
		}
	}
	// The stolen Mac's serial, then two others, as two Macs.
	ask("0A1B2C3D-4E5F-4061-8172-839405A6B7D1", mac.Facts.GetSerialNumber())
	out, _, err = execute(noEnv, "devices", "pending", "--data-dir", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	want := "(new; serial held by " + mac.DeviceID + " (" + mac.Facts.GetHostname() + ") revoked)"
	if !strings.Contains(out, want) || !strings.Contains(out, "serial_enrolled") {
		t.Errorf("devices pending lacks %q:\n%s", want, out)
	}
	ask("0A1B2C3D-4E5F-4061-8172-839405A6B7D1", "C02HOPS0001")
	ask("0A1B2C3D-4E5F-4061-8172-839405A6B7D2", "C02HOPS0002")

	der, err := x509.MarshalPKIXPublicKey(thief.Key.Public())
	if err != nil {
		t.Fatal(err)
	}
	fp := storage.KeyFingerprint(der)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--key", fp[:16], "some-request-id"}, "give one of a request id, --key and --all-from"},
		{[]string{"--key", fp[:16], "--all-from", "127.0.0.1"}, "give one of a request id, --key and --all-from"},
		{nil, "the request id"},
		{[]string{"--key", fp[:12]}, "is 12 hex digits; give at least 16"},
	} {
		_, _, err := execute(noEnv, append([]string{"devices", "reject", "--data-dir", s.dir}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("devices reject %v: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
	out, _, err = execute(noEnv, "devices", "reject", "--data-dir", s.dir, "--key", strings.ToUpper(fp[:16]))
	if err != nil {
		t.Fatal(err)
	}
	for _, hw := range []string{"0A1B2C3D-4E5F-4061-8172-839405A6B7D1", "0A1B2C3D-4E5F-4061-8172-839405A6B7D2"} {
		if !strings.Contains(out, "(hardware UUID "+hw+", key "+fp+")") {
			t.Errorf("devices reject --key does not name the request of %s:\n%s", hw, out)
		}
	}
	if n := strings.Count(out, "rejected: request"); n != 2 {
		t.Errorf("devices reject --key rejected %d requests, want 2:\n%s", n, out)
	}
	out, stderr, err := execute(noEnv, "devices", "pending", "--data-dir", s.dir)
	if err != nil || strings.Contains(out, "C02HOPS") {
		t.Errorf("devices pending after the rejection: %v\n%s%s", err, out, stderr)
	}
}

// TestApproveOnlyWhatWasRead: under manual, a key asks as a CI runner and
// the approver reads that; the same key asks again as someone's MacBook.
// Approving the id that was read enrolls nothing and says to list the
// requests again; the listing shows the new ask under a new id, and
// approving that one enrolls what it showed. A Mac without a serial
// number shows as such, in the listing and in the approval.
func TestApproveOnlyWhatWasRead(t *testing.T) {
	t.Parallel()
	s, secret, root := manualServer(t)
	asker, err := protoagent.New(s.addr, root, "0A1B2C3D-4E5F-4061-8172-839405A6B7E0")
	if err != nil {
		t.Fatal(err)
	}
	ask := func(hostname, model string) {
		t.Helper()
		asker.Facts.Hostname, asker.Facts.Model, asker.Facts.SerialNumber = hostname, model, ""
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := asker.Enroll(ctx, secret); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("asking as %s: %v, want it to wait", hostname, err)
		}
	}
	pending := func() (id, row string) {
		t.Helper()
		out, _, err := execute(noEnv, "devices", "pending", "--data-dir", s.dir)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 {
			t.Fatalf("devices pending: want one request:\n%s", out)
		}
		return strings.Fields(lines[1])[0], lines[1]
	}

	ask("ci-runner-17", "VMware7,1")
	read, row := pending()
	if f := strings.Fields(row); !strings.Contains(row, "ci-runner-17") || f[4] != "-" {
		t.Errorf("devices pending: want ci-runner-17 with serial -:\n%s", row)
	}
	ask("alice-macbook-pro", "MacBookPro18,3")

	_, _, err = execute(noEnv, "devices", "approve", "--data-dir", s.dir, read)
	if err == nil || !strings.Contains(err.Error(), "filed anew under another id") || !strings.Contains(err.Error(), "Run 'devices pending' again") {
		t.Fatalf("approving the request read before it changed: %v; want it refused, saying to list the requests again", err)
	}
	devs, err := s.srv.Store.ListDevices(t.Context(), "", 10)
	if err != nil || len(devs) != 0 {
		t.Fatalf("devices after the refused approval: %v, %v; want none", devs, err)
	}

	now, row := pending()
	if now == read || !strings.Contains(row, "alice-macbook-pro") {
		t.Fatalf("devices pending after the second ask: %s; want alice-macbook-pro under an id other than %s", row, read)
	}
	out, _, err := execute(noEnv, "devices", "approve", "--data-dir", s.dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "(alice-macbook-pro, no serial)") {
		t.Errorf("devices approve: %s; want it to name alice-macbook-pro with no serial", out)
	}
	devs, err = s.srv.Store.ListDevices(t.Context(), "", 10)
	if err != nil || len(devs) != 1 || devs[0].Hostname != "alice-macbook-pro" || devs[0].Model != "MacBookPro18,3" {
		t.Errorf("devices after approving what was read: %+v, %v", devs, err)
	}
}

// TestRejectAllFromNetwork: devices reject --all-from takes a network as
// well as an address, and refuses what is neither, or too broad a
// network, before it changes anything.
func TestRejectAllFromNetwork(t *testing.T) {
	t.Parallel()
	s, secret, root := manualServer(t)
	ask := func(hardwareUUID string) {
		t.Helper()
		a, err := protoagent.New(s.addr, root, hardwareUUID)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := a.Enroll(ctx, secret); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("asking as %s: %v, want it to wait", hardwareUUID, err)
		}
	}
	ask("0A1B2C3D-4E5F-4061-8172-839405A6B7F1")
	ask("0A1B2C3D-4E5F-4061-8172-839405A6B7F2")
	waiting := func() int {
		t.Helper()
		ps, err := s.srv.Store.ListPendingEnrollments(t.Context(), "", 10)
		if err != nil {
			t.Fatal(err)
		}
		return len(ps)
	}

	for _, tc := range []struct{ from, want string }{
		{"127.0.0.0/8", "127.0.0.0/8 is broader than /16"},
		{"::/0", "::/0 is broader than /32"},
		{"127.0.0.1/16", "has bits set past its prefix: the network is 127.0.0.0/16"},
		{"127.0.0.1 ", `"127.0.0.1 " is not an IP address`},
		{"localhost", `"localhost" is not an IP address`},
		{strings.Repeat("f", 100), "the source is 100 characters"},
	} {
		_, _, err := execute(noEnv, "devices", "reject", "--data-dir", s.dir, "--all-from", tc.from)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("devices reject --all-from %.20q: %v; want an error saying %q", tc.from, err, tc.want)
		}
	}
	if n := waiting(); n != 2 {
		t.Fatalf("%d requests wait after refused rejections, want 2", n)
	}
	_, stderr, err := execute(noEnv, "devices", "reject", "--data-dir", s.dir, "--all-from", "2001:db8::/32")
	if err != nil || !strings.Contains(stderr, "no enrollment request from 2001:db8::/32 waits") {
		t.Errorf("devices reject --all-from a network nothing waits from: %v\n%s", err, stderr)
	}
	out, _, err := execute(noEnv, "devices", "reject", "--data-dir", s.dir, "--all-from", "127.0.0.0/16")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "rejected: request"); n != 2 {
		t.Errorf("devices reject --all-from 127.0.0.0/16 rejected %d requests, want 2:\n%s", n, out)
	}
	if n := waiting(); n != 0 {
		t.Errorf("%d requests wait after rejecting all from 127.0.0.0/16, want none", n)
	}
}

// manualServer starts a verifier under --enroll-approval manual, with an
// enroll secret the CLI made and the root agents trust.
func manualServer(t *testing.T) (s *testServer, secret string, root []byte) {
	t.Helper()
	s = startServer(t, "--enroll-approval", "manual")
	out, _, err := execute(noEnv, "secret", "create", "--data-dir", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	root, err = os.ReadFile(filepath.Join(s.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return s, lastLine(out), root
}
