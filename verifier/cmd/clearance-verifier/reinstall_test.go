package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/protoagent"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestExpectReinstallMany: Macs named by id and by a file of serial numbers
// (an MDM export's header, comments and quotes allowed) are each expected
// once; a serial number no enrolled Mac has, or a line that is not one,
// changes nothing, named in the error; --cancel takes them all back.
func TestExpectReinstallMany(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	out, _, err := execute(noEnv, "secret", "create", "--data-dir", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	secret := lastLine(out)
	uuids := []string{"0A1B2C3D-4E5F-4061-8172-839405A6B7E1", "0A1B2C3D-4E5F-4061-8172-839405A6B7E2", "0A1B2C3D-4E5F-4061-8172-839405A6B7E3"}
	var macs []*protoagent.Agent
	for _, u := range uuids {
		macs = append(macs, s.enroll(t, secret, u, agentv1.PolicyStatus_POLICY_STATUS_PASS))
	}
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	expected := func() map[string]bool {
		t.Helper()
		got := map[string]bool{}
		for _, m := range macs {
			until, err := s.srv.Store.ReinstallExpected(t.Context(), m.DeviceID)
			if err != nil {
				t.Fatal(err)
			}
			got[m.DeviceID] = until.After(time.Now())
		}
		return got
	}

	bad := write("bad.txt", "Serial Number\n"+protoagent.SerialFor(uuids[0])+"\nC02NOSUCHMAC\n")
	if _, _, err := execute(noEnv, "devices", "expect-reinstall", "--data-dir", s.dir, "--serials", bad); err == nil ||
		!strings.Contains(err.Error(), `nothing changed: no enrolled Mac has serial number "C02NOSUCHMAC"`) {
		t.Fatalf("an unknown serial number: %v", err)
	}
	hostile := write("hostile.txt", protoagent.SerialFor(uuids[0])+"\nC02 \x1b[31mRED\n")
	if _, _, err := execute(noEnv, "devices", "expect-reinstall", "--data-dir", s.dir, "--serials", hostile); err == nil ||
		!strings.Contains(err.Error(), "line 2") || strings.Contains(err.Error(), "\x1b") {
		t.Fatalf("a line that is not a serial number: %v", err)
	}
	for id, on := range expected() {
		if on {
			t.Fatalf("%s expected after refused calls", id)
		}
	}

	good := write("lab.csv", "\"Serial Number\"\n# the lab\n\""+protoagent.SerialFor(uuids[0])+"\"\n"+
		strings.ToLower(protoagent.SerialFor(uuids[1]))+"  # second row\n\n")
	out, _, err = execute(noEnv, "devices", "expect-reinstall", "--data-dir", s.dir, "--within", "2h", "--serials", good, macs[1].DeviceID[:8])
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "reinstall expected: "); n != 2 || !strings.Contains(out, macs[0].DeviceID) || !strings.Contains(out, macs[1].DeviceID) {
		t.Fatalf("two Macs, one named twice:\n%s", out)
	}
	if got := expected(); !got[macs[0].DeviceID] || !got[macs[1].DeviceID] || got[macs[2].DeviceID] {
		t.Fatalf("expected after the call: %v", got)
	}
	if _, _, err := execute(noEnv, "devices", "expect-reinstall", "--data-dir", s.dir, "--cancel", "--serials", good); err != nil {
		t.Fatal(err)
	}
	for id, on := range expected() {
		if on {
			t.Errorf("%s still expected after --cancel", id)
		}
	}
	if _, _, err := execute(noEnv, "devices", "expect-reinstall", "--data-dir", s.dir); err == nil || !strings.Contains(err.Error(), "--serials FILE") {
		t.Errorf("no Mac named: %v", err)
	}
}

// TestParseSerials: what an MDM export looks like is read; what is not a
// list of serial numbers is refused, saying where.
func TestParseSerials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     []string
		err      string
	}{
		{"plain", "C02AAA\nC02BBB\n", []string{"C02AAA", "C02BBB"}, ""},
		{"export", "\"Serial Number\"\r\n\"C02AAA\",\r\n# spare\r\nC02BBB # desk 4\r\n\r\n", []string{"C02AAA", "C02BBB"}, ""},
		{"no newline at the end", "C02AAA", []string{"C02AAA"}, ""},
		{"empty", "", nil, "holds no serial number"},
		{"only a header", "Serial Number\n", nil, "holds no serial number"},
		{"a header not first", "C02AAA\nSerial Number\n", nil, "line 2"},
		{"two columns", "C02AAA,Design Mac\n", nil, "line 1"},
		{"an escape", "C02\x1b[2J\n", nil, "line 1"},
		{"not UTF-8", "C02\xff\xfe\n", nil, "line 1"},
		{"a NUL", "C02\x00AAA\n", nil, "line 1"},
		{"too long", strings.Repeat("A", 65) + "\n", nil, "line 1"},
		{"too many", strings.Repeat("C02AAA\n", maxReinstallBatch+1), nil, "more than 500 serial numbers"},
		{"one huge line", strings.Repeat("A", maxSerialsFile+10), nil, "more than 1048576 bytes"},
		{"too many bytes", strings.Repeat("#"+strings.Repeat(" ", 1000)+"\n", 1100), nil, "more than 1048576 bytes"},
	} {
		got, err := parseSerials(strings.NewReader(tc.in), "lab.txt")
		switch {
		case tc.err == "" && (err != nil || strings.Join(got, ",") != strings.Join(tc.want, ",")):
			t.Errorf("%s: %q %v, want %q", tc.name, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "lab.txt")):
			t.Errorf("%s: %q %v, want an error with %q", tc.name, got, err, tc.err)
		case err != nil && strings.ContainsAny(err.Error(), "\x1b\x00"):
			t.Errorf("%s: the error carries a control character: %q", tc.name, err)
		}
	}
}

// FuzzParseSerials: any bytes give serial numbers that are each 1 to 64
// printable ASCII characters without a space, at most 500, or an error
// that carries no control character.
func FuzzParseSerials(f *testing.F) {
	f.Add([]byte("Serial Number\nC02AAA\n\"C02BBB\",\n# c\n"))
	f.Add([]byte("C02\x1b[31m\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseSerials(bytes.NewReader(b), "f")
		if err != nil {
			if strings.ContainsFunc(err.Error(), func(r rune) bool { return r < ' ' || r == 0x7f }) {
				t.Fatalf("error with a control character: %q", err)
			}
			return
		}
		if len(got) == 0 || len(got) > maxReinstallBatch {
			t.Fatalf("%d serial numbers", len(got))
		}
		for _, s := range got {
			if s == "" || len(s) > 64 || strings.ContainsFunc(s, func(r rune) bool { return r < '!' || r > '~' }) {
				t.Fatalf("serial number %q", s)
			}
		}
	})
}
