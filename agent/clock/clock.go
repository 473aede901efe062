// Package clock is the agent's sense of time: the device's own clock,
// corrected by the offset learnt from the verifier's (Session.verifier_time
// on every stream, verifier_time in Enroll and Renew responses). Everything
// the agent stamps or checks against the verifier — a report's observed_at,
// a nonce's expiry, the validity of the verifier's and its own
// certificates — is in the verifier's time, so a Mac whose clock is minutes
// off still enrolls once and keeps reporting. Why trusting the verifier's
// clock is safe is in docs/threat-model.md.
package clock

import (
	"log/slog"
	"sync"
	"time"
)

// NotableOffset is how far the device's clock may be from the verifier's
// before the agent says so in its log.
const NotableOffset = 2 * time.Second

// Clock is safe for concurrent use. The zero value is not usable: use New.
type Clock struct {
	local func() time.Time
	log   *slog.Logger

	mu     sync.Mutex
	offset time.Duration
	known  bool
	logged time.Duration // the offset last logged
}

// New returns a clock over local (the device's clock; System() in the
// agent) that knows no offset yet. log may be nil.
func New(local func() time.Time, log *slog.Logger) *Clock {
	if local == nil {
		local = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &Clock{local: local, log: log.With("component", "clock")}
}

// Now is the verifier's time as best known: the device's clock plus the
// last learnt offset (none before the verifier was first heard).
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	off := c.offset
	c.mu.Unlock()
	return c.local().Add(off)
}

// Local is the device's own clock, uncorrected: what the agent tells the
// verifier its clock says.
func (c *Clock) Local() time.Time { return c.local() }

// Offset is the verifier's clock minus the device's, and whether the
// verifier has been heard yet.
func (c *Clock) Offset() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset, c.known
}

// Learn takes the verifier's time from a message the device received at
// receivedAt (its Local time). The message's transit time, a few
// milliseconds, is the error; the verifier's checks allow minutes.
func (c *Clock) Learn(verifierTime, receivedAt time.Time) {
	if verifierTime.IsZero() || receivedAt.IsZero() {
		return
	}
	off := verifierTime.Sub(receivedAt)
	c.mu.Lock()
	first := !c.known
	c.offset, c.known = off, true
	logIt := first && off.Abs() >= NotableOffset || !first && (off-c.logged).Abs() >= NotableOffset
	if logIt {
		c.logged = off
	}
	c.mu.Unlock()
	if !logIt {
		return
	}
	if off.Abs() >= NotableOffset {
		// Positive: the device's clock is behind the verifier's.
		c.log.Warn("device clock differs from the verifier's; stamping reports and checking certificates in the verifier's time",
			"offset", off.Round(time.Millisecond).String(), "device_time", receivedAt.UTC().Format(time.RFC3339), "verifier_time", verifierTime.UTC().Format(time.RFC3339))
	} else {
		c.log.Info("device clock agrees with the verifier's again", "offset", off.Round(time.Millisecond).String())
	}
}

// Forget drops the learnt offset, so that the device's own clock is used
// until the verifier is heard again, and reports whether there was one.
// The agent forgets it when the verifier's certificate is refused as
// expired or not yet valid in the time it makes: a verifier that taught a
// time far off (only a broken or compromised one would) must not keep the
// agent from ever connecting again to hear the right one.
func (c *Clock) Forget() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	had := c.known && c.offset != 0
	c.offset, c.known, c.logged = 0, false, 0
	return had
}
