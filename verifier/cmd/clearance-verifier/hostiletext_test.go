package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/pkg/printable"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/storage"
)

// What a malicious agent reports to steer the admin's terminal: CSI and OSC
// as single C1 characters (set the window title), a right-to-left override,
// an ESC sequence that clears the screen, zero-width characters.
const (
	hostileHost   = "evil\u009b31m\u009d0;PWNED-TITLE\u009c\u202eTXEN\u202c\u001b[2J"
	hostileSerial = "SER\u009b1;31mRED\u200b"
	hostileUUID   = "0A1B2C3D-0000-4000-8000-00000000000\u2066"
)

// checkInert asserts that out carries none of what a terminal would act on
// or reorder, and shows the host name escaped.
func checkInert(t *testing.T, what, out string) {
	t.Helper()
	for _, r := range out {
		if r != '\n' && r != ' ' && printable.Hidden(r) {
			t.Errorf("%s carries %U raw:\n%q", what, r, out)
			return
		}
	}
	if !strings.Contains(out, `\u009b31m\u009d0;PWNED-TITLE\u009c\u202eTXEN`) {
		t.Errorf("%s does not show the host name escaped:\n%s", what, out)
	}
}

func TestAgentTextIsInert(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	facts := &agentv1.DeviceFacts{Hostname: hostileHost, SerialNumber: hostileSerial, HardwareUuid: hostileUUID}

	t.Run("devices", func(t *testing.T) {
		devs := []*adminv1.Device{{DeviceId: "deadbeef-0000-4000-8000-000000000000", Facts: facts, LastSeen: timestamppb.New(now)}}
		for _, width := range []int{0, 80, 200} {
			var b strings.Builder
			if err := renderDevices(&b, devs, now, width); err != nil {
				t.Fatal(err)
			}
			if width != 80 { // at 80 the host name gives way to the other columns
				checkInert(t, "devices table", b.String())
			}
			if !strings.Contains(b.String(), `SER\u009b1;31mRED\u200b`) {
				t.Errorf("serial not escaped:\n%s", b.String())
			}
		}
	})
	t.Run("devices pending", func(t *testing.T) {
		var b strings.Builder
		ps := []*adminv1.PendingEnrollment{{RequestId: "r1", Reason: "new_device", Facts: facts, Source: "192.0.2.1\u009b"}}
		if err := renderPending(&b, ps, now); err != nil {
			t.Fatal(err)
		}
		checkInert(t, "pending table", b.String())
		if !strings.Contains(b.String(), `00000000000\u2066`) {
			t.Errorf("hardware UUID not escaped:\n%s", b.String())
		}
	})
	t.Run("devices pending, a serial that matches no list", func(t *testing.T) {
		var b strings.Builder
		ps := []*adminv1.PendingEnrollment{
			{RequestId: "r1", Reason: "unknown_serial", Facts: &agentv1.DeviceFacts{SerialNumber: "C02SSSSSSSS3 "}},
			{RequestId: "r2", Reason: "unknown_serial", Facts: &agentv1.DeviceFacts{SerialNumber: "C02S\u0131SSSSSS3"}},
			{RequestId: "r3", Reason: "serial_enrolled", Facts: &agentv1.DeviceFacts{SerialNumber: "c02ssssssss3"}},
		}
		if err := renderPending(&b, ps, now); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		for _, want := range []string{`"C02SSSSSSSS3 "`, "\"C02S\u0131SSSSSS3\"", " c02ssssssss3 "} {
			if !strings.Contains(out, want) {
				t.Errorf("pending table lacks %s:\n%s", want, out)
			}
		}
	})
	t.Run("devices pending, a claimed serial", func(t *testing.T) {
		var b strings.Builder
		ps := []*adminv1.PendingEnrollment{
			{RequestId: "r1", Reason: "serial_enrolled", Facts: &agentv1.DeviceFacts{SerialNumber: "C02SSSSSSSS3"},
				SerialHolders: []*adminv1.SerialHolder{{DeviceId: "dev-1", Hostname: hostileHost, Revoked: true}}, SerialHolderCount: 1},
			{RequestId: "r2", Reason: "serial_enrolled", Facts: &agentv1.DeviceFacts{SerialNumber: "C02TTTTTTTT4"},
				SerialHolders:     []*adminv1.SerialHolder{{DeviceId: "dev-2"}, {DeviceId: "dev-3", Hostname: "b"}, {DeviceId: "dev-4", Hostname: "c"}, {DeviceId: "dev-5", Hostname: "d"}},
				SerialHolderCount: 6},
			{RequestId: "r3", Reason: "manual", Facts: &agentv1.DeviceFacts{SerialNumber: "C02UUUUUUUU5"}},
		}
		if err := renderPending(&b, ps, now); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		checkInert(t, "pending table with a holder's host name", out)
		for _, want := range []string{
			`(new; serial held by dev-1 (evil\u009b31m\u009d0;PWNED-TITLE\u009c\u202eTXEN\u202c\x1b[2J) revoked)`,
			"(new; serial held by dev-2, dev-3 (b), dev-4 (c), 3 more)",
			"manual           (new) ",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("pending table lacks %s:\n%s", want, out)
			}
		}
	})
	t.Run("audit", func(t *testing.T) {
		// A detail is outside text in part: a username Okta sent over
		// SCIM, a reason an admin typed.
		es := []*adminv1.AuditEvent{
			{At: timestamppb.New(now), Actor: "scim:tok1", Action: "user.create", Detail: "user 00u1 (" + hostileHost + ") created"},
			{At: timestamppb.New(now), Actor: "admin-api", Action: "device.revoke", DeviceId: "deadbeef\u202e-0000", Detail: hostileSerial},
			// A subject's username and id are Okta's.
			{At: timestamppb.New(now), Actor: "scim:tok1", Action: "user.delete", Subjects: []*adminv1.AuditSubject{{UserId: "00u\u202e1", Username: hostileSerial}}},
			{At: timestamppb.New(now), Actor: "scim:tok1", Action: "user.create", Subjects: []*adminv1.AuditSubject{{UserId: "00u2", Username: hostileSerial}}},
			{At: timestamppb.New(now), Actor: "scim:tok1", Action: "user.update", Subjects: []*adminv1.AuditSubject{{UserId: "00u\u009b3"}}},
		}
		for _, width := range []int{0, 80, 200} {
			var b strings.Builder
			if err := renderAudit(&b, es, time.UTC, width); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			if width != 80 { // at 80 the detail is cut
				checkInert(t, "audit table", out)
			}
			for _, r := range out {
				if r != '\n' && r != ' ' && printable.Hidden(r) {
					t.Fatalf("audit table at width %d carries %U raw:\n%q", width, r, out)
				}
			}
			if width == 0 && (!strings.Contains(out, `SER\u009b1;31mRED\u200b`) || !strings.Contains(out, `deadbeef\u202e-0000`)) {
				t.Errorf("detail or device id not escaped:\n%s", out)
			}
			if width == 0 && (!strings.Contains(out, `(not ASCII) SER\u009b1;31mRED\u200b (id 00u\u202e1)`) ||
				!strings.Contains(out, `(not ASCII) SER\u009b1;31mRED\u200b (id 00u2)`) || !strings.Contains(out, "  id 00u\\u009b3\n")) {
				t.Errorf("subject not escaped, marked or told apart:\n%s", out)
			}
		}
	})
	t.Run("secret revoke", func(t *testing.T) {
		var b strings.Builder
		store := devicesBySecret{devs: []storage.Device{{ID: "d1", Hostname: hostileHost, SerialNumber: hostileSerial, HardwareUUID: hostileUUID, EnrolledAt: now}}}
		if err := printSecretDevices(context.Background(), &b, store, "s1"); err != nil {
			t.Fatal(err)
		}
		checkInert(t, "secret revoke table", b.String())
	})
	t.Run("json", func(t *testing.T) {
		var b strings.Builder
		resp := &adminv1.ListDevicesResponse{Devices: []*adminv1.Device{{DeviceId: "d1", Facts: facts}}}
		if err := printJSON(&b, resp); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		for _, r := range out {
			if r >= 0x7f && printable.Hidden(r) {
				t.Fatalf("JSON carries %U raw:\n%q", r, out)
			}
		}
		var got struct {
			Devices []struct {
				Facts struct{ Hostname, SerialNumber, HardwareUuid string }
			}
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Devices) != 1 {
			t.Fatalf("JSON does not parse: %v\n%s", err, out)
		}
		if f := got.Devices[0].Facts; f.Hostname != hostileHost || f.SerialNumber != hostileSerial || f.HardwareUuid != hostileUUID {
			t.Errorf("JSON changed the facts: %+v", f)
		}
	})
}

// devicesBySecret is a store that knows only the devices a secret enrolled.
type devicesBySecret struct {
	storage.Store
	devs []storage.Device
}

func (s devicesBySecret) ListDevicesBySecret(context.Context, string, string, int) ([]storage.Device, error) {
	return s.devs, nil
}
