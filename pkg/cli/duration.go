package cli

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// maxDays bounds a duration given in days: a century, far beyond any
// setting, and well inside time.Duration.
const maxDays = 100 * 366

// ParseDuration reads a duration as Go writes one (90m, 24h, 1h30m) or as
// whole days (7d), the form --since takes, so that every duration flag
// takes what the help's examples show.
func ParseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 && n <= maxDays && !strings.HasPrefix(days, "+") && !strings.HasPrefix(days, "-") {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("give a duration such as 90s, 30m, 24h or 7d")
	}
	return d, nil
}

// durationValue is a time.Duration flag that ParseDuration reads.
type durationValue time.Duration

func (d *durationValue) Set(s string) error {
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = durationValue(v)
	return nil
}

func (d *durationValue) String() string { return time.Duration(*d).String() }

// Duration defines a duration flag, as the flag package's does, that also
// takes whole days (7d), and says what it takes when given something else.
func (f *FlagSet) Duration(name string, value time.Duration, usage string) *time.Duration {
	p := new(time.Duration)
	*p = value
	f.DurationVar(p, name, value, usage)
	return p
}

// DurationVar is Duration storing into p.
func (f *FlagSet) DurationVar(p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	f.Var((*durationValue)(p), name, usage)
	if !strings.Contains(usage, "`") {
		m := f.meta[name]
		if m == nil {
			m = &flagMeta{}
			f.meta[name] = m
		}
		if m.kind == "" {
			m.kind = "duration"
		}
	}
}
