package e2e

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
)

// pollBackoff caps the agents' backoff in these tests (a test build's
// CLEARANCE_TEST_MAX_BACKOFF): an approved agent reports within it.
const pollBackoff = 2 * time.Second

// mac is an osquery stand-in for one Mac and the real agent on it.
type mac struct {
	dir, stateDir string
	agent         *proc
	args          []string
}

// startMac starts a Mac with the compliant fixture, its hardware UUID and
// serial number replaced when given, and its agent enrolling with secret.
// presenceAddr "" turns the loopback proof endpoint off.
func startMac(t *testing.T, dir, verifierAddr, caFile, secret, uuid, serial, presenceAddr string) *mac {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(compliantMac)
	if err != nil {
		t.Fatal(err)
	}
	if uuid != "" {
		raw = bytes.ReplaceAll(raw, []byte("5A1C7E2B-9D4F-4B8A-A3E6-0C2D71F9B846"), []byte(uuid))
	}
	if serial != "" {
		raw = bytes.ReplaceAll(raw, []byte("K7Q2XW94LM"), []byte(serial))
	}
	fixture := filepath.Join(dir, "mac.json")
	if err := os.WriteFile(fixture, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "osq.sock")
	startProc(t, "osquery-sim", "--socket", sock, "--fixture", fixture)
	if presenceAddr == "" {
		presenceAddr = "off"
	}
	m := &mac{dir: dir, stateDir: filepath.Join(dir, "agent"), args: []string{"run", "--verifier", verifierAddr, "--ca-file", caFile,
		"--enroll-secret", secret, "--osquery-socket", sock, "--state-dir", filepath.Join(dir, "agent"),
		"--interval", "1s", "--managed-plist", filepath.Join(dir, "none.plist"), "--presence-listen", presenceAddr}}
	m.start(t)
	return m
}

func (m *mac) start(t *testing.T) {
	m.agent = startProcEnv(t, "clearance-agent", []string{"CLEARANCE_TEST_MAX_BACKOFF=" + pollBackoff.String()}, m.args...)
}

// status runs `clearance-agent status` on the Mac's state dir.
func (m *mac) status(t *testing.T) string {
	t.Helper()
	out, _ := m.standing(t)
	return out
}

// standing is status, with its exit code: the Mac's standing.
func (m *mac) standing(t *testing.T) (string, int) {
	t.Helper()
	return agentStatus(t, nil, "--state-dir", m.stateDir, "--managed-plist", filepath.Join(m.dir, "none.plist"))
}

// pending lists the requests waiting for approval.
func pending(t *testing.T, v *verifier) []*adminv1.PendingEnrollment {
	t.Helper()
	c, ctx := v.admin()
	resp, err := c.ListPendingEnrollments(ctx, &adminv1.ListPendingEnrollmentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetPending()
}

func waitPending(t *testing.T, v *verifier, reason string) *adminv1.PendingEnrollment {
	t.Helper()
	var got *adminv1.PendingEnrollment
	waitUntil(t, "a request waiting for approval ("+reason+")", within, func() bool {
		for _, p := range pending(t, v) {
			if p.GetReason() == reason {
				got = p
				return true
			}
		}
		return false
	})
	return got
}

// signIn runs a sign-in bound by the agent's proof of presence, with a
// browser on this machine (where the Mac's agent listens), and says
// whether Okta got a SAMLResponse.
func signIn(t *testing.T, v *verifier, sp *oktasim.SP, ssoAddr string) bool {
	t.Helper()
	r := sp.NewRequest(e2eUser)
	u, err := sp.RedirectURL(r)
	if err != nil {
		t.Fatal(err)
	}
	p := newPresenceBrowser(t, v, ssoAddr).follow(u)
	_, resp, _, err := oktasim.ParsePostForm([]byte(p.body))
	return err == nil && resp != "" && p.status == http.StatusOK
}

// TestCopiedHardwareUUIDCannotTakeOver: a second machine with the enroll
// secret and the enrolled Mac's hardware UUID (a real agent on a copy of
// the Mac's facts) cannot take over its identity. Its request waits; the
// real agent keeps reporting and its sign-ins keep working. Once the
// security team approves, the new key is the only one that works: the old
// agent's stream ends and its proofs no longer sign anyone in.
func TestCopiedHardwareUUIDCannotTakeOver(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	ssoAddr, presenceAddr := freePort(t), freePort(t)
	_, presencePort, _ := net.SplitHostPort(presenceAddr)
	// Okta signs its requests, so the refused proof below is recorded.
	oktaKey, oktaCert, oktaCertFile := oktaSigner(t, dir)
	v := startVerifierOn(t, dataDir, freePort(t), freePort(t),
		"--sso-listen", ssoAddr, "--sso-public-url", e2eSSOPublic,
		"--okta-audience", e2eAudience, "--okta-acs-url", e2eACS, "--okta-request-cert", oktaCertFile,
		"--agent-presence-port", presencePort, "--browser-binding", "agent")
	secret := v.enrollSecret()
	caFile := filepath.Join(dataDir, "ca.pem")
	sp, _ := oktaOrg(t, dataDir, oktaKey, oktaCert)

	// The real Mac enrolls and signs its user in.
	real := startMac(t, filepath.Join(dir, "real"), v.grpcAddr, caFile, secret, "", "", presenceAddr)
	got := waitDevice(t, v, "the real Mac's compliant report", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetSummary().GetCompliant()
	})
	deviceID, realKey := got.GetDevice().GetDeviceId(), got.GetDevice().GetKeyFingerprint()
	if !signIn(t, v, sp, ssoAddr) {
		t.Fatal("the real Mac's sign-in was refused before anything happened")
	}

	// The other machine: the same secret, the same hardware UUID, its own key.
	other := startMac(t, filepath.Join(dir, "other"), v.grpcAddr, caFile, secret, "", "", "")
	req := waitPending(t, v, "unproven_key")
	if req.GetDeviceId() != deviceID || req.GetKeyFingerprint() == realKey {
		t.Fatalf("request %v: want a new key for device %s", req, deviceID)
	}
	waitLog(t, other.agent.logs, "the other agent saying it waits", "enrollment waits for approval by the security team", "request_id="+req.GetRequestId())
	if st := other.status(t); !strings.Contains(st, "PENDING APPROVAL") || !strings.Contains(st, req.GetRequestId()) {
		t.Errorf("clearance-agent status on the other machine:\n%s", st)
	}
	if out := cli(t, "devices", "pending", "--data-dir", dataDir); !strings.Contains(out, req.GetRequestId()) || !strings.Contains(out, "unproven_key") {
		t.Errorf("devices pending:\n%s", out)
	}

	// Meanwhile nothing changed for the real Mac: same key, one enrollment,
	// reports keep coming, sign-ins keep working.
	seq := v.device(t, deviceID).GetDevice().GetLastSeq()
	d := waitDevice(t, v, "the real Mac reporting on", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetLastSeq() >= seq+2
	}).GetDevice()
	if d.GetKeyFingerprint() != realKey || d.GetEnrollments() != 1 || !d.GetConnected() {
		t.Fatalf("the real Mac's record changed while the request waited: %v", d)
	}
	if !signIn(t, v, sp, ssoAddr) {
		t.Fatal("the real Mac's sign-in was refused while the other machine's request waited")
	}
	if p := pending(t, v); len(p) != 1 || p[0].GetRequests() < 2 {
		t.Errorf("requests after polls: %v (want the one request, asked again)", p)
	}

	// The security team approves (say the Mac really was reinstalled
	// elsewhere): the new key is the device's, the old one stops at once.
	approved := time.Now()
	if out := cli(t, "devices", "approve", "--data-dir", dataDir, req.GetRequestId()); !strings.Contains(out, "now has key "+req.GetKeyFingerprint()) {
		t.Errorf("devices approve: %s", out)
	}
	waitLog(t, v.logs, "the old key's stream ending", "stream ended", "reason=key_replaced", "device_id="+deviceID)
	waitLog(t, real.agent.logs, "the old agent told", "verifier refused this device", "PermissionDenied")
	d = waitDevice(t, v, "the approved key reporting", pollBackoff+within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetLastSeq() > 0 && g.GetDevice().GetKeyFingerprint() == req.GetKeyFingerprint()
	}).GetDevice()
	t.Logf("approved key reported %s after approval", time.Since(approved).Round(time.Millisecond))
	if d.GetEnrollments() != 2 { // the first, the approval; the certificate the new agent picked up is not another
		t.Errorf("enrollments = %d, want 2", d.GetEnrollments())
	}
	if out := cli(t, "audit", "--data-dir", dataDir, "--action", "device.collect", "--wide"); !strings.Contains(out, "proof approved_key") || !strings.Contains(out, deviceID) {
		t.Errorf("audit of the approved key collecting its certificate:\n%s", out)
	}
	if signIn(t, v, sp, ssoAddr) {
		t.Fatal("a proof signed with the replaced key signed the user in")
	}
	waitLog(t, v.logs, "the refused proof", "msg=sso_decision", "allow=false", "reason=presence_bad_signature")
	if p := pending(t, v); len(p) != 0 {
		t.Errorf("requests still waiting after approval: %v", p)
	}
	// Its settings (none here: no plist) name no verifier; the state dir
	// says which it enrolled with.
	if st := other.status(t); strings.Contains(st, "PENDING") || !strings.Contains(st, "device id:") || !strings.Contains(st, v.grpcAddr+" (enrolled with") {
		t.Errorf("status after approval:\n%s", st)
	}

	// The secret is now known to have been used elsewhere: revoking it
	// names the device it enrolled.
	if out := cli(t, "secret", "revoke", "--data-dir", dataDir, strings.SplitN(secret, ".", 2)[0]); !strings.Contains(out, deviceID) {
		t.Errorf("secret revoke does not name the device it enrolled:\n%s", out)
	}
}

// TestReenrollWithProof: the real agent enrolls again without approval when
// its certificate is lost but its key kept, and when it rotates its key,
// proving the new one with the old.
func TestReenrollWithProof(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	v := startVerifier(t, dataDir)
	secret := v.enrollSecret()
	m := startMac(t, filepath.Join(dir, "mac"), v.grpcAddr, filepath.Join(dataDir, "ca.pem"), secret, "", "", "")
	deviceID := theDevice(t, v)
	key := v.device(t, deviceID).GetDevice().GetKeyFingerprint()

	// 1. The certificate is lost; the key is not.
	m.agent.stop()
	for _, f := range []string{"device.pem", "chain.pem", "identity.json"} {
		if err := os.Remove(filepath.Join(m.stateDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	m.start(t)
	d := waitDevice(t, v, "a report after the certificate was lost", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetEnrollments() == 2 && g.GetDevice().GetConnected() && g.GetDevice().GetLastSeq() > 0
	}).GetDevice()
	if d.GetKeyFingerprint() != key || d.GetDeviceId() != deviceID {
		t.Fatalf("after re-enrolling with the same key: %v", d)
	}

	// 2. A key rotation, signed by the old key: refused while the agent
	// runs (it would go on with the old key), done once it is stopped.
	if out, err := exec.Command(filepath.Join(binDir, "clearance-agent"), "rotate-key", "--state-dir", m.stateDir,
		"--managed-plist", filepath.Join(m.dir, "none.plist")).CombinedOutput(); err == nil || !strings.Contains(string(out), "stop it first") {
		t.Fatalf("rotate-key while the agent runs: %v\n%s", err, out)
	}
	m.agent.stop()
	out, err := exec.Command(filepath.Join(binDir, "clearance-agent"), "rotate-key", "--state-dir", m.stateDir,
		"--managed-plist", filepath.Join(m.dir, "none.plist")).CombinedOutput()
	if err != nil {
		t.Fatalf("rotate-key: %v\n%s", err, out)
	}
	_, after, ok := strings.Cut(string(out), "new device key ")
	if !ok {
		t.Fatalf("rotate-key printed no new key:\n%s", out)
	}
	newKey := strings.Fields(after)[0]
	if newKey == key {
		t.Fatal("rotate-key kept the key")
	}
	if st := m.status(t); !strings.Contains(st, newKey) || !strings.Contains(st, "key rotation") {
		t.Errorf("status after rotate-key:\n%s", st)
	}
	m.start(t)
	d = waitDevice(t, v, "a report with the rotated key", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetKeyFingerprint() == newKey && g.GetDevice().GetConnected() && g.GetDevice().GetLastSeq() > 0
	}).GetDevice()
	if d.GetDeviceId() != deviceID || d.GetEnrollments() != 3 {
		t.Fatalf("after the rotation: %v", d)
	}
	waitLog(t, m.agent.logs, "the rotation finished", "device key rotated")
	if _, err := os.Stat(filepath.Join(m.stateDir, "previous-key.uri")); !os.IsNotExist(err) {
		t.Errorf("the previous key is still recorded: %v", err)
	}
	if p := pending(t, v); len(p) != 0 {
		t.Errorf("requests waiting for approval: %v", p)
	}
	waitLog(t, v.logs, "the verifier's record of the proof", "device enrolled", "proof=rotation")
}

// startKnownList starts a verifier in dir/verifier under --enroll-approval
// known and imports its list of managed Macs from an MDM's export (csv,
// written to dir/name) with the CLI; it returns what the import printed.
func startKnownList(t *testing.T, dir, name, csv string) (*verifier, string) {
	t.Helper()
	v := startVerifierArgs(t, filepath.Join(dir, "verifier"), append([]string{"--enroll-approval", "known"}, offSSO...)...)
	export := filepath.Join(dir, name)
	if err := os.WriteFile(export, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	return v, cli(t, "devices", "import", "--data-dir", v.dataDir, export)
}

// TestEnrollApprovalPolicies: under --enroll-approval known an unknown
// serial waits and a listed one enrolls; under manual every new device
// waits; an approved agent reports within one backoff period, without a
// restart.
func TestEnrollApprovalPolicies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// The MDM's export lists the first Mac.
	v, out := startKnownList(t, dir, "jamf.csv", "Jamf Pro ID,Computer Name,Serial Number\n1,listed,LISTED0001\n2,elsewhere,OTHER00002\n")
	if !strings.Contains(out, "imported 2 serial numbers: 2 new") {
		t.Errorf("devices import: %s", out)
	}
	dataDir, grpcAddr, httpAddr, caFile := v.dataDir, v.grpcAddr, v.httpAddr, filepath.Join(v.dataDir, "ca.pem")
	secret := v.enrollSecret()
	listed := startMac(t, filepath.Join(dir, "listed"), grpcAddr, caFile, secret, "11111111-1111-4111-8111-111111111111", "LISTED0001", "")
	unknown := startMac(t, filepath.Join(dir, "unknown"), grpcAddr, caFile, secret, "22222222-2222-4222-8222-222222222222", "UNKNOWN003", "")
	req := waitPending(t, v, "unknown_serial")
	if req.GetFacts().GetSerialNumber() != "UNKNOWN003" || req.GetDeviceId() != "" {
		t.Fatalf("request: %v", req)
	}
	waitUntil(t, "the listed Mac reporting", within, func() bool {
		c, ctx := v.admin()
		resp, err := c.ListDevices(ctx, &adminv1.ListDevicesRequest{})
		return err == nil && len(resp.GetDevices()) == 1 && resp.GetDevices()[0].GetFacts().GetSerialNumber() == "LISTED0001" && resp.GetDevices()[0].GetLastSeq() > 0
	})
	waitLog(t, unknown.agent.logs, "the unknown Mac saying it waits", "enrollment waits for approval", "reason=unknown_serial")
	_ = listed

	// Let the unknown Mac's backoff reach its cap, then approve: it reports
	// within one backoff period (plus a report's round trip).
	time.Sleep(2 * pollBackoff)
	approved := time.Now()
	cli(t, "devices", "approve", "--data-dir", dataDir, req.GetRequestId())
	id := waitReporting(t, v, "the approved Mac's first report", pollBackoff+5*time.Second, func(d *adminv1.Device) bool {
		return d.GetFacts().GetSerialNumber() == "UNKNOWN003"
	})
	t.Logf("approved Mac %s reported %s after approval", id, time.Since(approved).Round(time.Millisecond))

	// Under manual, even a listed serial waits.
	v.stop()
	v = startVerifierOn(t, dataDir, grpcAddr, httpAddr, append([]string{"--enroll-approval", "manual"}, offSSO...)...)
	startMac(t, filepath.Join(dir, "manual"), grpcAddr, caFile, secret, "33333333-3333-4333-8333-333333333333", "OTHER00002", "")
	req = waitPending(t, v, "manual")
	if req.GetFacts().GetSerialNumber() != "OTHER00002" {
		t.Fatalf("request: %v", req)
	}
	// Rejected, it stays out.
	if out := cli(t, "devices", "reject", "--data-dir", dataDir, req.GetRequestId()); !strings.Contains(out, "rejected") {
		t.Errorf("devices reject: %s", out)
	}
	waitUntil(t, "the rejected request leaving the list", within, func() bool { return len(pending(t, v)) == 0 })
}

// TestSecretRefusals: an expired, a used-up and a revoked secret are each
// refused with their own message and metric reason, and enroll nothing.
func TestSecretRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	v := startVerifier(t, dataDir)
	secretID := func(s string) string { return strings.SplitN(s, ".", 2)[0] }
	expiring := lastLine(cli(t, "secret", "create", "--data-dir", dataDir, "--expires", "1m"))
	once := lastLine(cli(t, "secret", "create", "--data-dir", dataDir, "--max-uses", "1"))
	revoked := v.enrollSecret()
	cli(t, "secret", "revoke", "--data-dir", dataDir, secretID(revoked))
	// A minute is the shortest expiry; move this one's into the past.
	db := openSQLiteFile(t, filepath.Join(dataDir, "clearance.db"), "?_pragma=busy_timeout(5000)")
	if _, err := db.Exec(`UPDATE enroll_secrets SET expires_at = ? WHERE id = ?`, time.Now().Add(-time.Second).UnixNano(), secretID(expiring)); err != nil {
		t.Fatal(err)
	}

	enroll := func(secret, uuid string) error {
		a, err := protoagent.New(v.grpcAddr, v.rootPEM(), uuid)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = a.Enroll(ctx, secret)
		return err
	}
	if err := enroll(once, "44444444-4444-4444-8444-444444444444"); err != nil {
		t.Fatalf("first use of a one-use secret: %v", err)
	}
	for _, tc := range []struct{ name, secret, msg, reason string }{
		{"expired", expiring, "enroll secret has expired", "expired_secret"},
		{"used up", once, "enroll secret has been used as many times as it may be", "exhausted_secret"},
		{"revoked", revoked, "enroll secret has been revoked", "revoked_secret"},
	} {
		err := enroll(tc.secret, "55555555-5555-4555-8555-555555555555")
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), tc.msg) {
			t.Errorf("%s: %v, want Unauthenticated %q", tc.name, err, tc.msg)
		}
		if n := v.metric(t, `clearance_enrollments_total{outcome="`+tc.reason+`"}`); n != 1 {
			t.Errorf("%s: metric %s = %v, want 1", tc.name, tc.reason, n)
		}
		waitLog(t, v.logs, tc.name+" in the log", "enrollment refused", "reason="+tc.reason)
	}
	c, ctx := v.admin()
	resp, err := c.ListDevices(ctx, &adminv1.ListDevicesRequest{})
	if err != nil || len(resp.GetDevices()) != 1 || resp.GetDevices()[0].GetEnrollSecretId() != secretID(once) {
		t.Fatalf("devices after the refusals: %v %v (want only the one-use secret's)", resp, err)
	}
}

// cliFails runs clearance-verifier expecting it to fail, and returns what
// it printed on stderr.
func cliFails(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.Command(filepath.Join(binDir, "clearance-verifier"), args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err == nil {
		t.Fatalf("clearance-verifier %s succeeded:\n%s", strings.Join(args, " "), out.String())
	}
	return errOut.String()
}

// TestStaleRequestCannotTakeOver: someone with the secret asks to enroll as
// a Mac before the Mac does (an unlisted serial, so the request waits as a
// new device). The real Mac then enrolls. The old request is gone, approving
// it is refused, the same key asking again shows as what it is (another key
// for an enrolled device), and one command rejects everything from the
// asker's address. The real Mac keeps reporting throughout.
func TestStaleRequestCannotTakeOver(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	v, _ := startKnownList(t, dir, "serials.csv", "VICTIM0001\n")
	dataDir, grpcAddr, caFile := v.dataDir, v.grpcAddr, filepath.Join(v.dataDir, "ca.pem")
	secret := v.enrollSecret()
	const victim = "66666666-6666-4666-8666-666666666666"

	attacker, err := protoagent.New(v.grpcAddr, v.rootPEM(), victim)
	if err != nil {
		t.Fatal(err)
	}
	attacker.Facts.SerialNumber = "UNLISTED01"
	ask := func(want string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := attacker.Enroll(ctx, secret)
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), want) {
			t.Fatalf("the attacker's request: %v, want it to wait (%s)", err, want)
		}
	}
	ask("unknown_serial")
	early := waitPending(t, v, "unknown_serial")

	startMac(t, filepath.Join(dir, "real"), grpcAddr, caFile, secret, victim, "VICTIM0001", "")
	var deviceID, realKey string
	waitUntil(t, "the real Mac reporting", within, func() bool {
		c, ctx := v.admin()
		resp, err := c.ListDevices(ctx, &adminv1.ListDevicesRequest{})
		if err != nil || len(resp.GetDevices()) != 1 || resp.GetDevices()[0].GetLastSeq() == 0 {
			return false
		}
		deviceID, realKey = resp.GetDevices()[0].GetDeviceId(), resp.GetDevices()[0].GetKeyFingerprint()
		return true
	})
	if out := cliFails(t, "devices", "approve", "--data-dir", dataDir, early.GetRequestId()); !strings.Contains(out, "enrolled or changed key") {
		t.Errorf("approving the stale request: %s", out)
	}
	if d := v.device(t, deviceID).GetDevice(); d.GetKeyFingerprint() != realKey {
		t.Fatalf("the real Mac's key changed: %v", d)
	}

	// Asked again, the request names the device and its current key.
	ask("unproven_key")
	out := cli(t, "devices", "pending", "--data-dir", dataDir)
	if !strings.Contains(out, deviceID+" key "+realKey[:16]) || strings.Contains(out, "(new)") {
		t.Errorf("devices pending after the Mac enrolled:\n%s", out)
	}
	if out := cli(t, "devices", "reject", "--data-dir", dataDir, "--all-from", "127.0.0.1"); !strings.Contains(out, "rejected: request") {
		t.Errorf("devices reject --all-from: %s", out)
	}
	if p := pending(t, v); len(p) != 0 {
		t.Errorf("requests after rejecting all from the address: %v", p)
	}
	seq := v.device(t, deviceID).GetDevice().GetLastSeq()
	waitDevice(t, v, "the real Mac reporting on", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetLastSeq() > seq && g.GetDevice().GetKeyFingerprint() == realKey
	})
}

// TestClaimRejectedByKey: someone with the secret claims an enrolled Mac's
// serial as a new machine. devices pending names the Mac whose serial it
// claims. The claimant then changes its serial at every ask, so the id the
// security team read is gone before they can reject it; devices reject
// --key, with the fingerprint the listing shows, rejects the key for each
// Mac it asked as, and it is refused from then on. The real Mac keeps
// reporting throughout.
func TestClaimRejectedByKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	v, _ := startKnownList(t, dir, "serials.csv", "VICTIM0002\n")
	dataDir := v.dataDir
	secret := v.enrollSecret()
	startMac(t, filepath.Join(dir, "real"), v.grpcAddr, filepath.Join(dataDir, "ca.pem"), secret, "77777777-7777-4777-8777-777777777777", "VICTIM0002", "")
	deviceID := waitReporting(t, v, "the real Mac reporting", within, func(d *adminv1.Device) bool {
		return d.GetFacts().GetSerialNumber() == "VICTIM0002"
	})
	realKey := v.device(t, deviceID).GetDevice().GetKeyFingerprint()

	claimant, err := protoagent.New(v.grpcAddr, v.rootPEM(), "88888888-8888-4888-8888-888888888888")
	if err != nil {
		t.Fatal(err)
	}
	ask := func(hardwareUUID, serial string, code codes.Code, want string) {
		t.Helper()
		claimant.Facts.HardwareUuid, claimant.Facts.SerialNumber = hardwareUUID, serial
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := claimant.Enroll(ctx, secret)
		if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), want) {
			t.Fatalf("the claimant asking as %s with serial %s: %v, want %s %q", hardwareUUID, serial, err, code, want)
		}
	}
	ask("88888888-8888-4888-8888-888888888888", "VICTIM0002", codes.FailedPrecondition, "serial_enrolled")
	read := waitPending(t, v, "serial_enrolled")
	out := cli(t, "devices", "pending", "--data-dir", dataDir)
	if !strings.Contains(out, "(new; serial held by "+deviceID+" (") || !strings.Contains(out, read.GetKeyFingerprint()[:16]) {
		t.Errorf("devices pending does not name the Mac whose serial is claimed (%s):\n%s", deviceID, out)
	}

	// It changes its serial, and asks as another Mac too: the id read is gone.
	ask("88888888-8888-4888-8888-888888888888", "UNLISTED02", codes.FailedPrecondition, "unknown_serial")
	ask("99999999-9999-4999-8999-999999999999", "UNLISTED03", codes.FailedPrecondition, "unknown_serial")
	if out := cliFails(t, "devices", "reject", "--data-dir", dataDir, read.GetRequestId()); !strings.Contains(out, "no enrollment request") {
		t.Errorf("rejecting the id read: %s", out)
	}
	if out := cliFails(t, "devices", "reject", "--data-dir", dataDir, "--key", read.GetKeyFingerprint()[:8]); !strings.Contains(out, "give at least 16") {
		t.Errorf("rejecting by 8 digits: %s", out)
	}
	out = cli(t, "devices", "reject", "--data-dir", dataDir, "--key", read.GetKeyFingerprint()[:16])
	if strings.Count(out, "rejected: request") != 2 || !strings.Contains(out, "99999999-9999-4999-8999-999999999999") {
		t.Errorf("devices reject --key:\n%s", out)
	}
	if p := pending(t, v); len(p) != 0 {
		t.Errorf("requests after rejecting the key: %v", p)
	}
	ask("88888888-8888-4888-8888-888888888888", "UNLISTED04", codes.PermissionDenied, "rejected")
	ask("99999999-9999-4999-8999-999999999999", "VICTIM0002", codes.PermissionDenied, "rejected")

	seq := v.device(t, deviceID).GetDevice().GetLastSeq()
	waitDevice(t, v, "the real Mac reporting on", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetLastSeq() > seq && g.GetDevice().GetKeyFingerprint() == realKey
	})
}

// A Mac the verifier refuses for good says why in `clearance-agent status`,
// in the verifier's whole words, and its log line holds them too.
func TestRefusedAgentSaysWhyInStatus(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	v := startVerifierOn(t, dataDir, freePort(t), freePort(t), offSSO...)
	// What follows "enrolling with <address>: rpc error: code =
	// Unauthenticated desc = " in the agent's words: past where a
	// client's field is cut in a log line.
	m := startMac(t, filepath.Join(dir, "mac"), v.grpcAddr, filepath.Join(dataDir, "ca.pem"), "not-a-secret", "", "", "")
	const why = "enroll secret is not valid"
	waitLog(t, m.agent.logs, "the agent saying the verifier refused", "verifier refused; not retrying soon", why)
	// Scripts and MDM extension attributes read the refusal from the
	// exit code: not enrolled, 3.
	st, code := m.standing(t)
	if code != 3 || !strings.Contains(st, "REFUSED") || !strings.Contains(st, "Unauthenticated") || !strings.Contains(st, why) || !strings.Contains(st, "asks again at") {
		t.Errorf("clearance-agent status after a refusal: exit %d\n%s", code, st)
	}
}

// TestRevokedMacComesBackByApproval: a revoked Mac's agent is refused; once
// it has a new key (its state wiped, or clearance-agent rotate-key, the way
// docs/operations.md gives: the revoked key's signature over the new one
// proves nothing), its request waits for the security team (even under
// auto), and approving it with the CLI reinstates the same device, which
// reports again.
func TestRevokedMacComesBackByApproval(t *testing.T) {
	t.Parallel()
	for _, way := range []string{"state wiped", "rotate-key"} {
		t.Run(way, func(t *testing.T) {
			t.Parallel()
			revokedMacComesBack(t, way == "rotate-key")
		})
	}
}

func revokedMacComesBack(t *testing.T, rotate bool) {
	v, dataDir, m, deviceID, oldKey := startReportingMac(t)

	cli(t, "devices", "revoke", "--data-dir", dataDir, deviceID, "--reason", "reported stolen")
	waitLog(t, m.agent.logs, "the revoked agent told", "verifier refused this device", "PermissionDenied")
	if st := m.status(t); !strings.Contains(st, "REFUSED") {
		t.Errorf("status of the revoked Mac:\n%s", st)
	}

	// Recovered: the agent starts over with a new key.
	m.agent.stop()
	if rotate {
		out, err := exec.Command(filepath.Join(binDir, "clearance-agent"), "rotate-key", "--state-dir", m.stateDir,
			"--managed-plist", filepath.Join(m.dir, "none.plist")).CombinedOutput()
		if err != nil {
			t.Fatalf("rotate-key: %v\n%s", err, out)
		}
	} else if err := os.RemoveAll(m.stateDir); err != nil {
		t.Fatal(err)
	}
	m.start(t)
	req := waitPending(t, v, "revoked_device")
	if req.GetDeviceId() != deviceID || req.GetKeyFingerprint() == oldKey || req.GetDeviceRevokedAt() == nil {
		t.Fatalf("request %v: want a new key for revoked device %s", req, deviceID)
	}
	waitLog(t, m.agent.logs, "the agent saying it waits", "enrollment waits for approval by the security team", "request_id="+req.GetRequestId())
	if st := m.status(t); !strings.Contains(st, "PENDING APPROVAL") || !strings.Contains(st, "revoked_device") || strings.Contains(st, "REFUSED") {
		t.Errorf("status while the request waits:\n%s", st)
	}
	if out := cli(t, "devices", "pending", "--data-dir", dataDir); !strings.Contains(out, "revoked_device") || !strings.Contains(out, "REVOKED") {
		t.Errorf("devices pending:\n%s", out)
	}
	if d := v.device(t, deviceID).GetDevice(); d.GetRevokedAt() == nil {
		t.Fatalf("the device is no longer revoked while its request waits: %v", d)
	}

	if out := cli(t, "devices", "approve", "--data-dir", dataDir, req.GetRequestId()); !strings.Contains(out, "reinstated") {
		t.Errorf("devices approve: %s", out)
	}
	d := waitDevice(t, v, "the reinstated Mac reporting", pollBackoff+within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetLastSeq() > 0 && g.GetDevice().GetKeyFingerprint() == req.GetKeyFingerprint()
	}).GetDevice()
	if d.GetDeviceId() != deviceID || d.GetRevokedAt() != nil {
		t.Fatalf("after approval: %v", d)
	}
	if st := m.status(t); strings.Contains(st, "PENDING") || strings.Contains(st, "REFUSED") {
		t.Errorf("status after approval:\n%s", st)
	}
	c, ctx := v.admin()
	audit, err := c.ListAuditEvents(ctx, &adminv1.ListAuditEventsRequest{DeviceId: deviceID, Action: "device.reinstate"})
	if err != nil || len(audit.GetEvents()) != 1 || !strings.Contains(audit.GetEvents()[0].GetDetail(), "reported stolen") {
		t.Errorf("audit of the reinstatement: %v %v", audit, err)
	}
}

// TestExpectedReinstallEnrollsWithoutApproval: a Mac wiped and set up
// again (its agent's state gone, so a new key that proves nothing) waits
// for approval; told beforehand with `devices expect-reinstall`, the real
// agent's new key enrolls on its own and reports, once.
func TestExpectedReinstallEnrollsWithoutApproval(t *testing.T) {
	t.Parallel()
	v, dataDir, m, deviceID, oldKey := startReportingMac(t)

	out := cli(t, "devices", "expect-reinstall", "--data-dir", dataDir, "--within", "1h", deviceID[:8])
	if !strings.Contains(out, "reinstall expected: "+deviceID) || !strings.Contains(out, "until ") {
		t.Fatalf("devices expect-reinstall: %s", out)
	}
	// Wiped and set up again: the state dir (and its key) gone.
	m.agent.stop()
	if err := os.RemoveAll(m.stateDir); err != nil {
		t.Fatal(err)
	}
	m.start(t)
	d := waitDevice(t, v, "the reinstalled Mac reporting with its new key", pollBackoff+within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetLastSeq() > 0 && g.GetDevice().GetKeyFingerprint() != oldKey
	}).GetDevice()
	if d.GetDeviceId() != deviceID || len(pending(t, v)) != 0 || d.GetReinstallExpectedUntil() != nil {
		t.Fatalf("after the reinstall: device %v, %d requests waiting", d, len(pending(t, v)))
	}
	if out := cli(t, "audit", "--data-dir", dataDir, "--action", "device.reenroll", "--wide"); !strings.Contains(out, "proof reinstall_expected") {
		t.Errorf("audit of the reinstall:\n%s", out)
	}

	// Once: wiped again, it waits for approval.
	m.agent.stop()
	if err := os.RemoveAll(m.stateDir); err != nil {
		t.Fatal(err)
	}
	m.start(t)
	if req := waitPending(t, v, "unproven_key"); req.GetDeviceId() != deviceID {
		t.Fatalf("request after the second wipe: %v", req)
	}
}

// startReportingMac starts a verifier and a Mac whose agent enrolls and
// reports; it returns them, the verifier's data dir, the Mac's device id
// and its key's fingerprint.
func startReportingMac(t *testing.T) (v *verifier, dataDir string, m *mac, deviceID, keyFingerprint string) {
	t.Helper()
	dir := t.TempDir()
	dataDir = filepath.Join(dir, "verifier")
	v = startVerifierOn(t, dataDir, freePort(t), freePort(t), offSSO...)
	m = startMac(t, filepath.Join(dir, "mac"), v.grpcAddr, filepath.Join(dataDir, "ca.pem"), v.enrollSecret(), "", "", "")
	got := waitDevice(t, v, "the Mac's first report", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected() && g.GetDevice().GetLastSeq() > 0
	})
	return v, dataDir, m, got.GetDevice().GetDeviceId(), got.GetDevice().GetKeyFingerprint()
}
