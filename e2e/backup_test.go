package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/datadir"
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

// TestRestoreInterrupted: SIGTERM, or the SIGHUP of a dropped SSH
// session, stops a restore of a large archive midway; it removes what it
// extracted and leaves no data dir, so a second restore can start afresh.
func TestRestoreInterrupted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	archive := filepath.Join(dir, "large.tar.gz")
	writeLargeArchive(t, archive, 128<<20)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			parent := t.TempDir()
			target := filepath.Join(parent, "restored")
			var stderr bytes.Buffer
			cmd := exec.Command(filepath.Join(binDir, "clearance-verifier"), "restore", "--from", archive, "--data-dir", target)
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// The database comes first in the archive: once it is being
			// written, the restore is midway.
			deadline := time.Now().Add(30 * time.Second)
			for {
				db, _ := filepath.Glob(filepath.Join(parent, ".clearance-restore-*", "clearance.db"))
				if len(db) > 0 {
					break
				}
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					t.Fatal("the restore never began writing the database")
				}
				time.Sleep(time.Millisecond)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err == nil {
				t.Fatal("the interrupted restore succeeded")
			}
			if !strings.Contains(stderr.String(), "restore interrupted: nothing was restored into "+target) {
				t.Errorf("stderr: %s", stderr.String())
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("the interrupted restore left %v", ents)
			}
		})
	}
}

// writeLargeArchive writes a gzipped archive whose database, first, is
// size bytes of zeros, followed by the files a restore requires.
func writeLargeArchive(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "clearance.db", Mode: 0o600, Size: size}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(tw, zeros{}, size); err != nil {
		t.Fatal(err)
	}
	for _, name := range datadir.Required {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
