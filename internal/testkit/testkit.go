// Package testkit holds what tests across the module share: a log buffer
// that servers under test write to from their goroutines, polling for a
// condition that another goroutine or process makes true, and finding the
// external programs tests run as independent peers. Certificates for tests
// are in the testpki package below it, and PostgreSQL databases in testpg.
package testkit

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// Buffer collects what several goroutines write (a server's log) while the
// test reads it. The zero value is ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String is everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// HasLine reports whether a line written so far holds every one of parts.
func (b *Buffer) HasLine(parts ...string) bool {
	for _, line := range strings.Split(b.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// pollEvery is how often Eventually asks: often enough that a test waits
// little past the moment the condition holds, seldom enough that a
// condition asking a server over the network does not load it.
const pollEvery = 20 * time.Millisecond

// Eventually polls cond until it holds, and fails the test when within
// passes first. what names the awaited state in the failure message.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(within, cond) {
		t.Fatalf("timed out after %s waiting for %s", within, what)
	}
}

// Poll asks cond until it holds or within passes, and reports whether it
// held: for a test that says more than Eventually when it fails, or that
// goes on either way.
func Poll(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
	return true
}
