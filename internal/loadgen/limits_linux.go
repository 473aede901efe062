package loadgen

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// RaiseFileLimit raises RLIMIT_NOFILE to at least want, the hard limit too
// when that is lower and the process may (root). It returns the limit now
// in force. Calling syscall.Setrlimit also makes Go hand the raised limit
// to the processes it starts, so a verifier started with --start gets it.
func RaiseFileLimit(want uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur >= want {
		// Set it anyway (unchanged) so child processes inherit it as is.
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
		return lim.Cur, nil
	}
	next := lim
	next.Cur = want
	if next.Max < want {
		next.Max = want
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err == nil {
		return want, nil
	}
	// Not allowed above the hard limit: take all of it.
	next = syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &next); err != nil {
		return lim.Cur, fmt.Errorf("raising RLIMIT_NOFILE from %d to %d: %w", lim.Cur, want, err)
	}
	return lim.Max, fmt.Errorf("RLIMIT_NOFILE hard limit is %d, below the %d wanted; raise it (ulimit -Hn as root)", lim.Max, want)
}

// RSS is the resident set size of process pid (VmRSS in /proc/pid/status),
// in bytes.
func RSS(pid int) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", rest, err)
			}
			return kb * 1024, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// CPUTime is the user plus system CPU time process pid has used (0: this
// process), from /proc/pid/stat.
func CPUTime(pid int) (time.Duration, error) {
	p := "/proc/self/stat"
	if pid != 0 {
		p = fmt.Sprintf("/proc/%d/stat", pid)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after its ")" are
	// plain. utime and stime are fields 14 and 15, in clock ticks.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: too few fields", p)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%s: utime/stime not numbers", p)
	}
	const ticks = 100 // USER_HZ, fixed at 100 on Linux
	return time.Duration(ut+st) * time.Second / ticks, nil
}
