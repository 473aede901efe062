package sqlite

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// panicChild, set in the environment, makes TestPanicInALazyBatchEndsTheProcess
// the process that panics, with its store in that directory.
const panicChild = "CLEARANCE_SQLITE_PANIC_CHILD"

// A panic while a lazy batch's transaction is open ends the process, as
// it does in a durable batch, so that its supervisor restarts it: it must
// not leave the writer, and with it every write, waiting forever for the
// connection that the transaction still holds.
func TestPanicInALazyBatchEndsTheProcess(t *testing.T) {
	if dir := os.Getenv(panicChild); dir != "" {
		s := open(t, filepath.Join(dir, "clearance.db"))
		s.reports.afterTake = func() { panic("a write's bug") }
		_ = s.UseRequestID(context.Background(), "https://okta.example", "id-1", t0.Add(time.Hour))
		t.Fatal("the panic did not end the process")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestPanicInALazyBatchEndsTheProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), panicChild+"="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the process still ran 30 s after the panic (the writer hangs):\n%s", out)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !bytes.Contains(out, []byte("a write's bug")) {
		t.Fatalf("child: %v, want it to end on the panic:\n%s", err, out)
	}
}
