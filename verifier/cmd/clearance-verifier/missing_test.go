package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/knownlist"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestMissingMacs: each Mac of an MDM's export is sorted by what the
// verifier knows of its serial number, and those that report are left out.
func TestMissingMacs(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	dev := func(id, serial string, reported time.Duration, revoked bool) *adminv1.Device {
		d := &adminv1.Device{DeviceId: id, Status: adminv1.DeviceStatus_DEVICE_STATUS_ACTIVE, Facts: &agentv1.DeviceFacts{SerialNumber: serial}}
		if reported >= 0 {
			d.LastReportAt = timestamppb.New(now.Add(-reported))
		}
		if revoked {
			d.Status = adminv1.DeviceStatus_DEVICE_STATUS_REVOKED
		}
		return d
	}
	devs := []*adminv1.Device{
		dev("d-fine", "c02fine00001", time.Hour, false),        // any case
		dev("d-quiet", "C02QUIET0001", 72*time.Hour, false),    // silent for three days
		dev("d-never", "C02NEVER0001", -1, false),              // enrolled, never reported
		dev("d-gone", "C02GONE00001", time.Hour, true),         // revoked
		dev("d-old", "C02AGAIN0001", 90*24*time.Hour, true),    // revoked, then enrolled again:
		dev("d-new", "C02AGAIN0001", time.Minute, false),       // the new one speaks for it
		dev("d-dup1", "C02TWICE0001", 80*time.Hour, false),     // two unrevoked: the one that
		dev("d-dup2", "C02TWICE0001", 2*time.Hour, false),      // reported last
		dev("d-look", "C02\u0130OOK00001", time.Minute, false), // a look-alike matches nothing
		dev("d-other", "C02OTHER0001", time.Minute, false),     // not in the export
	}
	pending := []*adminv1.PendingEnrollment{
		{RequestId: "r-wait", Facts: &agentv1.DeviceFacts{SerialNumber: "C02WAIT00001"}},
		{RequestId: "r-gone", Facts: &agentv1.DeviceFacts{SerialNumber: "C02GONE00001"}}, // a revoked Mac asking back
	}
	var es []knownlist.Entry
	for _, s := range []string{"C02FINE00001", "C02QUIET0001", "C02NEVER0001", "C02GONE00001", "C02AGAIN0001",
		"C02TWICE0001", "C02LOOK00001", "C02WAIT00001", "C02NONE00001"} {
		es = append(es, knownlist.Entry{Serial: s, Name: strings.ToLower(s[3:7]) + "-mac"})
	}
	ms, counts := missingMacs(es, devs, pending, now, 24*time.Hour)
	var got []string
	for _, m := range ms {
		got = append(got, m.Serial+" "+m.State+" "+m.DeviceID+m.RequestID)
	}
	want := []string{
		"C02QUIET0001 not reporting d-quiet",
		"C02NEVER0001 not reporting d-never",
		"C02GONE00001 waiting for approval r-gone",
		"C02LOOK00001 not enrolled ",
		"C02WAIT00001 waiting for approval r-wait",
		"C02NONE00001 not enrolled ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("missing:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if counts[missingReporting] != 3 || counts[missingNotEnrolled] != 2 || counts[missingPending] != 2 || counts[missingSilent] != 2 {
		t.Errorf("counts %v", counts)
	}
	// Revoked, with nothing waiting.
	ms, _ = missingMacs(es[3:4], devs, nil, now, 24*time.Hour)
	if len(ms) != 1 || ms[0].State != missingRevoked || ms[0].DeviceID != "d-gone" {
		t.Errorf("a revoked Mac: %+v", ms)
	}
}

// TestDevicesMissing: the command reads an MDM's export, asks the running
// verifier, and lists the Macs it does not hear from, as a table and as
// JSON.
func TestDevicesMissing(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	mac := s.enroll(t, s.newSecret(t), "0A1B2C3D-4E5F-4061-8172-839405A6B7E1", agentv1.PolicyStatus_POLICY_STATUS_PASS)
	csv := filepath.Join(t.TempDir(), "computers.csv")
	export := "Computer Name,Serial Number\n" +
		"reporting-mac," + mac.Facts.GetSerialNumber() + "\n" +
		"lost-mac,C02NOTHERE01\n" +
		"\u0430lice-mac,C02NOTHERE02\n"
	if err := os.WriteFile(csv, []byte(export), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := execute(noEnv, "devices", "missing", "--data-dir", s.dir, csv)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "1 reporting, 2 not enrolled, 0 waiting for approval, 0 revoked, 0 not reporting") {
		t.Errorf("stderr: %q", stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "SERIAL NAME STATE DEVICE LAST REPORT" ||
		strings.Join(strings.Fields(lines[1]), " ") != "C02NOTHERE01 lost-mac not enrolled - -" ||
		!strings.Contains(lines[2], "(look-alike) \u0430lice-mac") || strings.Contains(out, mac.DeviceID[:8]) {
		t.Errorf("table:\n%s", out)
	}
	// Silent for a moment: the Mac that reported is listed too.
	out, _, err = execute(noEnv, "devices", "missing", "--data-dir", s.dir, "--silent-for", "1ms", "--json", csv)
	var ms []missingMac
	if err != nil || json.Unmarshal([]byte(out), &ms) != nil || len(ms) != 3 || ms[0].State != missingSilent || ms[0].DeviceID != mac.DeviceID || ms[0].LastReportAt == nil {
		t.Errorf("--silent-for 1ms --json: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--silent-for", "0s", csv}, "--silent-for must be positive"},
		{nil, "the CSV file"},
		{[]string{filepath.Join(t.TempDir(), "none.csv")}, "no such file"},
	} {
		if _, _, err := execute(noEnv, append([]string{"devices", "missing", "--data-dir", s.dir}, tc.args...)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("devices missing %q: %v, want %q", tc.args, err, tc.want)
		}
	}
}
