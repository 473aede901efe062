package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// gather follows the pages only when asked for all of them, and stops at
// the last or at an error.
func TestGather(t *testing.T) {
	t.Parallel()
	pages := map[string][]int{"": {1, 2}, "p2": {3, 4}, "p3": {5}}
	nextOf := map[string]string{"": "p2", "p2": "p3", "p3": ""}
	var asked []string
	next := func(token string) ([]int, string, error) {
		asked = append(asked, token)
		return pages[token], nextOf[token], nil
	}
	got, more, err := gather(false, next)
	if err != nil || len(got) != 2 || more != "p2" || strings.Join(asked, ",") != "" {
		t.Fatalf("one page: %v %q %v, asked %q", got, more, err, asked)
	}
	asked = nil
	got, more, err = gather(true, next)
	if err != nil || len(got) != 5 || more != "" || strings.Join(asked, ",") != ",p2,p3" {
		t.Fatalf("every page: %v %q %v, asked %q", got, more, err, asked)
	}
	boom := errors.New("verifier went away")
	if _, _, err := gather(true, func(token string) ([]int, string, error) {
		if token == "" {
			return []int{1}, "p2", nil
		}
		return nil, "", boom
	}); !errors.Is(err, boom) {
		t.Fatalf("an error on page 2: %v", err)
	}
}

// The window's bounds read as --since reads them, and an empty or
// reversed window is a usage error naming the flag.
func TestWindow(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		since, until string
		want         string // "" for no error; else part of it
		from, to     time.Time
	}{
		{"", "", "", time.Time{}, time.Time{}},
		{"24h", "", "", now.Add(-24 * time.Hour), time.Time{}},
		{"2026-03-01", "2026-03-02", "", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)},
		{"", "90m", "", time.Time{}, now.Add(-90 * time.Minute)},
		{"1h", "2h", "--until 2026-03-04T10:00:00Z is not after --since 2026-03-04T11:00:00Z", time.Time{}, time.Time{}},
		{"yesterday", "", `--since "yesterday"`, time.Time{}, time.Time{}},
		{"", "soon", `--until "soon"`, time.Time{}, time.Time{}},
	} {
		since, until := tc.since, tc.until
		from, to, err := window{&since, &until}.times(now, time.UTC)
		if tc.want != "" {
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%q..%q: %v, want %q", tc.since, tc.until, err, tc.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q..%q: %v", tc.since, tc.until, err)
			continue
		}
		if (from == nil) != tc.from.IsZero() || (from != nil && !from.AsTime().Equal(tc.from)) ||
			(to == nil) != tc.to.IsZero() || (to != nil && !to.AsTime().Equal(tc.to)) {
			t.Errorf("%q..%q: %v..%v, want %v..%v", tc.since, tc.until, from, to, tc.from, tc.to)
		}
	}
}
