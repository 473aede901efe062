package clock

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLearnOffset(t *testing.T) {
	t.Parallel()
	local := time.Date(2025, 3, 4, 5, 0, 0, 0, time.UTC)
	var logs bytes.Buffer
	c := New(func() time.Time { return local }, slog.New(slog.NewTextHandler(&logs, nil)))
	if off, known := c.Offset(); off != 0 || known {
		t.Fatalf("new clock: offset %s, known %v", off, known)
	}
	if !c.Now().Equal(local) {
		t.Fatalf("Now before learning = %s, want the local clock", c.Now())
	}

	// The device is ten minutes slow.
	verifier := local.Add(10 * time.Minute)
	c.Learn(verifier, local)
	if got := c.Now(); !got.Equal(verifier) {
		t.Errorf("Now = %s, want the verifier's %s", got, verifier)
	}
	if !c.Local().Equal(local) {
		t.Errorf("Local = %s, want the device's own %s", c.Local(), local)
	}
	if !strings.Contains(logs.String(), "device clock differs") || !strings.Contains(logs.String(), "offset=10m0s") {
		t.Errorf("log does not name the offset:\n%s", logs.String())
	}

	// Small changes (network delay) are not news; a step is.
	logs.Reset()
	c.Learn(verifier.Add(300*time.Millisecond), local)
	if logs.Len() != 0 {
		t.Errorf("logged a 300ms change:\n%s", logs.String())
	}
	c.Learn(local.Add(-10*time.Minute), local)
	if !strings.Contains(logs.String(), "offset=-10m0s") {
		t.Errorf("a step to -10m not logged:\n%s", logs.String())
	}
	logs.Reset()
	c.Learn(local, local)
	if !strings.Contains(logs.String(), "agrees with the verifier's again") {
		t.Errorf("the clock agreeing again not logged:\n%s", logs.String())
	}

	// A message without a time teaches nothing.
	c.Learn(time.Time{}, local)
	if off, _ := c.Offset(); off != 0 {
		t.Errorf("offset %s after a zero time, want 0", off)
	}

	// A device whose clock agrees says nothing at all.
	logs.Reset()
	quiet := New(func() time.Time { return local }, slog.New(slog.NewTextHandler(&logs, nil)))
	quiet.Learn(local.Add(time.Second), local)
	if logs.Len() != 0 {
		t.Errorf("logged a 1s offset:\n%s", logs.String())
	}
}

// A verifier time at the ends of what a Timestamp holds saturates the
// offset rather than wrapping it, and nothing panics.
func TestLearnExtremes(t *testing.T) {
	t.Parallel()
	local := time.Date(2025, 3, 4, 5, 0, 0, 0, time.UTC)
	c := New(func() time.Time { return local }, slog.New(slog.DiscardHandler))
	for _, vt := range []time.Time{
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC),
	} {
		c.Learn(vt, local)
		off, known := c.Offset()
		if !known || (vt.After(local) != (off > 0)) {
			t.Errorf("Learn(%s): offset %s, known %v; want the sign of the difference", vt, off, known)
		}
		_ = c.Now()
	}
}
