package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gxar "github.com/blacktop/go-macho/pkg/xar"
	kittestpki "github.com/clearance/clearance/internal/testkit/testpki"
	"github.com/clearance/clearance/packaging/agentpkg"
	"github.com/clearance/clearance/packaging/internal/agentbuild"
	"github.com/clearance/clearance/packaging/internal/testpki"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func fixedNow() time.Time { return time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC) }

func TestSameEpochSameBytes(t *testing.T) {
	dir := t.TempDir()
	// The commit make pkg gives is linked in, as make build links it.
	const commit = "c0ffee0123456789c0ffee0123456789c0ffee01"
	arm, err := agentbuild.Build("arm64", "1.2.3", commit, dir)
	if err != nil {
		t.Fatal(err)
	}
	if bin, err := os.ReadFile(arm); err != nil || !bytes.Contains(bin, []byte(commit)) {
		t.Errorf("the agent does not hold its commit (%v)", err)
	}
	amd, err := agentbuild.Build("amd64", "1.2.3", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	build := func(out string, e map[string]string, now func() time.Time) []byte {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args := []string{"-version", "1.2.3", "-arm64", arm, "-amd64", amd, "-o", out,
			"-uninstall-script", filepath.Join(dir, "uninstall"), "-mdm-scripts", filepath.Join(dir, "mdm")}
		if err := run(args, env(e), &stdout, &stderr, now); err != nil {
			t.Fatalf("run: %v\n%s", err, stderr.String())
		}
		// Each file written, a line each, the package first.
		want := out + "\n" + filepath.Join(dir, "uninstall") + "\n" +
			filepath.Join(dir, "mdm", "clearance-agent-intune-custom-attribute.sh") + "\n" +
			filepath.Join(dir, "mdm", "clearance-agent-jamf-extension-attribute.sh") + "\n" +
			filepath.Join(dir, "mdm", "clearance-agent-kandji-audit.sh") + "\n"
		if stdout.String() != want {
			t.Errorf("stdout %q, want every file written:\n%s", stdout.String(), want)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	epoch := map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}
	// Different wall clocks: with SOURCE_DATE_EPOCH set, the clock must not matter.
	a := build(filepath.Join(dir, "a.pkg"), epoch, fixedNow)
	b := build(filepath.Join(dir, "b", "b.pkg"), epoch, time.Now)
	if !bytes.Equal(a, b) {
		t.Fatal("two builds with the same SOURCE_DATE_EPOCH differ")
	}
	if c := build(filepath.Join(dir, "c.pkg"), nil, fixedNow); bytes.Equal(a, c) {
		t.Error("a build without SOURCE_DATE_EPOCH matched one with it")
	}
	if out, err := exec.Command("sh", "-n", filepath.Join(dir, "uninstall")).CombinedOutput(); err != nil {
		t.Errorf("uninstall script: %v\n%s", err, out)
	}
	// The scripts for the MDM, beside the package, as agentpkg holds them,
	// and nothing else there.
	mdm := []string{"clearance-agent-intune-custom-attribute.sh", "clearance-agent-jamf-extension-attribute.sh", "clearance-agent-kandji-audit.sh"}
	if entries, err := os.ReadDir(filepath.Join(dir, "mdm")); err != nil {
		t.Error(err)
	} else {
		var got []string
		for _, e := range entries {
			got = append(got, e.Name())
		}
		if strings.Join(got, " ") != strings.Join(mdm, " ") {
			t.Errorf("-mdm-scripts wrote %q, want %q", got, mdm)
		}
	}
	for _, name := range mdm {
		p := filepath.Join(dir, "mdm", name)
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v, want a 0755 file (%v)", name, fi, err)
			continue
		}
		b, _ := os.ReadFile(p)
		want, _ := agentpkg.Scripts.ReadFile(agentpkg.MDMScripts[name])
		if !bytes.Equal(b, want) {
			t.Errorf("%s is not the script agentpkg holds", name)
		}
		if out, err := exec.Command("sh", "-n", p).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
}

func TestSignedPackage(t *testing.T) {
	dir := t.TempDir()
	arm, err := agentbuild.Build("arm64", "1.2.3", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	amd, err := agentbuild.Build("amd64", "1.2.3", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	id := testpki.New(t)
	certFile, keyFile := filepath.Join(dir, "chain.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, id.CertsPEM(), 0o600)
	os.WriteFile(keyFile, id.KeyPEM(t), 0o600)
	out := filepath.Join(dir, "signed.pkg")
	var stdout, stderr bytes.Buffer
	args := []string{"-version", "1.2.3", "-arm64", arm, "-amd64", amd, "-o", out, "-sign-cert", certFile, "-sign-key", keyFile}
	if err := run(args, env(map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}), &stdout, &stderr, fixedNow); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stderr.String(), "warning") {
		t.Errorf("a Developer ID Installer certificate is warned about: %q", stderr.String())
	}
	r, err := gxar.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.HasSignature() || r.SignatureError != nil {
		t.Fatalf("signed %v, signature error %v", r.HasSignature(), r.SignatureError)
	}
	if len(r.Certificates) != 2 || !r.Certificates[0].Equal(id.Chain[0]) || !r.Certificates[1].Equal(id.Chain[1]) {
		t.Error("the TOC does not carry the signing chain")
	}
	for _, f := range r.Files {
		if !f.VerifyChecksum() {
			t.Errorf("%s: checksum fails", f.Name)
		}
	}

	// A certificate that is not a Developer ID Installer one signs, with a
	// warning that Installer will not trust it.
	root := kittestpki.NewCA(t, kittestpki.CN("Example Corp Root"), kittestpki.RSA())
	plain := root.Issue(t, kittestpki.CN("Example Corp Packages"), kittestpki.Key(kittestpki.RSAKey(t)))
	os.WriteFile(certFile, kittestpki.PEM(plain.Cert, root.Cert), 0o600)
	os.WriteFile(keyFile, plain.KeyPEM(t), 0o600)
	stderr.Reset()
	if err := run(args, env(map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}), &stdout, &stderr, fixedNow); err != nil {
		t.Fatalf("run with another certificate: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), `warning: the signing certificate ("Example Corp Packages") is not a "Developer ID Installer" certificate`) {
		t.Errorf("no warning about a certificate Installer will not trust: %q", stderr.String())
	}
	os.WriteFile(certFile, id.CertsPEM(), 0o600)

	// A key that is not the certificate's is refused before building.
	other := testpki.New(t)
	os.WriteFile(keyFile, other.KeyPEM(t), 0o600)
	if err := run(args, env(nil), &stdout, &stderr, fixedNow); err == nil || !strings.Contains(err.Error(), "key") {
		t.Errorf("mismatched key: %v", err)
	}
}

// TestVersions: the versions a release or make pkg gives pass -version's
// check (the build then stops at the agents, which do not exist).
func TestVersions(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"1", "1.2.3", "v1.2.3", "1.2.3-rc.1", "0.0.0-dev", "1.2.3+build.5", "1.2.3_beta", strings.Repeat("1", 64)} {
		var stdout, stderr bytes.Buffer
		err := run([]string{"-version", v, "-arm64", "/nonexistent", "-amd64", "y"}, env(map[string]string{"SOURCE_DATE_EPOCH": "0"}), &stdout, &stderr, fixedNow)
		if err == nil || !strings.Contains(err.Error(), "nonexistent") {
			t.Errorf("-version %s: %v, want it taken", v, err)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"no version":                {nil, nil, "-version is required"},
		"one binary":                {[]string{"-version", "1", "-arm64", "x"}, nil, "go together"},
		"bad epoch":                 {[]string{"-version", "1", "-arm64", "x", "-amd64", "y"}, map[string]string{"SOURCE_DATE_EPOCH": "yesterday"}, "SOURCE_DATE_EPOCH"},
		"half signing":              {[]string{"-version", "1", "-sign-cert", "c.pem"}, nil, "go together"},
		"commit of prebuilt agents": {[]string{"-version", "1", "-arm64", "a", "-amd64", "b", "-commit", "abc1234"}, nil, "carry their own"},
		"commit with linker flags":  {[]string{"-version", "1", "-commit", "abc1234 -X main.x=y"}, nil, "is not a revision"},
		"commit not hex":            {[]string{"-version", "1", "-commit", "HEAD"}, nil, "is not a revision"},
		"missing file":              {[]string{"-version", "1", "-arm64", "/nonexistent", "-amd64", "y"}, map[string]string{"SOURCE_DATE_EPOCH": "0"}, "nonexistent"},
		// Agents that do not exist: a version let through stops there,
		// before anything is built or written.
		"version with linker flags": {[]string{"-version", "1.0.0 -badflag", "-arm64", "/nonexistent", "-amd64", "y"}, nil, "is not a version"},
		"version a flag":            {[]string{"-version", "-X", "-arm64", "/nonexistent", "-amd64", "y"}, nil, "is not a version"},
		"version a path":            {[]string{"-version", "../1.2.3", "-arm64", "/nonexistent", "-amd64", "y"}, nil, "is not a version"},
		"version too long":          {[]string{"-version", strings.Repeat("1", 65), "-arm64", "/nonexistent", "-amd64", "y"}, nil, "is not a version"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(tc.args, env(tc.env), &stdout, &stderr, fixedNow)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to mention %q", name, err, tc.want)
		}
	}
}
