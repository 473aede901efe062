package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clearance/clearance/verifier/admin"
)

// TestCommandsRefuseADataDirOthersControl: a data dir someone else can
// write could point the admin token (and the database password) at their
// server, or link admin.token to the admin's own token elsewhere. The
// commands refuse before they send anything.
func TestCommandsRefuseADataDirOthersControl(t *testing.T) {
	t.Parallel()
	// A listener that is never there: reaching the dial is the failure.
	const nowhere = "127.0.0.1:1"

	writable := newDataDir(t)
	if err := os.Chmod(writable, 0o777); err != nil {
		t.Fatal(err)
	}
	linked := newDataDir(t)
	elsewhere := filepath.Join(t.TempDir(), "real-admin.token")
	if err := os.Rename(filepath.Join(linked, admin.TokenFile), elsewhere); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(linked, admin.TokenFile)); err != nil {
		t.Fatal(err)
	}
	loose := newDataDir(t)
	if err := os.Chmod(filepath.Join(loose, admin.TokenFile), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"devices, writable dir", []string{"devices", "--data-dir", writable, "--verifier", nowhere}, "is writable by group or others (mode 0777)"},
		{"decisions, writable dir", []string{"decisions", "--data-dir", writable, "--verifier", nowhere}, "chmod go-w"},
		{"secret create, writable dir", []string{"secret", "create", "--data-dir", writable}, "is writable by group or others"},
		{"scep challenge, writable dir", []string{"scep", "challenge", "--data-dir", writable}, "is writable by group or others"},
		{"devices, linked token", []string{"devices", "--data-dir", linked, "--verifier", nowhere}, "admin.token is a symbolic link"},
		{"devices, token others can read", []string{"devices", "--data-dir", loose, "--verifier", nowhere}, "chmod 600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := execute(noEnv, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %v, want one line with %q", err, tc.want)
			}
		})
	}
}
