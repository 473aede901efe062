package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// demoStory is what the README says `make demo` shows.
var demoStory = []string{
	"PASS  filevault", "=> compliant",
	"FAIL  filevault", "FAIL  firewall", "PASS  sip",
	"fresh signed report in", "=> not compliant",
	"-> 303 (to the agent on this Mac)", "-> 303 (proof signed by the device key)",
	"HTTP 200: a signed SAMLResponse", "=> decision log: allowed (bound by agent",
	"HTTP 403: Your Mac needs attention", "=> decision log: policy_failed: filevault firewall (bound by agent",
}

// demoEnv is this process's environment for a demo on free ports (never the
// defaults, which a developer's own demo may hold) in data, without an outer
// make's settings, with PATH and the given variables replaced.
func demoEnv(t *testing.T, data, path string, extra ...string) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "PATH", "BIN", "DATA", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DEMO_EXIT", "VERIFIER", "HTTP", "SSO", "PRESENCE":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "PATH="+path, "DATA="+data, "DEMO_EXIT=1",
		"VERIFIER="+freePort(t), "HTTP="+freePort(t), "SSO="+freePort(t), "PRESENCE="+freePort(t))
	return append(env, extra...)
}

// TestDemo runs `make demo` as a newcomer would on a machine with only Go,
// git and Debian's base system: PATH is the Go toolchain's dir and
// /usr/bin:/bin, and the bin dir has no grpcurl or scepclient, so make must
// install what the demo needs. The demo must then tell the README's story.
func TestDemo(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Dir(goBin) + ":/usr/bin:/bin"
	bin := t.TempDir()
	// The project's own binaries as TestMain built them: make's `go build`
	// finds them up to date instead of linking them again. grpcurl is left
	// for make to install.
	for _, name := range []string{"clearance-verifier", "clearance-agent", "osquery-sim"} {
		b, err := os.ReadFile(filepath.Join(binDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range filepath.SplitList(path) {
		for _, tool := range []string{"grpcurl", "scepclient"} {
			if _, err := os.Stat(filepath.Join(dir, tool)); err == nil {
				t.Logf("%s is in %s on this machine: the demo may use it rather than the one make installs", tool, dir)
			}
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "-C", "..", "demo", "BIN="+bin)
	cmd.Env = demoEnv(t, filepath.Join(t.TempDir(), "demo-data"), path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make demo failed: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(bin, "grpcurl")); err != nil {
		t.Errorf("make demo did not install grpcurl into BIN: %v", err)
	}
	for _, want := range demoStory {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

// TestDemoOnePerDataDir starts a second demo on the data dir of one that is
// running: the second must refuse, naming the first, and leave it to finish
// its story (it used to delete the first one's files under it).
func TestDemoOnePerDataDir(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "demo-data")
	path := filepath.Dir(grpcurlPath(t)) + ":" + binDir + ":" + os.Getenv("PATH")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	first := exec.CommandContext(ctx, "bash", "../scripts/demo.sh")
	first.Env = demoEnv(t, data, path, "BIN="+binDir)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	first.Stdout, first.Stderr = w, w
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var firstOut syncBuffer
	started := make(chan struct{})
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		br := bufio.NewReader(r)
		signalled := false
		for {
			line, err := br.ReadString('\n')
			firstOut.Write([]byte(line))
			// The banner comes after the lock is taken.
			if !signalled && strings.Contains(line, "Starting clearance-verifier") {
				close(started)
				signalled = true
			}
			if err != nil {
				if !signalled {
					close(started)
				}
				if err != io.EOF {
					firstOut.Write([]byte(err.Error()))
				}
				return
			}
		}
	}()
	<-started

	second := exec.CommandContext(ctx, "bash", "../scripts/demo.sh")
	second.Env = demoEnv(t, data, path, "BIN="+binDir)
	out, err := second.CombinedOutput()
	if err == nil {
		t.Errorf("a second demo on %s succeeded:\n%s", data, out)
	}
	want := fmt.Sprintf("a demo is already running (pid %d) in %s; stop it with Ctrl-C in its terminal or kill %d",
		first.Process.Pid, data, first.Process.Pid)
	if !strings.Contains(string(out), want) {
		t.Errorf("the second demo said:\n%s\nwant %q", out, want)
	}

	<-copied
	if err := first.Wait(); err != nil {
		t.Fatalf("the first demo failed: %v\n%s", err, firstOut.String())
	}
	for _, want := range demoStory {
		if !strings.Contains(firstOut.String(), want) {
			t.Errorf("first demo's output lacks %q:\n%s", want, firstOut.String())
		}
	}
}
