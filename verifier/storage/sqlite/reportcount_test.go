package sqlite

import (
	"bytes"
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// TestReportCountMigration: a database whose devices hold reports from
// before report_count was kept is counted when it is migrated, so that
// retention then keeps exactly what it is told.
func TestReportCountMigration(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "clearance.db")
	s, err := Open(ctx, path)
	must(t, err)
	must(t, s.CreateEnrollSecret(ctx, secret("a"), storage.AuditEvent{At: t0}))
	d, _, err := s.EnrollDevice(ctx, enrollment(1, "a"))
	must(t, err)
	report := func(seq uint64) storage.Report {
		at := t0.Add(time.Duration(seq) * time.Second)
		return storage.Report{DeviceID: d.ID, Seq: seq, ObservedAt: at, ReceivedAt: at,
			Payload: bytes.Repeat([]byte{byte(seq)}, 100), Signature: []byte("sig"), Key: d.PublicKey}
	}
	for seq := uint64(1); seq <= 5; seq++ {
		must(t, s.SaveReport(ctx, report(seq), nil, 100))
	}
	must(t, s.Close())

	// Back to the schema before the count, then up again as Open does.
	db, p := migrator(t, path)
	_, err = p.DownTo(ctx, 13)
	must(t, err)
	must(t, db.Close())

	s = open(t, path)
	var count int
	must(t, s.w.QueryRowContext(ctx, `SELECT report_count FROM devices WHERE id = ?`, d.ID).Scan(&count))
	if count != 5 {
		t.Fatalf("report_count after migrating = %d, want the 5 stored", count)
	}
	must(t, s.SaveReport(ctx, report(6), nil, 3))
	got, err := s.ListReports(ctx, d.ID, 100)
	must(t, err)
	var seqs []uint64
	for _, r := range got {
		seqs = append(seqs, r.Seq)
	}
	if !slices.Equal(seqs, []uint64{6, 5, 4}) {
		t.Errorf("seqs after a report with keep 3 = %v, want [6 5 4]", seqs)
	}
}
