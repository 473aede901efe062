package steal_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/steal"
)

func TestParse(t *testing.T) {
	got, err := steal.Parse([]byte("cpu  7355251 80798 1366680 7675547 69029 0 66229 849059 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := 8490590 * time.Millisecond; got != want {
		t.Fatalf("steal %v, want %v", got, want)
	}
	// Kernels before guest time was counted stop at steal.
	if got, err := steal.Parse([]byte("cpu 1 2 3 4 5 6 7 250")); err != nil || got != 2500*time.Millisecond {
		t.Fatalf("eight numbers: %v, %v", got, err)
	}
}

func TestParseRefuses(t *testing.T) {
	for name, in := range map[string]string{
		"empty":            "",
		"per-CPU line":     "cpu0 1 2 3 4 5 6 7 8\n",
		"no steal":         "cpu 1 2 3 4 5 6 7\n",
		"not a number":     "cpu 1 2 3 4 5 6 7 x 0 0\n",
		"negative":         "cpu 1 2 3 4 5 6 7 -8 0 0\n",
		"fraction":         "cpu 1 2 3 4 5 6 7 8.5 0 0\n",
		"too many ticks":   "cpu 1 2 3 4 5 6 7 99999999999999999999 0 0\n",
		"beyond durations": "cpu 1 2 3 4 5 6 7 9223372036854775807 0 0\n",
		"long first line":  "cpu 1 2 3 4 5 6 7 8" + strings.Repeat(" 0", 1000) + "\n",
		"nul bytes":        "\x00cpu 1 2 3 4 5 6 7 8\n",
	} {
		if d, err := steal.Parse([]byte(in)); err == nil {
			t.Errorf("%s: parsed as %v, want an error", name, d)
		}
	}
}

func TestWindow(t *testing.T) {
	w := steal.Start()
	time.Sleep(20 * time.Millisecond)
	cores, ok := w.Cores()
	if runtime.GOOS != "linux" {
		if ok {
			t.Fatalf("%s reported %v cores of steal", runtime.GOOS, cores)
		}
		return
	}
	if !ok {
		t.Fatal("no steal figure on Linux")
	}
	if cores < 0 || cores > float64(runtime.NumCPU()) {
		t.Fatalf("steal %v cores on a %d-CPU machine", cores, runtime.NumCPU())
	}
	if _, ok := (steal.Window{}).Cores(); ok {
		t.Fatal("a window never started gave a figure")
	}
}

func TestCorrected(t *testing.T) {
	for _, c := range []struct{ rate, cpus, stolen, want float64 }{
		{100, 2, 0, 100},
		{100, 2, 0.5, 100 * 2 / 1.5},
		{100, 2, -1, 100},
		{100, 2, 2, 100},
		{100, 2, 3, 100},
	} {
		if got := steal.Corrected(c.rate, c.cpus, c.stolen); got != c.want {
			t.Errorf("Corrected(%v, %v, %v) = %v, want %v", c.rate, c.cpus, c.stolen, got, c.want)
		}
	}
}
