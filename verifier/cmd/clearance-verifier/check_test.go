package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/internal/protoagent"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// TestDevicesCheck: a live check of a connected Mac by the start of its
// id prints each policy's result from the report its agent signed just
// now; a Mac that does not answer, and a device no one enrolled, are
// errors that say which.
func TestDevicesCheck(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	secret, _, err := execute(noEnv, "secret", "create", "--data-dir", s.dir)
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.ReadFile(filepath.Join(s.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := protoagent.New(s.addr, root, "2A1B2C3D-4E5F-4061-8172-839405A6B7D3")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.Enroll(ctx, lastLine(secret)); err != nil {
		t.Fatal(err)
	}
	stream, err := a.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if _, err := stream.Exchange(protoagent.Sign(a.Key, a.Report(stream.PolicySet, 1, time.Now(), nil, agentv1.PolicyStatus_POLICY_STATUS_PASS))); err != nil {
		t.Fatal(err)
	}
	// Lives on: answers each check with FileVault off, and saying its
	// agent rejected the settings it was given (which, not their values:
	// the verifier refuses what a terminal would act on).
	rejectedAt := time.Now().Add(-72 * time.Hour).Truncate(time.Second)
	go stream.AnswerChecks(2, func(seq uint64, nonce []byte) *agentv1.SignedReport {
		r := a.Report(stream.PolicySet, seq, time.Now(), nonce, agentv1.PolicyStatus_POLICY_STATUS_PASS)
		for _, res := range r.Results {
			if res.PolicyId == "filevault" {
				res.Status = agentv1.PolicyStatus_POLICY_STATUS_FAIL
			}
		}
		r.SettingsRejection = &agentv1.SettingsRejection{At: timestamppb.New(rejectedAt), Reason: "the new settings' CAFingerprint was refused (the new ones changed CAFingerprint)"}
		return protoagent.Sign(a.Key, r)
	})

	out, _, err := execute(noEnv, "devices", "check", "--data-dir", s.dir, a.DeviceID[:8], "--wide")
	if err != nil || !strings.Contains(out, "device "+a.DeviceID+" answered in ") || !strings.Contains(out, "report seq ") {
		t.Fatalf("devices check: %v\n%s", err, out)
	}
	if want := "its agent rejected the settings it was given at " + rejectedAt.In(time.Local).Format("2006-01-02 15:04:05 MST") +
		` and runs on others: the new settings' CAFingerprint was refused (the new ones changed CAFingerprint)` + "\n"; !strings.Contains(out, want) {
		t.Errorf("devices check does not say %q:\n%s", want, out)
	}
	// The report it stored marks the Mac in the fleet's wide table, the
	// narrow one says how many, and --settings-rejected lists it with
	// when and why.
	out, _, err = execute(noEnv, "devices", "--data-dir", s.dir, "--wide")
	if err != nil || !regexp.MustCompile(`SETTINGS +FAILING\n`+a.DeviceID+`.* rejected \d+d +filevault\n`).MatchString(out) {
		t.Errorf("devices --wide: %v\n%s", err, out)
	}
	_, errOut, err := execute(noEnv, "devices", "--data-dir", s.dir)
	if err != nil || errOut != "1 of these Macs did not take the settings it was given: 'devices --settings-rejected' says which and why\n" {
		t.Errorf("devices: %v, stderr %q", err, errOut)
	}
	good, _ := s.passingAndFailing(t) // Macs on the settings they were given
	out, _, err = execute(noEnv, "devices", "--data-dir", s.dir, "--settings-rejected", "--wide")
	if err != nil || !strings.Contains(out, a.DeviceID) || strings.Contains(out, good) || !strings.Contains(out, `SETTINGS REJECTED`) ||
		!strings.Contains(out, `ago: the new settings' CAFingerprint was refused (the new ones changed CAFingerprint)`+"\n") {
		t.Errorf("devices --settings-rejected: %v\n%s", err, out)
	}
	for _, row := range strings.Split(out, "\n") {
		f := strings.Fields(row)
		if len(f) > 0 && f[0] == "filevault" && !strings.Contains(row, "FAIL") || len(f) > 0 && f[0] == "firewall" && !strings.Contains(row, "PASS") {
			t.Errorf("row %q", row)
		}
	}
	if _, _, err := execute(noEnv, "devices", "check", "--data-dir", s.dir, "ffffffff"); err == nil || !strings.Contains(err.Error(), `no enrolled device's id is or starts with "ffffffff"`) {
		t.Fatalf("check of no device: %v", err)
	}
	if _, _, err := execute(noEnv, "devices", "check", "--data-dir", s.dir, a.DeviceID, "--timeout", "2m"); err == nil || !strings.Contains(err.Error(), "--timeout must be from 1s to 60s") {
		t.Fatalf("check with a long timeout: %v", err)
	}
}
