package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/clearance/clearance/verifier/storage"
)

// Many agents report at once. A backend may store concurrent reports
// together (one transaction, one commit), but each call keeps the contract
// of a call made alone.
var concurrentReportTests = []test{
	{"ManyDevicesAtOnce", testConcurrentDevices},
	{"SameSeqAtOnce", testConcurrentSameSeq},
	{"SameNonceAtOnce", testConcurrentSameNonce},
	{"FailuresStayAlone", testConcurrentFailures},
	{"ReenrollDuringReports", testConcurrentReenroll},
}

// together runs the calls at once and returns their errors in order.
func together(calls ...func() error) []error {
	errs := make([]error, len(calls))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, call := range calls {
		wg.Go(func() {
			<-start
			errs[i] = call()
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func testConcurrentDevices(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const n, perDevice = 50, 4
	ds := enrollN(t, s, n)
	for _, d := range ds {
		createNonce(t, s, d.ID, "nonce "+d.ID, at(hour))
	}
	// Every device sends its reports one after another, as an agent does;
	// the devices all at once. The second report answers a nonce.
	calls := make([]func() error, n)
	for i, d := range ds {
		calls[i] = func() error {
			for seq := uint64(1); seq <= perDevice; seq++ {
				var nonce []byte
				if seq == 2 {
					nonce = []byte("nonce " + d.ID)
				}
				if err := s.SaveReport(ctx, newReport(d.ID, seq, at(minute)), nonce, 10); err != nil {
					return fmt.Errorf("seq %d: %w", seq, err)
				}
			}
			return nil
		}
	}
	for i, err := range together(calls...) {
		if err != nil {
			t.Errorf("device %s: %v", ds[i].ID, err)
		}
	}
	for _, d := range ds {
		if got := seqs(listReports(t, s, d.ID)); !slices.Equal(got, []uint64{4, 3, 2, 1}) {
			t.Errorf("device %s: seqs %v, want [4 3 2 1]", d.ID, got)
		}
		last := newReport(d.ID, perDevice, at(minute))
		want := d
		want.LastSeq = perDevice
		want.LastReportAt = last.ObservedAt
		want.LastSeen = last.ReceivedAt
		equal(t, "device "+d.ID, getDevice(t, s, d.ID), want)
		wantErr(t, s.SaveReport(ctx, newReport(d.ID, perDevice+1, at(minute)), []byte("nonce "+d.ID), 10), storage.ErrNonceUsed)
	}
}

// Two connections of one agent (or a resend racing the original) send the
// same seq: exactly one is stored, the others get ErrSeqNotIncreasing.
func testConcurrentSameSeq(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	const senders, rounds = 8, 5
	var stored []storage.Report
	for seq := uint64(1); seq <= rounds; seq++ {
		reports := make([]storage.Report, senders)
		calls := make([]func() error, senders)
		for i := range reports {
			reports[i] = newReport(d.ID, seq, at(minute))
			reports[i].Payload = fmt.Appendf(nil, "posture %d from sender %d", seq, i)
			calls[i] = func() error { return s.SaveReport(ctx, reports[i], nil, 100) }
		}
		winner := -1
		for i, err := range together(calls...) {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("seq %d stored twice: by senders %d and %d", seq, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, storage.ErrSeqNotIncreasing):
				t.Errorf("seq %d, sender %d: %v, want %v", seq, i, err, storage.ErrSeqNotIncreasing)
			}
		}
		if winner < 0 {
			t.Fatalf("seq %d: no sender succeeded", seq)
		}
		stored = append([]storage.Report{reports[winner]}, stored...)
		latest, err := s.LatestReport(ctx, d.ID)
		must(t, err)
		equal(t, fmt.Sprintf("latest report after seq %d", seq), latest, reports[winner])
	}
	equal(t, "ListReports", listReports(t, s, d.ID), stored)
	if got := getDevice(t, s, d.ID).LastSeq; got != rounds {
		t.Errorf("LastSeq = %d, want %d", got, rounds)
	}
}

// Reports racing with one nonce: it is consumed by exactly one of them.
func testConcurrentSameNonce(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	const senders, rounds = 4, 5
	last := uint64(0)
	for round := range rounds {
		nonce := fmt.Sprintf("nonce %d", round)
		createNonce(t, s, d.ID, nonce, at(hour))
		calls := make([]func() error, senders)
		for i := range calls {
			r := newReport(d.ID, last+1+uint64(i), at(minute))
			calls[i] = func() error { return s.SaveReport(ctx, r, []byte(nonce), 100) }
		}
		won := 0
		var seq uint64
		for i, err := range together(calls...) {
			switch {
			case err == nil:
				won++
				seq = last + 1 + uint64(i)
			case !errors.Is(err, storage.ErrNonceUsed) && !errors.Is(err, storage.ErrSeqNotIncreasing):
				t.Errorf("round %d, seq %d: %v, want %v or %v", round, last+1+uint64(i), err, storage.ErrNonceUsed, storage.ErrSeqNotIncreasing)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d reports used the nonce, want 1", round, won)
		}
		if got := getDevice(t, s, d.ID).LastSeq; got != seq {
			t.Errorf("round %d: LastSeq = %d, want the winner's %d", round, got, seq)
		}
		last = seq
	}
	if got := len(listReports(t, s, d.ID)); got != rounds {
		t.Errorf("%d reports stored, want %d (one per nonce)", got, rounds)
	}
}

// Refused reports sent together with good ones: each caller gets its own
// answer, the good reports are stored, and the refused ones change nothing.
func testConcurrentFailures(t *testing.T, s storage.Store) {
	ctx := t.Context()
	const good = 20
	ds := enrollN(t, s, good+4)
	revoked, ahead, nonceless, nonced := ds[good], ds[good+1], ds[good+2], ds[good+3]
	revokeDevice(t, s, revoked.ID)
	save(t, s, newReport(ahead.ID, 10, at(minute)), nil, 10)
	createNonce(t, s, ahead.ID, "ahead's nonce", at(2*hour))
	createNonce(t, s, nonced.ID, "used", at(hour))
	save(t, s, newReport(nonced.ID, 1, at(minute)), []byte("used"), 10)

	for round := uint64(1); round <= 3; round++ {
		bad := []struct {
			r     storage.Report
			nonce string
			want  error
		}{
			{newReport("no-such-device", round, at(hour)), "", storage.ErrNotFound},
			{newReport(revoked.ID, round, at(hour)), "", storage.ErrDeviceRevoked},
			// Its nonce is valid, and must survive the refusal.
			{newReport(ahead.ID, round, at(hour)), "ahead's nonce", storage.ErrSeqNotIncreasing},
			{newReport(nonceless.ID, round, at(hour)), "never issued", storage.ErrNonceUnknown},
			{newReport(nonced.ID, round+1, at(hour)), "used", storage.ErrNonceUsed},
		}
		before := snapshot(t, s)
		var calls []func() error
		for _, b := range bad {
			calls = append(calls, func() error { return s.SaveReport(ctx, b.r, []byte(b.nonce), 10) })
		}
		for _, d := range ds[:good] {
			r := newReport(d.ID, round, at(2*minute))
			calls = append(calls, func() error { return s.SaveReport(ctx, r, nil, 10) })
		}
		errs := together(calls...)
		for i, b := range bad {
			if !errors.Is(errs[i], b.want) {
				t.Errorf("round %d: report of %s: %v, want %v", round, b.r.DeviceID, errs[i], b.want)
			}
		}
		for i, d := range ds[:good] {
			if err := errs[len(bad)+i]; err != nil {
				t.Errorf("round %d: report of %s: %v", round, d.ID, err)
			}
		}

		// Only the good devices changed, by exactly their report.
		want := before
		want.Devices = slices.Clone(before.Devices)
		want.Reports = map[string][]storage.Report{}
		for id, rs := range before.Reports {
			want.Reports[id] = rs
		}
		for i, d := range want.Devices {
			if i >= good {
				continue
			}
			r := newReport(d.ID, round, at(2*minute))
			d.LastSeq = round
			d.LastReportAt = r.ObservedAt
			d.LastSeen = r.ReceivedAt
			want.Devices[i] = d
			want.Reports[d.ID] = append([]storage.Report{r}, before.Reports[d.ID]...)
		}
		equal(t, fmt.Sprintf("store after round %d", round), snapshot(t, s), want)
	}
	// The refused report did not use up ahead's nonce.
	save(t, s, newReport(ahead.ID, 11, at(hour)), []byte("ahead's nonce"), 10)
}

// testConcurrentReenroll: a stream still holding the old key reports as
// fast as it can, seqs climbing to the top, while the device enrolls again.
// Each of its reports is stored before the re-enrollment or refused after
// it: none lands in the new enrollment, whose seq stays where the
// re-enrollment put it, so the new key's first report is accepted.
func testConcurrentReenroll(t *testing.T, s storage.Store) {
	ctx := t.Context()
	d := enrollN(t, s, 1)[0]
	again := newEnrollment(1, "fleet")
	again.Device.PublicKey = []byte("pkix-der-key-new")
	again.Device.CertSerial, again.Cert.Serial = "abc124", "abc124"
	again.Device.EnrolledAt, again.Cert.NotBefore = at(hour), at(hour)

	const writers, perWriter = 4, 40
	var (
		mu       sync.Mutex
		accepted []uint64
	)
	calls := []func() error{func() error {
		_, _, err := s.EnrollDevice(ctx, again)
		return err
	}}
	for w := range writers {
		calls = append(calls, func() error {
			for i := range perWriter {
				seq := uint64(1+i*writers+w) << 40 // heading for the top
				err := s.SaveReport(ctx, newReport(d.ID, seq, at(minute)), nil, 1000)
				switch {
				case err == nil:
					mu.Lock()
					accepted = append(accepted, seq)
					mu.Unlock()
				case errors.Is(err, storage.ErrKeyReplaced), errors.Is(err, storage.ErrSeqNotIncreasing):
				default:
					return fmt.Errorf("seq %d: %w", seq, err)
				}
			}
			return nil
		})
	}
	for i, err := range together(calls...) {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	got := getDevice(t, s, d.ID)
	if got.Enrollments != 2 || got.LastSeq != 0 || !bytes.Equal(got.PublicKey, again.Device.PublicKey) {
		t.Fatalf("after re-enrollment: Enrollments %d, LastSeq %d, key %q; want 2, 0 and the new key", got.Enrollments, got.LastSeq, got.PublicKey)
	}
	for _, r := range listReports(t, s, d.ID) {
		if !bytes.Equal(r.Key, d.PublicKey) || !slices.Contains(accepted, r.Seq) {
			t.Errorf("stored report seq %d, key %q: not one the old key had accepted", r.Seq, r.Key)
		}
	}
	save(t, s, signedWith(newReport(d.ID, 1, at(hour)), again.Device.PublicKey), nil, 1000)
}
