package osquerysim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
	"github.com/osquery/osquery-go/gen/osquery"
)

// Wire format. osqueryd serves the extension manager with Thrift's
// TThreadedServer, a TBufferedTransportFactory and a TBinaryProtocolFactory
// with its defaults (strict write, lenient read): unframed binary messages,
// one thread per connection, a connection kept for as many calls as the
// client makes. osquery-go's client matches it: a plain TSocket on the unix
// socket with the binary protocol (strict write, lenient read), no framing.
// The simulator serves the same bytes with osquery-go's generated processor.
const bufferSize = 8192

// shutdownGrace bounds how long Serve waits, once stopping, for a reply a
// client is not reading.
const shutdownGrace = 5 * time.Second

// Listen opens the extensions socket at path. A socket file left by a dead
// process is replaced; a socket someone still answers on is not, and any
// other file at path is an error.
func Listen(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: an extension manager is already listening there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on extensions socket: %w", err)
	}
	return ln, nil
}

// Serve listens on the unix socket at socketPath and serves osquery's
// extension-manager API until ctx ends or a client calls shutdown(), then
// removes the socket. It returns nil after such a stop.
func (s *Sim) Serve(ctx context.Context, socketPath string) error {
	ln, err := Listen(socketPath)
	if err != nil {
		return err
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener is Serve on a listener the caller opened (with Listen, so a
// client can connect as soon as it returns). It closes ln.
func (s *Sim) ServeListener(ctx context.Context, ln net.Listener) error {
	s.log.Info("serving extensions API", "socket", ln.Addr().String(), "osquery_version", OsqueryVersion)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		conns    = map[*stoppableConn]struct{}{}
		stopping atomic.Bool
	)
	// The stopper ends the accept loop and unblocks every connection when
	// the server must stop; Serve waits for it like for the connections.
	stopperDone := make(chan struct{})
	go func() {
		defer close(stopperDone)
		select {
		case <-ctx.Done():
		case <-s.stopped:
			s.log.Info("shutdown requested over the extensions API")
		}
		stopping.Store(true)
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.stop()
		}
		mu.Unlock()
	}()

	var acceptErr error
	for {
		nc, err := ln.Accept()
		if err != nil {
			if !stopping.Load() {
				acceptErr = fmt.Errorf("accepting on extensions socket: %w", err)
			}
			break
		}
		c := &stoppableConn{Conn: nc}
		mu.Lock()
		if stopping.Load() {
			mu.Unlock()
			nc.Close()
			continue
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			s.serveConn(ctx, c)
		}()
	}
	cancel() // interrupts queries still running and wakes the stopper
	<-stopperDone

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		<-done
	}
	s.log.Info("extensions API stopped")
	return acceptErr
}

// serveConn answers calls on one connection until the client hangs up or
// the server stops.
func (s *Sim) serveConn(ctx context.Context, c *stoppableConn) {
	conf := &thrift.TConfiguration{} // osqueryd's defaults: strict write, lenient read, no timeouts
	trans := thrift.NewTBufferedTransport(thrift.NewTSocketFromConnConf(c, conf), bufferSize)
	prot := thrift.NewTBinaryProtocolConf(trans, conf)
	processor := osquery.NewExtensionManagerProcessor(&handler{sim: s})
	for {
		ok, err := processor.Process(ctx, prot, prot)
		if err != nil {
			var tae thrift.TApplicationException
			var tte thrift.TTransportException
			switch {
			case errors.As(err, &tte), errors.Is(err, thrift.ErrAbandonRequest):
				return // hung up, or stopping
			case errors.As(err, &tae) && tae.TypeId() == thrift.UNKNOWN_METHOD:
				// The processor has answered with an exception; the
				// connection is still in step.
				s.log.Debug("unknown extensions API method", "err", err)
				continue
			}
			s.log.Debug("extensions API call failed", "err", err)
		}
		if !ok {
			return
		}
	}
}

// stoppableConn lets the server end an idle connection without cutting off a
// reply being written: once stopped, reads fail (a blocked one through an
// expired deadline, later ones by the flag) while writes go on.
type stoppableConn struct {
	net.Conn
	stopped atomic.Bool
}

func (c *stoppableConn) stop() {
	c.stopped.Store(true)
	c.Conn.SetReadDeadline(time.Unix(1, 0))
}

func (c *stoppableConn) Read(p []byte) (int, error) {
	if c.stopped.Load() {
		return 0, io.EOF
	}
	return c.Conn.Read(p)
}

// SyscallConn keeps Thrift's connectivity check working: it peeks at the
// socket to cancel a call whose client has gone away.
func (c *stoppableConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("connection has no file descriptor")
	}
	return sc.SyscallConn()
}
