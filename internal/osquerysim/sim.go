package osquerysim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"
)

// DefaultQueryTimeout bounds one query. osqueryd's watchdog kills a worker
// that runs away; the simulator interrupts the query instead, so a bad
// statement cannot wedge it for every other client.
const DefaultQueryTimeout = 30 * time.Second

// Sim is an osqueryd stand-in: it serves osquery's extension-manager API and
// answers queries from a Fixture. It is safe for concurrent use; state
// changes take effect for the next query.
type Sim struct {
	log          *slog.Logger
	now          func() time.Time
	flags        map[string]string
	queryTimeout time.Duration

	started    time.Time
	instanceID string

	mu      sync.RWMutex
	fixture Fixture
	db      *hostDB
	closed  bool

	ext extensionRegistry

	stopOnce sync.Once
	stopped  chan struct{} // closed when a client calls shutdown()
}

// Option configures a Sim.
type Option func(*Sim)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(s *Sim) { s.log = l }
}

// WithClock sets the clock behind osquery_info's start_time.
func WithClock(now func() time.Time) Option {
	return func(s *Sim) { s.now = now }
}

// WithFlags sets the osqueryd flags the process was started with, by name
// without dashes (extensions_socket, database_path, …). options() reports
// them, over osqueryd's defaults, to clients that ask.
func WithFlags(flags map[string]string) Option {
	return func(s *Sim) {
		for k, v := range flags {
			s.flags[k] = v
		}
	}
}

// WithQueryTimeout bounds each query (default DefaultQueryTimeout).
func WithQueryTimeout(d time.Duration) Option {
	return func(s *Sim) { s.queryTimeout = d }
}

// New returns a Sim serving state. It fails if state is not a valid fixture.
func New(state Fixture, opts ...Option) (*Sim, error) {
	s := &Sim{
		log:          slog.Default(),
		now:          time.Now,
		flags:        map[string]string{},
		queryTimeout: DefaultQueryTimeout,
		stopped:      make(chan struct{}),
		instanceID:   newUUID(),
	}
	for _, o := range opts {
		o(s)
	}
	s.log = s.log.With("component", "osquerysim")
	s.started = s.now()
	if err := s.SetState(state); err != nil {
		return nil, err
	}
	return s, nil
}

// SetState replaces the host state. Queries already running finish against
// the old state; an invalid fixture is refused and the old state kept.
func (s *Sim) SetState(state Fixture) error {
	if err := state.Validate(); err != nil {
		return err
	}
	db, err := openHostDB(context.Background(), state, s.defaultRows(state))
	if err != nil {
		return fmt.Errorf("loading fixture: %w", err)
	}
	// The write lock waits for running queries (they hold the read lock)
	// and holds new ones back for the swap alone.
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		db.close()
		return errors.New("simulator is closed")
	}
	old := s.db
	s.db, s.fixture = db, state
	s.mu.Unlock()
	if old != nil {
		old.close()
	}
	s.log.Info("host state loaded", "description", state.Description)
	return nil
}

// LoadFixture reads a fixture by built-in name or path and makes it the
// host state.
func (s *Sim) LoadFixture(nameOrPath string) error {
	f, err := LoadFixture(nameOrPath)
	if err != nil {
		return err
	}
	return s.SetState(f)
}

// Fixture returns the host state being served.
func (s *Sim) Fixture() Fixture {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.fixture
}

// Close releases the database. Serve should have returned first.
func (s *Sim) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.db != nil {
		s.db.close()
	}
	return nil
}

// Query runs sql against the host state, returning rows as osqueryd does:
// every value a string. The error text is what osqueryd would report.
func (s *Sim) Query(ctx context.Context, sql string) ([]map[string]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errors.New("simulator is closed")
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	return s.db.query(ctx, sql)
}

func (s *Sim) queryColumns(ctx context.Context, sql string) ([]columnInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errors.New("simulator is closed")
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	return s.db.columns(ctx, sql)
}

func (s *Sim) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.queryTimeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.queryTimeout)
}

// defaultRows supplies rows osqueryd computes about itself rather than the
// host, for tables the fixture leaves out.
func (s *Sim) defaultRows(state Fixture) map[string][]Row {
	hostUUID := ""
	if rows := state.Tables["system_info"]; len(rows) > 0 {
		hostUUID = rows[0]["uuid"]
	}
	return map[string][]Row{
		"osquery_info": {{
			"pid":            strconv.Itoa(os.Getpid()),
			"uuid":           hostUUID,
			"instance_id":    s.instanceID,
			"version":        OsqueryVersion,
			"config_hash":    "",
			"config_valid":   "0",
			"extensions":     "active",
			"build_platform": "darwin",
			"build_distro":   "10.15",
			"start_time":     strconv.FormatInt(s.started.Unix(), 10),
			"watcher":        "-1",
			"platform_mask":  "21", // POSIX | DARWIN | BSD
		}},
	}
}

// OsqueryVersion is the osqueryd release whose schemas and behaviour the
// simulator follows; osquery_info reports it.
const OsqueryVersion = "5.23.1"

// requestStop makes Serve return, as osqueryd exits when a client calls
// shutdown().
func (s *Sim) requestStop() {
	s.stopOnce.Do(func() { close(s.stopped) })
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
