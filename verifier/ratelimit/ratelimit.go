// Package ratelimit owns how often outside parties may make the verifier
// work: a token bucket per client address, kept in a table of bounded size;
// the client address of an HTTP request (from a trusted proxy's
// X-Forwarded-For); and the HTTP middleware that answers 429 on the sign-in
// listener. Its log lines about floods are sampled by pkg/logsample.
package ratelimit

import (
	"container/list"
	"crypto/sha256"
	"math"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Defaults of the sign-in listener's limit (settings sso-rate-limit and
// sso-rate-burst). The sustained rate is what one address may do for ever;
// the burst is what it may do at once after a quiet spell.
//
// A sign-in is two or three requests (/saml/sso, /saml/presence, sometimes
// Check again), and Okta asks this factor once per Okta session, so a person
// makes a few requests a day. An office behind one NAT address whose 3,000
// people all arrive within ten minutes makes about 3,000 × 2 / 600 = 10
// requests a second: the sustained rate. The burst lets 50 of them sign in
// at the very same moment (after a network outage, say). One attacker
// address is held to the same 10 a second: one percent of the flood that
// was measured before limits existed.
const (
	DefaultRate  = 10
	DefaultBurst = 100
)

// DefaultUnsignedRate is the default of sso-unsigned-rate-limit: sign-ins
// a second, from every address together, that may store anything for a
// request Okta did not sign, in each of two buckets (browsers that show no
// Mac, and browsers that show one) on each replica. A challenge, with the
// request (at most 16 KiB of XML and 4 KiB of RelayState, about 22 KB of
// database pages), is kept 2 minutes and swept within another; the request
// ID alone (a few hundred bytes) twice max-request-skew plus a minute, and
// swept within another. So one bucket keeps at most UnsignedBurst + 20 × 180
// s = 3,800 challenges (about 84 MB at their largest, 8 MB at Okta's usual
// 2 KB) and, by default, 200 + 20 × 480 s = 9,800 request IDs. 20 a second
// is 72,000 sign-ins an hour; a verifier that needs more should have Okta
// sign its requests, which lifts this bound altogether.
const DefaultUnsignedRate = 20

// UnsignedPerMacRate and UnsignedPerMacBurst bound the unsigned sign-ins
// of one Mac (by its certificate or its device hint) before they count
// against the bucket every Mac shares: a person signs in a few times a
// day, and whoever holds one Mac's hint or certificate cannot spend the
// shared bucket alone.
const (
	UnsignedPerMacRate  = 0.5
	UnsignedPerMacBurst = 10
)

// PressPerMacRate and PressPerMacBurst bound the presses of one Mac's held
// sign-ins (Check again, Continue, Resolve later), signed or not: each
// writes a decision and has the agent run its policies, and a person
// presses a few times, seconds apart, while fixing something.
const (
	PressPerMacRate  = 0.2
	PressPerMacBurst = 10
)

// UnsignedBurst is how many unsigned sign-ins may start at once: ten
// seconds' worth of rate, at least one.
func UnsignedBurst(rate float64) int { return max(1, int(rate*10)) }

// RetryAfter is the Retry-After value for a wait: whole seconds, at least
// one.
func RetryAfter(wait time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(wait.Seconds()))))
}

// DefaultMaxSources bounds the addresses a Limiter remembers. An entry is
// about 200 bytes, so the table stays under 15 MiB however many addresses
// send requests.
const DefaultMaxSources = 65536

// Options configure a Limiter.
type Options struct {
	// Rate is the tokens one source gains per second; Burst the most it can
	// hold (and spend at once). A source starts full.
	Rate  float64
	Burst int
	// MaxSources bounds the sources remembered (DefaultMaxSources when
	// zero). When the table is full, the source heard from least recently
	// is forgotten: it starts full again when it comes back, which is what
	// it would hold after a quiet spell anyway.
	MaxSources int
	Now        func() time.Time
}

// Limiter is a token bucket per source address, safe for concurrent use.
type Limiter struct {
	rate  float64
	burst float64
	max   int
	now   func() time.Time

	mu  sync.Mutex
	lru *list.List // of *bucket, most recently used first
	m   map[netip.Addr]*list.Element
}

type bucket struct {
	src    netip.Addr
	tokens float64
	at     time.Time // when tokens was computed
}

// New returns a Limiter. A Rate of zero or less, or a Burst below one,
// allows nothing; callers that want no limit use no Limiter.
func New(o Options) *Limiter {
	if o.MaxSources <= 0 {
		o.MaxSources = DefaultMaxSources
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Limiter{rate: o.Rate, burst: float64(o.Burst), max: o.MaxSources, now: o.Now, lru: list.New(), m: map[netip.Addr]*list.Element{}}
}

// Key is the address a source is counted under: an IPv4 address, or an
// IPv6 address's /64, which is what one host or one home is usually given
// (counting each IPv6 address alone would give one machine 2^64 buckets).
func Key(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// Allow spends a token of src's bucket. When there is none it returns false
// and how long until there is one.
func (l *Limiter) Allow(src netip.Addr) (bool, time.Duration) {
	src = Key(src)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var b *bucket
	if e, ok := l.m[src]; ok {
		l.lru.MoveToFront(e)
		b = e.Value.(*bucket)
		// A clock stepped back gives nothing, and takes nothing.
		if el := now.Sub(b.at); el > 0 {
			b.tokens = math.Min(l.burst, b.tokens+el.Seconds()*l.rate)
			b.at = now
		}
	} else {
		if l.lru.Len() >= l.max {
			old := l.lru.Back()
			l.lru.Remove(old)
			delete(l.m, old.Value.(*bucket).src)
		}
		b = &bucket{src: src, tokens: l.burst, at: now}
		l.m[src] = l.lru.PushFront(b)
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	// The wait is capped at an hour: a rate small enough to overflow a
	// Duration (a setting of 1e-300) would otherwise come out as nothing.
	if secs := (1 - b.tokens) / l.rate; l.rate > 0 && secs < 3600 {
		return false, time.Duration(secs * float64(time.Second))
	}
	return false, time.Hour
}

// Shared is one token bucket for every source together, safe for
// concurrent use.
type Shared struct{ l *Limiter }

// NewShared returns a bucket that gains rate tokens a second and holds at
// most burst; it starts full. A rate of zero or less, or a burst below
// one, allows nothing; callers that want no limit use no Shared.
func NewShared(rate float64, burst int, now func() time.Time) *Shared {
	return &Shared{New(Options{Rate: rate, Burst: burst, MaxSources: 1, Now: now})}
}

// Allow spends a token. When there is none it returns false and how long
// until there is one.
func (s *Shared) Allow() (bool, time.Duration) { return s.l.Allow(netip.Addr{}) }

// Keyed is a token bucket per key (a device's ID, say), in a table of
// bounded size as Limiter's, safe for concurrent use.
type Keyed struct{ l *Limiter }

// NewKeyed returns a Keyed limiter with o's rate, burst and table size.
func NewKeyed(o Options) *Keyed { return &Keyed{New(o)} }

// Allow spends a token of key's bucket. When there is none it returns
// false and how long until there is one.
func (k *Keyed) Allow(key string) (bool, time.Duration) { return k.l.Allow(keyAddr(key)) }

// keyAddr names key in the Limiter's table: an IPv6 /64 (what Key keeps)
// made of the first 8 bytes of key's hash, so two keys share a bucket only
// by a 64-bit collision.
func keyAddr(key string) netip.Addr {
	var a [16]byte
	sum := sha256.Sum256([]byte(key))
	copy(a[:8], sum[:8])
	return netip.AddrFrom16(a)
}

// Len is how many sources are remembered.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}
