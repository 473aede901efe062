package testkit

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"testing"
)

// Child is the running test binary run again as a child process for one
// test function, so that a benchmark's load runs apart from the process it
// measures (its memory, its CPU). The job is passed as JSON in an
// environment variable the test function reads; the child reports on its
// stdout, line by line, and is told things on its stdin.
type Child struct {
	Cmd   *exec.Cmd
	Stdin io.WriteCloser
	Out   *bufio.Scanner
}

// StartChild runs test (a test function's name) in a child process with job
// in the environment variable env. The child is killed when tb ends.
func StartChild(tb testing.TB, test, env string, job any) *Child {
	tb.Helper()
	raw, err := json.Marshal(job)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+string(raw))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	out := bufio.NewScanner(stdout)
	out.Buffer(nil, 1<<20)
	return &Child{Cmd: cmd, Stdin: stdin, Out: out}
}
