package profile_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/groob/plist"

	"github.com/clearance/clearance/internal/testkit/testpki"
	"github.com/clearance/clearance/pkg/agentprefs"
	"github.com/clearance/clearance/verifier/profile"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// Obviously fake secrets: the golden files are checked in.
const (
	testChallenge = "test-challenge-not-a-secret"
	testSecret    = "test-enroll-secret-not-a-secret"
)

// testCA returns a CA certificate that is the same on every run: ed25519
// signatures are deterministic, and the key comes from a fixed seed. That is
// what lets the golden files compare byte for byte.
func testCA(t testing.TB, cn string, isCA bool) *x509.Certificate {
	t.Helper()
	seed := sha256.Sum256([]byte("clearance profile test CA " + cn))
	key := ed25519.NewKeyFromSeed(seed[:])
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	return testpki.Issue(t, tmpl, tmpl, key.Public(), key)
}

func userOptions(t testing.TB) profile.UserScopeOptions {
	return profile.UserScopeOptions{
		Organization: "Example Corp",
		SCEPURL:      "https://verifier.example.com/scep",
		Challenge:    testChallenge,
		SSOURL:       "https://sso.example.com:8443/saml/sso",
		CACert:       testCA(t, "Clearance Root CA", true),
		IssuerCN:     "Clearance Device CA",
	}
}

func agentOptions(t testing.TB) profile.AgentOptions {
	return profile.AgentOptions{
		Organization:    "Example Corp",
		VerifierAddress: "verifier.example.com:8443",
		EnrollSecret:    testSecret,
		CACert:          testCA(t, "Clearance Root CA", true),
		Interval:        5 * time.Minute,
		OsquerySocket:   profile.DefaultOsquerySocket,
	}
}

// decode parses a profile with the plist reader into generic values, as an
// MDM or macOS sees it, not through our own types.
func decode(t testing.TB, raw []byte) map[string]any {
	t.Helper()
	var doc any
	if err := plist.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("profile is not a plist: %v\n%s", err, raw)
	}
	m, ok := doc.(map[string]any)
	if !ok {
		t.Fatalf("top level is %T, want a dictionary", doc)
	}
	return m
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func wantKeys(t testing.TB, where string, m map[string]any, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := keys(m); !slices.Equal(got, want) {
		t.Errorf("%s keys = %v, want %v", where, got, want)
	}
}

// field returns m[k] as a T, failing the test when it is missing or another type.
func field[T any](t testing.TB, where string, m map[string]any, k string) T {
	t.Helper()
	v, ok := m[k]
	if !ok {
		t.Fatalf("%s: no key %s", where, k)
	}
	tv, ok := v.(T)
	if !ok {
		var zero T
		t.Fatalf("%s: %s is %T, want %T", where, k, v, zero)
	}
	return tv
}

// intField returns m[k] as an integer. The plist reader gives uint64 for
// non-negative <integer> values and int64 for negative ones; both are the
// same plist type.
func intField(t testing.TB, where string, m map[string]any, k string) int64 {
	t.Helper()
	switch v := field[any](t, where, m, k).(type) {
	case int64:
		return v
	case uint64:
		return int64(v)
	default:
		t.Fatalf("%s: %s is %T, want an integer", where, k, v)
		return 0
	}
}

func wantEqual[T comparable](t testing.TB, where string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", where, got, want)
	}
}

var uuidRE = regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-5[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)

// checkCommon asserts the bookkeeping keys every payload carries and returns
// its PayloadUUID.
func checkCommon(t testing.TB, where string, p map[string]any, typ, identifier string) string {
	t.Helper()
	wantEqual(t, where+" PayloadType", field[string](t, where, p, "PayloadType"), typ)
	wantEqual(t, where+" PayloadIdentifier", field[string](t, where, p, "PayloadIdentifier"), identifier)
	wantEqual(t, where+" PayloadVersion", intField(t, where, p, "PayloadVersion"), 1)
	if field[string](t, where, p, "PayloadDisplayName") == "" {
		t.Errorf("%s: empty PayloadDisplayName", where)
	}
	u := field[string](t, where, p, "PayloadUUID")
	if !uuidRE.MatchString(u) {
		t.Errorf("%s PayloadUUID %q is not an upper-case version-5 UUID", where, u)
	}
	return u
}

func TestUserScope(t *testing.T) {
	t.Parallel()
	o := userOptions(t)
	raw, err := profile.UserScope(o)
	if err != nil {
		t.Fatal(err)
	}
	doc := decode(t, raw)

	wantKeys(t, "profile", doc, "PayloadContent", "PayloadDescription", "PayloadDisplayName",
		"PayloadIdentifier", "PayloadOrganization", "PayloadScope", "PayloadType", "PayloadUUID", "PayloadVersion")
	topUUID := checkCommon(t, "profile", doc, "Configuration", "com.clearance.user")
	wantEqual(t, "PayloadScope", field[string](t, "profile", doc, "PayloadScope"), "User")
	wantEqual(t, "PayloadOrganization", field[string](t, "profile", doc, "PayloadOrganization"), "Example Corp")

	content := field[[]any](t, "profile", doc, "PayloadContent")
	if len(content) != 4 {
		t.Fatalf("%d payloads, want 4 (root, scep, identity preference, chrome)", len(content))
	}
	p := make([]map[string]any, len(content))
	for i, c := range content {
		m, ok := c.(map[string]any)
		if !ok {
			t.Fatalf("payload %d is %T, want a dictionary", i, c)
		}
		p[i] = m
	}
	root, scep, pref, chrome := p[0], p[1], p[2], p[3]

	// Root CA: the DER itself, as data.
	rootUUID := checkCommon(t, "root", root, "com.apple.security.root", "com.clearance.user.root")
	wantKeys(t, "root", root, "PayloadCertificateFileName", "PayloadContent", "PayloadDisplayName",
		"PayloadIdentifier", "PayloadType", "PayloadUUID", "PayloadVersion")
	if der := field[[]byte](t, "root", root, "PayloadContent"); !bytes.Equal(der, o.CACert.Raw) {
		t.Error("root PayloadContent is not the CA certificate's DER")
	}

	// SCEP.
	scepUUID := checkCommon(t, "scep", scep, "com.apple.security.scep", "com.clearance.user.scep")
	wantKeys(t, "scep", scep, "PayloadContent", "PayloadDisplayName", "PayloadIdentifier",
		"PayloadType", "PayloadUUID", "PayloadVersion")
	sc := field[map[string]any](t, "scep", scep, "PayloadContent")
	wantKeys(t, "scep content", sc, "URL", "Name", "Challenge", "Subject", "SubjectAltName", "Keysize",
		"Key Type", "Key Usage", "KeyIsExtractable", "AllowAllAppsAccess", "Retries", "RetryDelay")
	wantEqual(t, "URL", field[string](t, "scep", sc, "URL"), "https://verifier.example.com/scep")
	wantEqual(t, "Name", field[string](t, "scep", sc, "Name"), "Clearance")
	wantEqual(t, "Challenge", field[string](t, "scep", sc, "Challenge"), testChallenge)
	wantEqual(t, "Keysize", intField(t, "scep", sc, "Keysize"), 2048)
	wantEqual(t, "Key Type", field[string](t, "scep", sc, "Key Type"), "RSA")
	wantEqual(t, "Key Usage", intField(t, "scep", sc, "Key Usage"), 5)
	wantEqual(t, "KeyIsExtractable", field[bool](t, "scep", sc, "KeyIsExtractable"), false)
	wantEqual(t, "AllowAllAppsAccess", field[bool](t, "scep", sc, "AllowAllAppsAccess"), true)
	wantEqual(t, "Retries", intField(t, "scep", sc, "Retries"), 3)
	wantEqual(t, "RetryDelay", intField(t, "scep", sc, "RetryDelay"), 10)
	// Subject is an array of RDNs, each an array of [OID, value] pairs.
	subj := field[[]any](t, "scep", sc, "Subject")
	if len(subj) != 1 {
		t.Fatalf("Subject has %d RDNs, want 1", len(subj))
	}
	rdn, ok := subj[0].([]any)
	if !ok || len(rdn) != 1 {
		t.Fatalf("Subject RDN = %#v, want one pair", subj[0])
	}
	pair, ok := rdn[0].([]any)
	if !ok || len(pair) != 2 || pair[0] != "CN" || pair[1] != "Clearance device" {
		t.Errorf("Subject pair = %#v, want [CN, Clearance device]", rdn[0])
	}
	sanDict := field[map[string]any](t, "scep", sc, "SubjectAltName")
	wantKeys(t, "SubjectAltName", sanDict, "uniformResourceIdentifier")
	wantEqual(t, "SAN URI", field[string](t, "san", sanDict, "uniformResourceIdentifier"),
		"urn:device:apple:uuid:%HardwareUUID%")

	// Identity preference: names the SSO URL, points at the SCEP payload.
	prefUUID := checkCommon(t, "identitypreference", pref, "com.apple.security.identitypreference",
		"com.clearance.user.identitypreference")
	wantKeys(t, "identitypreference", pref, "Name", "PayloadCertificateUUID", "PayloadDisplayName",
		"PayloadIdentifier", "PayloadType", "PayloadUUID", "PayloadVersion")
	wantEqual(t, "identity preference Name", field[string](t, "pref", pref, "Name"), o.SSOURL)
	wantEqual(t, "PayloadCertificateUUID", field[string](t, "pref", pref, "PayloadCertificateUUID"), scepUUID)

	// Chrome: a list of JSON strings, origin pattern and issuer CN filter.
	chromeUUID := checkCommon(t, "chrome", chrome, "com.google.Chrome", "com.clearance.user.chrome")
	wantKeys(t, "chrome", chrome, "AutoSelectCertificateForUrls", "PayloadDisplayName",
		"PayloadIdentifier", "PayloadType", "PayloadUUID", "PayloadVersion")
	rules := field[[]any](t, "chrome", chrome, "AutoSelectCertificateForUrls")
	if len(rules) != 1 {
		t.Fatalf("%d Chrome rules, want 1", len(rules))
	}
	ruleJSON, ok := rules[0].(string)
	if !ok {
		t.Fatalf("Chrome rule is %T, want a string holding JSON", rules[0])
	}
	var rule struct {
		Pattern string `json:"pattern"`
		Filter  struct {
			Issuer struct {
				CN string `json:"CN"`
			} `json:"ISSUER"`
		} `json:"filter"`
	}
	dec := json.NewDecoder(strings.NewReader(ruleJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rule); err != nil {
		t.Fatalf("Chrome rule %q: %v", ruleJSON, err)
	}
	wantEqual(t, "Chrome pattern", rule.Pattern, "https://sso.example.com:8443")
	wantEqual(t, "Chrome issuer CN", rule.Filter.Issuer.CN, "Clearance Device CA")

	all := []string{topUUID, rootUUID, scepUUID, prefUUID, chromeUUID}
	if len(slices.Compact(slices.Sorted(slices.Values(all)))) != len(all) {
		t.Errorf("payload UUIDs are not distinct: %v", all)
	}

	// The challenge appears once: in the SCEP payload's Challenge field.
	if n := bytes.Count(raw, []byte(testChallenge)); n != 1 {
		t.Errorf("challenge appears %d times in the profile, want exactly 1", n)
	}
}

func TestUserScopeOptions(t *testing.T) {
	t.Parallel()
	o := userOptions(t)
	o.Identifier = "com.example.clearance.user"
	o.KeySize = 4096
	o.HardwareUUIDVariable = "$UDID"
	raw, err := profile.UserScope(o)
	if err != nil {
		t.Fatal(err)
	}
	doc := decode(t, raw)
	wantEqual(t, "PayloadIdentifier", field[string](t, "profile", doc, "PayloadIdentifier"), o.Identifier)
	scep := field[[]any](t, "profile", doc, "PayloadContent")[1].(map[string]any)
	wantEqual(t, "scep PayloadIdentifier", field[string](t, "scep", scep, "PayloadIdentifier"), o.Identifier+".scep")
	sc := field[map[string]any](t, "scep", scep, "PayloadContent")
	wantEqual(t, "Keysize", intField(t, "scep", sc, "Keysize"), 4096)
	san := field[map[string]any](t, "scep", sc, "SubjectAltName")
	wantEqual(t, "SAN URI", field[string](t, "san", san, "uniformResourceIdentifier"), "urn:device:apple:uuid:$UDID")
}

func TestAgent(t *testing.T) {
	t.Parallel()
	o := agentOptions(t)
	raw, err := profile.Agent(o)
	if err != nil {
		t.Fatal(err)
	}
	doc := decode(t, raw)
	wantKeys(t, "profile", doc, "PayloadContent", "PayloadDescription", "PayloadDisplayName",
		"PayloadIdentifier", "PayloadOrganization", "PayloadScope", "PayloadType", "PayloadUUID", "PayloadVersion")
	topUUID := checkCommon(t, "profile", doc, "Configuration", "com.clearance.agent.profile")
	wantEqual(t, "PayloadScope", field[string](t, "profile", doc, "PayloadScope"), "System")

	content := field[[]any](t, "profile", doc, "PayloadContent")
	if len(content) != 1 {
		t.Fatalf("%d payloads, want 1", len(content))
	}
	prefs := content[0].(map[string]any)
	prefsUUID := checkCommon(t, "preferences", prefs, "com.apple.ManagedClient.preferences",
		"com.clearance.agent.profile.preferences")
	if topUUID == prefsUUID {
		t.Error("profile and payload share a UUID")
	}
	settings := agentSettings(t, raw)
	wantKeys(t, "agent settings", settings, "VerifierAddress", "CAPEM", "CAFingerprint", "EnrollSecret", "Interval", "OsquerySocket")
	wantEqual(t, "OsquerySocket", field[string](t, "settings", settings, "OsquerySocket"), profile.DefaultOsquerySocket)
	wantEqual(t, "VerifierAddress", field[string](t, "settings", settings, "VerifierAddress"), o.VerifierAddress)
	wantEqual(t, "EnrollSecret", field[string](t, "settings", settings, "EnrollSecret"), testSecret)
	wantEqual(t, "Interval", intField(t, "settings", settings, "Interval"), 300)
	sum := sha256.Sum256(o.CACert.Raw)
	wantEqual(t, "CAFingerprint", field[string](t, "settings", settings, "CAFingerprint"), hex.EncodeToString(sum[:]))
	block, rest := pem.Decode([]byte(field[string](t, "settings", settings, "CAPEM")))
	if block == nil || block.Type != "CERTIFICATE" || !bytes.Equal(block.Bytes, o.CACert.Raw) || len(bytes.TrimSpace(rest)) != 0 {
		t.Error("CAPEM is not exactly the CA certificate as PEM")
	}
	if n := bytes.Count(raw, []byte(testSecret)); n != 1 {
		t.Errorf("enroll secret appears %d times in the profile, want exactly 1", n)
	}

	// Without an interval, the key is absent rather than zero: the agent
	// refuses intervals under a second.
	o.Interval = 0
	raw, err = profile.Agent(o)
	if err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "agent settings without interval", agentSettings(t, raw), "VerifierAddress", "CAPEM", "CAFingerprint", "EnrollSecret", "OsquerySocket")

	// A run budget is written as whole seconds, and changes the payload's
	// UUID; without one the UUID is what it was before the setting existed.
	noBudget := payloadUUID(t, raw)
	o.RunBudget = 150 * time.Second
	raw, err = profile.Agent(o)
	if err != nil {
		t.Fatal(err)
	}
	settings = agentSettings(t, raw)
	wantKeys(t, "agent settings with a run budget", settings, "VerifierAddress", "CAPEM", "CAFingerprint", "EnrollSecret", "RunBudget", "OsquerySocket")
	wantEqual(t, "RunBudget", intField(t, "settings", settings, "RunBudget"), 150)
	if payloadUUID(t, raw) == noBudget {
		t.Error("a run budget left the settings payload's UUID unchanged")
	}
}

// payloadUUID is the PayloadUUID of an agent profile's settings payload.
func payloadUUID(t *testing.T, raw []byte) string {
	t.Helper()
	var doc map[string]any
	if err := plist.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	content := field[[]any](t, "profile", doc, "PayloadContent")
	return field[string](t, "preferences", content[0].(map[string]any), "PayloadUUID")
}

// TestAgentSettingsSuitTheAgent: every key the agent profile writes is one
// the agent knows, holding a value the agent's own validator accepts, read
// from the plist macOS would write to /Library/Managed Preferences.
func TestAgentSettingsSuitTheAgent(t *testing.T) {
	t.Parallel()
	variants := map[string]func(*profile.AgentOptions){
		"defaults":         func(*profile.AgentOptions) {},
		"no interval":      func(o *profile.AgentOptions) { o.Interval = 0 },
		"shortest":         func(o *profile.AgentOptions) { o.Interval = time.Second },
		"a day":            func(o *profile.AgentOptions) { o.Interval = 24 * time.Hour },
		"run budget":       func(o *profile.AgentOptions) { o.RunBudget = 90 * time.Second },
		"least budget":     func(o *profile.AgentOptions) { o.RunBudget = 10 * time.Second },
		"most budget":      func(o *profile.AgentOptions) { o.RunBudget = 3 * time.Minute },
		"IPv6 verifier":    func(o *profile.AgentOptions) { o.VerifierAddress = "[2001:db8::1]:8443" },
		"highest port":     func(o *profile.AgentOptions) { o.VerifierAddress = "v.example:65535" },
		"other identifier": func(o *profile.AgentOptions) { o.Identifier = "com.example.clearance" },
	}
	for name, change := range variants {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o := agentOptions(t)
			change(&o)
			raw, err := profile.Agent(o)
			if err != nil {
				t.Fatal(err)
			}
			settings := agentSettings(t, raw)
			managed, err := plist.Marshal(settings)
			if err != nil {
				t.Fatal(err)
			}
			values, _, err := agentprefs.ParsePlist(managed)
			if err != nil {
				t.Fatalf("the agent refuses the managed plist: %v", err)
			}
			if len(values) != len(settings) {
				t.Errorf("the agent reads %d of the %d keys written", len(values), len(settings))
			}
			for key, v := range values {
				if !slices.Contains(agentprefs.Keys(), key) {
					t.Errorf("key %s is not one the agent knows", key)
				}
				if err := agentprefs.Check(key, v); err != nil {
					t.Errorf("the agent refuses %s: %v", key, err)
				}
			}
		})
	}
}

// agentSettings digs the agent's settings out of a profile, the dictionary
// macOS writes to /Library/Managed Preferences/com.clearance.agent.plist.
func agentSettings(t testing.TB, raw []byte) map[string]any {
	t.Helper()
	doc := decode(t, raw)
	prefs := field[[]any](t, "profile", doc, "PayloadContent")[0].(map[string]any)
	domains := field[map[string]any](t, "preferences", prefs, "PayloadContent")
	wantKeys(t, "preference domains", domains, "com.clearance.agent")
	domain := field[map[string]any](t, "preferences", domains, "com.clearance.agent")
	wantKeys(t, "com.clearance.agent", domain, "Forced")
	forced := field[[]any](t, "domain", domain, "Forced")
	if len(forced) != 1 {
		t.Fatalf("Forced has %d entries, want 1", len(forced))
	}
	entry, ok := forced[0].(map[string]any)
	if !ok {
		t.Fatalf("Forced entry is %T", forced[0])
	}
	wantKeys(t, "Forced entry", entry, "mcx_preference_settings")
	return field[map[string]any](t, "forced", entry, "mcx_preference_settings")
}

// TestDeterministic checks the promise that same inputs give the same file,
// against golden files so a change in output shows up in review.
func TestDeterministic(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		gen  func() ([]byte, error)
	}{
		{"user-scope.mobileconfig", func() ([]byte, error) { return profile.UserScope(userOptions(t)) }},
		{"agent.mobileconfig", func() ([]byte, error) { return profile.Agent(agentOptions(t)) }},
		{"login-item.mobileconfig", func() ([]byte, error) {
			return profile.LoginItem(profile.LoginItemOptions{Organization: "Example Corp"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, err := tc.gen()
			if err != nil {
				t.Fatal(err)
			}
			b, err := tc.gen()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Fatal("two runs with the same inputs differ")
			}
			golden := filepath.Join("testdata", tc.name)
			if *update {
				if err := os.WriteFile(golden, a, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(a, want) {
				t.Errorf("output differs from %s (run with -update if the change is intended)", golden)
			}
		})
	}
}

// payloadUUIDs returns each payload's UUID by PayloadType, plus the profile's.
func payloadUUIDs(t testing.TB, raw []byte) map[string]string {
	t.Helper()
	doc := decode(t, raw)
	out := map[string]string{"Configuration": field[string](t, "profile", doc, "PayloadUUID")}
	for _, c := range field[[]any](t, "profile", doc, "PayloadContent") {
		p := c.(map[string]any)
		out[field[string](t, "payload", p, "PayloadType")] = field[string](t, "payload", p, "PayloadUUID")
	}
	return out
}

func TestUUIDInputs(t *testing.T) {
	t.Parallel()
	gen := func(mut func(*profile.UserScopeOptions)) map[string]string {
		o := userOptions(t)
		mut(&o)
		raw, err := profile.UserScope(o)
		if err != nil {
			t.Fatal(err)
		}
		return payloadUUIDs(t, raw)
	}
	base := gen(func(*profile.UserScopeOptions) {})

	// A rotated challenge changes no UUID: secrets are not hashed into them.
	if got := gen(func(o *profile.UserScopeOptions) { o.Challenge = "another-challenge" }); !maps.Equal(got, base) {
		t.Errorf("changing the challenge changed UUIDs: %v vs %v", got, base)
	}
	// Another SCEP URL is another SCEP payload, and the identity preference
	// that points at it changes with it.
	got := gen(func(o *profile.UserScopeOptions) { o.SCEPURL = "https://other.example.com/scep" })
	for _, typ := range []string{"com.apple.security.scep", "com.apple.security.identitypreference", "Configuration"} {
		if got[typ] == base[typ] {
			t.Errorf("%s UUID did not change with the SCEP URL", typ)
		}
	}
	if got["com.apple.security.root"] != base["com.apple.security.root"] {
		t.Error("root UUID changed with the SCEP URL")
	}
	// Another identifier: every UUID changes, so two deployments never collide.
	got = gen(func(o *profile.UserScopeOptions) { o.Identifier = "com.example.other" })
	for typ, u := range got {
		if base[typ] == u {
			t.Errorf("%s UUID did not change with the identifier", typ)
		}
	}

	// The agent profile: a new enroll secret changes no UUID either.
	o := agentOptions(t)
	a, _ := profile.Agent(o)
	o.EnrollSecret = "another-secret"
	b, _ := profile.Agent(o)
	if !maps.Equal(payloadUUIDs(t, a), payloadUUIDs(t, b)) {
		t.Error("changing the enroll secret changed agent profile UUIDs")
	}
}

func TestUserScopeValidation(t *testing.T) {
	t.Parallel()
	leaf := testCA(t, "not a CA", false)
	for _, tc := range []struct {
		name string
		mut  func(*profile.UserScopeOptions)
		want []string
	}{
		{"no organization", func(o *profile.UserScopeOptions) { o.Organization = " " }, []string{"organization is required"}},
		{"no SCEP URL", func(o *profile.UserScopeOptions) { o.SCEPURL = "" }, []string{"SCEP URL is required"}},
		{"SCEP URL not http", func(o *profile.UserScopeOptions) { o.SCEPURL = "ftp://x/scep" }, []string{"must be an http:// or https:// URL"}},
		{"SCEP URL relative", func(o *profile.UserScopeOptions) { o.SCEPURL = "/scep" }, []string{"must be an http:// or https:// URL"}},
		{"no challenge", func(o *profile.UserScopeOptions) { o.Challenge = "" }, []string{"SCEP challenge is required"}},
		{"no SSO URL", func(o *profile.UserScopeOptions) { o.SSOURL = "" }, []string{"SSO URL is required"}},
		{"SSO URL http", func(o *profile.UserScopeOptions) { o.SSOURL = "http://sso.example.com/saml/sso" }, []string{"must be an https:// URL"}},
		{"SSO URL no host", func(o *profile.UserScopeOptions) { o.SSOURL = "https:///saml/sso" }, []string{"has no host"}},
		{"no CA", func(o *profile.UserScopeOptions) { o.CACert = nil }, []string{"CA certificate is required"}},
		{"leaf as CA", func(o *profile.UserScopeOptions) { o.CACert = leaf }, []string{"is not a CA certificate"}},
		{"no issuer CN", func(o *profile.UserScopeOptions) { o.IssuerCN = "" }, []string{"issuer CN is required"}},
		{"bad identifier", func(o *profile.UserScopeOptions) { o.Identifier = "com example" }, []string{"identifier \"com example\""}},
		{"empty identifier part", func(o *profile.UserScopeOptions) { o.Identifier = "com..example" }, []string{"empty dot-separated part"}},
		{"small key", func(o *profile.UserScopeOptions) { o.KeySize = 1024 }, []string{"key size 1024 is not supported"}},
		{"bad UUID variable", func(o *profile.UserScopeOptions) { o.HardwareUUIDVariable = "ABC" }, []string{"does not look like a profile variable"}},
		{"everything missing", func(o *profile.UserScopeOptions) { *o = profile.UserScopeOptions{} }, []string{
			"organization is required", "SCEP URL is required", "SCEP challenge is required",
			"SSO URL is required", "CA certificate is required", "issuer CN is required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := userOptions(t)
			tc.mut(&o)
			out, err := profile.UserScope(o)
			if err == nil {
				t.Fatalf("no error; profile:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "user-scope profile: ") {
				t.Errorf("error %q does not name the profile", err)
			}
			if o.Challenge != "" && strings.Contains(err.Error(), o.Challenge) {
				t.Errorf("error %q shows the challenge", err)
			}
		})
	}
}

func TestAgentValidation(t *testing.T) {
	t.Parallel()
	leaf := testCA(t, "not a CA", false)
	for _, tc := range []struct {
		name string
		mut  func(*profile.AgentOptions)
		want []string
	}{
		{"no organization", func(o *profile.AgentOptions) { o.Organization = "" }, []string{"organization is required"}},
		{"no verifier", func(o *profile.AgentOptions) { o.VerifierAddress = "" }, []string{"verifier address is required"}},
		{"verifier without port", func(o *profile.AgentOptions) { o.VerifierAddress = "verifier.example.com" }, []string{"is not HOST:PORT"}},
		{"verifier URL", func(o *profile.AgentOptions) { o.VerifierAddress = "https://verifier.example.com:443" }, []string{"is not HOST:PORT"}},
		{"verifier bad port", func(o *profile.AgentOptions) { o.VerifierAddress = "verifier.example.com:99999" }, []string{"not a number between 1 and 65535"}},
		{"verifier no host", func(o *profile.AgentOptions) { o.VerifierAddress = ":8443" }, []string{"has no host"}},
		{"no secret", func(o *profile.AgentOptions) { o.EnrollSecret = "  " }, []string{"enroll secret is required"}},
		{"secret with newline", func(o *profile.AgentOptions) { o.EnrollSecret = testSecret + "\n" }, []string{"white space"}},
		{"no CA", func(o *profile.AgentOptions) { o.CACert = nil }, []string{"CA certificate is required"}},
		{"leaf as CA", func(o *profile.AgentOptions) { o.CACert = leaf }, []string{"is not a CA certificate"}},
		{"negative interval", func(o *profile.AgentOptions) { o.Interval = -time.Second }, []string{"is negative"}},
		{"sub-second interval", func(o *profile.AgentOptions) { o.Interval = 500 * time.Millisecond }, []string{"minimum of 1s"}},
		{"fractional interval", func(o *profile.AgentOptions) { o.Interval = 1500 * time.Millisecond }, []string{"whole number of seconds"}},
		{"relative socket", func(o *profile.AgentOptions) { o.OsquerySocket = "var/osquery/osquery.em" }, []string{`osquery socket "var/osquery/osquery.em" is not an absolute path`}},
		{"relative osqueryd", func(o *profile.AgentOptions) { o.OsquerySocket, o.OsquerydPath = "", "osqueryd" }, []string{`osqueryd "osqueryd" is not an absolute path`}},
		{"short run budget", func(o *profile.AgentOptions) { o.RunBudget = 9 * time.Second }, []string{"run budget", "minimum of 10s"}},
		{"negative run budget", func(o *profile.AgentOptions) { o.RunBudget = -time.Minute }, []string{"run budget", "minimum of 10s"}},
		{"long run budget", func(o *profile.AgentOptions) { o.RunBudget = 3*time.Minute + time.Second }, []string{"run budget", "maximum of 3m0s"}},
		{"fractional run budget", func(o *profile.AgentOptions) { o.RunBudget = 90*time.Second + time.Millisecond }, []string{"run budget", "whole number of seconds"}},
		{"bad identifier", func(o *profile.AgentOptions) { o.Identifier = "com/example" }, []string{"identifier \"com/example\""}},
		{"everything missing", func(o *profile.AgentOptions) { *o = profile.AgentOptions{} }, []string{
			"organization is required", "verifier address is required", "enroll secret is required", "CA certificate is required", "osquery: give the extensions socket"}},
		{"both ways to osquery", func(o *profile.AgentOptions) { o.OsquerydPath = "/usr/local/bin/osqueryd" }, []string{"not both"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := agentOptions(t)
			tc.mut(&o)
			out, err := profile.Agent(o)
			if err == nil {
				t.Fatalf("no error; profile:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), "agent profile: ") {
				t.Errorf("error %q does not name the profile", err)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("error %q shows the enroll secret", err)
			}
		})
	}
}

// TestLoginItem: one managed login items payload whose one rule is the
// agent daemon's launchd label, the label the package installs.
func TestLoginItem(t *testing.T) {
	t.Parallel()
	raw, err := profile.LoginItem(profile.LoginItemOptions{Organization: "Example Corp"})
	if err != nil {
		t.Fatal(err)
	}
	doc := decode(t, raw)
	wantKeys(t, "profile", doc, "PayloadContent", "PayloadDescription", "PayloadDisplayName",
		"PayloadIdentifier", "PayloadOrganization", "PayloadScope", "PayloadType", "PayloadUUID", "PayloadVersion")
	top := checkCommon(t, "profile", doc, "Configuration", profile.DefaultLoginItemIdentifier)
	wantEqual(t, "PayloadScope", field[string](t, "profile", doc, "PayloadScope"), "System")
	wantEqual(t, "PayloadOrganization", field[string](t, "profile", doc, "PayloadOrganization"), "Example Corp")
	content := field[[]any](t, "profile", doc, "PayloadContent")
	if len(content) != 1 {
		t.Fatalf("%d payloads, want 1", len(content))
	}
	item := content[0].(map[string]any)
	wantKeys(t, "login item payload", item, "PayloadDisplayName", "PayloadIdentifier", "PayloadType", "PayloadUUID", "PayloadVersion", "Rules")
	if u := checkCommon(t, "login item payload", item, "com.apple.servicemanagement", profile.DefaultLoginItemIdentifier+".servicemanagement"); u == top {
		t.Error("profile and payload share a UUID")
	}
	rules := field[[]any](t, "login item payload", item, "Rules")
	if len(rules) != 1 {
		t.Fatalf("%d rules, want 1", len(rules))
	}
	rule := rules[0].(map[string]any)
	wantKeys(t, "rule", rule, "Comment", "RuleType", "RuleValue")
	wantEqual(t, "RuleType", field[string](t, "rule", rule, "RuleType"), "Label")
	wantEqual(t, "RuleValue", field[string](t, "rule", rule, "RuleValue"), agentprefs.Label)

	// osqueryd's daemon, when named, is kept running by a rule of its
	// own: the agent checks nothing without it.
	for _, label := range []string{profile.DefaultOsqueryLabel, profile.OrbitLabel} {
		raw, err := profile.LoginItem(profile.LoginItemOptions{Organization: "Example Corp", OsqueryLabel: label})
		if err != nil {
			t.Fatal(err)
		}
		content := field[[]any](t, "profile", decode(t, raw), "PayloadContent")
		rules := field[[]any](t, "login item payload", content[0].(map[string]any), "Rules")
		if len(rules) != 2 {
			t.Fatalf("%s: %d rules, want 2", label, len(rules))
		}
		for i, want := range []string{agentprefs.Label, label} {
			rule := rules[i].(map[string]any)
			wantEqual(t, "RuleType", field[string](t, "rule", rule, "RuleType"), "Label")
			wantEqual(t, "RuleValue", field[string](t, "rule", rule, "RuleValue"), want)
		}
	}

	// Its UUIDs are none of the agent profile's: an MDM keys on them.
	agent, err := profile.Agent(agentOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	theirs := payloadUUIDs(t, agent)
	for typ, u := range payloadUUIDs(t, raw) {
		for other, v := range theirs {
			if u == v {
				t.Errorf("%s UUID is the agent profile's %s UUID", typ, other)
			}
		}
	}
	// Another identifier, other UUIDs.
	other, err := profile.LoginItem(profile.LoginItemOptions{Organization: "Example Corp", Identifier: "com.example.clearance.login-item"})
	if err != nil {
		t.Fatal(err)
	}
	for typ, u := range payloadUUIDs(t, other) {
		if payloadUUIDs(t, raw)[typ] == u {
			t.Errorf("%s UUID did not change with the identifier", typ)
		}
	}
}

func TestLoginItemValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		o    profile.LoginItemOptions
		want []string
	}{
		{"no organization", profile.LoginItemOptions{Organization: " "}, []string{"organization is required"}},
		{"bad identifier", profile.LoginItemOptions{Organization: "Example Corp", Identifier: "com example"}, []string{`identifier "com example"`}},
		{"empty part", profile.LoginItemOptions{Organization: "Example Corp", Identifier: "com..example"}, []string{"empty dot-separated part"}},
		{"everything missing", profile.LoginItemOptions{Identifier: ".x"}, []string{"organization is required", "empty dot-separated part"}},
		{"bad osquery label", profile.LoginItemOptions{Organization: "Example Corp", OsqueryLabel: "io.osquery agent"}, []string{`osquery's label: identifier "io.osquery agent"`}},
		{"osquery label the agent's", profile.LoginItemOptions{Organization: "Example Corp", OsqueryLabel: agentprefs.Label}, []string{"is the agent's own"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := profile.LoginItem(tc.o)
			if err == nil {
				t.Fatalf("no error; profile:\n%s", out)
			}
			if !strings.HasPrefix(err.Error(), "login-item profile: ") {
				t.Errorf("error %q does not name the profile", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
