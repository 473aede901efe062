package agentprefs

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/testkit/testpki"
)

func TestKeysAreStable(t *testing.T) {
	t.Parallel()
	// Managed Macs hold these names in profiles already delivered; renaming
	// one silently unconfigures every one of them.
	want := []string{"VerifierAddress", "CAFile", "CAPEM", "CAFingerprint", "EnrollSecret", "OsquerySocket", "OsquerydPath", "StateDir", "Interval", "RunBudget", "LogLevel", "LogFormat", "PresenceListen", "PresenceBrowsers"}
	if got := Keys(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Keys() = %v, want %v", got, want)
	}
	if Domain != "com.clearance.agent" || ManagedPlistPath != "/Library/Managed Preferences/com.clearance.agent.plist" {
		t.Errorf("domain %q, managed plist %q", Domain, ManagedPlistPath)
	}
}

func testCAPEM(t *testing.T) string {
	t.Helper()
	return string(testpki.NewCA(t, testpki.CN("test root")).CertPEM())
}

func TestCheck(t *testing.T) {
	t.Parallel()
	ca := testCAPEM(t)
	fp := strings.Repeat("ab", 32)
	tests := []struct {
		key, value string
		want       string // "" accepts; else a fragment of the error
	}{
		{KeyVerifier, "verifier.example.com:8443", ""},
		{KeyVerifier, "[::1]:8443", ""},
		{KeyVerifier, "verifier.example.com", "not HOST:PORT"},
		{KeyVerifier, ":8443", "has no host"},
		{KeyVerifier, "v:0", "between 1 and 65535"},
		{KeyVerifier, "v:65536", "between 1 and 65535"},
		{KeyVerifier, "v:https", "between 1 and 65535"},
		{KeyVerifier, "", "not HOST:PORT"},
		{KeyCAFile, "/etc/clearance/ca.pem", ""},
		{KeyCAFile, "", "is empty"},
		{KeyCAPEM, ca, ""},
		{KeyCAPEM, ca + ca, ""},
		{KeyCAPEM, "not pem", "no PEM certificate"},
		{KeyCAPEM, ca + "trailing", "not PEM"},
		{KeyCAPEM, strings.Replace(ca, "CERTIFICATE", "PRIVATE KEY", 2), "unexpected PEM block"},
		{KeyCAFingerprint, fp, ""},
		{KeyCAFingerprint, colons(fp), ""},
		{KeyCAFingerprint, fp[:62], "64 hex digits"},
		{KeyCAFingerprint, fp + "00", "64 hex digits"},
		{KeyCAFingerprint, strings.Repeat("zz", 32), "64 hex digits"},
		{KeyEnrollSecret, "s3cret", ""},
		{KeyEnrollSecret, " \t\n", "is empty"},
		{KeyOsquerySocket, "/var/osquery/osquery.em", ""},
		{KeyOsquerydPath, "", "is empty"},
		{KeyStateDir, "/var/db/clearance", ""},
		{KeyStateDir, "/private/var/clearance state", ""},
		{KeyStateDir, "", "is empty"},
		{KeyStateDir, "-clearance", `"-clearance" is not an absolute path`},
		{KeyStateDir, "var/clearance", `"var/clearance" is not an absolute path`},
		// Every path a plist gives is taken by launchd's agent in /: a
		// relative one names another file for status.
		{KeyCAFile, "/Library/Application Support/Clearance/ca.pem", ""},
		{KeyCAFile, "ca.pem", `"ca.pem" is not an absolute path`},
		{KeyOsquerySocket, "/var/osquery/osquery.em", ""},
		{KeyOsquerySocket, "var/osquery/osquery.em", `"var/osquery/osquery.em" is not an absolute path`},
		{KeyOsquerydPath, "/opt/osquery/lib/osquery.app/Contents/MacOS/osqueryd", ""},
		{KeyOsquerydPath, "osqueryd", `"osqueryd" is not an absolute path`},
		{KeyInterval, "5m", ""},
		{KeyInterval, "1s", ""},
		{KeyInterval, "300s", ""},
		{KeyInterval, "999ms", "shorter than the minimum of 1s"},
		{KeyInterval, "-5m", "shorter than the minimum of 1s"},
		{KeyInterval, "300", "not a duration"},
		{KeyInterval, "99999999999999999999s", "not a duration"},
		{KeyRunBudget, "2m", ""},
		{KeyRunBudget, "10s", ""},
		{KeyRunBudget, "3m", ""},
		{KeyRunBudget, "9s", "shorter than the minimum of 10s"},
		{KeyRunBudget, "-1m", "shorter than the minimum of 10s"},
		{KeyRunBudget, "3m1s", "longer than the maximum of 3m0s"},
		{KeyRunBudget, "120", "not a duration"},
		{KeyRunBudget, "99999999999999999999s", "not a duration"},
		{KeyLogLevel, "debug", ""},
		{KeyLogLevel, "WARN", ""},
		{KeyLogLevel, "loud", "not one of debug, info, warn, error"},
		{KeyLogFormat, "json", ""},
		{KeyLogFormat, "text", ""},
		{KeyLogFormat, "JSON", `"JSON" is not text or json`},
		{KeyLogFormat, "", `"" is not text or json`},
		{"VerifierAddres", "v:1", `unknown key "VerifierAddres"`},
		{"", "x", `unknown key ""`},
	}
	for _, tt := range tests {
		err := Check(tt.key, tt.value)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Check(%s, %.40q) = %v, want nil", tt.key, tt.value, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Check(%s, %.40q) = %v, want an error containing %q", tt.key, tt.value, err, tt.want)
		}
	}
}

func TestParseNormalizes(t *testing.T) {
	t.Parallel()
	if fp, err := ParseFingerprint(" " + colons(strings.Repeat("0f", 32)) + "\n"); err != nil || fp != strings.Repeat("0f", 32) {
		t.Errorf("ParseFingerprint = %q, %v", fp, err)
	}
	if s, err := ParseEnrollSecret("  s3cret\n"); err != nil || s != "s3cret" {
		t.Errorf("ParseEnrollSecret = %q, %v", s, err)
	}
	if d, err := ParseInterval("90s"); err != nil || d != 90*time.Second {
		t.Errorf("ParseInterval = %v, %v", d, err)
	}
	if l, err := ParseLogLevel("warn"); err != nil || l != slog.LevelWarn {
		t.Errorf("ParseLogLevel = %v, %v", l, err)
	}
}

func TestSecretNeverInErrors(t *testing.T) {
	t.Parallel()
	_, _, err := ParsePlist([]byte(plistDoc("<key>EnrollSecret</key><integer>123456789</integer>")))
	if err == nil || strings.Contains(err.Error(), "123456789") {
		t.Errorf("ParsePlist error %v", err)
	}
}

// colons writes hex as a certificate viewer does: "AB:CD:…".
func colons(hex string) string {
	var pairs []string
	for i := 0; i+2 <= len(hex); i += 2 {
		pairs = append(pairs, hex[i:i+2])
	}
	return strings.ToUpper(strings.Join(pairs, ":"))
}

func TestPresenceSettings(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"127.0.0.1:47470", "[::1]:47470", "127.0.0.2:9", "off"} {
		if err := Check(KeyPresenceListen, v); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
	for _, v := range []string{"", "0.0.0.0:47470", ":47470", "localhost:47470", "10.0.0.1:47470", "127.0.0.1:0", "127.0.0.1", "[::ffff:127.0.0.1]:1", "[fe80::1%lo]:1", "OFF"} {
		if err := Check(KeyPresenceListen, v); err == nil {
			t.Errorf("%q accepted", v)
		}
	}
	got, err := ParsePresenceBrowsers("EQHXZ8M8AV, /usr/lib/chromium/chromium,")
	if err != nil || strings.Join(got, "|") != "EQHXZ8M8AV|/usr/lib/chromium/chromium" {
		t.Errorf("ParsePresenceBrowsers = %v, %v", got, err)
	}
	for _, v := range []string{"", ",", "eqhxz8m8av", "chromium", "/usr/lib/../bin/sh", "EQHXZ8M8AV1"} {
		if _, err := ParsePresenceBrowsers(v); err == nil {
			t.Errorf("%q accepted", v)
		}
	}
}
