package grpcconn

import (
	"net/netip"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/clearance/clearance/verifier/grpclite"
)

// Limits are the terms of both classes (settings grpc-max-streams and
// grpc-unauthenticated-*); zero fields take the Default* values.
type Limits struct {
	MaxStreams             int
	UnauthenticatedStreams int
	UnauthenticatedIdle    time.Duration
	UnauthenticatedMaxAge  time.Duration
}

func (lim Limits) fill() Limits {
	if lim.MaxStreams <= 0 {
		lim.MaxStreams = DefaultMaxStreams
	}
	if lim.UnauthenticatedStreams <= 0 {
		lim.UnauthenticatedStreams = DefaultUnauthenticatedStreams
	}
	if lim.UnauthenticatedIdle <= 0 {
		lim.UnauthenticatedIdle = DefaultUnauthenticatedIdle
	}
	if lim.UnauthenticatedMaxAge <= 0 {
		lim.UnauthenticatedMaxAge = DefaultUnauthenticatedMaxAge
	}
	return lim
}

// Bounds shared by both classes.
const (
	// preface bounds the wait for a client's HTTP/2 preface and settings
	// once TLS is done (gRPC's default is two minutes).
	preface = 10 * time.Second
	// maxHeaderList bounds a call's metadata (gRPC's default is 16 MiB per
	// stream); an admin token is 50 bytes.
	maxHeaderList = 64 << 10
	// keepaliveTime and keepaliveTimeout: the server pings a connection
	// quiet this long and closes it if the ping is not answered in time.
	// Agents hold streams for days; this finds dead ones.
	keepaliveTime    = 2 * time.Minute
	keepaliveTimeout = 20 * time.Second
	// pingMinTime: a client pinging more often is sent GOAWAY
	// (ENHANCE_YOUR_CALM, "too_many_pings") after a few such pings, by
	// gRPC's enforcement. Agents ping every 20 s at most.
	pingMinTime = 20 * time.Second
	// sendWindowTimeout bounds each wait of a Send to an agent for the
	// window it returns as it reads, and each write to its connection: one
	// that stopped reading while it still sends frames would otherwise
	// hold its handler, and the connection's writes, until the connection
	// ends. An agent's reader hands each message to its main loop, which
	// may be running its checks (up to 30 s a policy), so a policy set of
	// more than the 64 KiB window sent meanwhile can wait that long: five
	// minutes leaves room for that, where a minute could reset a healthy
	// agent's stream.
	sendWindowTimeout = 5 * time.Minute
	// staticWindow is the flow-control window of agents' streams and
	// connections: gRPC's initial 64 KiB, kept fixed. gRPC would otherwise
	// estimate the link's bandwidth-delay product with a PING (and a window
	// update) after nearly every report an agent sends one at a time,
	// which costs the verifier a write and a read per report; an agent's
	// messages are a few KiB, and a report at the 512 KiB limit takes a few
	// more round trips.
	staticWindow = 64 << 10
)

// DeviceTerms are the terms of connections with a device certificate, for
// the grpclite server a Listener hands them to. Agents hold one such
// connection each, for days, so they are served by grpclite (one goroutine
// per connection, no buffers held while idle) instead of grpc-go's server,
// which costs about twice the memory per held stream; on the wire the two
// are the same.
func DeviceTerms(lim Limits) grpclite.Options {
	lim = lim.fill()
	return grpclite.Options{
		Creds:                handshaken{},
		ConnectionTimeout:    preface,
		MaxHeaderListSize:    maxHeaderList,
		MaxConcurrentStreams: uint32(lim.MaxStreams),
		KeepaliveTime:        keepaliveTime, KeepaliveTimeout: keepaliveTimeout,
		// An agent may keep pinging a connection whose stream it is
		// re-opening.
		PingMinTime: pingMinTime, PermitWithoutStream: true,
		WindowSize: staticWindow, SendWindowTimeout: sendWindowTimeout,
	}
}

// UnauthenticatedOptions are the terms of every other connection: fewer
// streams, smaller messages (UnauthenticatedMaxMessage; put no other
// grpc.MaxRecvMsgSize after these), a GOAWAY when idle or old (calls in flight get
// UnauthenticatedGrace, then the connection is closed), and no pings
// without a call in flight.
func UnauthenticatedOptions(lim Limits) []grpc.ServerOption {
	lim = lim.fill()
	return []grpc.ServerOption{
		grpc.Creds(handshaken{}),
		grpc.ConnectionTimeout(preface),
		grpc.MaxHeaderListSize(maxHeaderList),
		grpc.MaxConcurrentStreams(uint32(min(lim.UnauthenticatedStreams, lim.MaxStreams))),
		grpc.MaxRecvMsgSize(UnauthenticatedMaxMessage),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time: keepaliveTime, Timeout: keepaliveTimeout,
			MaxConnectionIdle: lim.UnauthenticatedIdle,
			MaxConnectionAge:  lim.UnauthenticatedMaxAge, MaxConnectionAgeGrace: UnauthenticatedGrace,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: pingMinTime, PermitWithoutStream: false}),
	}
}

// Long-lived streams that anyone may open: they stay open by design and
// cost the client nothing to hold.
var longMethods = map[string]bool{
	"/grpc.health.v1.Health/Watch":                                   true,
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      true,
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": true,
}

// Bounds on long-lived streams, per method: in all, and per client address
// (an IPv6 /64), whatever the connection's class. grpcurl holds one
// reflection stream for a command; a load balancer watching health, one.
const (
	MaxLongStreams          = 256
	MaxLongStreamsPerSource = 8
)

// LongStreams bounds health Watch and reflection streams.
type LongStreams struct {
	metrics Metrics

	mu    sync.Mutex
	total map[string]int
	per   map[longKey]int
}

type longKey struct {
	method string
	src    netip.Addr
}

// NewLongStreams returns the bound; m may be nil.
func NewLongStreams(m Metrics) *LongStreams {
	return &LongStreams{metrics: m, total: map[string]int{}, per: map[longKey]int{}}
}

// Interceptor refuses a long-lived stream over either bound with
// RESOURCE_EXHAUSTED before it is served. Every other stream passes through
// a frame of a few words: an agent's Connect handler waits under it for
// days, and its stack stays small only if what it waits under does.
func (ls *LongStreams) Interceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !longMethods[info.FullMethod] {
			return handler(srv, ss)
		}
		return ls.serve(srv, ss, info, handler)
	}
}

//go:noinline
func (ls *LongStreams) serve(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	k := longKey{method: info.FullMethod}
	if p, ok := peer.FromContext(ss.Context()); ok {
		k.src = sourceOf(p.Addr)
	}
	if !ls.take(k) {
		if ls.metrics != nil {
			ls.metrics.GRPCStreamRefused(info.FullMethod)
		}
		return status.Errorf(codes.ResourceExhausted, "too many %s streams are open; try again later", info.FullMethod)
	}
	defer ls.give(k)
	return handler(srv, ss)
}

func (ls *LongStreams) take(k longKey) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.total[k.method] >= MaxLongStreams || ls.per[k] >= MaxLongStreamsPerSource {
		return false
	}
	ls.total[k.method]++
	ls.per[k]++
	return true
}

func (ls *LongStreams) give(k longKey) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.total[k.method]--
	if n := ls.per[k] - 1; n > 0 {
		ls.per[k] = n
	} else {
		delete(ls.per, k)
	}
}
