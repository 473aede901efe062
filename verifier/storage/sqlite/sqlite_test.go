package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlstore"
	"github.com/clearance/clearance/verifier/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return open(t, filepath.Join(t.TempDir(), "clearance.db")) })
}

func open(tb testing.TB, path string) *Store {
	tb.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

var t0 = time.Date(2025, time.March, 4, 5, 6, 7, 123456789, time.UTC)

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

func secret(id string) storage.EnrollSecret {
	return storage.EnrollSecret{ID: id, Description: "secret " + id, Hash: []byte("hash " + id), CreatedAt: t0}
}

func enrollment(n int, secretID string) storage.Enrollment {
	serial := fmt.Sprintf("%x", 0xc0000+n)
	return storage.Enrollment{
		Device: storage.Device{
			ID:           fmt.Sprintf("dev-%d", n),
			HardwareUUID: fmt.Sprintf("HW-%d", n),
			Platform:     "darwin",
			PublicKey:    []byte("key"),
			CertSerial:   serial,
			CertNotAfter: t0.Add(24 * time.Hour),
			EnrolledAt:   t0,
		},
		Cert:     storage.Cert{Serial: serial, Kind: "device", NotBefore: t0, NotAfter: t0.Add(24 * time.Hour), DER: []byte("der")},
		SecretID: secretID,
		Audit:    storage.AuditEvent{At: t0, Actor: "agent", Action: "device.enroll"},
	}
}

func dump(tb testing.TB, s *Store) string {
	tb.Helper()
	d, err := storagetest.Dump(context.Background(), s)
	must(tb, err)
	return d
}

func TestFileMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "clearance.db")
	s := open(t, path)
	// Write something so the WAL companions exist too.
	must(t, s.CreateEnrollSecret(t.Context(), secret("a"), storage.AuditEvent{At: t0}))
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		must(t, err)
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s mode = %v, want 0600", filepath.Base(p), mode)
		}
	}
}

func TestExistingFileIsTightened(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clearance.db")
	must(t, os.WriteFile(path, nil, 0o644))
	open(t, path)
	fi, err := os.Stat(path)
	must(t, err)
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("mode = %v, want 0600", mode)
	}
}

func TestPragmas(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "clearance.db"))
	ctx := t.Context()
	for pragma, want := range map[string]string{
		"journal_mode": "wal",
		"foreign_keys": "1",
		"synchronous":  "2", // FULL
		"busy_timeout": "10000",
	} {
		var got string
		must(t, s.w.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got))
		if got != want {
			t.Errorf("writer PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
	// The read pool refuses writes.
	if _, err := s.r.ExecContext(ctx, `DELETE FROM audit`); err == nil {
		t.Error("write through the read pool succeeded")
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clearance.db")
	ctx := t.Context()
	s, err := Open(ctx, path)
	must(t, err)
	must(t, s.CreateEnrollSecret(ctx, secret("a"), storage.AuditEvent{At: t0, Action: "secret.create"}))
	d, _, err := s.EnrollDevice(ctx, enrollment(1, "a"))
	must(t, err)
	must(t, s.SaveReport(ctx, storage.Report{DeviceID: d.ID, Seq: 1, ObservedAt: t0, ReceivedAt: t0, Payload: []byte("p"), Signature: []byte("s"), Key: d.PublicKey}, nil, 10))
	before := dump(t, s)
	must(t, s.Close())

	s = open(t, path)
	if after := dump(t, s); after != before {
		t.Errorf("dump after reopen differs:\n%s\nwant:\n%s", after, before)
	}
	got, err := s.GetDevice(ctx, d.ID)
	must(t, err)
	if got.LastSeq != 1 {
		t.Errorf("LastSeq after reopen = %d, want 1", got.LastSeq)
	}
}

// The CLI writes into the database while the server has it open.
func TestTwoStoresOnOneFile(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "clearance.db")
	server := open(t, path)
	cli := open(t, path)

	must(t, cli.CreateEnrollSecret(ctx, secret("from-cli"), storage.AuditEvent{At: t0, Actor: "cli", Action: "secret.create"}))
	got, err := server.GetEnrollSecret(ctx, "from-cli")
	must(t, err)
	if !bytes.Equal(got.Hash, []byte("hash from-cli")) {
		t.Errorf("secret seen by the server = %+v", got)
	}
	d, _, err := server.EnrollDevice(ctx, enrollment(1, "from-cli"))
	must(t, err)
	if sec, err := cli.GetEnrollSecret(ctx, "from-cli"); err != nil || sec.Uses != 1 {
		t.Errorf("secret seen by the CLI = %+v, %v; want 1 use", sec, err)
	}

	// Both write at once, through several goroutines each: nothing may fail
	// with SQLITE_BUSY, and nothing may be lost.
	const perWriter = 25
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		seq  uint64
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	for w := range 4 {
		wg.Go(func() {
			for i := range perWriter {
				if err := cli.CreateEnrollSecret(ctx, secret(fmt.Sprintf("s-%d-%d", w, i)),
					storage.AuditEvent{At: t0, Actor: "cli", Action: "secret.create"}); err != nil {
					fail(err)
				}
			}
		})
		wg.Go(func() {
			for range perWriter {
				// Reports must be saved in seq order; the lock hands out seqs.
				mu.Lock()
				seq++
				r := storage.Report{DeviceID: d.ID, Seq: seq, ObservedAt: t0, ReceivedAt: t0, Payload: []byte("p"), Signature: []byte("s"), Key: d.PublicKey}
				err := server.SaveReport(ctx, r, nil, 1000)
				mu.Unlock()
				if err != nil {
					fail(err)
				}
				if err := server.AppendAudit(ctx, storage.AuditEvent{At: t0, Actor: "agent", Action: "report"}); err != nil {
					fail(err)
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent writes failed: %v", err)
	}
	secrets, err := server.ListEnrollSecrets(ctx)
	must(t, err)
	if len(secrets) != 1+4*perWriter {
		t.Errorf("server sees %d secrets, want %d", len(secrets), 1+4*perWriter)
	}
	reports, err := cli.ListReports(ctx, d.ID, 1000)
	must(t, err)
	if len(reports) != 4*perWriter {
		t.Errorf("CLI sees %d reports, want %d", len(reports), 4*perWriter)
	}
	if dump(t, server) != dump(t, cli) {
		t.Error("the two stores dump different data")
	}
}

// Processes share one file: the CLI beside the server, or two servers.
func TestShared(t *testing.T) {
	storagetest.RunShared(t, func(t *testing.T) func() (storage.Store, error) {
		path := filepath.Join(t.TempDir(), "clearance.db")
		return func() (storage.Store, error) {
			s, err := Open(t.Context(), path)
			if err != nil {
				return nil, err
			}
			return s, nil
		}
	})
}

func TestListLimitsAreCapped(t *testing.T) {
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "clearance.db"))
	// One transaction for speed: the cap is what is under test.
	tx, err := s.w.BeginTx(ctx, nil)
	must(t, err)
	for i := range sqlstore.MaxListLimit + 5 {
		_, err := tx.ExecContext(ctx, `INSERT INTO audit (at, actor, action, device_id, detail) VALUES (?, '', 'bulk', '', '')`,
			t0.Add(time.Duration(i)).UnixNano())
		must(t, err)
	}
	must(t, tx.Commit())
	for _, limit := range []int{storage.MaxAuditLimit + 1, 1 << 40} {
		got, err := s.ListAudit(ctx, storage.AuditFilter{Limit: limit})
		must(t, err)
		if len(got) != sqlstore.MaxListLimit {
			t.Errorf("ListAudit(limit %d) returned %d events, want %d", limit, len(got), sqlstore.MaxListLimit)
		}
	}
}

func TestRefusesUnstorableValues(t *testing.T) {
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "clearance.db"))
	must(t, s.CreateEnrollSecret(ctx, secret("a"), storage.AuditEvent{At: t0}))
	d, _, err := s.EnrollDevice(ctx, enrollment(1, "a"))
	must(t, err)
	before := dump(t, s)

	farFuture := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC) // X.509 "no expiry"
	e := enrollment(2, "a")
	e.Cert.NotAfter = farFuture
	if _, _, err := s.EnrollDevice(ctx, e); err == nil {
		t.Error("enrollment with a cert expiring in 9999 was accepted")
	}
	if err := s.CreateNonce(ctx, d.ID, nil, t0.Add(time.Hour)); err == nil {
		t.Error("empty nonce was accepted")
	}
	if err := s.SaveReport(ctx, storage.Report{DeviceID: d.ID, Seq: 1 << 63, ObservedAt: t0, ReceivedAt: t0, Key: d.PublicKey}, nil, 10); err == nil {
		t.Error("seq 2^63 was accepted")
	}
	if after := dump(t, s); after != before {
		t.Errorf("refused calls changed the database:\n%s\n---\n%s", before, after)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(t.Context(), ""); err == nil {
		t.Error("Open(\"\") succeeded")
	}
	if _, err := Open(t.Context(), filepath.Join(t.TempDir(), "missing-dir", "clearance.db")); err == nil {
		t.Error("Open in a missing directory succeeded")
	}
}

func BenchmarkSaveReport(b *testing.B) {
	ctx := context.Background()
	s := open(b, filepath.Join(b.TempDir(), "clearance.db"))
	must(b, s.CreateEnrollSecret(ctx, secret("a"), storage.AuditEvent{At: t0}))
	d, _, err := s.EnrollDevice(ctx, enrollment(1, "a"))
	must(b, err)
	payload := bytes.Repeat([]byte("posture-report-"), 2048/15+1)[:2048]
	sig := bytes.Repeat([]byte{0x30}, 72) // an ECDSA P-256 DER signature's size
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	seq := uint64(0)
	for b.Loop() {
		seq++
		now := t0.Add(time.Duration(seq) * time.Second)
		r := storage.Report{DeviceID: d.ID, Seq: seq, ObservedAt: now, ReceivedAt: now, Payload: payload, Signature: sig, Key: d.PublicKey}
		if err := s.SaveReport(ctx, r, nil, 100); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStaleApprovalRefused: should a device's key change without its waiting
// requests being removed (a race the transactions do not order, or a row
// from before requests recorded the key), approving one of them is refused
// and removes it, and nothing else changes.
func TestStaleApprovalRefused(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "clearance.db"))
	audit := storage.AuditEvent{At: t0, Actor: "test", Action: "test"}
	must(t, s.CreateEnrollSecret(ctx, secret("sec"), audit))
	d, _, err := s.EnrollDevice(ctx, enrollment(1, "sec"))
	must(t, err)
	p, err := s.RequestEnrollment(ctx, storage.PendingEnrollment{
		ID: "req-1", HardwareUUID: d.HardwareUUID, PublicKey: []byte("candidate"), SecretID: "sec",
		DeviceID: d.ID, DeviceKey: d.PublicKey, Reason: "unproven_key", LastRequestAt: t0,
	}, storage.PendingLimits{}, audit)
	must(t, err)
	if _, err := s.w.Exec(`UPDATE devices SET public_key = ? WHERE id = ?`, []byte("changed meanwhile"), d.ID); err != nil {
		t.Fatal(err)
	}
	uses := func() int {
		sec, err := s.GetEnrollSecret(ctx, "sec")
		must(t, err)
		return sec.Uses
	}
	before := uses()

	_, _, err = s.ApproveEnrollment(ctx, storage.Approval{RequestID: p.ID, NewDeviceID: "dev-new", At: t0.Add(time.Hour),
		Audit: storage.AuditEvent{At: t0.Add(time.Hour), Actor: "admin-api", Action: "device.enroll_approve"}})
	if !errors.Is(err, storage.ErrRequestStale) {
		t.Fatalf("approving a stale request: %v, want ErrRequestStale", err)
	}
	if _, err := s.GetPendingEnrollment(ctx, p.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the stale request is still stored: %v", err)
	}
	got, err := s.GetDevice(ctx, d.ID)
	must(t, err)
	if !bytes.Equal(got.PublicKey, []byte("changed meanwhile")) {
		t.Errorf("device key = %q, want it untouched", got.PublicKey)
	}
	if n := uses(); n != before {
		t.Errorf("secret uses %d, want %d", n, before)
	}
	es, err := s.ListAudit(ctx, storage.AuditFilter{DeviceID: d.ID, Limit: 10})
	must(t, err)
	if len(es) == 0 || es[0].Action != "device.enroll_stale" {
		t.Errorf("audit = %+v, want device.enroll_stale first", es)
	}
}

// The WAL stays near checkpointPages however much is written: the commit
// that passes it checkpoints, and SQLite then writes the WAL from its start
// again. Reports of about a page each, from 32 devices at once, write
// several times checkpointPages; the WAL file (which keeps its largest
// size) holds no more than checkpointPages and the frames of the batch
// that passed it.
func TestWALStaysNearCheckpointSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clearance.db")
	s, ds := fleet(t, path, 32)
	ctx := t.Context()
	const perDevice = 800 // 25,600 reports
	payload := bytes.Repeat([]byte("x"), 3000)
	var wg sync.WaitGroup
	errc := make(chan error, len(ds))
	for _, d := range ds {
		wg.Go(func() {
			for seq := uint64(1); seq <= perDevice; seq++ {
				r := storage.Report{DeviceID: d.ID, Seq: seq, ObservedAt: t0, ReceivedAt: t0.Add(time.Duration(seq)),
					Payload: payload, Signature: []byte("s"), Key: d.PublicKey}
				if err := s.SaveReport(ctx, r, nil, 5); err != nil {
					errc <- fmt.Errorf("device %s seq %d: %w", d.ID, seq, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	var pageSize int64
	must(t, s.w.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&pageSize))
	fi, err := os.Stat(path + "-wal")
	must(t, err)
	frame := pageSize + 24 // a frame is its header and the page
	// A batch holds at most maxBatch reports; each writes its row, its
	// index entry, the device's row and the retention delete's pages:
	// four pages a report bounds it.
	limit := int64(checkpointPages+4*maxBatch)*frame + 32 // and the WAL's header
	written := int64(len(ds)) * perDevice * int64(len(payload))
	t.Logf("WAL %d bytes (%d frames) after %d bytes of reports; limit %d", fi.Size(), (fi.Size()-32)/frame, written, limit)
	if written < 3*limit {
		t.Fatalf("the test wrote %d bytes, too few to pass the checkpoint several times (limit %d)", written, limit)
	}
	if fi.Size() > limit {
		t.Errorf("WAL is %d bytes, more than %d: the checkpoint at %d pages did not keep it there", fi.Size(), limit, checkpointPages)
	}
}
