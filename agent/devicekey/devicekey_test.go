package devicekey

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"os"
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
