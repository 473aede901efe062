package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAgentFollowsItsRotatedLog runs the real agent as launchd does, its
// output appended to its log file, and rotates the log as newsyslog does
// (renamed to .0, a new empty file made): the agent writes to the new file,
// and what it wrote before is in the archive. The test build follows
// CLEARANCE_TEST_LOG_FILE instead of /var/log/clearance-agent.log.
func TestAgentFollowsItsRotatedLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "verifier")
	v := startVerifier(t, dataDir)
	secret := v.enrollSecret()
	_, sock, _ := startStandIn(t, dir, compliantMac)

	logPath := filepath.Join(dir, "clearance-agent.log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "clearance-agent"),
		agentRun(dir, v.grpcAddr, filepath.Join(dataDir, "ca.pem"), secret, sock, "--interval", interval.String(), "--presence-listen", "off")...)
	cmd.Env = append(os.Environ(), "CLEARANCE_TEST_LOG_FILE="+logPath, "CLEARANCE_TEST_LOG_EVERY=200ms")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logFile.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("the agent did not stop within 20s of SIGTERM")
		}
	})
	waitCompliant(t, v)
	waitFor(t, "the agent's start in its log", func() bool { return strings.Contains(readString(logPath), "starting") })

	if err := os.Rename(logPath, logPath+".0"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logPath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the agent writing to the new log", func() bool {
		return strings.Contains(readString(logPath), "log file rotated; writing to the new one")
	})
	// What it writes next goes there too: a stop's last lines.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("the agent did not stop within 20s of SIGTERM")
	}
	now, archived := readString(logPath), readString(logPath+".0")
	if !strings.Contains(now, "stopped") {
		t.Errorf("the new log lacks the agent's stop:\n%s", now)
	}
	if !strings.Contains(archived, "starting") || strings.Contains(archived, "log file rotated") {
		t.Errorf("the archive:\n%s", archived)
	}
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
