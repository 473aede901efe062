package datadir

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dataDir makes a directory with the files serve's first start leaves.
func dataDir(t *testing.T, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range append([]string{"ca.pem", "admin.token"}, files...) {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const (
	pgURL      = "postgres://clearance:s3cret-pw@db.example.com/clearance?sslmode=verify-full"
	pgRedacted = "postgres://clearance@db.example.com/clearance?sslmode=verify-full"
)

func TestWriteNeverKeepsThePassword(t *testing.T) {
	t.Parallel()
	for _, db := range []string{
		pgURL,
		"postgres://clearance@db.example.com/clearance?password=s3cret-pw&sslmode=require",
		"postgresql://u:s3cret-pw@[::1]:6543/x?sslpassword=s3cret-pw",
		// A pair url.Query skips, which RawQuery kept.
		"postgres://clearance@db.example.com/clearance?sslmode=require;password=s3cret-pw",
		"postgres://clearance@db.example.com/clearance?sslmode=require&password=s3cret-pw;x=1",
		"postgres://clearance@db.example.com/clearance?pass%77ord=s3cret-pw",
		"postgres://clearance@db.example.com/clearance?PASSWORD=s3cret-pw&sslmode=require",
		"postgres://clearance@db.example.com/clearance?sslmode=require#password=s3cret-pw",
	} {
		dir := dataDir(t)
		if err := Write(dir, Record{Database: db, GRPCAddress: ":8443"}); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(dir, RecordFile))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), "s3cret-pw") {
			t.Errorf("the record holds the password:\n%s", raw)
		}
		rec, err := Read(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !Same(rec.Database, db) || rec.GRPCAddress != ":8443" {
			t.Errorf("read back %+v for %s", rec, db)
		}
		st, _ := os.Stat(filepath.Join(dir, RecordFile))
		if st.Mode().Perm() != 0o600 {
			t.Errorf("mode %v", st.Mode())
		}
	}
}

func TestDatabase(t *testing.T) {
	t.Parallel()
	withRecord := func(db string) string {
		dir := dataDir(t)
		if err := Write(dir, Record{Database: db}); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	sqliteDir := withRecord("")
	pgDir := withRecord(pgURL)
	legacySQLite := dataDir(t, SQLiteFile)
	legacyBare := dataDir(t)
	notDataDir := t.TempDir()
	tests := []struct {
		name, dir, given string
		want             string
		wantErr          []string
	}{
		{"sqlite", sqliteDir, "", "", nil},
		{"sqlite, but postgres given", sqliteDir, pgURL, "", []string{"uses SQLite in the data dir", "PostgreSQL db.example.com:5432/clearance", "never be read"}},
		{"postgres from the record", pgDir, "", pgRedacted, nil},
		{"postgres given with its password", pgDir, pgURL, pgURL, nil},
		{"postgres given as another user", pgDir, "postgres://other:pw@db.example.com:5432/clearance", "postgres://other:pw@db.example.com:5432/clearance", nil},
		{"another postgres database", pgDir, "postgres://clearance:pw@db.example.com/other", "", []string{"uses PostgreSQL db.example.com:5432/clearance", "PostgreSQL db.example.com:5432/other"}},
		{"another postgres host", pgDir, "postgres://clearance@db2.example.com/clearance", "", []string{"db2.example.com"}},
		{"legacy sqlite", legacySQLite, "", "", nil},
		{"legacy, explicit postgres", legacyBare, pgURL, pgURL, nil},
		{"legacy, nothing", legacyBare, "", "", []string{"no serve.json", "no clearance.db", "--database"}},
		{"not a data dir", notDataDir, "", "", []string{"not a clearance-verifier data dir", "ca.pem or admin.token"}},
		{"missing", filepath.Join(notDataDir, "typo"), "", "", []string{"does not exist", "clearance-verifier serve --data-dir"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Database(tc.dir, tc.given)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("got %q, want an error", got)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				if strings.Contains(err.Error(), "s3cret-pw") || strings.Contains(err.Error(), ":pw@") {
					t.Errorf("error shows a password: %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestCheckNamesWhatIsMissing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := Check(dir)
	if err == nil || !strings.Contains(err.Error(), "no admin.token") || strings.Contains(err.Error(), "no ca.pem") {
		t.Errorf("err = %v", err)
	}
	file := filepath.Join(dir, "ca.pem")
	if err := Check(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("err = %v", err)
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"empty":           "",
		"not json":        "database=sqlite",
		"unknown field":   `{"database":"sqlite","password":"x"}`,
		"two values":      `{"database":"sqlite"}{"database":"sqlite"}`,
		"other database":  `{"database":"mysql://x"}`,
		"password":        `{"database":"postgres://u:pw@h/db"}`,
		"hidden password": `{"database":"postgres://u@h/db?sslmode=require;password=pw"}`,
		"password param":  `{"database":"postgres://u@h/db?sslpassword=pw"}`,
		"fragment":        `{"database":"postgres://u@h/db#password=pw"}`,
		"bad address":     `{"database":"sqlite","grpc_address":"8443"}`,
		"array":           `["sqlite"]`,
		"oversized":       `{"database":"sqlite","grpc_address":"` + strings.Repeat("a", maxRecordSize) + `"}`,
		"deep":            strings.Repeat("[", 10000),
	} {
		if r, err := Parse([]byte(body)); err == nil {
			t.Errorf("%s: accepted as %+v", name, r)
		}
	}
}

func TestGRPCAddress(t *testing.T) {
	t.Parallel()
	for rec, want := range map[string]string{
		":8443":           "localhost:8443",
		"0.0.0.0:9443":    "localhost:9443",
		"[::]:9443":       "localhost:9443",
		"127.0.0.1:40000": "127.0.0.1:40000",
		"":                "localhost:8443",
	} {
		dir := dataDir(t)
		if err := Write(dir, Record{Database: SQLite, GRPCAddress: rec}); err != nil {
			t.Fatal(err)
		}
		if got := GRPCAddress(dir, "localhost:8443"); got != want {
			t.Errorf("%q: got %q, want %q", rec, got, want)
		}
	}
	if got := GRPCAddress(t.TempDir(), "localhost:8443"); got != "localhost:8443" {
		t.Errorf("no record: %q", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"database":"sqlite","grpc_address":":8443"}`))
	f.Add([]byte(`{"database":"postgres://u@h:5432/db?sslmode=require"}`))
	f.Add([]byte(`{"database":"postgres://u:p@h/db"}`))
	f.Add([]byte(`{"database":"postgres://u@h/db?sslmode=require;password=pw"}`))
	f.Add([]byte(`{"database":"postgres://u@h/db?pass%77ord=pw#password=pw"}`))
	f.Add([]byte(`{"database":"postgres://0?=pAssword"}`))
	f.Add([]byte(`{"database":"postgres://u@h/db?options=-c%20password%3Dpw"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(data)
		if err != nil {
			return
		}
		if Redact(r.Database) != r.Database {
			t.Errorf("accepted a record with a password: %q", r.Database)
		}
		if u, err := url.Parse(r.Database); err == nil {
			q, _ := url.QueryUnescape(u.RawQuery)
			for _, part := range []string{q, u.RawQuery, u.Fragment} {
				if strings.Contains(strings.ToLower(part), "password") {
					t.Errorf("accepted a record with a password parameter: %q", r.Database)
				}
			}
		}
	})
}

// TestCheckRefusesADirOthersControl: the record says where the admin token
// and the database password go, so a data dir another user can write is
// not one to act on.
func TestCheckRefusesADirOthersControl(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode os.FileMode
		want string // "" accepts
	}{
		{0o700, ""}, {0o755, ""}, {0o750, ""},
		{0o775, "writable by group or others (mode 0775)"},
		{0o777, "writable by group or others (mode 0777)"},
		{0o757, "chmod go-w"},
	} {
		dir := dataDir(t)
		if err := os.Chmod(dir, tc.mode); err != nil {
			t.Fatal(err)
		}
		for _, check := range []func() error{
			func() error { return Check(dir) },
			func() error { _, err := Database(dir, ""); return err },
		} {
			err := check()
			if tc.want == "" && err != nil && !strings.Contains(err.Error(), RecordFile) {
				t.Errorf("mode %04o: %v", tc.mode, err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("mode %04o: got %v, want an error with %q", tc.mode, err, tc.want)
			}
		}
	}
	if os.Geteuid() != 0 {
		t.Log("not root: the test of a data dir owned by another user needs chown")
		return
	}
	dir := dataDir(t)
	if err := os.Chown(dir, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if err := Check(dir); err == nil || !strings.Contains(err.Error(), "is owned by uid 4242, not by this user (uid 0) or root") {
		t.Errorf("a data dir owned by another user: %v", err)
	}
}
