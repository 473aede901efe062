package config

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clearance/clearance/agent/internal/fakeverifier"
)

func TestCAPool(t *testing.T) {
	t.Parallel()
	pki := fakeverifier.NewPKI(t)
	sum := sha256.Sum256(pki.Root.Raw)
	good := hex.EncodeToString(sum[:])
	file := pki.WriteRoot(t, t.TempDir())
	tests := []struct {
		name    string
		c       Config
		wantErr string
	}{
		{name: "file", c: Config{CAFile: file}},
		{name: "inline", c: Config{CAPEM: string(pki.RootPEM())}},
		{name: "pinned", c: Config{CAPEM: string(pki.RootPEM()), CAFingerprint: good}},
		{name: "pin mismatch", c: Config{CAFile: file, CAFingerprint: strings.Repeat("0", 64)}, wantErr: "no configured CA certificate has this fingerprint"},
		{name: "missing file", c: Config{CAFile: file + ".absent"}, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, certs, err := tt.c.CAPool()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr == "" && (len(certs) != 1 || !certs[0].Equal(pki.Root)):
				t.Errorf("certs = %d, want the root", len(certs))
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// A fingerprint pins: with a bundle of roots, only the pinned one is
// trusted, so a verifier certificate from another root in the bundle (or
// from CA material another source added) is refused.
func TestFingerprintPinsOnlyThatRoot(t *testing.T) {
	t.Parallel()
	pinned, other := fakeverifier.NewPKI(t), fakeverifier.NewPKI(t)
	sum := sha256.Sum256(pinned.Root.Raw)
	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(bundle, append(pinned.RootPEM(), other.RootPEM()...), 0o644); err != nil {
		t.Fatal(err)
	}
	verifies := func(pool *x509.CertPool, p *fakeverifier.PKI) bool {
		leaf, err := x509.ParseCertificate(p.Server.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		inter := x509.NewCertPool()
		inter.AddCert(p.DeviceCA)
		_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: "localhost"})
		return err == nil
	}
	for _, tc := range []struct {
		name      string
		c         Config
		wantOther bool
	}{
		{"bundle, pinned", Config{CAFile: bundle, CAFingerprint: hex.EncodeToString(sum[:])}, false},
		{"two sources, pinned", Config{CAFile: other.WriteRoot(t, t.TempDir()), CAPEM: string(pinned.RootPEM()), CAFingerprint: hex.EncodeToString(sum[:])}, false},
		{"the same root from both sources", Config{CAFile: pinned.WriteRoot(t, t.TempDir()), CAPEM: string(pinned.RootPEM()), CAFingerprint: hex.EncodeToString(sum[:])}, false},
		{"bundle, no pin: every root", Config{CAFile: bundle}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool, certs, err := tc.c.CAPool()
			if err != nil {
				t.Fatal(err)
			}
			if !verifies(pool, pinned) {
				t.Error("the pinned root's verifier certificate is not trusted")
			}
			if got := verifies(pool, other); got != tc.wantOther {
				t.Errorf("another root's verifier certificate trusted: %v, want %v", got, tc.wantOther)
			}
			if tc.c.CAFingerprint != "" && (len(certs) != 1 || !certs[0].Equal(pinned.Root)) {
				t.Errorf("certs = %d, want only the pinned root", len(certs))
			}
		})
	}
}
