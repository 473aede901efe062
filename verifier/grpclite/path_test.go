package grpclite

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestMethodPath: a call's :path must be "/" Service-Name "/" method-name,
// as gRPC over HTTP/2 has it. Any other spelling is refused as grpc-go
// refuses a malformed name (UNIMPLEMENTED) before the call reaches an
// interceptor, so a limit or check keyed on the full method name sees only
// the one spelling.
func TestMethodPath(t *testing.T) {
	t.Parallel()
	const watch = "/grpc.health.v1.Health/Watch"
	var mu sync.Mutex
	var seen []string
	s := NewServer(Options{StreamInterceptors: []grpc.StreamServerInterceptor{
		func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			m, _ := grpc.Method(ss.Context())
			mu.Lock()
			seen = append(seen, info.FullMethod+" "+m)
			mu.Unlock()
			return h(srv, ss)
		},
	}})
	healthpb.RegisterHealthServer(s, health.NewServer())
	addr := serve(t, s)
	rc := rawDial(t, addr)

	// answer reads the response headers of stream id.
	answer := func(id uint32) *http2.MetaHeadersFrame {
		t.Helper()
		return rc.next(fmt.Sprintf("stream %d's answer", id), func(f http2.Frame) bool {
			switch f := f.(type) {
			case *http2.GoAwayFrame:
				t.Fatalf("GOAWAY %v (%q)", f.ErrCode, f.DebugData())
			case *http2.RSTStreamFrame:
				if f.StreamID == id {
					t.Fatalf("stream %d reset (%v), not answered", id, f.ErrCode)
				}
			case *http2.MetaHeadersFrame:
				return f.StreamID == id
			}
			return false
		}).(*http2.MetaHeadersFrame)
	}
	id := uint32(1)
	for _, path := range []string{
		strings.TrimPrefix(watch, "/"),
		"/" + watch,
		"/grpc.health.v1.Health/",
		"/grpc.health.v1.Health//Watch",
		watch + "/",
		"/grpc.health.v1.Health",
		"//Watch",
		"/",
		"",
	} {
		rc.open(id, path, true)
		f := answer(id)
		want := fmt.Sprintf("malformed method name: %q", path)
		if !f.StreamEnded() || grpcField(f, "grpc-status") != "12" || grpcField(f, "grpc-message") != want {
			t.Errorf(":path %q: answered %v, want UNIMPLEMENTED %q", path, f.Fields, want)
		}
		id += 2
	}

	// The canonical path is served, and its interceptor and handler see it.
	rc.open(id, watch, false)
	rc.write(func(fr *http2.Framer) error { return fr.WriteData(id, true, []byte{0, 0, 0, 0, 0}) })
	if f := answer(id); f.StreamEnded() || f.PseudoValue("status") != "200" {
		t.Errorf("%s: answered %v, want the response's headers", watch, f.Fields)
	}
	rc.next("the Watch's first message", func(f http2.Frame) bool {
		d, ok := f.(*http2.DataFrame)
		return ok && d.StreamID == id && len(d.Data()) > 0
	})
	mu.Lock()
	defer mu.Unlock()
	if want := []string{watch + " " + watch}; strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Errorf("interceptors saw %q, want %q: no refused path reaches them", seen, want)
	}
}

func grpcField(f *http2.MetaHeadersFrame, name string) string {
	for _, h := range f.RegularFields() {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

// TestRegisterServiceNames: a service or method name no well-formed :path
// can spell is a mistake RegisterService panics on.
func TestRegisterServiceNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, service, method string }{
		{"empty service", "", "M"},
		{"slash in service", "a/b", "M"},
		{"empty method", "a.B", ""},
		{"slash in method", "a.B", "M/N"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Errorf("service %q, method %q registered", tc.service, tc.method)
				}
			}()
			NewServer(Options{}).RegisterService(&grpc.ServiceDesc{
				ServiceName: tc.service,
				Streams:     []grpc.StreamDesc{{StreamName: tc.method, Handler: func(any, grpc.ServerStream) error { return nil }}},
			}, nil)
		})
	}
}
