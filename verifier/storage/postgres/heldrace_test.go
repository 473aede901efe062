package postgres_test

import (
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/testkit/testpg"
	"github.com/clearance/clearance/verifier/storage"
)

// TestHoldRacesKeyChange: a sign-in held on one replica, proven by the
// device's key, while another replica changes the device's key or revokes
// it. A trigger holds the hold's insert for a second, after its check of
// the key: the change waits for it and forgets it, or commits first and
// the hold is refused. Either way no sign-in stays held under a key the
// device no longer has, or for a revoked device.
func TestHoldRacesKeyChange(t *testing.T) {
	testpg.Require(t)
	for _, rotate := range []bool{true, false} {
		dsn := testpg.NewDatabase(t)
		a, b := open(t, dsn), open(t, dsn)
		ctx := t.Context()
		d := enrollOne(t, a)
		c := connect(t, ctx, dsn)
		for _, q := range []string{
			`CREATE FUNCTION slow_hold() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(1); RETURN NEW; END $$ LANGUAGE plpgsql`,
			`CREATE TRIGGER slow_hold BEFORE INSERT ON pending_sign_ins FOR EACH ROW EXECUTE FUNCTION slow_hold()`,
		} {
			if _, err := c.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		c.Close(ctx)
		sum := sha256.Sum256([]byte("held"))
		p := storage.PendingSignIn{
			TokenHash: sum[:], DeviceID: d.ID, BrowserHash: sum[:], Username: "alice@example.com",
			Request: []byte("<x/>"), CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), DeviceKey: d.PublicKey,
		}
		done := make(chan error, 1)
		go func() { done <- a.CreatePendingSignIn(ctx, p) }()
		time.Sleep(300 * time.Millisecond) // the key is checked; the insert is under way
		if rotate {
			rot := enrollment(1, 0)
			rot.Device.PublicKey = []byte("rotated-key")
			rot.Device.CertSerial, rot.Cert.Serial = "abc302", "abc302"
			rot.Checked = &storage.Checked{Key: d.PublicKey}
			if _, _, err := b.EnrollDevice(ctx, rot); err != nil {
				t.Fatal(err)
			}
		} else if _, err := b.RevokeDevice(ctx, d.ID, "stolen", t0.Add(time.Minute),
			storage.AuditEvent{At: t0.Add(time.Minute), Actor: "admin-api", Action: "device.revoke"}); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil && !errors.Is(err, storage.ErrKeyReplaced) && !errors.Is(err, storage.ErrDeviceRevoked) {
			t.Fatalf("rotate=%v: the hold: %v", rotate, err)
		}
		if _, err := a.GetPendingSignIn(ctx, sum[:]); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("rotate=%v: a sign-in is held under the key the device had (err %v)", rotate, err)
		}
	}
}
