package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
)

// TestBackupRestore follows docs/operations.md's backup and restore with
// the real binaries: a verifier with an enrolled Mac and a sign-in is
// backed up while it runs, stopped, restored into a new data dir and
// started there on the same addresses. The Mac is still enrolled under
// the same id, its agent reconnects by itself, and the CLI shows the
// enroll secret and the sign-in.
func TestBackupRestore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	grpcAddr, httpAddr, ssoAddr, presenceAddr := freePort(t), freePort(t), freePort(t), freePort(t)
	_, presencePort, _ := net.SplitHostPort(presenceAddr)
	start := func(dataDir string) *verifier {
		v := &verifier{t: t, dataDir: dataDir, grpcAddr: grpcAddr, httpAddr: httpAddr, logs: &syncBuffer{}, exited: make(chan error, 1)}
		v.cmd = exec.Command(filepath.Join(binDir, "clearance-verifier"), "serve", "--data-dir", dataDir, "--policies", policiesFile(t),
			"--grpc-listen", grpcAddr, "--http-listen", httpAddr, "--public-url", "https://localhost:8443",
			"--sso-listen", ssoAddr, "--sso-public-url", e2eSSOPublic,
			"--okta-audience", e2eAudience, "--okta-acs-url", e2eACS, "--allow-unsigned-requests",
			"--agent-presence-port", presencePort)
		return v.run()
	}
	v := start(dataDir)
	secret := v.enrollSecret()
	secretID := strings.SplitN(secret, ".", 2)[0]
	_, sock, _ := startStandIn(t, dir, compliantMac)
	startProcEnv(t, "clearance-agent", []string{"CLEARANCE_TEST_MAX_BACKOFF=" + pollBackoff.String()},
		agentRun(dir, grpcAddr, filepath.Join(dataDir, "ca.pem"), secret, sock, "--interval", "1s", "--presence-listen", presenceAddr)...)
	deviceID := waitCompliant(t, v).GetDevice().GetDeviceId()
	sp, _ := oktaOrg(t, dataDir, nil, nil)
	if !signIn(t, v, sp, ssoAddr) {
		t.Fatal("the compliant Mac's sign-in did not reach Okta")
	}

	// 1. Back up while the verifier runs.
	archive := filepath.Join(dir, "backups", "clearance.tar.gz")
	if err := os.Mkdir(filepath.Dir(archive), 0o700); err != nil {
		t.Fatal(err)
	}
	out := cli(t, "backup", "--data-dir", dataDir, "--to", archive)
	if !strings.Contains(out, "1 devices, 1 decisions") || !strings.Contains(out, "wrote "+archive) {
		t.Errorf("backup printed:\n%s", out)
	}
	st, err := os.Stat(archive)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("archive: %v %v, want mode 0600", st, err)
	}

	// 2. Stop; restore into a new dir.
	v.stop()
	restored := filepath.Join(dir, "restored")
	out = cli(t, "restore", "--from", archive, "--data-dir", restored)
	if !strings.Contains(out, "integrity_check and schema ok: 1 devices, 1 decisions") {
		t.Errorf("restore printed:\n%s", out)
	}
	if msg := cliFails(t, "restore", "--from", archive, "--data-dir", restored); !strings.Contains(msg, "is not empty") {
		t.Errorf("a second restore into the same dir: %s", msg)
	}

	// 3. Start there: the same device, its agent back on its own.
	v = start(restored)
	got := waitDevice(t, v, "the agent reconnecting to the restored verifier", within, func(g *adminv1.GetDeviceResponse) bool {
		return g.GetDevice().GetConnected()
	})
	if got.GetDevice().GetDeviceId() != deviceID {
		t.Errorf("restored device %s, want %s", got.GetDevice().GetDeviceId(), deviceID)
	}
	if out := cli(t, "secret", "list", "--data-dir", restored); !strings.Contains(out, secretID) {
		t.Errorf("secret list after restore lacks %s:\n%s", secretID, out)
	}
	if out := cli(t, "decisions", "--data-dir", restored, "--wide"); !strings.Contains(out, e2eUser) || !strings.Contains(out, deviceID) {
		t.Errorf("decisions after restore lack the sign-in:\n%s", out)
	}
	if !signIn(t, v, sp, ssoAddr) {
		t.Error("the Mac cannot sign in through the restored verifier")
	}
}
