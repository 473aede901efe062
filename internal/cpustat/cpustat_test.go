package cpustat_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/cpustat"
)

func TestParse(t *testing.T) {
	got, err := cpustat.Parse([]byte("cpu  7355251 80798 1366680 7675547 69029 0 66229 849059 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := cpustat.Times{Idle: 76755470 * time.Millisecond, IOWait: 690290 * time.Millisecond, Steal: 8490590 * time.Millisecond}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// Kernels before guest time was counted stop at steal.
	if got, err := cpustat.Parse([]byte("cpu 1 2 3 4 5 6 7 250")); err != nil || got.Steal != 2500*time.Millisecond || got.Idle != 40*time.Millisecond {
		t.Fatalf("eight numbers: %+v, %v", got, err)
	}
}

func TestParseRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"empty":               "",
		"per-CPU line":        "cpu0 1 2 3 4 5 6 7 8\n",
		"no steal":            "cpu 1 2 3 4 5 6 7\n",
		"steal not a number":  "cpu 1 2 3 4 5 6 7 x 0 0\n",
		"idle not a number":   "cpu 1 2 3 x 5 6 7 8 0 0\n",
		"iowait not a number": "cpu 1 2 3 4 x 6 7 8 0 0\n",
		"negative":            "cpu 1 2 3 4 5 6 7 -8 0 0\n",
		"fraction":            "cpu 1 2 3 4 5 6 7 8.5 0 0\n",
		"too many ticks":      "cpu 1 2 3 4 5 6 7 99999999999999999999 0 0\n",
		"beyond durations":    "cpu 1 2 3 9223372036854775807 5 6 7 8 0 0\n",
		"long first line":     "cpu 1 2 3 4 5 6 7 8" + strings.Repeat(" 0", 1000) + "\n",
		"nul bytes":           "\x00cpu 1 2 3 4 5 6 7 8\n",
	} {
		if got, err := cpustat.Parse([]byte(in)); err == nil {
			t.Errorf("%s: parsed as %+v, want an error", name, got)
		}
	}
}

func TestWindow(t *testing.T) {
	w := cpustat.Start()
	time.Sleep(50 * time.Millisecond)
	c, ok := w.Cores()
	if runtime.GOOS != "linux" {
		if ok {
			t.Fatalf("%s reported %+v", runtime.GOOS, c)
		}
		return
	}
	if !ok {
		t.Fatal("no figures on Linux")
	}
	n := float64(runtime.NumCPU())
	for name, v := range map[string]float64{"idle": c.Idle, "iowait": c.IOWait, "steal": c.Steal} {
		// Ticks are 10 ms, so a short window can read a tick more than
		// it lasted.
		if v < 0 || v > n*1.5 {
			t.Errorf("%s %v cores on a %v-CPU machine", name, v, n)
		}
	}
	if _, ok := (cpustat.Window{}).Cores(); ok {
		t.Fatal("a window never started gave figures")
	}
}
