package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/clearance/clearance/agent/service"
	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/internal/testkit/testpg"
	"github.com/clearance/clearance/internal/testkit/testpki"
	"github.com/clearance/clearance/verifier/ca"
)

// Obviously fake; at least 16 characters, as the scep-challenge setting wants.
const profileTestChallenge = "test-scep-challenge-not-a-secret"

// profileDataDir is a data dir as serve's first start leaves it: the real
// root and device CA, created by the ca package.
func profileDataDir(t *testing.T) (dir string, auth *ca.Authority) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "data")
	auth, err := ca.LoadOrCreate(dir, ca.Options{Hosts: []string{"verifier.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	return dir, auth
}

// runProfile runs `clearance-verifier profile ARGS…` with getenv as the
// environment and returns stdout and stderr.
func runProfile(t *testing.T, getenv func(string) string, args ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	out, errOut, err := execute(getenv, append([]string{"profile"}, args...)...)
	return []byte(out), []byte(errOut), err
}

// pyPlist parses a profile with Python's plistlib, a reader that shares no
// code with ours, and returns it as JSON values; <data> becomes
// {"$data": base64}, so a value's plist type stays visible.
const pyPlist = `
import base64, json, plistlib, sys
def conv(v):
    if isinstance(v, bytes):
        return {"$data": base64.b64encode(v).decode()}
    if isinstance(v, bool):
        return {"$bool": v}
    if isinstance(v, int):
        return {"$int": v}
    if isinstance(v, dict):
        return {k: conv(x) for k, x in v.items()}
    if isinstance(v, list):
        return [conv(x) for x in v]
    return v
with open(sys.argv[1], "rb") as f:
    doc = plistlib.load(f, fmt=plistlib.FMT_XML)
json.dump(conv(doc), sys.stdout)
`

func readPlistIndependently(t *testing.T, path string) map[string]any {
	t.Helper()
	py := testkit.Tool(t, "python3")
	out, err := exec.Command(py, "-c", pyPlist, path).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("plistlib cannot read %s: %v\n%s", path, err, stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func dict(t *testing.T, where string, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s is %T, want a dictionary", where, v)
	}
	return m
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func exactKeys(t *testing.T, where string, m map[string]any, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := sortedKeys(m); !slices.Equal(got, want) {
		t.Errorf("%s keys = %v, want exactly %v", where, got, want)
	}
}

func wantValue(t *testing.T, where string, got, want any) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("%s = %s, want %s", where, g, w)
	}
}

func plistInt(n int) map[string]any   { return map[string]any{"$int": n} }
func plistBool(b bool) map[string]any { return map[string]any{"$bool": b} }

func TestProfileUserScope(t *testing.T) {
	t.Parallel()
	dir, auth := profileDataDir(t)
	out := filepath.Join(t.TempDir(), "user-scope.mobileconfig")
	env := envOf(map[string]string{"CLEARANCE_SCEP_CHALLENGE": profileTestChallenge})
	args := []string{"user-scope", "--data-dir", dir, "--organization", "Example Corp",
		"--sso-public-url", "https://sso.example.com:8444", "--out", out}
	stdout, stderr, err := runProfile(t, env, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if len(stdout) != 0 {
		t.Errorf("stdout is not empty with --out: %q", stdout)
	}
	if !strings.Contains(string(stderr), "wrote "+out) || !strings.Contains(string(stderr), "user-scope") {
		t.Errorf("stderr does not say what was written and how to deliver it: %q", stderr)
	}
	if strings.Contains(string(stderr), profileTestChallenge) {
		t.Error("stderr shows the SCEP challenge")
	}

	// The file holds the challenge: owner-only.
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("profile mode = %v, want 0600", fi.Mode().Perm())
	}

	// Read by plistlib, not by our plist package.
	doc := readPlistIndependently(t, out)
	exactKeys(t, "profile", doc, "PayloadContent", "PayloadDescription", "PayloadDisplayName",
		"PayloadIdentifier", "PayloadOrganization", "PayloadScope", "PayloadType", "PayloadUUID", "PayloadVersion")
	wantValue(t, "PayloadType", doc["PayloadType"], "Configuration")
	wantValue(t, "PayloadScope", doc["PayloadScope"], "User")
	wantValue(t, "PayloadOrganization", doc["PayloadOrganization"], "Example Corp")

	content, ok := doc["PayloadContent"].([]any)
	if !ok {
		t.Fatalf("PayloadContent is %T, want an array", doc["PayloadContent"])
	}
	byType := map[string]map[string]any{}
	var types []string
	for i, c := range content {
		p := dict(t, "payload", c)
		typ, _ := p["PayloadType"].(string)
		if _, dup := byType[typ]; dup {
			t.Errorf("payload type %s appears twice", typ)
		}
		byType[typ] = p
		types = append(types, typ)
		if u, _ := p["PayloadUUID"].(string); u == "" {
			t.Errorf("payload %d (%s) has no PayloadUUID", i, typ)
		}
	}
	wantValue(t, "payload types", types, []string{"com.apple.security.root", "com.apple.security.scep",
		"com.apple.security.identitypreference", "com.google.Chrome"})
	common := []string{"PayloadDisplayName", "PayloadIdentifier", "PayloadType", "PayloadUUID", "PayloadVersion"}

	// The root: ca.pem's certificate, as <data>.
	root := byType["com.apple.security.root"]
	exactKeys(t, "root", root, append(common, "PayloadContent", "PayloadCertificateFileName")...)
	wantValue(t, "root PayloadContent", root["PayloadContent"],
		map[string]any{"$data": base64.StdEncoding.EncodeToString(auth.Root().Raw)})

	// SCEP: every key, every value, each of the plist type macOS expects.
	scep := byType["com.apple.security.scep"]
	exactKeys(t, "scep", scep, append(common, "PayloadContent")...)
	sc := dict(t, "scep PayloadContent", scep["PayloadContent"])
	exactKeys(t, "scep PayloadContent", sc, "URL", "Name", "Challenge", "Subject", "SubjectAltName",
		"Keysize", "Key Type", "Key Usage", "KeyIsExtractable", "AllowAllAppsAccess", "Retries", "RetryDelay")
	wantValue(t, "URL", sc["URL"], "https://sso.example.com:8444/scep")
	wantValue(t, "Challenge", sc["Challenge"], profileTestChallenge)
	wantValue(t, "Subject", sc["Subject"], [][][]string{{{"CN", "Clearance device"}}})
	wantValue(t, "SubjectAltName", sc["SubjectAltName"],
		map[string]any{"uniformResourceIdentifier": "urn:device:apple:uuid:%HardwareUUID%"})
	wantValue(t, "Keysize", sc["Keysize"], plistInt(2048))
	wantValue(t, "Key Type", sc["Key Type"], "RSA")
	wantValue(t, "Key Usage", sc["Key Usage"], plistInt(5))
	wantValue(t, "KeyIsExtractable", sc["KeyIsExtractable"], plistBool(false))
	wantValue(t, "AllowAllAppsAccess", sc["AllowAllAppsAccess"], plistBool(true))
	wantValue(t, "Retries", sc["Retries"], plistInt(3))
	wantValue(t, "RetryDelay", sc["RetryDelay"], plistInt(10))

	// The identity preference names the SSO URL and points at the SCEP identity.
	pref := byType["com.apple.security.identitypreference"]
	exactKeys(t, "identitypreference", pref, append(common, "Name", "PayloadCertificateUUID")...)
	wantValue(t, "identity preference Name", pref["Name"], "https://sso.example.com:8444/saml/sso")
	wantValue(t, "PayloadCertificateUUID", pref["PayloadCertificateUUID"], scep["PayloadUUID"])

	// Chrome selects by the device CA's CN, the issuer of browser certificates.
	chrome := byType["com.google.Chrome"]
	exactKeys(t, "chrome", chrome, append(common, "AutoSelectCertificateForUrls")...)
	rules, _ := chrome["AutoSelectCertificateForUrls"].([]any)
	if len(rules) != 1 {
		t.Fatalf("AutoSelectCertificateForUrls = %v, want one rule", chrome["AutoSelectCertificateForUrls"])
	}
	var rule any
	if err := json.Unmarshal([]byte(rules[0].(string)), &rule); err != nil {
		t.Fatalf("Chrome rule is not JSON: %v", err)
	}
	wantValue(t, "Chrome rule", rule, map[string]any{
		"pattern": "https://sso.example.com:8444",
		"filter":  map[string]any{"ISSUER": map[string]any{"CN": auth.DeviceCA().Subject.CommonName}},
	})

	// The same inputs give the same bytes.
	first, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	again := filepath.Join(t.TempDir(), "again.mobileconfig")
	args[len(args)-1] = again
	if _, stderr, err := runProfile(t, env, args...); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	second, err := os.ReadFile(again)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Error("two runs with the same inputs wrote different files")
	}
	if n := bytes.Count(first, []byte(profileTestChallenge)); n != 1 {
		t.Errorf("challenge appears %d times in the file, want 1", n)
	}
}

func TestProfileUserScopeSources(t *testing.T) {
	t.Parallel()
	dir, _ := profileDataDir(t)
	challengeOf := func(t *testing.T, doc []byte) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "p.mobileconfig")
		if err := os.WriteFile(p, doc, 0o600); err != nil {
			t.Fatal(err)
		}
		d := readPlistIndependently(t, p)
		scep := dict(t, "scep", d["PayloadContent"].([]any)[1])
		sc := dict(t, "scep content", scep["PayloadContent"])
		return sc["URL"].(string) + " " + sc["Challenge"].(string)
	}
	configFile := filepath.Join(t.TempDir(), "clearance.yaml")
	if err := os.WriteFile(configFile, []byte("data_dir: "+dir+"\nsso_public_url: https://from-file.example.com\nscep_challenge: file-challenge-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"flag challenge wins over the setting",
			map[string]string{"CLEARANCE_SCEP_CHALLENGE": profileTestChallenge},
			[]string{"--data-dir", dir, "--challenge", "one-time-challenge", "--out", "-"},
			"https://localhost:8444/scep one-time-challenge"},
		{"config file", nil,
			[]string{"--config", configFile},
			"https://from-file.example.com/scep file-challenge-0123456789"},
		{"env over config file",
			map[string]string{"CLEARANCE_CONFIG": configFile, "CLEARANCE_SSO_PUBLIC_URL": "https://from-env.example.com:9443"},
			nil,
			"https://from-env.example.com:9443/scep file-challenge-0123456789"},
		{"scep-challenge flag", nil,
			[]string{"--data-dir", dir, "--public-url", "https://v.example.com", "--scep-challenge", profileTestChallenge},
			"https://v.example.com:8444/scep " + profileTestChallenge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"user-scope", "--organization", "Example Corp"}, tc.args...)
			stdout, stderr, err := runProfile(t, envOf(tc.env), args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			if len(stderr) != 0 {
				t.Errorf("stderr = %q, want nothing when writing to stdout", stderr)
			}
			if got := challengeOf(t, stdout); got != tc.want {
				t.Errorf("SCEP URL and challenge = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestProfileUserScopeRefuses(t *testing.T) {
	t.Parallel()
	dir, _ := profileDataDir(t)
	empty := t.TempDir()
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A device CA from another data dir: its root is not ours.
	otherDir, _ := profileDataDir(t)
	mixed := t.TempDir()
	for src, dst := range map[string]string{
		filepath.Join(dir, ca.RootCertFile):          filepath.Join(mixed, ca.RootCertFile),
		filepath.Join(otherDir, ca.DeviceCACertFile): filepath.Join(mixed, ca.DeviceCACertFile),
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := profileSigningFiles(t)
	withChallenge := map[string]string{"CLEARANCE_SCEP_CHALLENGE": profileTestChallenge}

	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"no challenge", nil, []string{"--data-dir", dir},
			[]string{"no SCEP challenge", "--challenge", "scep challenge", "scep-challenge"}},
		{"no data dir", withChallenge, nil, []string{"--data-dir is required"}},
		{"empty data dir", withChallenge, []string{"--data-dir", empty},
			[]string{filepath.Join(empty, "ca.pem") + " does not exist", "clearance-verifier serve --data-dir"}},
		{"data dir is a file", withChallenge, []string{"--data-dir", notDir},
			[]string{"reading ca.pem", "not a directory"}},
		{"CA files from two data dirs", withChallenge, []string{"--data-dir", mixed},
			[]string{"device-ca.pem was not issued by", "do not belong together"}},
		{"no organization", withChallenge, []string{"--data-dir", dir, "--organization", ""},
			[]string{"organization is required"}},
		{"sign cert without key", withChallenge, []string{"--data-dir", dir, "--sign-cert", certFile},
			[]string{"--sign-cert and --sign-key go together"}},
		{"bad sign key", withChallenge, []string{"--data-dir", dir, "--sign-cert", certFile, "--sign-key", garbage},
			[]string{"signing key " + garbage, "no PEM private key"}},
		{"sign key is the cert", withChallenge, []string{"--data-dir", dir, "--sign-cert", certFile, "--sign-key", certFile},
			[]string{`"CERTIFICATE" is not a private key`}},
		{"missing sign key", withChallenge, []string{"--data-dir", dir, "--sign-cert", certFile, "--sign-key", keyFile + ".missing"},
			[]string{"reading the signing key", "no such file"}},
		{"bad sign cert", withChallenge, []string{"--data-dir", dir, "--sign-cert", garbage, "--sign-key", keyFile},
			[]string{"signing certificate " + garbage, "no PEM certificate"}},
		{"stray argument", withChallenge, []string{"--data-dir", dir, "extra"}, []string{`unexpected argument "extra"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "p.mobileconfig")
			args := append([]string{"user-scope", "--organization", "Example Corp", "--out", out}, tc.args...)
			stdout, stderr, err := runProfile(t, envOf(tc.env), args...)
			if err == nil {
				t.Fatalf("no error; stderr %q", stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			for _, s := range []string{err.Error(), string(stderr), string(stdout)} {
				if strings.Contains(s, profileTestChallenge) {
					t.Errorf("the challenge leaked: %q", s)
				}
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("a profile was written despite the error")
			}
		})
	}
}

// profileSigningKey is one throwaway RSA key for the signing tests.
var profileSigningKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// profileSigningFiles writes a self-signed signing certificate and its
// PKCS #8 key as PEM files.
func profileSigningFiles(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key := profileSigningKey()
	der := testpki.SelfSigned(t, testpki.CN("Example Corp profile signing (test)"), testpki.Serial(99), testpki.Key(key)).Cert.Raw
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "signcert.pem"), filepath.Join(dir, "signkey.pem")
	writePEM(t, certFile, der)
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// opensslCMSVerify verifies a signed profile against caFile and returns the
// content openssl extracted.
func opensslCMSVerify(t *testing.T, signedFile, caFile string) ([]byte, error) {
	t.Helper()
	openssl := testkit.Tool(t, "openssl")
	out := filepath.Join(t.TempDir(), "content.plist")
	msg, err := exec.Command(openssl, "cms", "-verify", "-inform", "DER", "-binary",
		"-in", signedFile, "-CAfile", caFile, "-out", out).CombinedOutput()
	if err != nil {
		return msg, err
	}
	return os.ReadFile(out)
}

// agentDataDir is a data dir as serve's first start leaves it, its TLS
// certificate for verifier.example.com, with a database that enroll
// secrets can be made in.
func agentDataDir(t *testing.T) string {
	t.Helper()
	return newDataDir(t, "--public-url", "https://verifier.example.com:8443")
}

// profileSecret is a new enroll secret in dir's database, as 'secret
// create' makes one.
func profileSecret(t *testing.T, dir string) string {
	t.Helper()
	out, errOut, err := execute(noEnv, "secret", "create", "--data-dir", dir, "--description", "profile tests")
	if err != nil {
		t.Fatalf("secret create: %v\n%s", err, errOut)
	}
	return lastLine(out)
}

func TestProfileSigned(t *testing.T) {
	t.Parallel()
	dir := agentDataDir(t)
	certFile, keyFile := profileSigningFiles(t)
	env := envOf(map[string]string{"CLEARANCE_SCEP_CHALLENGE": profileTestChallenge})
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"user-scope", []string{"user-scope", "--data-dir", dir, "--organization", "Example Corp"}},
		{"agent", []string{"agent", "--data-dir", dir, "--organization", "Example Corp",
			"--verifier", "verifier.example.com:8443", "--enroll-secret", profileSecret(t, dir)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			unsigned, stderr, err := runProfile(t, env, tc.args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			signedFile := filepath.Join(t.TempDir(), "signed.mobileconfig")
			args := append(slices.Clone(tc.args), "--sign-cert", certFile, "--sign-key", keyFile, "--out", signedFile)
			if _, stderr, err := runProfile(t, env, args...); err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			fi, err := os.Stat(signedFile)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("signed profile mode = %v, want 0600", fi.Mode().Perm())
			}

			content, err := opensslCMSVerify(t, signedFile, certFile)
			if err != nil {
				t.Fatalf("openssl cms -verify refused the signed profile: %v\n%s", err, content)
			}
			if !bytes.Equal(content, unsigned) {
				t.Error("the signed profile's content differs from the unsigned profile")
			}

			// One flipped byte inside the content: openssl must refuse it.
			signed, err := os.ReadFile(signedFile)
			if err != nil {
				t.Fatal(err)
			}
			i := bytes.Index(signed, []byte("<string>Example Corp</string>"))
			if i < 0 {
				t.Fatal("the signed file does not carry the profile attached")
			}
			signed[i+len("<string>")] ^= 0x20
			tampered := filepath.Join(t.TempDir(), "tampered.mobileconfig")
			if err := os.WriteFile(tampered, signed, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := opensslCMSVerify(t, tampered, certFile); err == nil {
				t.Error("openssl verified a tampered profile")
			}
		})
	}
}

func TestProfileKinds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "profile needs a command: agent, login-item or user-scope"},
		{[]string{"device"}, `unknown command "device"; profile's commands are agent, login-item or user-scope`},
		{[]string{"user-scop"}, `unknown command "user-scop"; did you mean user-scope?`},
	} {
		_, _, err := execute(noEnv, append([]string{"profile"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("profile %v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestProfileAgentVerifierName: a --verifier host the verifier's own
// certificate does not name is refused, naming the ones it does: every Mac
// would refuse the connection. No profile is written.
func TestProfileAgentVerifierName(t *testing.T) {
	t.Parallel()
	dir := agentDataDir(t)
	secret := profileSecret(t, dir)
	out := filepath.Join(t.TempDir(), "agent.mobileconfig")
	_, _, err := runProfile(t, noEnv, "agent", "--data-dir", dir, "--organization", "Example Corp",
		"--verifier", "vm:8443", "--enroll-secret", secret, "--out", out)
	if err == nil || !strings.Contains(err.Error(), `--verifier "vm:8443": the verifier's certificate`) || !strings.Contains(err.Error(), "is for localhost, verifier.example.com,") {
		t.Fatalf("a host the certificate does not name: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a profile was written: %v", err)
	}
	if _, _, err := runProfile(t, noEnv, "agent", "--data-dir", dir, "--organization", "Example Corp",
		"--verifier", "VERIFIER.example.com:8443", "--enroll-secret", secret, "--out", out); err != nil {
		t.Fatalf("the certificate's own host, in capitals: %v", err)
	}
}

// TestProfileLoginItem: the managed login item profile, read by plistlib,
// names the launchd label the package's daemon has; it needs no data dir,
// and without an organization it writes nothing.
func TestProfileLoginItem(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "login-item.mobileconfig")
	stdout, stderr, err := runProfile(t, noEnv, "login-item", "--organization", "Example Corp", "--out", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if len(stdout) != 0 {
		t.Errorf("stdout is not empty with --out: %q", stdout)
	}
	if !strings.Contains(string(stderr), "wrote "+out) || !strings.Contains(string(stderr), "device-scope") {
		t.Errorf("stderr does not say what was written and how to deliver it: %q", stderr)
	}
	doc := readPlistIndependently(t, out)
	wantValue(t, "PayloadType", doc["PayloadType"], "Configuration")
	wantValue(t, "PayloadScope", doc["PayloadScope"], "System")
	content, ok := doc["PayloadContent"].([]any)
	if !ok || len(content) != 1 {
		t.Fatalf("PayloadContent = %v, want one payload", doc["PayloadContent"])
	}
	item := dict(t, "payload", content[0])
	wantValue(t, "payload type", item["PayloadType"], "com.apple.servicemanagement")
	agentRule := map[string]any{
		"Comment":   "clearance-agent, the daemon that checks this Mac before sign-in",
		"RuleType":  "Label",
		"RuleValue": "com.clearance.agent",
	}
	osqueryRule := func(label string) map[string]any {
		return map[string]any{"Comment": "osqueryd, which clearance-agent checks this Mac through", "RuleType": "Label", "RuleValue": label}
	}
	// osquery's own package's daemon is kept running too, by default.
	wantValue(t, "rules", item["Rules"], []any{agentRule, osqueryRule("io.osquery.agent")})
	for _, tc := range []struct {
		label string
		want  []any
	}{
		{"com.fleetdm.orbit", []any{agentRule, osqueryRule("com.fleetdm.orbit")}},
		{"", []any{agentRule}},
	} {
		other := filepath.Join(t.TempDir(), "other.mobileconfig")
		if _, stderr, err := runProfile(t, noEnv, "login-item", "--organization", "Example Corp", "--osquery-label", tc.label, "--out", other); err != nil {
			t.Fatalf("--osquery-label %q: %v\n%s", tc.label, err, stderr)
		}
		content := readPlistIndependently(t, other)["PayloadContent"].([]any)
		wantValue(t, "rules with --osquery-label "+tc.label, dict(t, "payload", content[0])["Rules"], tc.want)
	}
	if _, _, err := runProfile(t, noEnv, "login-item", "--organization", "Example Corp", "--osquery-label", "io osquery"); err == nil || !strings.Contains(err.Error(), "osquery's label") {
		t.Errorf("a label with a space: %v", err)
	}

	// The label is the one the package's launchd plist carries.
	plistFile := filepath.Join(t.TempDir(), "daemon.plist")
	raw, err := service.LaunchdPlist()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plistFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	wantValue(t, "the daemon's Label", readPlistIndependently(t, plistFile)["Label"], "com.clearance.agent")

	// Standard output by default, the same bytes.
	same, _, err := runProfile(t, noEnv, "login-item", "--organization", "Example Corp")
	if err != nil {
		t.Fatal(err)
	}
	if written, _ := os.ReadFile(out); !bytes.Equal(same, written) {
		t.Error("stdout and --out differ")
	}

	missing := filepath.Join(t.TempDir(), "none.mobileconfig")
	if _, _, err := runProfile(t, noEnv, "login-item", "--out", missing); err == nil || !strings.Contains(err.Error(), "organization is required") {
		t.Errorf("no organization: %v", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a profile was written without an organization: %v", err)
	}
}

// TestProfileAgentChecksTheSecret: a secret the verifier would refuse is
// refused before a profile carrying it is written (every Mac would be
// turned away), without the secret in the message; --unchecked-secret
// writes it; a secret that expires is written with a note of when. The
// secret may come from the environment instead of the command line, and an
// interval longer than the posture's age is written with a warning.
func TestProfileAgentChecksTheSecret(t *testing.T) {
	t.Parallel()
	dir := agentDataDir(t)
	good := profileSecret(t, dir)
	revoked := profileSecret(t, dir)
	// The id is the secret's part before the dot, as 'secret list' shows it.
	if _, _, err := execute(noEnv, "secret", "revoke", "--data-dir", dir, strings.SplitN(revoked, ".", 2)[0]); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := execute(noEnv, "secret", "create", "--data-dir", dir, "--expires", "720h")
	if err != nil {
		t.Fatal(err, errOut)
	}
	expiring := lastLine(out)
	args := func(secret string, more ...string) []string {
		return append([]string{"agent", "--data-dir", dir, "--organization", "Example Corp", "--verifier", "verifier.example.com:8443",
			"--enroll-secret", secret}, more...)
	}
	for _, tc := range []struct{ name, secret, want string }{
		{"mistyped", good[:len(good)-1] + "x", "the enroll secret is not one this verifier's database holds"},
		{"made up", "made-up-secret", "the enroll secret is not one this verifier's database holds"},
		{"revoked", revoked, "the enroll secret has been revoked"},
	} {
		file := filepath.Join(t.TempDir(), "agent.mobileconfig")
		_, _, err := runProfile(t, noEnv, args(tc.secret, "--out", file)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "every Mac would be refused") {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		} else if strings.Contains(err.Error(), tc.secret) {
			t.Errorf("%s: the error shows the secret: %v", tc.name, err)
		}
		if _, err := os.Stat(file); !os.IsNotExist(err) {
			t.Errorf("%s: a profile was written", tc.name)
		}
		if _, _, err := runProfile(t, noEnv, args(tc.secret, "--unchecked-secret", "--out", file)...); err != nil {
			t.Errorf("%s with --unchecked-secret: %v", tc.name, err)
		}
	}
	// A data dir whose database is gone: refused, and none is made.
	moved := filepath.Join(t.TempDir(), "moved")
	if err := os.Mkdir(moved, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"clearance.db", "clearance.db-wal", "clearance.db-shm"} {
		os.Rename(filepath.Join(dir, f), filepath.Join(moved, f))
	}
	if _, _, err := runProfile(t, noEnv, args(good)...); err == nil || !strings.Contains(err.Error(), "has no database to check it in") {
		t.Errorf("a data dir without its database: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "clearance.db")); !os.IsNotExist(err) {
		t.Errorf("checking the secret made a database: %v", err)
	}
	// A database file with no verifier's tables in it: refused, left alone.
	if err := exec.Command("python3", "-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('CREATE TABLE other (x)'); c.commit()",
		filepath.Join(dir, "clearance.db")).Run(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runProfile(t, noEnv, args(good)...); err == nil || !strings.Contains(err.Error(), "holds no verifier's tables") {
		t.Errorf("a database file without the verifier's tables: %v", err)
	}
	if out, err := exec.Command("python3", "-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT count(*) FROM sqlite_master WHERE type='table'\").fetchone()[0])",
		filepath.Join(dir, "clearance.db")).Output(); err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Errorf("checking the secret made tables in a foreign database file: %s %v", out, err)
	}
	os.Remove(filepath.Join(dir, "clearance.db"))
	for _, f := range []string{"clearance.db", "clearance.db-wal", "clearance.db-shm"} {
		os.Rename(filepath.Join(moved, f), filepath.Join(dir, f))
	}
	if _, stderr, err := runProfile(t, noEnv, args(expiring)...); err != nil || !strings.Contains(string(stderr), "expires at") {
		t.Errorf("an expiring secret: %v %s", err, stderr)
	}

	// From the environment: the same profile as from the flag.
	fromFlag, _, err := runProfile(t, noEnv, args(good)...)
	if err != nil {
		t.Fatal(err)
	}
	fromEnv, _, err := runProfile(t, envOf(map[string]string{"CLEARANCE_ENROLL_SECRET": good}), "agent", "--data-dir", dir,
		"--organization", "Example Corp", "--verifier", "verifier.example.com:8443")
	if err != nil || !bytes.Equal(fromEnv, fromFlag) {
		t.Errorf("the secret from CLEARANCE_ENROLL_SECRET: %v", err)
	}

	if _, stderr, err := runProfile(t, noEnv, args(good, "--interval", "1h")...); err != nil ||
		!strings.Contains(string(stderr), "note: --interval 1h0m0s is longer than the verifier's --max-posture-age 5m0s") {
		t.Errorf("an interval longer than the posture's age: %v %s", err, stderr)
	}
	if _, stderr, err := runProfile(t, noEnv, args(good, "--interval", "1h", "--max-posture-age", "2h")...); err != nil || strings.Contains(string(stderr), "--interval") {
		t.Errorf("an interval within the posture's age: %v %s", err, stderr)
	}
	if _, stderr, err := runProfile(t, noEnv, args(good, "--interval", "2s")...); err != nil || !strings.Contains(string(stderr), "note: --interval 2s: every Mac the profile reaches runs every policy that often") {
		t.Errorf("a 2 s interval: %v %s", err, stderr)
	}
	if _, _, err := runProfile(t, noEnv, args(good, "--interval", "10500ms")...); err == nil || !strings.Contains(err.Error(), "whole number of seconds") {
		t.Errorf("a fractional interval: %v", err)
	}
}

// TestProfileAgentLeavesAnEmptyPostgresAlone: the PostgreSQL database the
// data dir names, found empty (dropped and made again, say), is refused
// with what to check, and checking the secret makes no tables in it;
// --unchecked-secret still writes the profile.
func TestProfileAgentLeavesAnEmptyPostgresAlone(t *testing.T) {
	t.Parallel()
	dsn, _ := testpg.NewDatabaseWithPassword(t)
	dir := newDataDir(t, "--public-url", "https://verifier.example.com:8443", "--database", dsn)
	secret := profileSecret(t, dir)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), `DROP SCHEMA public CASCADE; CREATE SCHEMA public`); err != nil {
		t.Fatal(err)
	}
	env := envOf(map[string]string{"CLEARANCE_DATABASE": dsn, "CLEARANCE_ENROLL_SECRET": secret})
	args := []string{"agent", "--data-dir", dir, "--organization", "Example Corp", "--verifier", "verifier.example.com:8443"}
	file := filepath.Join(t.TempDir(), "agent.mobileconfig")
	_, _, err = runProfile(t, env, append(args, "--out", file)...)
	if err == nil || !strings.Contains(err.Error(), "holds no verifier's tables") || strings.Contains(err.Error(), secret) {
		t.Fatalf("an empty database: %v, want it refused as holding no verifier's tables", err)
	}
	var tables int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables); err != nil || tables != 0 {
		t.Fatalf("checking the secret made %d tables (%v)", tables, err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("a profile was written: %v", err)
	}
	if _, _, err := runProfile(t, env, append(args, "--unchecked-secret", "--out", file)...); err != nil {
		t.Errorf("with --unchecked-secret: %v", err)
	}
}

// TestProfileAgentPostgresSchema: a URL with the pool's own parameters, as
// serve takes it, is read as serve reads it; a schema an older verifier
// left (its latest migration not applied) is refused, not migrated.
func TestProfileAgentPostgresSchema(t *testing.T) {
	t.Parallel()
	base, _ := testpg.NewDatabaseWithPassword(t)
	dsn := base + "&pool_max_conns=4"
	if !strings.Contains(base, "?") {
		dsn = base + "?pool_max_conns=4"
	}
	dir := newDataDir(t, "--public-url", "https://verifier.example.com:8443", "--database", dsn)
	secret := profileSecret(t, dir)
	env := envOf(map[string]string{"CLEARANCE_DATABASE": dsn, "CLEARANCE_ENROLL_SECRET": secret})
	args := []string{"agent", "--data-dir", dir, "--organization", "Example Corp", "--verifier", "verifier.example.com:8443"}
	if _, _, err := runProfile(t, env, args...); err != nil {
		t.Fatalf("a URL with pool_max_conns: %v", err)
	}
	conn, err := pgx.Connect(t.Context(), base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var latest int64
	if err := conn.QueryRow(t.Context(), `DELETE FROM goose_db_version WHERE version_id = (SELECT max(version_id) FROM goose_db_version) RETURNING version_id`).Scan(&latest); err != nil {
		t.Fatal(err)
	}
	_, _, err = runProfile(t, env, args...)
	if err == nil || !strings.Contains(err.Error(), "older than this clearance-verifier's") {
		t.Fatalf("an older schema: %v, want it refused", err)
	}
	var applied bool
	if err := conn.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM goose_db_version WHERE version_id = $1)`, latest).Scan(&applied); err != nil || applied {
		t.Fatalf("the check migrated the older schema (%v)", err)
	}
}
