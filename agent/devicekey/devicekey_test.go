package devicekey

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clearance/clearance/agent/state"
	"github.com/clearance/clearance/pkg/atomicfile"
	"github.com/clearance/clearance/pkg/report"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestKeyFileCreatedAndReloaded(t *testing.T) {
	t.Parallel()
	dir, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	k, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if k.Storage != KeyFile || !strings.HasPrefix(k.URI, "softkms:") {
		t.Errorf("key = %s %s, want a softkms key file", k.Storage, k.URI)
	}
	fi, err := os.Stat(dir.File(state.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %04o, want 0600", fi.Mode().Perm())
	}
	pub, ok := k.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("public key = %T, want ECDSA P-256", k.Public())
	}

	// The same key comes back, and it signs reports the verifier accepts.
	again, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Public().(*ecdsa.PublicKey).Equal(pub) {
		t.Error("reopening created a different key")
	}
	sr, err := report.Sign(again, &agentv1.PostureReport{DeviceId: "d1", Seq: 1, ObservedAt: timestamppb.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := report.Verify(pub, sr); err != nil {
		t.Errorf("report signed with the reloaded key does not verify: %v", err)
	}
}

func TestLooseKeyFileRefused(t *testing.T) {
	t.Parallel()
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		dir, err := state.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Open(context.Background(), dir, Options{}); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir.File(state.KeyFile), mode); err != nil {
			t.Fatal(err)
		}
		_, err = Open(context.Background(), dir, Options{})
		if err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: err = %v, want a refusal naming chmod 600", mode, err)
		}
	}
}

func TestSecureEnclaveFallback(t *testing.T) {
	t.Parallel()
	if SecureEnclaveSupport() == nil {
		t.Skip("this build has Secure Enclave support")
	}
	dir, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	k, err := Open(context.Background(), dir, Options{PreferSecureEnclave: true})
	if err != nil {
		t.Fatal(err)
	}
	if k.Storage != KeyFile || !strings.Contains(k.Fallback, "not supported") {
		t.Errorf("storage %s, fallback %q; want a key file and the reason", k.Storage, k.Fallback)
	}
	// A Secure Enclave key recorded by another build cannot be used here,
	// and the error says why.
	if err := atomicfile.Write(dir.File(state.KeyURIFile), []byte("mackms:label=com.clearance.agent.device;se=true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "Secure Enclave") {
		t.Errorf("err = %v, want it to explain the Secure Enclave is unavailable", err)
	}
}

// newKeyDir returns a state dir holding a device key file.
func newKeyDir(t *testing.T) (*state.Dir, *Key) {
	t.Helper()
	dir, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	k, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return dir, k
}

// The record of which key to use, and the key file it names, must be the
// agent's own and out of others' reach; whoever could write them could have
// the agent sign with a key they know.
func TestKeyRecordAndFileMustBeTheAgents(t *testing.T) {
	t.Parallel()
	t.Run("record writable by others", func(t *testing.T) {
		t.Parallel()
		dir, _ := newKeyDir(t)
		if err := os.Chmod(dir.File(state.KeyURIFile), 0o666); err != nil {
			t.Fatal(err)
		}
		_, err := Open(context.Background(), dir, Options{})
		want := "device key record " + dir.File(state.KeyURIFile) + " is writable by group or others (mode 0666)"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	})
	t.Run("key file in a directory others can write", func(t *testing.T) {
		t.Parallel()
		dir, k := newKeyDir(t)
		open := filepath.Join(t.TempDir(), "open")
		if err := os.Mkdir(open, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(open, 0o777); err != nil {
			t.Fatal(err)
		}
		moved := filepath.Join(open, "device.key")
		if err := os.Rename(strings.TrimPrefix(k.URI, "softkms:path="), moved); err != nil {
			t.Fatal(err)
		}
		if err := atomicfile.Write(dir.File(state.KeyURIFile), []byte("softkms:path="+moved+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(context.Background(), dir, Options{})
		want := "directory of the device key file " + open + " is writable by group or others (mode 0777)"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	})
}

// What the security test did as root: a key file and a record owned by an
// unprivileged user (uid 65534), who can read that "device key".
func TestKeyOwnedByAnotherUserRefused(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("giving files to another user needs root, which the agent runs as")
	}
	t.Run("key file", func(t *testing.T) {
		t.Parallel()
		dir, k := newKeyDir(t)
		path := strings.TrimPrefix(k.URI, "softkms:path=")
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, err := Open(context.Background(), dir, Options{})
		want := "device key file " + path + " is owned by uid 65534, not by root"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	})
	t.Run("record", func(t *testing.T) {
		t.Parallel()
		dir, _ := newKeyDir(t)
		if err := os.Chown(dir.File(state.KeyURIFile), 65534, 65534); err != nil {
			t.Fatal(err)
		}
		for name, open := range map[string]func() error{
			"Open":         func() error { _, err := Open(context.Background(), dir, Options{}); return err },
			"LoadRecorded": func() error { _, err := LoadRecorded(context.Background(), dir); return err },
		} {
			want := "device key record " + dir.File(state.KeyURIFile) + " is owned by uid 65534"
			if err := open(); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: err = %v, want %q", name, err, want)
			}
		}
	})
	t.Run("previous record names a file to delete", func(t *testing.T) {
		t.Parallel()
		dir, _ := newKeyDir(t)
		victim := filepath.Join(t.TempDir(), "precious")
		if err := os.WriteFile(victim, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		rec := dir.File(state.PreviousKeyURIFile)
		if err := os.WriteFile(rec, []byte("softkms:path="+victim+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(rec, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if err := ForgetPrevious(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "is owned by uid 65534") {
			t.Errorf("ForgetPrevious = %v, want a refusal", err)
		}
		if _, err := os.Stat(victim); err != nil {
			t.Errorf("the file the record named is gone: %v", err)
		}
	})
}
