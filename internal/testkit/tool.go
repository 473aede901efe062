package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// install says how to get each program tests look for; Go tools are pinned
// by the Makefile, system packages come from scripts/deps.sh.
var install = map[string]string{
	"grpcurl":    "run 'make tools' (make test does)",
	"scepclient": "run 'make tools' (make test does)",
	"bsdtar":     "scripts/deps.sh installs the Debian package libarchive-tools",
	"certutil":   "scripts/deps.sh installs the Debian package libnss3-tools",
	"chroot":     "install the Debian package coreutils",
	"cksum":      "install the Debian package coreutils",
	"cpio":       "scripts/deps.sh installs the Debian package cpio",
	"mount":      "install the Debian package mount",
	"openssl":    "scripts/deps.sh installs the Debian package openssl",
	"python3":    "scripts/deps.sh installs the Debian package python3",
	"unshare":    "install the Debian package util-linux",
	"xmlsec1":    "scripts/deps.sh installs the Debian package xmlsec1",
}

// CI reports whether the tests run in CI, where every test must run: there,
// a missing prerequisite is a failure, not a skip.
func CI() bool { return os.Getenv("CI") != "" }

// Tool returns the path of the external program name a test runs: the copy
// pinned in the module's bin/ (where `make tools` installs Go tools), else
// the one on PATH. Missing, it skips the test, or fails it in CI.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := lookTool(name)
	if err != nil {
		Missing(t, "%s", err)
	}
	return p
}

// RequireTool is Tool for a program whose absence fails the test wherever
// it runs: the independent readers that are the proof other tools read
// what we write.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := lookTool(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Missing reports a missing prerequisite, described by format and args: a
// skip, or a failure in CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("%s (CI is set: the test must run)", msg)
		return
	}
	t.Skipf("%s (with CI set this fails)", msg)
}

func lookTool(name string) (string, error) {
	if root, err := ModuleRoot(); err == nil {
		p := filepath.Join(root, "bin", name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	how := install[name]
	if how == "" {
		how = "install it"
	}
	return "", fmt.Errorf("%s not found in bin/ or on PATH: %s", name, how)
}

// ModuleRoot is the nearest directory above the working directory (a test
// runs in its package's) that holds go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
