package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/testkit/testpki"
)

// testIdPKey is one throwaway RSA key shared by the tests (RSA key
// generation is the slow part).
var testIdPKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// selfSigned is a self-signed SAML signing certificate for key, as DER.
func selfSigned(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	return testpki.SelfSigned(t, testpki.CN("clearance SAML signing (test)"), testpki.Serial(7), testpki.Key(key),
		testpki.Valid(time.Now().Add(-time.Hour), time.Now().Add(10*365*24*time.Hour))).Cert.Raw
}

// dataDirWith returns a data dir holding der as idp-cert.pem.
func dataDirWith(t *testing.T, der []byte) string {
	t.Helper()
	dir := t.TempDir()
	writePEM(t, filepath.Join(dir, "idp-cert.pem"), der)
	return dir
}

func writePEM(t *testing.T, path string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func rsaDataDir(t *testing.T) (dir string, der []byte) {
	t.Helper()
	key, err := testIdPKey()
	if err != nil {
		t.Fatal(err)
	}
	der = selfSigned(t, key)
	return dataDirWith(t, der), der
}

func noEnv(string) string { return "" }

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func runOktaSetup(t *testing.T, getenv func(string) string, args ...string) (string, error) {
	t.Helper()
	stdout, _, err := execute(getenv, append([]string{"okta", "setup"}, args...)...)
	return stdout, err
}

// field returns the value printed beside label in the guide's form table.
func field(t *testing.T, out, label string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^ +` + regexp.QuoteMeta(label) + ` {2,}(.+)$`)
	m := re.FindAllStringSubmatch(out, -1)
	if len(m) != 1 {
		t.Fatalf("label %q appears %d times in:\n%s", label, len(m), out)
	}
	return m[0][1]
}

func sha256Colon(der []byte) string {
	sum := sha256.Sum256(der)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

func TestOktaSetupGuide(t *testing.T) {
	t.Parallel()
	dir, der := rsaDataDir(t)
	out, err := runOktaSetup(t, noEnv, "--data-dir", dir, "--sso-public-url", "https://clearance.example.com:8444/")
	if err != nil {
		t.Fatal(err)
	}
	const (
		issuer = "https://clearance.example.com:8444/saml/metadata"
		sso    = "https://clearance.example.com:8444/saml/sso"
	)
	// Every field, in the order Okta's form asks for it.
	want := []struct{ label, value string }{
		{"Name", oktaIdPName},
		{"IdP Usage", "Factor only"},
		{"IdP username", "idpuser.subjectNameId"},
		{"Match against", "Okta Username"},
		{"IdP Issuer URI", issuer},
		{"IdP Single Sign-On URL", sso},
		{"IdP Signature Certificate", "upload " + filepath.Join(dir, "idp-cert.pem")},
		{"Request Binding", "HTTP Redirect"},
		{"Request Signature", "Sign SAML Authentication Requests"},
		{"Request Signature Algorithm", "SHA-256"},
		{"Response Signature Verification", "Response "},
		{"Response Signature Algorithm", "SHA-256"},
		{"Destination", sso},
		{"Okta Assertion Consumer Service URL", "Trust-specific"},
	}
	last := -1
	for _, w := range want {
		got := field(t, out, w.label)
		if !strings.HasPrefix(got, w.value) {
			t.Errorf("%s = %q, want %q", w.label, got, w.value)
		}
		at := strings.Index(out, "  "+w.label+"  ")
		if at < last {
			t.Errorf("%s is printed out of the form's order", w.label)
		}
		last = at
	}
	if strings.Contains(field(t, out, "Response Signature Verification"), "Assertion or") {
		t.Errorf("Response Signature Verification should be Response: both are signed")
	}

	if fp := sha256Colon(der); !strings.Contains(out, "SHA-256 fingerprint "+fp) {
		t.Errorf("fingerprint %s not in output", fp)
	}
	if !strings.Contains(out, "RSA 2048") {
		t.Errorf("key size not shown")
	}
	// The PEM printed is the certificate on disk.
	block, _ := pem.Decode([]byte(out[strings.Index(out, "-----BEGIN CERTIFICATE-----"):]))
	if block == nil || !bytes.Equal(block.Bytes, der) {
		t.Errorf("the printed PEM is not idp-cert.pem")
	}
	// Next steps, and the Okta settings not yet set.
	for _, s := range []string{
		"Security > Identity Providers > Add identity provider > SAML 2.0 IdP",
		"okta_audience: <Audience URI>   (not set)",
		"okta_acs_url: <Assertion Consumer Service URL>   (not set)",
		"https://www.okta.com/saml2/service-provider/sp",
		"/sso/saml2/{idpId}",
		"Security > Authenticators > Setup > Add authenticator > IdP Authenticator",
		"Security > Authentication Policies",
		"https://clearance.example.com:8444/saml/cert.pem",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	if strings.Contains(out, "WARNING") {
		t.Errorf("a public SSO URL must not warn:\n%s", out)
	}
}

func TestOktaSetupShowsOktaSettings(t *testing.T) {
	t.Parallel()
	dir, _ := rsaDataDir(t)
	oktaKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader) // only its certificate is read here
	oktaDER := selfSigned(t, oktaKey)
	reqCert := filepath.Join(t.TempDir(), "okta-signing.pem")
	writePEM(t, reqCert, oktaDER)
	const (
		aud = "https://www.okta.com/saml2/service-provider/spabcdefghijklmnop"
		acs = "https://example.okta.com/sso/saml2/0oa1b2c3d4e5f6g7h8i9"
	)
	out, err := runOktaSetup(t, noEnv, "--data-dir", dir, "--sso-public-url", "https://clearance.example.com",
		"--okta-audience", aud, "--okta-acs-url", acs, "--okta-request-cert", reqCert)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"okta_audience: " + aud + "\n",
		"okta_acs_url: " + acs + "\n",
		"okta_request_cert: " + reqCert + "\n",
		"okta_request_cert SHA-256 " + sha256Colon(oktaDER),
		"okta_audience and okta_acs_url are set",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	if got := field(t, out, "Request Signature"); !strings.Contains(got, "required") {
		t.Errorf("Request Signature = %q, want it required when okta_request_cert is set", got)
	}
	if got := field(t, out, "IdP Issuer URI"); got != "https://clearance.example.com/saml/metadata" {
		t.Errorf("IdP Issuer URI = %q", got)
	}
}

// hclAttrs checks that tf is well-formed enough for terraform (balanced
// braces and quotes, only blocks and comments at the top level) and returns
// each block's attributes, keyed by the block's header.
func hclAttrs(t *testing.T, tf string) map[string]map[string]string {
	t.Helper()
	blocks := map[string]map[string]string{}
	header := regexp.MustCompile(`^(resource|output) "[a-z_]+"( "[a-z_]+")? \{$`)
	attr := regexp.MustCompile(`^\s+([a-z_0-9]+)\s+=\s+(.+)$`)
	depth, current := 0, ""
	for n, line := range strings.Split(tf, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.Count(strings.ReplaceAll(line, `\"`, ""), `"`)%2 != 0 {
			t.Fatalf("line %d has unbalanced quotes: %s", n+1, line)
		}
		switch {
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
		case depth == 0:
			if !header.MatchString(line) {
				t.Fatalf("line %d is neither a block nor a comment: %s", n+1, line)
			}
			current = strings.TrimSuffix(line, " {")
			blocks[current] = map[string]string{}
			depth++
		case trimmed == "}":
			depth--
		default:
			m := attr.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("line %d is not an attribute: %s", n+1, line)
			}
			if _, dup := blocks[current][m[1]]; dup {
				t.Fatalf("%s is set twice in %s", m[1], current)
			}
			blocks[current][m[1]] = m[2]
		}
		if depth < 0 || depth > 1 {
			t.Fatalf("line %d: braces do not balance", n+1)
		}
	}
	if depth != 0 {
		t.Fatalf("unclosed block")
	}
	return blocks
}

func TestOktaSetupTerraform(t *testing.T) {
	t.Parallel()
	dir, der := rsaDataDir(t)
	out, err := runOktaSetup(t, noEnv, "--data-dir", dir, "--sso-public-url", "https://clearance.example.com:8444", "--terraform")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "Admin Console:") || strings.Contains(out, "BEGIN CERTIFICATE") {
		t.Errorf("--terraform prints only Terraform:\n%s", out)
	}
	blocks := hclAttrs(t, out)
	key := blocks[`resource "okta_idp_saml_key" "clearance"`]
	if want := `["` + base64.StdEncoding.EncodeToString(der) + `"]`; key["x5c"] != want {
		t.Errorf("x5c = %s, want the certificate's base64 DER %s", key["x5c"], want)
	}
	auth := blocks[`resource "okta_authenticator" "clearance"`]
	if auth["key"] != `"external_idp"` || !strings.Contains(auth["provider_json"], "okta_idp_saml.clearance.id") {
		t.Errorf("okta_authenticator: %v; want key external_idp naming the identity provider", auth)
	}
	idp := blocks[`resource "okta_idp_saml" "clearance"`]
	for k, want := range map[string]string{
		"name":                         `"` + oktaIdPName + `"`,
		"issuer":                       `"https://clearance.example.com:8444/saml/metadata"`,
		"sso_url":                      `"https://clearance.example.com:8444/saml/sso"`,
		"sso_destination":              `"https://clearance.example.com:8444/saml/sso"`,
		"sso_binding":                  `"HTTP-REDIRECT"`,
		"username_template":            `"idpuser.subjectNameId"`,
		"subject_match_type":           `"USERNAME"`,
		"acs_type":                     `"INSTANCE"`,
		"issuer_mode":                  `"ORG_URL"`,
		"request_signature_scope":      `"REQUEST"`,
		"request_signature_algorithm":  `"SHA-256"`,
		"response_signature_scope":     `"RESPONSE"`,
		"response_signature_algorithm": `"SHA-256"`,
		"kid":                          `okta_idp_saml_key.clearance.id`,
	} {
		if idp[k] != want {
			t.Errorf("okta_idp_saml %s = %s, want %s", k, idp[k], want)
		}
	}
	if blocks[`output "clearance_okta_audience"`]["value"] != "okta_idp_saml.clearance.audience" {
		t.Errorf("no audience output: %v", blocks)
	}
	if !strings.Contains(out, sha256Colon(der)) {
		t.Errorf("the comment should name the certificate's fingerprint")
	}
	if !strings.Contains(out, `IdP Usage to "Factor only"`) {
		t.Errorf("the snippet must say IdP Usage is set by hand")
	}
}

func TestOktaSetupRefuses(t *testing.T) {
	t.Parallel()
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER := selfSigned(t, ecKey)
	garbage := t.TempDir()
	if err := os.WriteFile(filepath.Join(garbage, "idp-cert.pem"), []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		dir  string
		want []string
	}{
		"missing cert": {t.TempDir(), []string{"idp-cert.pem does not exist", "run 'clearance-verifier serve --data-dir"}},
		"EC cert":      {dataDirWith(t, ecDER), []string{"ECDSA", "Okta accepts only RSA IdP signing certificates"}},
		"not PEM":      {garbage, []string{"idp-cert.pem", "no PEM certificate"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, err := runOktaSetup(t, noEnv, "--data-dir", tc.dir, "--sso-public-url", "https://clearance.example.com")
			if err == nil {
				t.Fatalf("no error; printed:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if out != "" {
				t.Errorf("printed values despite the error:\n%s", out)
			}
		})
	}
	t.Run("no data dir", func(t *testing.T) {
		t.Parallel()
		if _, err := runOktaSetup(t, noEnv); err == nil || !strings.Contains(err.Error(), "--data-dir is required") {
			t.Errorf("err = %v", err)
		}
	})
}

// TestOktaSetupSources: the settings come from flags, CLEARANCE_* variables
// and the config file, as for serve.
func TestOktaSetupSources(t *testing.T) {
	t.Parallel()
	dir, _ := rsaDataDir(t)
	const aud, acs = "https://www.okta.com/saml2/service-provider/spfromfile", "https://example.okta.com/sso/saml2/0oafromfile"
	cfgFile := filepath.Join(t.TempDir(), "verifier.yaml")
	yaml := "data_dir: " + dir + "\nsso_public_url: https://from-file.example.com:9444\nokta_audience: " + aud + "\nokta_acs_url: " + acs + "\n"
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		env     map[string]string
		args    []string
		issuer  string
		fromCfg bool
	}{
		"environment": {
			env:    map[string]string{"CLEARANCE_DATA_DIR": dir, "CLEARANCE_SSO_PUBLIC_URL": "https://from-env.example.com"},
			issuer: "https://from-env.example.com/saml/metadata",
		},
		"config flag": {
			args:    []string{"--config", cfgFile},
			issuer:  "https://from-file.example.com:9444/saml/metadata",
			fromCfg: true,
		},
		"config from CLEARANCE_CONFIG": {
			env:     map[string]string{"CLEARANCE_CONFIG": cfgFile},
			issuer:  "https://from-file.example.com:9444/saml/metadata",
			fromCfg: true,
		},
		"flag beats environment beats file": {
			env:     map[string]string{"CLEARANCE_CONFIG": cfgFile, "CLEARANCE_SSO_PUBLIC_URL": "https://from-env.example.com"},
			args:    []string{"--sso-public-url", "https://from-flag.example.com"},
			issuer:  "https://from-flag.example.com/saml/metadata",
			fromCfg: true,
		},
		"derived from --public-url": {
			args:   []string{"--data-dir", dir, "--public-url", "https://clearance.example.com:8443"},
			issuer: "https://clearance.example.com:8444/saml/metadata",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, err := runOktaSetup(t, envOf(tc.env), tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got := field(t, out, "IdP Issuer URI"); got != tc.issuer {
				t.Errorf("IdP Issuer URI = %q, want %q", got, tc.issuer)
			}
			if got := field(t, out, "IdP Single Sign-On URL"); got != strings.TrimSuffix(tc.issuer, "metadata")+"sso" {
				t.Errorf("IdP Single Sign-On URL = %q", got)
			}
			if has := strings.Contains(out, "okta_audience: "+aud+"\n") && strings.Contains(out, "okta_acs_url: "+acs+"\n"); has != tc.fromCfg {
				t.Errorf("Okta settings from the file shown = %v, want %v", has, tc.fromCfg)
			}
		})
	}
}

func TestOktaSetupWarnsAboutLocalSSOURL(t *testing.T) {
	t.Parallel()
	dir, _ := rsaDataDir(t)
	out, err := runOktaSetup(t, noEnv, "--data-dir", dir) // default: https://localhost:8444
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "WARNING: the SSO URL below names https://localhost:8444") {
		t.Errorf("no warning about a localhost SSO URL:\n%s", out)
	}
}

func TestOktaCommandDispatch(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if err := runMain(context.Background(), []string{"help"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "okta ") {
		t.Errorf("usage does not list okta setup:\n%s", stdout.String())
	}
	if err := runMain(context.Background(), []string{"okta"}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "setup") {
		t.Errorf("okta without a subcommand: %v", err)
	}
	if err := runMain(context.Background(), []string{"okta", "setup", "--data-dir", t.TempDir()}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "clearance-verifier serve") {
		t.Errorf("okta setup without a certificate: %v", err)
	}
}

// TestOktaSetupExitStatus runs the real main: a missing certificate is a
// non-zero exit with the reason on stderr.
func TestOktaSetupExitStatus(t *testing.T) {
	t.Parallel()
	if dir := os.Getenv("CLEARANCE_TEST_RUN_MAIN"); dir != "" {
		os.Args = []string{"clearance-verifier", "okta", "setup", "--data-dir", dir}
		main()
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestOktaSetupExitStatus$")
	cmd.Env = append(os.Environ(), "CLEARANCE_TEST_RUN_MAIN="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("exit: %v, want a non-zero status", err)
	}
	if !strings.Contains(stderr.String(), "run 'clearance-verifier serve") {
		t.Errorf("stderr does not say what to do: %s", stderr.String())
	}
}

// TestCloudflareSetup: the guide names every value the Zero Trust dashboard
// asks for, and the Terraform configures the custom_s2s integration and a
// rule on its score.
func TestCloudflareSetup(t *testing.T) {
	t.Parallel()
	const api = "https://posture.example.com/cloudflare/v1/posture"
	code, out, errOut := exitOf(noEnv, "cloudflare", "setup", "--cloudflare-team", "acme", "--cloudflare-aud", "aud-tag-1", "--api-url", api)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"Service Auth", "posture.example.com/cloudflare/v1/posture", "Rest API URL:         " + api,
		"Polling frequency:    10m", ">= 90", "https://acme.cloudflareaccess.com", "aud-tag-1", "  100  every policy",
		"the rollout lets the device through (monitor, warn, a grace period", ">= 100 lets only compliant devices through"} {
		if !strings.Contains(out, want) {
			t.Errorf("guide lacks %q:\n%s", want, out)
		}
	}
	code, out, errOut = exitOf(noEnv, "cloudflare", "setup", "--terraform", "--api-url", api, "--interval", "30m", "--min-score", "100")
	if code != 0 || errOut != "" {
		t.Fatalf("terraform: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{`type       = "custom_s2s"`, `api_url              = "` + api + `"`, "access_client_id     = cloudflare_zero_trust_access_service_token.clearance.client_id",
		"access_client_secret = cloudflare_zero_trust_access_service_token.clearance.client_secret", `interval   = "30m"`,
		"connection_id = cloudflare_zero_trust_device_posture_integration.clearance.id", `operator      = ">="`, "score         = 100", `decision   = "non_identity"`} {
		if !strings.Contains(out, want) {
			t.Errorf("terraform lacks %q:\n%s", want, out)
		}
	}
	// The team alone, as docs/cloudflare.md and the README give it: the AUD
	// tag exists only after step 2.
	code, out, errOut = exitOf(noEnv, "cloudflare", "setup", "--cloudflare-team", "acme", "--api-url", api)
	if code != 0 || errOut != "" {
		t.Fatalf("team without AUD: exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"https://acme.cloudflareaccess.com", "<the AUD tag>   (not set yet)"} {
		if !strings.Contains(out, want) {
			t.Errorf("guide with the team alone lacks %q:\n%s", want, out)
		}
	}
	// An AUD tag without its team is still refused.
	if code, _, errOut := exitOf(noEnv, "cloudflare", "setup", "--cloudflare-aud", "aud-tag-1", "--api-url", api); code == 0 || !strings.Contains(errOut, "set both --cloudflare-team and --cloudflare-aud") {
		t.Errorf("AUD without team: exit %d, stderr %q", code, errOut)
	}
	for _, bad := range [][]string{{"--api-url", "http://x.example.com/cloudflare/v1/posture"}, {"--api-url", "https://x.example.com/other"}, {"--min-score", "101"}} {
		if code, _, _ := exitOf(noEnv, append([]string{"cloudflare", "setup"}, bad...)...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
}

// TestCloudflareSetupLocalURL: with no --api-url the Rest API URL is built
// from --public-url, localhost by default, which Cloudflare cannot call; the
// guide says so before the values, as okta setup does for its SSO URL.
func TestCloudflareSetupLocalURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		warn bool
	}{
		{nil, true},
		{[]string{"--api-url", "https://127.0.0.1:8080/cloudflare/v1/posture"}, true},
		{[]string{"--api-url", "https://[::1]:8080/cloudflare/v1/posture"}, true},
		{[]string{"--public-url", "https://clearance.example.com:8443"}, false},
		{[]string{"--api-url", "https://posture.example.com/cloudflare/v1/posture"}, false},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			code, out, errOut := exitOf(noEnv, append([]string{"cloudflare", "setup", "--cloudflare-team", "acme"}, tc.args...)...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			if got := strings.Contains(out, "WARNING: the Rest API URL below names https://"); got != tc.warn {
				t.Errorf("warning printed: %v, want %v:\n%s", got, tc.warn, out)
			}
		})
	}
}

// TestOktaSetupSign: the Response Signature Verification the guide and the
// Terraform snippet give accepts what --sign makes the verifier sign.
func TestOktaSetupSign(t *testing.T) {
	t.Parallel()
	dir, _ := rsaDataDir(t)
	for _, tc := range []struct{ sign, guide, scope string }{
		{"both", "Response ", `"RESPONSE"`},
		{"response", "Response ", `"RESPONSE"`},
		{"assertion", "Assertion ", `"ASSERTION"`},
	} {
		args := []string{"--data-dir", dir, "--sso-public-url", "https://clearance.example.com:8444/", "--sign", tc.sign}
		out, err := runOktaSetup(t, noEnv, args...)
		if err != nil {
			t.Fatal(err)
		}
		if got := field(t, out, "Response Signature Verification"); !strings.HasPrefix(got, tc.guide) {
			t.Errorf("--sign %s: Response Signature Verification = %q, want %q…", tc.sign, got, tc.guide)
		}
		out, err = runOktaSetup(t, noEnv, append(args, "--terraform")...)
		if err != nil {
			t.Fatal(err)
		}
		if got := hclAttrs(t, out)[`resource "okta_idp_saml" "clearance"`]["response_signature_scope"]; got != tc.scope {
			t.Errorf("--sign %s: response_signature_scope = %s, want %s", tc.sign, got, tc.scope)
		}
	}
}
