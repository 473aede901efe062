package storagetest

import (
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

var storeTests = []test{
	{"Ping", testPing},
	{"NotFound", testNotFound},
	{"CheckWrite", testCheckWrite},
}

// testCheckWrite: the write probe succeeds on a writable store, again and
// again, and leaves what the interface lists (and Dump) as it was.
func testCheckWrite(t *testing.T, s storage.Store) {
	enrollN(t, s, 1)
	before := snapshot(t, s)
	var dump string
	if _, ok := s.(snapshotter); ok {
		var err error
		dump, err = Dump(t.Context(), s)
		must(t, err)
	}
	for i := range 3 {
		must(t, s.CheckWrite(t.Context(), at(time.Duration(i)*minute)))
	}
	before.unchanged(t, s)
	if dump != "" {
		after, err := Dump(t.Context(), s)
		must(t, err)
		if after != dump {
			t.Errorf("the write probe shows in Dump:\n%s\n---\n%s", dump, after)
		}
	}
}

func testPing(t *testing.T, s storage.Store) {
	must(t, s.Ping(t.Context()))
}

// testNotFound checks every call that names a record that does not exist.
func testNotFound(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	audit := storage.AuditEvent{At: t0, Actor: "admin-api", Action: "test"}
	const missing = "no-such-record"

	cases := []struct {
		name string
		call func() error
	}{
		{"GetDevice", func() error { _, err := s.GetDevice(ctx, missing); return err }},
		{"GetDevice empty ID", func() error { _, err := s.GetDevice(ctx, ""); return err }},
		{"GetDeviceByHardwareUUID", func() error { _, err := s.GetDeviceByHardwareUUID(ctx, missing); return err }},
		{"GetCert", func() error { _, err := s.GetCert(ctx, missing); return err }},
		{"RevokeDevice", func() error { _, err := s.RevokeDevice(ctx, missing, "lost", t0, audit); return err }},
		{"RenewDeviceCert", func() error {
			return s.RenewDeviceCert(ctx, storage.Cert{Serial: "abc123", DeviceID: missing, Kind: "device", NotBefore: t0, NotAfter: at(hour)}, storage.IssueLimit{}, audit)
		}},
		{"TouchDevice", func() error { return s.TouchDevice(ctx, missing, t0) }},
		{"EnrollDevice with unknown secret", func() error {
			_, _, err := s.EnrollDevice(ctx, newEnrollment(2, missing))
			return err
		}},
		{"GetEnrollSecret", func() error { _, err := s.GetEnrollSecret(ctx, missing); return err }},
		{"RevokeEnrollSecret", func() error { _, err := s.RevokeEnrollSecret(ctx, missing, t0, audit); return err }},
		{"SaveReport", func() error { return s.SaveReport(ctx, newReport(missing, 1, t0), nil, 10) }},
		{"LatestReport of unknown device", func() error { _, err := s.LatestReport(ctx, missing); return err }},
		{"LatestReport of device without reports", func() error { _, err := s.LatestReport(ctx, d.ID); return err }},
		{"ListReports of unknown device", func() error { _, err := s.ListReports(ctx, missing, 10); return err }},
		{"CreateNonce for unknown device", func() error { return s.CreateNonce(ctx, missing, []byte("nonce"), at(hour)) }},
		{"GetPendingSignIn", func() error { _, err := s.GetPendingSignIn(ctx, tokenHash(missing)); return err }},
		{"DeletePendingSignIn", func() error { return s.DeletePendingSignIn(ctx, tokenHash(missing)) }},
		{"SetPendingSignInResolveLater", func() error {
			return s.SetPendingSignInResolveLater(ctx, tokenHash(missing), []string{"firewall"})
		}},
		{"GetBrowserCert", func() error { _, err := s.GetBrowserCert(ctx, missing); return err }},
		{"ListBrowserCerts", func() error { _, err := s.ListBrowserCerts(ctx, missing); return err }},
		{"CountBrowserCertsSince", func() error { _, err := s.CountBrowserCertsSince(ctx, missing, t0); return err }},
		{"RevokeBrowserCert", func() error { return s.RevokeBrowserCert(ctx, missing, "lost", t0, audit) }},
		{"RecordBrowserCert for unknown device", func() error {
			c := newBrowserCert(d, 1, t0)
			c.DeviceID = missing
			return s.RecordBrowserCert(ctx, c, nil, storage.IssueLimit{}, t0, audit)
		}},
		{"RecordBrowserCert with unknown challenge", func() error {
			return s.RecordBrowserCert(ctx, newBrowserCert(d, 1, t0), challengeHash(missing), storage.IssueLimit{}, t0, audit)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, s, "abc123")
			wantErr(t, tc.call(), storage.ErrNotFound)
			before.unchanged(t, s)
		})
	}
	// The nonce for an unknown device was not stored under any device.
	must(t, s.CreateNonce(ctx, d.ID, []byte("nonce"), at(hour)))
}
