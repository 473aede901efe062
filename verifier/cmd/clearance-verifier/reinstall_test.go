package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/protoagent"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/storage"
)

// TestExpectReinstallMany: Macs named by id and by an MDM's export are each
// expected once; a serial number no enrolled Mac has, a line that is not
// one, or a revoked Mac changes nothing, named in the error; --cancel takes
// them all back.
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
	hostile := write("hostile.txt", protoagent.SerialFor(uuids[0])+"\nC02\x1b[31mRED\n")
	if _, _, err := execute(noEnv, "devices", "expect-reinstall", "--data-dir", s.dir, "--serials", hostile); err == nil ||
		!strings.Contains(err.Error(), "line 2") || strings.Contains(err.Error(), "\x1b") {
		t.Fatalf("a line that is not a serial number: %v", err)
	}
	// A revoked Mac, by id or by serial number, is found before anything
	// changes: the Mac named before it is not expected either.
	if _, _, err := execute(noEnv, "devices", "revoke", "--data-dir", s.dir, "--reason", "stolen", macs[2].DeviceID); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{macs[0].DeviceID[:8], macs[2].DeviceID[:8]},
		{"--serials", write("revoked.txt", protoagent.SerialFor(uuids[0])+"\n"+protoagent.SerialFor(uuids[2])+"\n")},
	} {
		_, _, err := execute(noEnv, append([]string{"devices", "expect-reinstall", "--data-dir", s.dir}, args...)...)
		if err == nil || !strings.Contains(err.Error(), "nothing changed") || !strings.Contains(err.Error(), "is revoked: it comes back only by approval") {
			t.Errorf("%v with a revoked Mac: %v", args, err)
		}
	}
	// A virtual machine's serial number (spaces, dashes) cannot be
	// expected: refused before the Mac named with it is changed.
	vm := enrollStraight(t, s, "vm-1", "VMware-56 4d 0e 1a")
	if _, _, err := execute(noEnv, "devices", "expect-reinstall", "--data-dir", s.dir, macs[0].DeviceID, vm); err == nil ||
		!strings.Contains(err.Error(), "nothing changed") || !strings.Contains(err.Error(), "letters and digits only") {
		t.Errorf("a virtual machine's serial number: %v", err)
	}
	for id, on := range expected() {
		if on {
			t.Fatalf("%s expected after refused calls", id)
		}
	}

	// Jamf Pro's export, as Excel saves it: a byte order mark, quotes,
	// CRLF, the serial number among other columns.
	good := write("lab.csv", "\xef\xbb\xbfComputer Name,Serial Number,Operating System Version\r\n"+
		"\"Lab 1\",\""+protoagent.SerialFor(uuids[0])+"\",14.6\r\n"+
		"Lab 2,"+strings.ToLower(protoagent.SerialFor(uuids[1]))+",14.6\r\n")
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
	// "$ID" of a variable never set is the start of every id: no Mac.
	if _, _, err := execute(noEnv, "devices", "expect-reinstall", "--data-dir", s.dir, ""); err == nil || !strings.Contains(err.Error(), "an empty DEVICE_ID names no Mac") {
		t.Errorf("an empty id: %v", err)
	}
	// Nor does an empty filter list every Mac's records.
	for _, args := range [][]string{{"audit", "--device", ""}, {"decisions", "--device", " "}, {"decisions", "--claimed", ""}, {"exemption", "list", "--device", ""}} {
		if _, _, err := execute(noEnv, append(args, "--data-dir", s.dir)...); err == nil || !strings.Contains(err.Error(), "is empty: give a value, or leave the flag out") {
			t.Errorf("%q: %v", args, err)
		}
	}
}

// enrollStraight puts a device with the given serial number straight into
// the store, as an agent enrolling with it would leave it.
func enrollStraight(t *testing.T, s *testServer, id, serial string) string {
	t.Helper()
	now := time.Now()
	secrets, err := s.srv.Store.ListEnrollSecrets(t.Context())
	if err != nil || len(secrets) == 0 {
		t.Fatalf("no enroll secret: %v", err)
	}
	if _, _, err := s.srv.Store.EnrollDevice(t.Context(), storage.Enrollment{
		Device: storage.Device{ID: id, HardwareUUID: "0A1B2C3D-4E5F-4061-8172-0000000000" + fmt.Sprintf("%02d", len(id)), SerialNumber: serial,
			Platform: "darwin", PublicKey: []byte("key " + id), CertSerial: "c" + id, CertNotAfter: now.Add(time.Hour), EnrolledAt: now},
		Cert:     storage.Cert{Serial: "c" + id, Kind: "device", NotBefore: now, NotAfter: now.Add(time.Hour), DER: []byte("der")},
		SecretID: secrets[0].ID, Audit: storage.AuditEvent{At: now, Actor: "test", Action: "device.enroll"},
	}); err != nil {
		t.Fatal(err)
	}
	return id
}
