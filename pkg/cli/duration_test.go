package cli

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{
		"7d": 7 * 24 * time.Hour, "0d": 0, "1d": 24 * time.Hour, "90s": 90 * time.Second, "1h30m": 90 * time.Minute,
		"-5m": -5 * time.Minute, "36600d": 36600 * 24 * time.Hour,
	} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "3 days", "1d12h", "-1d", "-0d", "+3d", "1.5d", "36601d", "99999999999999999999d", "soon", "7D"} {
		if got, err := ParseDuration(in); err == nil || err.Error() != "give a duration such as 90s, 30m, 24h or 7d" {
			t.Errorf("ParseDuration(%q) = %v, %v; want the error that says what it takes", in, got, err)
		}
	}
}

// A duration flag takes days, keeps its default until set, and shows its
// type and default in the help as the flag package's would.
func TestDurationFlag(t *testing.T) {
	t.Parallel()
	fs := newFlagSet("tool")
	d := fs.Duration("for", 24*time.Hour, "how long")
	var v time.Duration
	fs.DurationVar(&v, "within", time.Hour, "within this `window`")
	if *d != 24*time.Hour || v != time.Hour {
		t.Fatalf("defaults %v %v", *d, v)
	}
	if _, err := fs.parse([]string{"--for", "3d", "--within", "90m"}); err != nil {
		t.Fatal(err)
	}
	if *d != 72*time.Hour || v != 90*time.Minute {
		t.Fatalf("parsed %v %v", *d, v)
	}
	info := fs.info()[""]
	if len(info) != 2 || info[0].kind != "duration" || info[0].def != "24h" || info[1].kind != "window" || info[1].def != "1h" {
		t.Fatalf("help %+v", info)
	}
}
