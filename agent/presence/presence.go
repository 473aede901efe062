// Package presence owns the agent's loopback endpoint for proof of presence:
// the page a browser is sent to during sign-in, which answers with a
// statement signed by the device key.
//
// # Why
//
// A browser certificate in the keychain proves that the certificate is on
// the Mac, not that its key is: a certificate minted elsewhere can be
// planted in a keychain. At every sign-in the verifier therefore sends the
// browser, by a top-level navigation, to
//
//	http://127.0.0.1:47470/v1/presence?challenge=…&return=<presence URL>
//
// (the loopback redirect pattern of RFC 8252 §7.3). The agent signs a
// statement {challenge, device id, verifier origin, time} with its
// hardware-bound device key (pkg/presence) and answers 303 See Other to
// <presence URL>?statement=…&signature=…, where the verifier checks it
// against the device's enrolled key, its one-time challenge and a cookie
// that ties the ceremony to the browser that started it.
//
// # What the agent refuses
//
// The agent signs only for the verifier's presence URL it already knows
// (Options.PresenceURL, from its configuration or pushed by the verifier):
// the request's return parameter must equal it byte for byte, and the
// redirect is built from the known URL, never from the request. Every
// other request gets a short page that says why in plain words, and no
// signature:
//
//   - 403 when the Host header is not this listener's own address or
//     localhost (a web page that rebinds its DNS name to 127.0.0.1 is
//     refused), when return is any other URL, when the browser says the
//     request is not a top-level navigation (Sec-Fetch-Mode and
//     Sec-Fetch-Dest, where sent), and when the program that connected is
//     not an allowed browser;
//   - 400 for a malformed query: a missing, repeated or unknown parameter,
//     a challenge that is not 32 bytes of base64url;
//   - 404 for any other path, 405 for methods other than GET and HEAD;
//   - 429 beyond Options.MaxPerSecond statements a second (the key may be
//     in the Secure Enclave), or when the line for the browser check is
//     full (see Budgets);
//   - 503 while the presence URL or the enrollment is not known yet;
//   - 500 when the device key fails to sign.
//
// Refusals are logged with a reason key; the challenge is never logged.
// Any local program can cause them as often as it likes, so each reason is
// logged at warn at most once every 10 s, saying how many were left out
// (others_not_logged), and the rest at debug; what the request chose (its
// method, its Fetch Metadata) is clipped.
//
// # Budgets
//
// The checks of steps 1 to 6 (Host, method, path, query, return URL, Fetch
// Metadata, enrollment) are a map lookup and a parse, and spend nothing.
// Two budgets bound the rest, and neither is spent by a request that an
// earlier step refuses:
//
//   - the browser check (lsof and codesign on macOS, a walk of /proc on
//     Linux) costs process scans, so at most Options.MaxChecksPerSecond
//     start a second. A request beyond that waits its turn, in the order it
//     came, for up to 5 s, and is refused (429) only when the line
//     is longer than that: a few programs asking in a loop delay a browser
//     by their turns, and cannot shut it out;
//   - the signing budget (Options.MaxPerSecond) is spent only by a request
//     that has passed every check, just before the key signs. A program
//     refused as not a browser never touches it.
//
// Where the browser check is off (Linux by default, or a Mac configured
// so), any local program passes every check and can spend the signing
// budget; docs/threat-model.md says what remains.
//
// # Only a browser
//
// A statement proves that something on this Mac asked. So that a script on
// a compliant Mac cannot fetch statements for a browser elsewhere, the
// agent can check the program at the other end of the TCP connection
// (Options.Peer, NewBrowserCheck):
//
//   - macOS (on by default): lsof finds the process holding the client end
//     of the connection, and codesign checks the running process's
//     signature against Apple's CA: a Developer ID or Mac App Store
//     signature by one of the browser vendors' Team IDs (DefaultTeamIDs:
//     Google, Mozilla, Microsoft, Brave, The Browser Company, Vivaldi,
//     Opera), or Apple's own Safari and WebKit network process
//     (DefaultAppleIdentifiers). Browsers make their connections from
//     helper processes (Chrome's network service runs in "Google Chrome
//     Helper"); those are signed by the same team and pass.
//   - Linux (off unless a list is configured): the socket's inode from
//     /proc/net/tcp and tcp6, the process holding it from /proc/*/fd, and
//     its /proc/<pid>/exe, which must be exactly one of the listed paths.
//   - Elsewhere: NewBrowserCheck returns ErrUnsupported.
//
// When the check is on and the program is not allowed or cannot be
// determined, the request is refused. The check is a bar to scripts, not
// to a determined local administrator: a Team ID admits every program its
// vendor signs, any app that embeds WebKit shares Safari's network
// process, and a browser can be driven by automation. Such a person can
// also tamper with the agent itself, which the threat model leaves out of
// scope.
//
// # Listening
//
// Only on a loopback IP address (default 127.0.0.1:47470); anything else
// is refused at start. Small timeouts and header limits keep a slow client
// from holding the listener. Nothing is served over TLS: browsers treat
// http://127.0.0.1 as a potentially trustworthy origin, and a top-level
// navigation to it meets neither mixed-content blocking nor the Local
// Network Access prompt that a fetch would.
package presence

import (
	"container/list"
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clearance/clearance/pkg/logsample"
	"github.com/clearance/clearance/pkg/presence"
)

// Defaults.
const (
	DefaultListen       = presence.DefaultAgentAddr
	DefaultMaxPerSecond = 4
	// DefaultMaxChecksPerSecond is as many browser checks a second as
	// statements: each costs an lsof and two codesign runs on macOS, so a
	// flood makes the agent run a few of those a second, no more.
	DefaultMaxChecksPerSecond = 4
	// peerTimeout bounds the browser check of one request.
	peerTimeout = 10 * time.Second
	// maxCheckWait bounds how long a request waits in line for the
	// browser check: the line holds MaxChecksPerSecond × maxCheckWait
	// requests, and a request that would wait longer is refused at once.
	maxCheckWait = 5 * time.Second
	// DefaultMaxConns bounds the connections the endpoint holds: any local
	// program can open them, and each is a file descriptor the agent also
	// needs for its stream to the verifier, its state files and osquery.
	// A browser's sign-in is one request on one connection; the line for
	// the browser check holds 20.
	DefaultMaxConns = 64
	// refusedLogEvery is how often a refusal of one reason is logged at
	// warn; the others in between are logged at debug and counted in the
	// next warn line.
	refusedLogEvery = 10 * time.Second
)

// Options configure a Server.
type Options struct {
	// Listen is the loopback IP address and port to listen on
	// (DefaultListen when empty; port 0 picks one, for tests).
	Listen string
	// PresenceURL returns the verifier's presence URL the agent signs
	// for, or "" while it is not known (requests are then refused).
	PresenceURL func() string
	// Device returns the enrolled device id and device key, or "" / nil
	// before enrollment (requests are then refused).
	Device func() (deviceID string, key crypto.Signer)
	// Peer, when set, must accept the program at the other end of every
	// connection before anything is signed. Nil turns the check off.
	Peer PeerCheck
	// MaxPerSecond bounds how many statements a second are signed
	// (DefaultMaxPerSecond when 0). Only a request that passed every
	// check counts.
	MaxPerSecond int
	// MaxChecksPerSecond bounds how many browser checks a second start
	// (DefaultMaxChecksPerSecond when 0); the others wait in line.
	MaxChecksPerSecond int
	// MaxConns bounds the connections held at once (DefaultMaxConns when
	// 0): past it, the oldest that has not sent its request is closed.
	MaxConns int
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Server is the presence endpoint, an actor for a run group.
type Server struct {
	o     Options
	log   *slog.Logger
	ln    net.Listener
	addr  netip.AddrPort
	hosts map[string]bool
	srv   *http.Server
	// signs is the signing budget, checks the browser check's.
	signs, checks *limiter
	// refused samples the refusals' log lines by reason.
	refused logsample.Samples
	closed  sync.Once
	conns   *connTable
}

// Conns is how many connections the endpoint holds now.
func (s *Server) Conns() int {
	s.conns.mu.Lock()
	defer s.conns.mu.Unlock()
	return s.conns.open
}

// connTable bounds the connections held. Past max, a new connection closes
// the oldest one that has not sent its request yet: a browser sends its
// request at once, so it is never the one closed, while connections a
// program opens and leaves idle are. Connections serving a request are
// bounded by the request's own limits (its headers in 2 s, the check's
// line of 20), so the table holds about max of them at any time.
type connTable struct {
	mu    sync.Mutex
	max   int
	open  int
	idle  *list.List // connections that have not sent a request, oldest first
	where map[net.Conn]*list.Element
	// closing holds the connections closed to make room whose server
	// goroutine has not yet seen it: they are no longer held, so they
	// were counted out when closed, not again at StateClosed.
	closing map[net.Conn]struct{}
	// evicted is told of each connection closed to make room (outside
	// the lock).
	evicted func()
}

func newConnTable(max int, evicted func()) *connTable {
	return &connTable{max: max, idle: list.New(), where: map[net.Conn]*list.Element{}, closing: map[net.Conn]struct{}{}, evicted: evicted}
}

// state is the server's ConnState hook.
func (t *connTable) state(c net.Conn, st http.ConnState) {
	evicted := false
	defer func() {
		if evicted && t.evicted != nil {
			t.evicted()
		}
	}()
	t.mu.Lock()
	defer t.mu.Unlock()
	switch st {
	case http.StateNew:
		t.open++
		t.where[c] = t.idle.PushBack(c)
		if t.open > t.max {
			oldest := t.idle.Remove(t.idle.Front()).(net.Conn)
			delete(t.where, oldest)
			_ = oldest.Close()
			t.open--
			t.closing[oldest] = struct{}{}
			evicted = true
		}
	case http.StateActive:
		t.forget(c)
	case http.StateClosed, http.StateHijacked:
		if _, ok := t.closing[c]; ok {
			delete(t.closing, c)
			return
		}
		t.open--
		t.forget(c)
	}
}

func (t *connTable) forget(c net.Conn) {
	if e, ok := t.where[c]; ok {
		t.idle.Remove(e)
		delete(t.where, c)
	}
}

// New checks o and starts listening, so that a taken port or a bad address
// is reported before the agent starts its other components.
func New(o Options) (*Server, error) {
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	ap, err := netip.ParseAddrPort(o.Listen)
	if err != nil || !ap.Addr().IsLoopback() || ap.Addr().Zone() != "" || ap.Addr().Is4In6() {
		return nil, fmt.Errorf("presence listen address %q is not a loopback IP address and port (e.g. %s)", o.Listen, DefaultListen)
	}
	if o.PresenceURL == nil || o.Device == nil {
		return nil, errors.New("presence: PresenceURL and Device are required")
	}
	if o.MaxPerSecond <= 0 {
		o.MaxPerSecond = DefaultMaxPerSecond
	}
	if o.MaxChecksPerSecond <= 0 {
		o.MaxChecksPerSecond = DefaultMaxChecksPerSecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "presence")
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	ln, err := net.Listen("tcp", ap.String())
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	s := &Server{o: o, log: log, ln: ln, signs: newLimiter(o.MaxPerSecond, o.Now), checks: newLimiter(o.MaxChecksPerSecond, o.Now)}
	s.conns = newConnTable(o.MaxConns, s.logEvicted)
	s.addr = ln.Addr().(*net.TCPAddr).AddrPort()
	port := strconv.Itoa(int(s.addr.Port()))
	s.hosts = map[string]bool{s.addr.String(): true, "localhost:" + port: true}
	if s.addr.Port() == 80 {
		// Browsers leave the default port out of Host.
		s.hosts[strings.TrimSuffix(s.addr.String(), ":80")] = true
		s.hosts["localhost"] = true
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 2 * time.Second,
		ReadTimeout:       5 * time.Second,
		WriteTimeout:      maxCheckWait + peerTimeout + 5*time.Second,
		IdleTimeout:       10 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnState:         s.conns.state,
	}
	// One request a connection: a sign-in is one navigation, and a
	// connection kept alive is one a local program can hold for nothing.
	s.srv.SetKeepAlivesEnabled(false)
	if o.Peer == nil {
		log.Warn("browser check off: any local program may ask for a presence statement")
	}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Execute serves until Interrupt.
func (s *Server) Execute() error {
	s.log.Info("listening", "addr", s.addr.String())
	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("presence: %w", err)
}

// Interrupt stops the server, letting requests in flight finish briefly.
func (s *Server) Interrupt(error) {
	s.closed.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(ctx)
		// Shutdown only closes listeners Serve has started on.
		_ = s.ln.Close()
	})
}

// ServeHTTP answers one request: the checks read top to bottom, cheapest
// first, and only a request that passes them all spends the signing budget
// and reaches the key.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// 0. A page load has no body. One that says it has is closed at once:
	// answered the usual way, the server would wait up to ReadTimeout to
	// read the body it never sends, holding the connection, and a program
	// sending such requests could keep every place in the connection
	// table busy.
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		s.closeNow(w, r)
		return
	}
	// 1. Addressed to us by our own name: refuses DNS rebinding.
	if !s.hosts[strings.ToLower(r.Host)] {
		s.refuse(w, r, reasonHost, nil)
		return
	}
	// 2. A page load of our one path.
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.refuse(w, r, reasonMethod, nil)
		return
	}
	path, rawQuery, _ := strings.Cut(r.RequestURI, "?")
	if path != presence.AgentPath {
		s.refuse(w, r, reasonPath, nil)
		return
	}
	// 3. Exactly a challenge and a return URL.
	challenge, ret, err := presence.ParseAgentQuery(rawQuery)
	if err != nil {
		s.refuse(w, r, reasonQuery, nil, "err", err)
		return
	}
	// 4. Only for the presence URL we know, never one from the request.
	known := s.o.PresenceURL()
	if known == "" {
		s.refuse(w, r, reasonNoPresenceURL, nil)
		return
	}
	origin, err := presence.OriginOf(known)
	if err != nil {
		s.refuse(w, r, reasonBadPresenceURL, nil, "err", err)
		return
	}
	if ret != known {
		s.refuse(w, r, reasonReturn, nil)
		return
	}
	// 5. A top-level navigation, where the browser says so.
	if !navigation(r.Header) {
		s.refuse(w, r, reasonNotNavigation, nil, "sec_fetch_mode", logsample.Clip(r.Header.Get("Sec-Fetch-Mode")), "sec_fetch_dest", logsample.Clip(r.Header.Get("Sec-Fetch-Dest")))
		return
	}
	// 6. Enrolled.
	deviceID, key := s.o.Device()
	if deviceID == "" || key == nil {
		s.refuse(w, r, reasonNotEnrolled, nil)
		return
	}
	// 7. Asked by a browser: in turn, within the checks' budget.
	var peer *Peer
	if s.o.Peer != nil {
		if err := s.waitForCheck(r.Context()); err != nil {
			w.Header().Set("Retry-After", "1")
			s.refuse(w, r, reasonCheckBusy, nil, "err", err)
			return
		}
		p, err := s.checkPeer(r)
		peer = &p
		switch {
		case errors.Is(err, ErrNotBrowser):
			s.refuse(w, r, reasonNotBrowser, peer, "err", err)
			return
		case err != nil:
			s.refuse(w, r, reasonPeerUnknown, peer, "err", err)
			return
		}
	}
	// 8. Within the signing budget, which only a request that passed
	// every check spends.
	if !s.signs.allow() {
		w.Header().Set("Retry-After", "1")
		s.refuse(w, r, reasonRate, peer)
		return
	}
	// 9. Sign, and send the browser back to the known URL.
	st, sig, err := presence.Sign(key, presence.Statement{
		Challenge: challenge,
		DeviceID:  deviceID,
		Origin:    origin,
		Time:      s.o.Now().UTC().Truncate(time.Second),
	})
	if err != nil {
		s.refuse(w, r, reasonSign, peer, "err", err)
		return
	}
	setHeaders(w.Header())
	w.Header().Set("Location", known+"?"+presence.RedirectQuery(st, sig))
	w.WriteHeader(http.StatusSeeOther)
	attrs := []any{"device_id", deviceID, "origin", origin}
	if peer != nil {
		attrs = append(attrs, "peer", peer.String())
	}
	s.log.Info("presence statement signed", attrs...)
}

// navigation is false when Fetch Metadata says the request is not a
// top-level navigation (an image, a fetch, a frame). Browsers without Fetch
// Metadata send neither header and pass.
func navigation(h http.Header) bool {
	mode, dest := h.Get("Sec-Fetch-Mode"), h.Get("Sec-Fetch-Dest")
	return (mode == "" || mode == "navigate") && (dest == "" || dest == "document")
}

// errLineFull is why a request was not let into the browser check's line.
var errLineFull = errors.New("too many requests wait for the browser check")

// waitForCheck waits for the request's turn at the browser check: checks
// start at most MaxChecksPerSecond a second, in the order requests came.
func (s *Server) waitForCheck(ctx context.Context) error {
	wait, ok := s.checks.reserve(maxCheckWait)
	if !ok {
		return errLineFull
	}
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		// The client left: its turn goes to the next in line.
		s.checks.cancel()
		return ctx.Err()
	}
}

func (s *Server) checkPeer(r *http.Request) (Peer, error) {
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return Peer{}, errors.New("no local address for the connection")
	}
	server, err := netip.ParseAddrPort(la.String())
	if err != nil {
		return Peer{}, fmt.Errorf("local address: %w", err)
	}
	client, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return Peer{}, fmt.Errorf("remote address: %w", err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), peerTimeout)
	defer cancel()
	return s.o.Peer.CheckPeer(ctx, server, client)
}

// refuse answers with the refusal page for why, and logs it: at warn at
// most once per refusedLogEvery for its reason, saying how many were left
// out, and at debug otherwise. Values the request chose are clipped.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, why reason, peer *Peer, attrs ...any) {
	s.logRefused(r, why, peer, attrs...)
	writeRefusal(w, why)
}

// logRefused logs a refusal: at warn once per refusedLogEvery for its
// reason, saying how many were left out, and at debug otherwise.
func (s *Server) logRefused(r *http.Request, why reason, peer *Peer, attrs ...any) {
	attrs = append([]any{"reason", why.key, "status", why.status, "method", logsample.Clip(r.Method), "client", r.RemoteAddr}, attrs...)
	if peer != nil {
		attrs = append(attrs, "peer", peer.String())
	}
	if ok, skipped := s.refused.Take(why.key, refusedLogEvery, s.o.Now()); ok {
		s.log.Warn("presence refused", append(attrs, "others_not_logged", skipped)...)
	} else {
		s.log.Debug("presence refused", attrs...)
	}
}

// logEvicted logs a connection closed to make room: at warn once per
// refusedLogEvery, saying how many were left out, at debug otherwise. A
// stream of them is a program holding connections, which can keep a
// browser's out while it does.
func (s *Server) logEvicted() {
	if ok, skipped := s.refused.Take("conn_evicted", refusedLogEvery, s.o.Now()); ok {
		s.log.Warn("presence connection closed to make room: a local program may be holding connections", "max_conns", s.o.MaxConns, "others_not_logged", skipped)
	} else {
		s.log.Debug("presence connection closed to make room")
	}
}

// closeNow refuses a request with a body (reasonBody) and closes its
// connection without reading the body.
func (s *Server) closeNow(w http.ResponseWriter, r *http.Request) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.refuse(w, r, reasonBody, nil)
		return
	}
	defer conn.Close()
	s.logRefused(r, reasonBody, nil)
	_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = buf.WriteString("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
	_ = buf.Flush()
}

// limiter is a token bucket: up to n at once, refilled at n a second.
type limiter struct {
	mu sync.Mutex
	n  float64
	// tokens is below zero while reservations wait for tokens to come.
	tokens float64
	last   time.Time
	now    func() time.Time
}

func newLimiter(n int, now func() time.Time) *limiter {
	return &limiter{n: float64(n), tokens: float64(n), last: now(), now: now}
}

// refill adds what has come since the last call. A clock stepped back
// gives nothing.
func (l *limiter) refill() {
	t := l.now()
	if d := t.Sub(l.last); d > 0 {
		l.tokens = min(l.n, l.tokens+d.Seconds()*l.n)
	}
	l.last = t
}

// allow spends a token if there is one now.
func (l *limiter) allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill()
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

// reserve spends a token that may not have come yet, and returns how long
// until it has. Each reservation is due after the ones before it, so
// waiters are served in the order they came. When the wait would exceed
// maxWait, nothing is spent and ok is false.
func (l *limiter) reserve(maxWait time.Duration) (wait time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refill()
	if l.tokens >= 1 {
		l.tokens--
		return 0, true
	}
	wait = time.Duration((1 - l.tokens) / l.n * float64(time.Second))
	if wait > maxWait {
		return 0, false
	}
	l.tokens--
	return wait, true
}

// cancel gives back a reserved token that was not used.
func (l *limiter) cancel() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tokens = min(l.n, l.tokens+1)
}
