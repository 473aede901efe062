package browser

import (
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/clearance/clearance/internal/testkit"
)

// trust makes Chromium trust the PEM CA certificates for HTTPS: Debian's
// Chromium takes extra trust anchors from the user's NSS database,
// $HOME/.pki/nssdb, so each certificate goes there as a CA trusted to issue
// server certificates ("C,,"). This is real trust, checked as any other:
// a certificate for the wrong name, expired or from another CA still fails.
func trust(t testing.TB, home string, pemCerts []byte) error {
	t.Helper()
	certutil := testkit.Tool(t, "certutil")
	db := filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(db, 0o700); err != nil {
		return err
	}
	run := func(args ...string) error {
		out, err := exec.Command(certutil, append([]string{"-d", "sql:" + db}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("certutil %v: %v: %s", args, err, out)
		}
		return nil
	}
	if err := run("-N", "--empty-password"); err != nil {
		return err
	}
	n := 0
	for rest := pemCerts; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		n++
		file := filepath.Join(home, fmt.Sprintf("ca-%d.pem", n))
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			return err
		}
		if err := run("-A", "-n", fmt.Sprintf("clearance test CA %d", n), "-t", "C,,", "-i", file); err != nil {
			return err
		}
	}
	if n == 0 {
		return fmt.Errorf("browser: Options.Trust holds no PEM certificate")
	}
	return nil
}
