package stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/agent/clock"
	"github.com/clearance/clearance/pkg/report"
)

// A listing that fails is logged when it starts failing and when it works
// again, not at every report; a shutdown is not a failure.
func TestListOrNoneLogsChangesOnly(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	failing := false
	broken := func() ([]int, error) { return nil, errors.New("osquery went away") }
	working := func() ([]int, error) { return []int{1, 2}, nil }
	ctx := context.Background()

	for range 3 {
		if got := listOrNone(ctx, log, &failing, "things", "things", broken); got != nil {
			t.Fatalf("a failed listing gave %v, want none", got)
		}
	}
	if n := strings.Count(buf.String(), "listing things failed; reporting none"); n != 1 {
		t.Errorf("three failures logged %d times, want once:\n%s", n, buf.String())
	}
	if got := listOrNone(ctx, log, &failing, "things", "things", working); len(got) != 2 || failing {
		t.Fatalf("a working listing gave %v (failing %v)", got, failing)
	}
	if !strings.Contains(buf.String(), "listing things works again") || !strings.Contains(buf.String(), "things=2") {
		t.Errorf("the recovery is not logged with its count:\n%s", buf.String())
	}

	buf.Reset()
	done, cancel := context.WithCancel(ctx)
	cancel()
	listOrNone(done, log, &failing, "things", "things", broken)
	if failing || buf.Len() != 0 {
		t.Errorf("a listing cut short by shutdown counted as failing (%v) or logged %q", failing, buf.String())
	}
}

func TestCheckBudget(t *testing.T) {
	b := checkBudget{burst: 3, every: time.Second}
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		if w := b.take(t0); w != 0 {
			t.Fatalf("take %d of the burst waits %v", i, w)
		}
	}
	if w := b.take(t0); w != time.Second {
		t.Errorf("past the burst: wait %v, want 1s", w)
	}
	if w := b.take(t0.Add(250 * time.Millisecond)); w != 750*time.Millisecond {
		t.Errorf("a quarter refilled: wait %v, want 750ms", w)
	}
	if w := b.take(t0.Add(time.Second)); w != 0 {
		t.Errorf("one refilled: wait %v, want 0", w)
	}
	// A clock stepping back refills nothing and takes nothing.
	if w := b.take(t0); w != time.Second {
		t.Errorf("clock stepped back: wait %v, want 1s", w)
	}
	// A long quiet refills to the burst, no more.
	later := t0.Add(time.Hour)
	for i := range 3 {
		if w := b.take(later); w != 0 {
			t.Fatalf("after an hour, take %d waits %v", i, w)
		}
	}
	if w := b.take(later); w == 0 {
		t.Error("after an hour, the burst grew past 3")
	}
}

func TestSeqFloor(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name  string
		times []time.Time
		want  uint64
	}{
		{"the later of two", []time.Time{now, now.Add(time.Hour)}, uint64(now.Add(time.Hour).UnixMilli())},
		{"a time before 1970 ignored", []time.Time{now, time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)}, uint64(now.UnixMilli())},
		{"a time past the largest seq ignored", []time.Time{now, time.UnixMilli(report.MaxSeq + 1)}, uint64(now.UnixMilli())},
		{"nothing usable", []time.Time{time.Unix(-1, 0)}, 1},
	} {
		if got := seqFloor(c.times...); got != c.want {
			t.Errorf("%s: seqFloor = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestPrunePending(t *testing.T) {
	now := time.Now()
	c := New(Options{Clock: clock.New(func() time.Time { return now }, nil), ResendMaxAge: 4 * time.Minute})
	c.pending = []pendingReport{
		{seq: 1, deviceID: "dev-a", observedAt: now.Add(-time.Minute)},
		{seq: 2, deviceID: "dev-a", observedAt: now.Add(-time.Hour)},                                      // too old
		{seq: 3, deviceID: "dev-a", observedAt: now.Add(365 * 24 * time.Hour)},                            // dated ahead
		{seq: 4, deviceID: "dev-b", observedAt: now},                                                      // another device id
		{seq: 5, deviceID: "dev-a", observedAt: now, nonceUntil: now.Add(-time.Second)},                   // nonce expired
		{seq: 6, deviceID: "dev-a", observedAt: now.Add(3 * time.Minute), nonceUntil: now.Add(time.Hour)}, // a little ahead
	}
	c.prunePending("dev-a")
	var kept []uint64
	for _, p := range c.pending {
		kept = append(kept, p.seq)
	}
	if fmt.Sprint(kept) != "[1 6]" {
		t.Errorf("kept %v, want [1 6]", kept)
	}
}
