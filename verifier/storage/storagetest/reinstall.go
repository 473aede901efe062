package storagetest

import (
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

var reinstallTests = []test{
	{"ExpectAndUse", testExpectReinstall},
	{"Refused", testExpectReinstallRefused},
}

func reinstallAudit(at time.Time) storage.AuditEvent {
	return storage.AuditEvent{At: at, Actor: "admin:jane", Action: "device.expect_reinstall", Detail: "expected"}
}

// newKeyEnrollment is machine 1 enrolling again with a new key at when.
func newKeyEnrollment(key string, when time.Time) storage.Enrollment {
	e := newEnrollment(1, "fleet")
	e.Device.ID = "generated-" + key
	e.Device.PublicKey = []byte("pkix-" + key)
	e.Device.CertSerial, e.Cert.Serial = "cafe"+key, "cafe"+key
	e.Device.EnrolledAt, e.Cert.NotBefore, e.Audit.At = when, when, when
	e.Device.CertNotAfter, e.Cert.NotAfter = when.Add(24*time.Hour), when.Add(24*time.Hour)
	return e
}

func testExpectReinstall(t *testing.T, s storage.Store) {
	ctx := t.Context()
	dev := enrollN(t, s, 1)[0]
	got, err := s.ReinstallExpected(ctx, dev.ID)
	must(t, err)
	equal(t, "no reinstall expected", got, time.Time{})

	must(t, s.ExpectReinstall(ctx, dev.ID, at(24*hour), reinstallAudit(at(hour))))
	got, err = s.ReinstallExpected(ctx, dev.ID)
	must(t, err)
	equal(t, "reinstall expected", got, at(24*hour))

	// A new key admitted by it, checked after the expectation ended: refused,
	// nothing changed.
	before := dumpOf(t, s)
	late := newKeyEnrollment("late", at(25*hour))
	late.Checked = &storage.Checked{Key: dev.PublicKey, Reinstall: at(24 * hour)}
	_, _, err = s.EnrollDevice(ctx, late)
	wantErr(t, err, storage.ErrReinstallNotExpected)
	sameDump(t, "an enrollment after the expected reinstall ended", before, s)

	// In time: the key is replaced, and the expectation is used up.
	e := newKeyEnrollment("wiped", at(2*hour))
	e.Checked = &storage.Checked{Key: dev.PublicKey, Reinstall: at(2 * hour)}
	d, reenrolled, err := s.EnrollDevice(ctx, e)
	must(t, err)
	if !reenrolled || d.ID != dev.ID || string(d.PublicKey) != "pkix-wiped" || d.SecretID != "fleet" {
		t.Fatalf("the expected reinstall: reenrolled %v, device %s key %q secret %q", reenrolled, d.ID, d.PublicKey, d.SecretID)
	}
	if sec, err := s.GetEnrollSecret(ctx, "fleet"); err != nil || sec.Uses != 2 {
		t.Errorf("the secret after the expected reinstall: %d uses, want 2 (the enrollment and the reinstall): %v", sec.Uses, err)
	}
	got, err = s.ReinstallExpected(ctx, dev.ID)
	must(t, err)
	equal(t, "used up", got, time.Time{})
	again := newKeyEnrollment("again", at(3*hour))
	again.Checked = &storage.Checked{Key: d.PublicKey, Reinstall: at(3 * hour)}
	_, _, err = s.EnrollDevice(ctx, again)
	wantErr(t, err, storage.ErrReinstallNotExpected)

	// Any new key ends one, a proven rotation too; a zero until takes one
	// back; a revoked device has none.
	must(t, s.ExpectReinstall(ctx, dev.ID, at(30*hour), reinstallAudit(at(4*hour))))
	rot := newKeyEnrollment("rotated", at(5*hour))
	rot.Checked = &storage.Checked{Key: d.PublicKey}
	enroll(t, s, rot)
	got, err = s.ReinstallExpected(ctx, dev.ID)
	must(t, err)
	equal(t, "after a rotation", got, time.Time{})
	must(t, s.ExpectReinstall(ctx, dev.ID, at(30*hour), reinstallAudit(at(6*hour))))
	must(t, s.ExpectReinstall(ctx, dev.ID, time.Time{}, reinstallAudit(at(7*hour))))
	got, err = s.ReinstallExpected(ctx, dev.ID)
	must(t, err)
	equal(t, "taken back", got, time.Time{})
	must(t, s.ExpectReinstall(ctx, dev.ID, at(30*hour), reinstallAudit(at(8*hour))))
	revokeDevice(t, s, dev.ID)
	got, err = s.ReinstallExpected(ctx, dev.ID)
	must(t, err)
	equal(t, "revoked", got, time.Time{})
	if es := listAuditFilter(t, s, storage.AuditFilter{Action: "device.expect_reinstall"}); len(es) != 5 {
		t.Errorf("%d expect_reinstall audit events, want 5", len(es))
	}
}

func testExpectReinstallRefused(t *testing.T, s storage.Store) {
	ctx := t.Context()
	ds := enrollN(t, s, 2)
	dev := ds[0]
	revoked := revokeDevice(t, s, ds[1].ID)
	before := dumpOf(t, s)
	wantErr(t, s.ExpectReinstall(ctx, "no-such-device", at(24*hour), reinstallAudit(at(hour))), storage.ErrNotFound)
	wantErr(t, s.ExpectReinstall(ctx, revoked.ID, at(24*hour), reinstallAudit(at(2*hour))), storage.ErrDeviceRevoked)
	wantErr(t, s.ExpectReinstall(ctx, dev.ID, at(hour), reinstallAudit(at(hour))), storage.ErrInvalid)
	wantErr(t, s.ExpectReinstall(ctx, dev.ID, at(-hour), reinstallAudit(at(hour))), storage.ErrInvalid)
	sameDump(t, "refused expectations", before, s)
}
