package osquerysim_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/clearance/clearance/internal/osquerysim"
)

func TestBuiltinFixtures(t *testing.T) {
	if got, want := osquerysim.Fixtures(), []string{"compliant-mac", "failing-mac"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Fixtures() = %v, want %v", got, want)
	}
	for _, name := range osquerysim.Fixtures() {
		f, err := osquerysim.LoadFixture(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// The built-in name and the shipped file are the same fixture.
		g, err := osquerysim.LoadFixture(filepath.Join("testdata", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(f, g) {
			t.Errorf("%s: embedded and testdata copies differ", name)
		}
	}
}

// The two fixtures differ in FileVault and the firewall, and in nothing a
// policy could see otherwise.
func TestFixtureFacts(t *testing.T) {
	queries := map[string]string{
		"filevault":   "SELECT count(*) AS n FROM disk_encryption WHERE filevault_status = 'on' AND user_uuid != ''",
		"firewall":    "SELECT global_state AS n FROM alf",
		"sip":         "SELECT enabled AS n FROM sip_config WHERE config_flag = 'sip'",
		"gatekeeper":  "SELECT assessments_enabled AS n FROM gatekeeper",
		"screenlock":  "SELECT enabled || '/' || grace_period AS n FROM screenlock",
		"os":          "SELECT version AS n FROM os_version",
		"model":       "SELECT hardware_model AS n FROM system_info",
		"user_cert":   "SELECT count(*) AS n FROM certificates WHERE ca = 0 AND issuer2 LIKE '%CN = Clearance Device CA' AND path LIKE '/Users/%'",
		"data_volume": "SELECT encrypted AS n FROM disk_encryption WHERE name = '/dev/disk3s5'",
	}
	want := map[string]map[string]string{
		"compliant-mac": {"filevault": "2", "firewall": "1", "sip": "1", "gatekeeper": "1", "screenlock": "1/0", "os": "15.6.1", "model": "Mac15,6", "user_cert": "1", "data_volume": "1"},
		// Apple silicon encrypts the volume even with FileVault off.
		"failing-mac": {"filevault": "0", "firewall": "0", "sip": "1", "gatekeeper": "1", "screenlock": "1/0", "os": "15.6.1", "model": "Mac15,6", "user_cert": "1", "data_volume": "1"},
	}
	for name, facts := range want {
		f, err := osquerysim.LoadFixture(name)
		if err != nil {
			t.Fatal(err)
		}
		sim, err := osquerysim.New(f, osquerysim.WithLogger(quiet))
		if err != nil {
			t.Fatal(err)
		}
		for fact, q := range queries {
			rows, err := sim.Query(context.Background(), q)
			if err != nil || len(rows) != 1 {
				t.Errorf("%s %s: %v, %v", name, fact, rows, err)
				continue
			}
			if rows[0]["n"] != facts[fact] {
				t.Errorf("%s %s = %q, want %q", name, fact, rows[0]["n"], facts[fact])
			}
		}
		sim.Close()
	}
}

func TestParseFixture(t *testing.T) {
	ok := []struct{ name, json string }{
		{"empty tables", `{"tables": {}}`},
		{"numbers and null", `{"tables": {"alf": [{"global_state": 1, "logging_enabled": null, "version": "1.6"}]}}`},
		{"hex and negative integers", `{"tables": {"screenlock": [{"enabled": "0x1", "grace_period": "-1"}]}}`},
		{"empty string in an integer column is NULL", `{"tables": {"os_version": [{"patch": ""}]}}`},
		{"description", `{"description": "x", "tables": {"users": []}}`},
	}
	for _, tc := range ok {
		if _, err := osquerysim.ParseFixture([]byte(tc.json)); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}

	bad := []struct{ name, json, want string }{
		{"unknown table", `{"tables": {"alfa": []}}`, `unknown table "alfa"`},
		{"unknown column", `{"tables": {"alf": [{"global_state": "1", "globalstate": "1"}]}}`, `table "alf" row 0: unknown column "globalstate"`},
		{"windows certificate column", `{"tables": {"certificates": [{"sid": "S-1-5-18"}]}}`, `unknown column "sid"`},
		{"not an integer", `{"tables": {"alf": [{"global_state": "on"}]}}`, `column "global_state": "on" is not an integer`},
		{"integer overflow", `{"tables": {"users": [{"uid": "99999999999999999999"}]}}`, `out of range`},
		{"fractional integer", `{"tables": {"alf": [{"global_state": 1.0}]}}`, `"1.0" is not an integer`},
		{"boolean", `{"tables": {"alf": [{"global_state": true}]}}`, `must be a string, a number or null`},
		{"nested object", `{"tables": {"alf": [{"version": {"x": 1}}]}}`, `must be a string, a number or null`},
		{"null row", `{"tables": {"alf": [null]}}`, `not null`},
		{"unknown top-level key", `{"tables": {}, "tabels": {}}`, `unknown field "tabels"`},
		{"no tables", `{"description": "x"}`, `no "tables"`},
		{"trailing data", `{"tables": {}} {"tables": {}}`, `unexpected data`},
		{"not JSON", `tables: {}`, `decoding fixture`},
	}
	for _, tc := range bad {
		_, err := osquerysim.ParseFixture([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error = %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestFixtureSizeLimit(t *testing.T) {
	// Valid JSON just over the cap: refused for size, not parsed.
	pad := bytes.Repeat([]byte(" "), osquerysim.MaxFixtureSize)
	big := append([]byte(`{"tables": {}}`), pad...)
	if _, err := osquerysim.ParseFixture(big); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("ParseFixture(oversized) = %v", err)
	}
	path := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(path, big, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := osquerysim.LoadFixture(path); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("LoadFixture(oversized) = %v", err)
	}
	if _, err := osquerysim.LoadFixture(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("LoadFixture(directory) = %v", err)
	}
	if _, err := osquerysim.LoadFixture(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("LoadFixture(missing) succeeded")
	}
}

func TestLoadFixtureErrorNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mac.json")
	if err := os.WriteFile(path, []byte(`{"tables": {"alf": [{"nope": "1"}]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := osquerysim.LoadFixture(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `unknown column "nope"`) {
		t.Errorf("LoadFixture = %v", err)
	}
}

func TestSchemaNames(t *testing.T) {
	for _, name := range []string{"system_info", "os_version", "disk_encryption", "alf", "sip_config", "gatekeeper", "screenlock", "users", "logged_in_users", "certificates", "osquery_info"} {
		if osquerysim.Columns(name) == nil {
			t.Errorf("table %s missing", name)
		}
	}
	for _, col := range osquerysim.Columns("certificates") {
		if col == "sid" || col == "username" || strings.HasPrefix(col, "store") {
			t.Errorf("certificates has Windows-only column %s", col)
		}
	}
}
