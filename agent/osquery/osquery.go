// Package osquery owns the agent's link to osqueryd: attaching to an
// existing extensions socket, or spawning osqueryd as a supervised child with
// its own socket, database and pid file. It talks to osqueryd with the
// Thrift client github.com/osquery/osquery-go generates, over a connection
// it opens itself so that it can bound what it reads. A query that cannot be
// answered (osquery's
// own error, a timeout, a vanished socket, an answer too large to be a
// posture check) comes back as an error for that query; nothing here panics
// or exits.
package osquery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Querier runs osquery SQL and returns its rows.
type Querier interface {
	Query(ctx context.Context, sql string) ([]map[string]string, error)
}

// QueryError is osquery refusing a query: a non-zero status with its message
// (a syntax error, an unknown table or column).
type QueryError struct {
	Code    int32
	Message string
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("osquery error %d: %s", e.Code, e.Message)
}

// ErrUnavailable wraps every failure to reach osqueryd at all.
var ErrUnavailable = errors.New("osquery unavailable")

// SocketError is a failure to connect to osqueryd's socket at Path: Error
// says it all, for the agent's log and status; Brief says it without the
// path, for what leaves the Mac (a policy's result message): the path is
// a setting, and a value an admin put under the wrong key may be a secret.
type SocketError struct {
	Path string
	Err  error
}

func (e *SocketError) Error() string { return e.Err.Error() }
func (e *SocketError) Unwrap() error { return e.Err }

// Brief is e without the socket's path or its directory's.
func (e *SocketError) Brief() string {
	msg := e.Err.Error()
	if e.Path != "" {
		msg = strings.ReplaceAll(msg, e.Path, "(the configured socket)")
		if dir := filepath.Dir(e.Path); dir != "/" && dir != "." {
			msg = strings.ReplaceAll(msg, dir, "(the configured socket's directory)")
		}
	}
	return msg
}

// Defaults.
const (
	DefaultQueryTimeout   = 30 * time.Second
	DefaultHealthInterval = 30 * time.Second
	DefaultMinBackoff     = 200 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultStartTimeout   = 30 * time.Second
)

// Options configure a Runner. Exactly one of Socket and Osqueryd is set.
type Options struct {
	// Socket attaches to an existing osqueryd extensions socket.
	Socket string
	// Osqueryd is the osqueryd binary to spawn; Dir holds its socket,
	// database and pid file.
	Osqueryd string
	Dir      string
	// ExtraFlags are appended to osqueryd's command line in spawn mode.
	ExtraFlags []string

	// QueryTimeout bounds each query (default DefaultQueryTimeout).
	QueryTimeout time.Duration
	// HealthInterval is how often osqueryd is pinged (default
	// DefaultHealthInterval).
	HealthInterval time.Duration
	// ConnectWait bounds how long a query waits for the socket to come up
	// (default QueryTimeout).
	ConnectWait time.Duration
	// MaxResponse bounds the bytes of one answer from osqueryd (default
	// DefaultMaxResponse); a larger answer is ErrResponseTooLarge.
	MaxResponse int64
	// StartTimeout bounds how long a spawned osqueryd may take to open
	// its socket (default DefaultStartTimeout).
	StartTimeout time.Duration
	// MinBackoff and MaxBackoff bound the waits between connection
	// attempts and between restarts of a spawned osqueryd.
	MinBackoff, MaxBackoff time.Duration

	Logger *slog.Logger
}

// Runner answers queries through osqueryd. In spawn mode its Execute
// supervises the child; in attach mode Execute watches the socket's health.
type Runner struct {
	opts   Options
	socket string
	log    *slog.Logger

	mu     sync.Mutex // serializes queries: one thrift connection
	client *client
	// down is why the last connection wait failed; nil once connected.
	down error

	ctx    context.Context
	cancel context.CancelFunc

	// upCh is closed while a spawned osqueryd answers; pid is its process.
	stateMu sync.Mutex
	up      bool
	upCh    chan struct{}
	pid     int
}

var _ Querier = (*Runner)(nil)

// New checks opts and returns a Runner. Nothing is started until Execute.
func New(opts Options) (*Runner, error) {
	switch {
	case opts.Socket == "" && opts.Osqueryd == "":
		return nil, errors.New("osquery: set a socket to attach to or an osqueryd to spawn")
	case opts.Socket != "" && opts.Osqueryd != "":
		return nil, errors.New("osquery: attach to a socket or spawn osqueryd, not both")
	case opts.Osqueryd != "" && opts.Dir == "":
		return nil, errors.New("osquery: spawning osqueryd needs a directory for its socket and database")
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = DefaultQueryTimeout
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = DefaultHealthInterval
	}
	if opts.ConnectWait <= 0 {
		opts.ConnectWait = opts.QueryTimeout
	}
	if opts.MaxResponse <= 0 {
		opts.MaxResponse = DefaultMaxResponse
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = opts.MinBackoff
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Runner{opts: opts, socket: opts.Socket, log: log.With("component", "osquery"), upCh: make(chan struct{})}
	if opts.Osqueryd != "" {
		r.socket = spawnPaths(opts.Dir).socket
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// Socket is the extensions socket queries go to.
func (r *Runner) Socket() string { return r.socket }

// Query runs sql. osquery's own refusal is a *QueryError; an answer larger
// than MaxResponse is ErrResponseTooLarge; failing to reach osqueryd wraps
// ErrUnavailable.
func (r *Runner) Query(parent context.Context, sql string) ([]map[string]string, error) {
	ctx, cancel := context.WithTimeout(parent, r.opts.QueryTimeout)
	defer cancel()

	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.connectLocked(ctx)
	if err != nil {
		return nil, err
	}
	// Thrift reads do not watch the context: closing the connection is what
	// ends a query that outlives its deadline (or a shutdown).
	stop := context.AfterFunc(ctx, c.Close)
	resp, err := c.query(ctx, sql)
	stopped := stop()
	if errors.Is(err, ErrResponseTooLarge) {
		r.dropLocked() // the rest of the answer is still on the connection
		return nil, err
	}
	if err != nil || !stopped {
		r.dropLocked()
		switch {
		case parent.Err() != nil:
			// The caller gave up (a run's time budget, a shutdown).
			return nil, fmt.Errorf("%w: query stopped: %w", ErrUnavailable, parent.Err())
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%w: query did not finish within %s", ErrUnavailable, r.opts.QueryTimeout)
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	st := resp.GetStatus()
	if st == nil {
		return nil, fmt.Errorf("%w: response without status", ErrUnavailable)
	}
	if st.GetCode() != 0 {
		return nil, &QueryError{Code: st.GetCode(), Message: st.GetMessage()}
	}
	return resp.GetResponse(), nil
}

// Ping checks osqueryd answers.
func (r *Runner) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.QueryTimeout)
	defer cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.connectLocked(ctx)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, c.Close)
	st, err := c.ping(ctx)
	stopped := stop()
	if err != nil || !stopped {
		r.dropLocked()
		if err == nil {
			err = ctx.Err()
		}
		return fmt.Errorf("%w: ping: %v", ErrUnavailable, err)
	}
	if st.GetCode() != 0 {
		return fmt.Errorf("%w: ping: status %d: %s", ErrUnavailable, st.GetCode(), st.GetMessage())
	}
	return nil
}

// connectLocked returns the open client, connecting with capped exponential
// backoff until ConnectWait has passed. Once a wait has failed, later calls
// try once without waiting until osqueryd answers again, so an outage costs
// a round of policies one wait, not one per policy, and the report of ERROR
// results goes out promptly.
func (r *Runner) connectLocked(ctx context.Context) (*client, error) {
	if r.client != nil {
		return r.client, nil
	}
	if r.down != nil {
		c, err := r.dialOnce()
		if err != nil {
			r.down = err
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		r.down, r.client = nil, c
		return c, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.ConnectWait)
	defer cancel()
	b := newBackoff(r.opts.MinBackoff, r.opts.MaxBackoff)
	for {
		c, err := r.dialOnce()
		if err == nil {
			r.client = c
			return c, nil
		}
		select {
		case <-ctx.Done():
			r.down = err
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		case <-r.ctx.Done():
			return nil, fmt.Errorf("%w: shutting down", ErrUnavailable)
		case <-time.After(b.next()):
		}
	}
}

// dialOnce connects once; an absent socket fails at once, so the wait for
// it is ours to bound.
func (r *Runner) dialOnce() (*client, error) {
	trans, err := open(r.socket, r.opts.QueryTimeout)
	if err != nil {
		return nil, err
	}
	return newClient(trans, r.opts.MaxResponse), nil
}

func (r *Runner) dropLocked() {
	if r.client != nil {
		r.client.Close()
		r.client = nil
	}
}

func (r *Runner) drop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropLocked()
}

// Execute supervises osqueryd (spawn mode) or watches the socket (attach
// mode) until Interrupt.
func (r *Runner) Execute() error {
	defer r.drop()
	if r.opts.Osqueryd != "" {
		return r.supervise()
	}
	return r.watch()
}

// Interrupt stops Execute and any query waiting for a connection.
func (r *Runner) Interrupt(error) { r.cancel() }

// watch pings an attached osqueryd and logs when it comes and goes.
func (r *Runner) watch() error {
	t := time.NewTicker(r.opts.HealthInterval)
	defer t.Stop()
	healthy := true
	for {
		err := r.Ping(r.ctx)
		switch {
		case r.ctx.Err() != nil:
			return nil
		case err != nil && healthy:
			r.log.Warn("osquery not answering", "socket", r.socket, "err", err)
		case err == nil && !healthy:
			r.log.Info("osquery answering again", "socket", r.socket)
		}
		healthy = err == nil
		select {
		case <-r.ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// backoff yields capped exponential waits with full jitter on the upper half.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max} }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }
