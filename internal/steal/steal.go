// Package steal measures the CPU time a virtual machine's hypervisor ran
// something else on this machine's CPUs while they had work: the "steal"
// column of /proc/stat. A benchmark on a shared host loses that time
// without seeing it in its own CPU figures, and loses more of it in one
// second than the next, so a rate measured there says as much about the
// neighbours as about the code. Dividing by the cores that were left
// takes that part out.
package steal

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

// Parse returns the steal time summed over every CPU from the contents of
// /proc/stat: the eighth number of its first line, "cpu ...". A kernel that
// reports fewer fields (before Linux 2.6.11) is an error.
func Parse(stat []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	if len(line) > maxLine {
		return 0, errors.New("/proc/stat: first line too long")
	}
	f := bytes.Fields(line)
	if len(f) == 0 || string(f[0]) != "cpu" {
		return 0, errors.New(`/proc/stat: first line is not the "cpu" total`)
	}
	if len(f) < 9 {
		return 0, fmt.Errorf("/proc/stat: %d fields on the cpu line, steal is the 8th number", len(f)-1)
	}
	ticks, err := strconv.ParseUint(string(f[8]), 10, 63)
	if err != nil {
		return 0, fmt.Errorf("/proc/stat: steal %q is not a count of ticks", f[8])
	}
	if ticks > uint64(1<<63-1)/uint64(time.Second) {
		return 0, fmt.Errorf("/proc/stat: steal %d ticks is out of range", ticks)
	}
	return time.Duration(ticks) * time.Second / ticksPerSecond, nil
}

// Window is a span of wall time over which steal is measured.
type Window struct {
	t0     time.Time
	steal0 time.Duration
	ok     bool
}

// Start opens a window now.
func Start() Window {
	s, err := Total()
	return Window{t0: time.Now(), steal0: s, ok: err == nil}
}

// Cores is the average number of cores taken by steal since Start: 0.5
// means half a core's time went elsewhere. ok is false where the kernel
// does not report steal, or the window was empty.
func (w Window) Cores() (cores float64, ok bool) {
	if !w.ok {
		return 0, false
	}
	s, err := Total()
	wall := time.Since(w.t0)
	if err != nil || wall <= 0 {
		return 0, false
	}
	return max(0, (s-w.steal0).Seconds()/wall.Seconds()), true
}

// Corrected is rate as it would have been on all of cpus: rate × cpus /
// (cpus − stolen). It returns rate unchanged when stolen is not less than
// cpus, where nothing sensible can be said.
func Corrected(rate, cpus, stolen float64) float64 {
	if stolen <= 0 || stolen >= cpus {
		return rate
	}
	return rate * cpus / (cpus - stolen)
}
