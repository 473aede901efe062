package testkit

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBuffer(t *testing.T) {
	t.Parallel()
	var b Buffer
	var w io.Writer = &b
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				fmt.Fprintln(w, "line")
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if got := strings.Count(b.String(), "line\n"); got != 800 {
		t.Errorf("%d lines, want 800", got)
	}
	fmt.Fprintln(w, `level=INFO msg="sign-in refused" reason=stale_posture`)
	if !b.HasLine("refused", "reason=stale_posture") || b.HasLine("refused", "reason=unknown_device") {
		t.Error("HasLine must find every part on one line")
	}
}

// recorder stands in for testing.T to see how a helper ends a test.
type recorder struct {
	testing.TB
	got []string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Fatal(args ...any)         { r.got = append(r.got, "fatal: "+fmt.Sprint(args...)) }
func (r *recorder) Fatalf(f string, a ...any) { r.got = append(r.got, "fatal: "+fmt.Sprintf(f, a...)) }
func (r *recorder) Skipf(f string, a ...any)  { r.got = append(r.got, "skip: "+fmt.Sprintf(f, a...)) }

func TestEventually(t *testing.T) {
	t.Parallel()
	start := time.Now()
	Eventually(t, 5*time.Second, "the clock", func() bool { return time.Since(start) > 50*time.Millisecond })

	rec := &recorder{TB: t}
	// The recorder's Fatalf returns; the condition then ends the loop.
	Eventually(rec, 30*time.Millisecond, "never", func() bool { return len(rec.got) > 0 })
	if len(rec.got) == 0 || rec.got[0] != "fatal: timed out after 30ms waiting for never" {
		t.Errorf("got %q", rec.got)
	}
	if Poll(30*time.Millisecond, func() bool { return false }) || !Poll(time.Second, func() bool { return true }) {
		t.Error("Poll reports whether the condition held")
	}
}

// TestTool: the pinned copy in bin/ comes first; a missing program skips,
// except in CI, and fails RequireTool everywhere.
func TestTool(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module example.com/m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pkg := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	pinned := filepath.Join(root, "bin", "sh")
	if err := os.WriteFile(pinned, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(pkg)
	if got := Tool(t, "sh"); got != pinned {
		t.Errorf("Tool(sh) = %s, want the pinned %s", got, pinned)
	}
	if got := RequireTool(t, "ls"); !filepath.IsAbs(got) {
		t.Errorf("RequireTool(ls) = %q, want a path from PATH", got)
	}
	for _, ci := range []string{"", "true"} {
		t.Setenv("CI", ci)
		rec := &recorder{TB: t}
		Tool(rec, "grpcurl-not-here")
		want := "skip: grpcurl-not-here not found in bin/ or on PATH: install it (with CI set this fails)"
		if ci != "" {
			want = "fatal: grpcurl-not-here not found in bin/ or on PATH: install it (CI is set: the test must run)"
		}
		if len(rec.got) != 1 || rec.got[0] != want {
			t.Errorf("CI=%q: %q, want %q", ci, rec.got, want)
		}
	}
	t.Setenv("CI", "")
	rec := &recorder{TB: t}
	RequireTool(rec, "xmlsec1-not-here")
	if len(rec.got) != 1 || !strings.HasPrefix(rec.got[0], "fatal: xmlsec1-not-here not found") {
		t.Errorf("RequireTool: %q", rec.got)
	}
}
