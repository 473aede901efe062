package logsample

import (
	"strings"
	"testing"
	"time"
)

var start = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func TestSample(t *testing.T) {
	t.Parallel()
	now := start
	s := Sample{Every: time.Second}
	if ok, _ := s.Take(now); !ok {
		t.Fatal("first line held back")
	}
	for range 5 {
		if ok, _ := s.Take(now); ok {
			t.Fatal("a second line within the interval")
		}
	}
	now = now.Add(time.Second)
	if ok, skipped := s.Take(now); !ok || skipped != 5 {
		t.Errorf("after the interval: %v, %d left out; want true, 5", ok, skipped)
	}
}

// TestSamples: each key is sampled on its own, so a flood of one reason
// never hides the first line of another.
func TestSamples(t *testing.T) {
	t.Parallel()
	now := start
	var s Samples
	for range 10 {
		s.Take("bad_signature", time.Second, now)
	}
	if ok, _ := s.Take("expired", time.Second, now); !ok {
		t.Fatal("a flood of one reason held back another's first line")
	}
	now = now.Add(time.Second)
	if ok, skipped := s.Take("bad_signature", time.Second, now); !ok || skipped != 9 {
		t.Errorf("after the interval: %v, %d left out; want true, 9", ok, skipped)
	}
}

func TestClip(t *testing.T) {
	t.Parallel()
	if got := Clip("short"); got != "short" {
		t.Errorf("Clip(short) = %q", got)
	}
	long := strings.Repeat("A", 500<<10)
	if got := Clip(long); len(got) > MaxLoggedField+len("…") || !strings.HasPrefix(got, "AAAA") {
		t.Errorf("Clip of 500 KiB = %d bytes", len(got))
	}
}
