// Package grpclite owns a lean gRPC server transport: gRPC over HTTP/2,
// wire-compatible with grpc-go clients, serving services registered
// through grpc-go's own *grpc.ServiceDesc, for connections held for days by
// many clients at once.
//
// A connection costs one goroutine (its frame reader) and each call in
// flight one more (its handler), as in grpc-go; there is no writer
// goroutine and no keepalive goroutine. Frames are written under a
// per-connection mutex by the goroutine that produces them, into a buffer
// taken from a pool for that write; keepalive is a timer. While a
// connection is idle it holds its HTTP/2 state and little else.
//
// Every way a peer can make the server hold memory is bounded per
// connection: see the Options and the limits in conn.go.
package grpclite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"reflect"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Options are the server's terms. Zero fields take the defaults noted.
type Options struct {
	// Creds perform (or describe) each connection's handshake: the conn
	// ServerHandshake returns is served, and its AuthInfo is put in each
	// call's peer.Peer. Nil serves connections as they are accepted.
	Creds credentials.TransportCredentials
	// MaxConcurrentStreams bounds the calls open on a connection (default
	// 100, where grpc-go's is unbounded): a stream beyond it is refused
	// with REFUSED_STREAM, and the connection's reader waits while this
	// many handlers run.
	MaxConcurrentStreams uint32
	// MaxRecvMsgSize and MaxSendMsgSize bound a message (defaults 4 MiB
	// and math.MaxInt32, as grpc-go's).
	MaxRecvMsgSize, MaxSendMsgSize int
	// MaxHeaderListSize bounds a call's headers (default 16 MiB, as
	// grpc-go's).
	MaxHeaderListSize uint32
	// ConnectionTimeout bounds the handshake and the client's preface and
	// first SETTINGS (default 120 s).
	ConnectionTimeout time.Duration
	// KeepaliveTime and KeepaliveTimeout: a connection quiet for
	// KeepaliveTime is pinged and closed if nothing arrives within
	// KeepaliveTimeout (defaults 2 h and 20 s).
	KeepaliveTime, KeepaliveTimeout time.Duration
	// PingMinTime and PermitWithoutStream are grpc-go's
	// keepalive.EnforcementPolicy: a client pinging more often than
	// PingMinTime (default 5 min), or at all without a call in flight
	// unless PermitWithoutStream, is sent GOAWAY ENHANCE_YOUR_CALM
	// "too_many_pings" after a few such pings and closed.
	PingMinTime         time.Duration
	PermitWithoutStream bool
	// WindowSize is the static flow-control window of each stream and of
	// each connection (default and minimum 65535).
	WindowSize uint32
	// WriteBufferSize is how much a write gathers before it is flushed
	// (default 32 KiB). The buffer is pooled, not held per connection.
	WriteBufferSize int
	// SendWindowTimeout bounds each wait of a Send for the client to return
	// flow-control window (default 1 min): a client that takes no data,
	// yet answers pings, would otherwise hold the call's handler, and
	// whatever the handler holds, for as long as its connection lasts
	// (grpc-go's server waits as long as the call does). When it passes,
	// the stream is reset (CANCEL) and the Send fails with
	// DeadlineExceeded. Each window that arrives starts the wait again: a
	// slow reader is not cut off, one that stopped reading is. It bounds
	// each write to the connection too: a client that stops reading its
	// socket fails the write, and the connection is closed.
	SendWindowTimeout time.Duration

	// drainAckWait replaces drainAckWait (tests).
	drainAckWait time.Duration
	// UnaryInterceptors and StreamInterceptors are chained as
	// grpc.ChainUnaryInterceptor does: the first is the outermost.
	UnaryInterceptors  []grpc.UnaryServerInterceptor
	StreamInterceptors []grpc.StreamServerInterceptor
	// Logger receives connection errors at debug level (default
	// slog.Default()).
	Logger *slog.Logger
}

// Defaults.
const (
	defaultMaxStreams        = 100
	defaultMaxRecvMsgSize    = 4 << 20
	defaultMaxHeaderListSize = 16 << 20
	defaultConnectionTimeout = 120 * time.Second
	defaultKeepaliveTime     = 2 * time.Hour
	defaultKeepaliveTimeout  = 20 * time.Second
	defaultPingMinTime       = 5 * time.Minute
	defaultWindow            = 65535
	defaultWriteBufferSize   = 32 << 10
	defaultSendWindowTimeout = time.Minute
)

func (o Options) fill() Options {
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = defaultMaxStreams
	}
	if o.MaxRecvMsgSize <= 0 {
		o.MaxRecvMsgSize = defaultMaxRecvMsgSize
	}
	if o.MaxSendMsgSize <= 0 {
		o.MaxSendMsgSize = math.MaxInt32
	}
	if o.MaxHeaderListSize == 0 {
		o.MaxHeaderListSize = defaultMaxHeaderListSize
	}
	if o.ConnectionTimeout <= 0 {
		o.ConnectionTimeout = defaultConnectionTimeout
	}
	if o.KeepaliveTime <= 0 {
		o.KeepaliveTime = defaultKeepaliveTime
	}
	if o.KeepaliveTimeout <= 0 {
		o.KeepaliveTimeout = defaultKeepaliveTimeout
	}
	if o.PingMinTime <= 0 {
		o.PingMinTime = defaultPingMinTime
	}
	if o.WindowSize < defaultWindow {
		o.WindowSize = defaultWindow
	}
	if o.WindowSize > math.MaxInt32 {
		o.WindowSize = math.MaxInt32
	}
	if o.WriteBufferSize <= 0 {
		o.WriteBufferSize = defaultWriteBufferSize
	}
	if o.SendWindowTimeout <= 0 {
		o.SendWindowTimeout = defaultSendWindowTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Logger = o.Logger.With("component", "grpclite")
	return o
}

// Server serves gRPC calls on the connections it accepts.
type Server struct {
	opts      Options
	unaryInt  grpc.UnaryServerInterceptor
	streamInt grpc.StreamServerInterceptor

	mu       sync.Mutex
	services map[string]*service
	serving  bool
	draining bool
	stopped  bool
	lis      map[net.Listener]bool
	raws     map[net.Conn]bool // connections in their handshake
	conns    map[*conn]bool
	connWG   sync.WaitGroup // connection goroutines
}

var (
	_ grpc.ServiceRegistrar = (*Server)(nil)
	// reflection.Register takes this.
	_ interface {
		grpc.ServiceRegistrar
		GetServiceInfo() map[string]grpc.ServiceInfo
	} = (*Server)(nil)
)

// service is a registered service: its methods by name.
type service struct {
	impl    any
	methods map[string]*grpc.MethodDesc
	streams map[string]*grpc.StreamDesc
	// full holds each method's full name, "/" + service + "/" + method.
	full  map[string]string
	mdata any
}

// NewServer returns a server with o's terms.
func NewServer(o Options) *Server {
	s := &Server{
		opts:     o.fill(),
		services: map[string]*service{},
		lis:      map[net.Listener]bool{},
		raws:     map[net.Conn]bool{},
		conns:    map[*conn]bool{},
	}
	s.unaryInt = chainUnary(s.opts.UnaryInterceptors)
	s.streamInt = chainStream(s.opts.StreamInterceptors)
	return s
}

// RegisterService registers a service and its implementation, as
// grpc.Server does: before Serve, once per service name, and impl must
// implement sd.HandlerType. Unlike grpc.Server, it also requires names a
// :path can spell: neither empty nor with a slash. Any of these mistakes
// panics.
func (s *Server) RegisterService(sd *grpc.ServiceDesc, impl any) {
	if impl != nil && sd.HandlerType != nil {
		ht := reflect.TypeOf(sd.HandlerType).Elem()
		if st := reflect.TypeOf(impl); !st.Implements(ht) {
			panic(fmt.Sprintf("grpclite: RegisterService: handler of type %v does not satisfy %v", st, ht))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serving {
		panic(fmt.Sprintf("grpclite: RegisterService after Serve for %q", sd.ServiceName))
	}
	if _, ok := s.services[sd.ServiceName]; ok {
		panic(fmt.Sprintf("grpclite: RegisterService: duplicate service %q", sd.ServiceName))
	}
	// A name no well-formed :path can spell could never be called.
	if !validName(sd.ServiceName) {
		panic(fmt.Sprintf("grpclite: RegisterService: service name %q is empty or has a slash", sd.ServiceName))
	}
	svc := &service{impl: impl, methods: map[string]*grpc.MethodDesc{}, streams: map[string]*grpc.StreamDesc{},
		full: map[string]string{}, mdata: sd.Metadata}
	addName := func(m string) {
		if !validName(m) {
			panic(fmt.Sprintf("grpclite: RegisterService: method name %q of %q is empty or has a slash", m, sd.ServiceName))
		}
		svc.full[m] = "/" + sd.ServiceName + "/" + m
	}
	for i := range sd.Methods {
		addName(sd.Methods[i].MethodName)
		svc.methods[sd.Methods[i].MethodName] = &sd.Methods[i]
	}
	for i := range sd.Streams {
		addName(sd.Streams[i].StreamName)
		svc.streams[sd.Streams[i].StreamName] = &sd.Streams[i]
	}
	s.services[sd.ServiceName] = svc
}

// GetServiceInfo describes the registered services, as grpc.Server's
// does (reflection reads it).
func (s *Server) GetServiceInfo() map[string]grpc.ServiceInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]grpc.ServiceInfo, len(s.services))
	for name, svc := range s.services {
		methods := make([]grpc.MethodInfo, 0, len(svc.methods)+len(svc.streams))
		for m := range svc.methods {
			methods = append(methods, grpc.MethodInfo{Name: m})
		}
		for m, d := range svc.streams {
			methods = append(methods, grpc.MethodInfo{Name: m, IsClientStream: d.ClientStreams, IsServerStream: d.ServerStreams})
		}
		out[name] = grpc.ServiceInfo{Methods: methods, Metadata: svc.mdata}
	}
	return out
}

// Serve accepts connections from l and serves each on its own goroutine
// until l fails or the server stops; it returns nil after Stop or
// GracefulStop, and grpc.ErrServerStopped if called after them.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.stopped || s.draining {
		s.mu.Unlock()
		l.Close()
		return grpc.ErrServerStopped
	}
	s.serving = true
	s.lis[l] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.lis[l] {
			delete(s.lis, l)
			l.Close()
		}
		s.mu.Unlock()
	}()

	var delay time.Duration
	for {
		raw, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			done := s.stopped || s.draining
			s.mu.Unlock()
			if done {
				return nil
			}
			var ne interface{ Temporary() bool }
			if errors.As(err, &ne) && ne.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.mu.Lock()
		if s.stopped || s.draining {
			s.mu.Unlock()
			raw.Close()
			continue
		}
		s.connWG.Add(1)
		s.raws[raw] = true
		s.mu.Unlock()
		go func() { // owned by connWG; ends when the connection does
			defer s.connWG.Done()
			s.serveConn(raw)
		}()
	}
}

// track adds c to the live connections, or reports that the server has
// stopped taking them.
func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.raws, c.raw)
	if s.stopped || s.draining {
		return false
	}
	s.conns[c] = true
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// closeListeners closes every listener, and every connection still in
// its handshake; s.mu is held.
func (s *Server) closeListeners() {
	for l := range s.lis {
		l.Close()
		delete(s.lis, l)
	}
	for raw := range s.raws {
		raw.Close()
		delete(s.raws, raw)
	}
}

// GracefulStop stops accepting connections, sends every connection a
// GOAWAY (a new stream is then refused), and returns once the calls in
// flight have ended and their connections have closed.
func (s *Server) GracefulStop() {
	s.mu.Lock()
	s.draining = true
	s.closeListeners()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	// Each on its own: a connection whose peer stopped reading holds its
	// write lock, and must not keep the others from their GOAWAY. A drain
	// ends with its write, at the latest when Stop closes the connection.
	for _, c := range conns {
		go c.drain() // owned: see above
	}
	s.connWG.Wait()
}

// Stop closes every listener and connection now: the calls in flight have
// their contexts cancelled. It returns once every connection's reader has
// ended (handlers may still be returning).
func (s *Server) Stop() {
	s.mu.Lock()
	s.stopped = true
	s.closeListeners()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close(errServerStopped)
	}
	s.connWG.Wait()
}

var errServerStopped = errors.New("grpclite: server stopped")

// serveConn runs a connection's handshake and then its frame reader on
// this goroutine.
func (s *Server) serveConn(raw net.Conn) {
	// The handshake, preface and first SETTINGS within ConnectionTimeout,
	// as grpc-go bounds them: a deadline on the raw connection.
	_ = raw.SetDeadline(time.Now().Add(s.opts.ConnectionTimeout))
	nc, auth := raw, credentials.AuthInfo(nil)
	if s.opts.Creds != nil {
		var err error
		// On a goroutine of its own, whose stack (a TLS handshake's is
		// deep) goes when it ends: this one stays small as the reader.
		done := make(chan struct{})
		go func() {
			defer close(done)
			nc, auth, err = s.opts.Creds.ServerHandshake(raw)
		}()
		<-done
		if err != nil {
			s.mu.Lock()
			delete(s.raws, raw)
			s.mu.Unlock()
			if !errors.Is(err, credentials.ErrConnDispatched) {
				s.opts.Logger.Debug("handshake_failed", "remote", raw.RemoteAddr().String(), "err", err)
				raw.Close()
			}
			return
		}
	}
	c := newConn(s, raw, nc, auth)
	if !s.track(c) {
		nc.Close()
		return
	}
	defer s.untrack(c)
	err := c.serve()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		s.opts.Logger.Debug("connection_closed", "remote", raw.RemoteAddr().String(), "err", err)
	}
}

func chainUnary(ints []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	switch len(ints) {
	case 0:
		return nil
	case 1:
		return ints[0]
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return ints[0](ctx, req, info, unaryNext(ints, 0, info, handler))
	}
}

func unaryNext(ints []grpc.UnaryServerInterceptor, i int, info *grpc.UnaryServerInfo, final grpc.UnaryHandler) grpc.UnaryHandler {
	if i == len(ints)-1 {
		return final
	}
	return func(ctx context.Context, req any) (any, error) {
		return ints[i+1](ctx, req, info, unaryNext(ints, i+1, info, final))
	}
}

func chainStream(ints []grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	switch len(ints) {
	case 0:
		return nil
	case 1:
		return ints[0]
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return ints[0](srv, ss, info, streamNext(ints, 0, info, handler))
	}
}

func streamNext(ints []grpc.StreamServerInterceptor, i int, info *grpc.StreamServerInfo, final grpc.StreamHandler) grpc.StreamHandler {
	if i == len(ints)-1 {
		return final
	}
	return func(srv any, ss grpc.ServerStream) error {
		return ints[i+1](srv, ss, info, streamNext(ints, i+1, info, final))
	}
}
