package config

import (
	"crypto/sha256"
	"encoding/hex"
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
