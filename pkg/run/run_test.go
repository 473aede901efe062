package run_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/pkg/run"
)

func TestFirstErrorInterruptsAll(t *testing.T) {
	t.Parallel()
	var g run.Group
	stop := make(chan struct{})
	interrupted := make(chan error, 1)
	g.Add("blocker", func() error { <-stop; return nil }, func(err error) { interrupted <- err; close(stop) })
	boom := errors.New("boom")
	g.Add("failer", func() error { return boom }, func(error) {})
	if err := g.Run(); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want boom", err)
	}
	if err := <-interrupted; !errors.Is(err, boom) {
		t.Fatalf("interrupt got %v", err)
	}
}

func TestPanicBecomesError(t *testing.T) {
	t.Parallel()
	var g run.Group
	g.Add("panicker", func() error { panic("oops") }, func(error) {})
	err := g.Run()
	if err == nil || !strings.Contains(err.Error(), "panicker panicked: oops") {
		t.Fatalf("Run = %v", err)
	}
}

func TestShutdownTimeout(t *testing.T) {
	t.Parallel()
	g := run.Group{ShutdownTimeout: 50 * time.Millisecond}
	g.Add("stuck", func() error { select {} }, func(error) {})
	g.Add("done", func() error { return nil }, func(error) {})
	if err := g.Run(); err != nil {
		t.Fatalf("Run = %v", err)
	}
}
