// Package logsample owns how a program logs what outside parties can cause
// as often as they like (a refused request, a flood): one line per interval
// per reason, saying how many were left out, and sender-chosen text clipped,
// so that a flood is a few short lines and not a full disk. The verifier and
// the agent both follow this one rule.
package logsample

import (
	"sync"
	"time"
)

// Sample lets one log line through per interval and counts the others, so a
// flood is logged as a line every Every saying how many were left out, not
// as a line per request. The zero value lets every line through; it is safe
// for concurrent use.
type Sample struct {
	Every time.Duration

	mu      sync.Mutex
	next    time.Time
	skipped int
}

// Take reports whether a line may be logged at now, and how many were left
// out since the last one.
func (s *Sample) Take(now time.Time) (ok bool, skipped int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.next) {
		s.skipped++
		return false, 0
	}
	skipped, s.skipped = s.skipped, 0
	s.next = now.Add(s.Every)
	return true, skipped
}

// Samples is a Sample per key (a refusal's reason), so that a flood of
// one kind never hides the first line of another. Keys must come from a
// small fixed set (the caller's constants), never from the sender. The zero
// value is ready; it is safe for concurrent use.
type Samples struct {
	mu sync.Mutex
	m  map[string]*Sample
}

// Take is Sample.Take for key, whose sample lets a line through every
// every (the first call for the key sets it).
func (s *Samples) Take(key string, every time.Duration, now time.Time) (ok bool, skipped int) {
	s.mu.Lock()
	sm := s.m[key]
	if sm == nil {
		if s.m == nil {
			s.m = map[string]*Sample{}
		}
		sm = &Sample{Every: every}
		s.m[key] = sm
	}
	s.mu.Unlock()
	return sm.Take(now)
}

// MaxLoggedField bounds a sender-chosen string in a log line.
const MaxLoggedField = 64

// MaxLoggedMessage bounds a message from an authenticated peer (the
// verifier's words in a status an agent logs): long enough for every
// message the verifier writes, short enough that a peer cannot make a log
// line as large as its answer.
const MaxLoggedMessage = 1024

// ClipMessage bounds an authenticated peer's message for the log.
func ClipMessage(s string) string {
	if len(s) > MaxLoggedMessage {
		return s[:MaxLoggedMessage] + "…"
	}
	return s
}

// Clip bounds a sender-chosen string for the log, so that a request cannot
// make its refusal's log line as large as the request.
func Clip(s string) string {
	if len(s) > MaxLoggedField {
		return s[:MaxLoggedField] + "…"
	}
	return s
}
