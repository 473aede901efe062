// Package cpustat measures where this machine's CPU time went besides the
// processes it runs: idle, idle while a disk write was waited for
// (iowait), and given by a virtual machine's hypervisor to other guests
// while these CPUs had work (steal), from the first line of /proc/stat.
// A benchmark on a shared host loses stolen time without seeing it in its
// own CPU figures, and loses more of it in one second than the next, so a
// rate measured there says as much about the neighbours as about the
// code; dividing by the cores that were left takes that part out. Idle
// and iowait say whether the code under test left cores unused, and
// whether it was waiting for fsync meanwhile.
package cpustat

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ticksPerSecond is USER_HZ, in which /proc/stat counts: 100 on every
// Linux architecture Go runs on.
const ticksPerSecond = 100

// maxLine bounds the aggregate line Parse reads.
const maxLine = 1024

// Times is CPU time summed over every CPU.
type Times struct {
	Idle, IOWait, Steal time.Duration
}

// Parse returns the times of the first line of /proc/stat, "cpu user nice
// system idle iowait irq softirq steal ...". A kernel that does not report
// steal (before Linux 2.6.11) is an error.
func Parse(stat []byte) (Times, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	if len(line) > maxLine {
		return Times{}, errors.New("/proc/stat: first line too long")
	}
	f := bytes.Fields(line)
	if len(f) == 0 || string(f[0]) != "cpu" {
		return Times{}, errors.New(`/proc/stat: first line is not the "cpu" total`)
	}
	if len(f) < 9 {
		return Times{}, fmt.Errorf("/proc/stat: %d fields on the cpu line, steal is the 8th number", len(f)-1)
	}
	var t Times
	for _, c := range []struct {
		name  string
		field int
		to    *time.Duration
	}{{"idle", 4, &t.Idle}, {"iowait", 5, &t.IOWait}, {"steal", 8, &t.Steal}} {
		ticks, err := strconv.ParseUint(string(f[c.field]), 10, 63)
		if err != nil {
			return Times{}, fmt.Errorf("/proc/stat: %s %q is not a count of ticks", c.name, f[c.field])
		}
		if ticks > uint64(1<<63-1)/uint64(time.Second) {
			return Times{}, fmt.Errorf("/proc/stat: %s %d ticks is out of range", c.name, ticks)
		}
		*c.to = time.Duration(ticks) * time.Second / ticksPerSecond
	}
	return t, nil
}

// Window is a span of wall time over which the times are measured.
type Window struct {
	t0 time.Time
	at Times
	ok bool
}

// Start opens a window now.
func Start() Window {
	t, err := Read()
	return Window{t0: time.Now(), at: t, ok: err == nil}
}

// Cores is the average number of cores each time took since Start: a
// Steal of 0.5 means half a core's time went to other guests. Idle does
// not count IOWait, as the kernel counts them apart; both are unused
// cores.
type Cores struct{ Idle, IOWait, Steal float64 }

// Cores returns the cores each time took since Start; ok is false where
// the kernel does not report them.
func (w Window) Cores() (Cores, bool) {
	if !w.ok {
		return Cores{}, false
	}
	t, err := Read()
	wall := time.Since(w.t0).Seconds()
	if err != nil || wall <= 0 {
		return Cores{}, false
	}
	per := func(now, then time.Duration) float64 { return max(0, (now-then).Seconds()/wall) }
	return Cores{Idle: per(t.Idle, w.at.Idle), IOWait: per(t.IOWait, w.at.IOWait), Steal: per(t.Steal, w.at.Steal)}, true
}
