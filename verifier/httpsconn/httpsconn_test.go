package httpsconn

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/testkit/testpki"
)

// server serves handler over a Listener on loopback and returns its
// address, the listener and the log.
func server(t *testing.T, handler http.HandlerFunc) (string, *Listener, *logBuffer, *atomic.Int32) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert := testpki.SelfSigned(t, testpki.DNS("localhost"), testpki.ServerAuth()).TLS()
	var logs logBuffer
	var closed atomic.Int32
	l := Listen(inner, Options{
		TLS:    &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, NextProtos: []string{"http/1.1"}},
		Log:    slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Closed: func() { closed.Add(1) },
	})
	srv := &http.Server{Handler: handler, ConnState: l.ConnState, ConnContext: ConnContext, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return inner.Addr().String(), l, &logs, &closed
}

// logBuffer is a log safe to read while the server writes it.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func dial(t *testing.T, addr string, certs ...tls.Certificate) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, Certificates: certs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// request writes a GET with n header lines of its own (the request line
// and Host besides) and reads the answer's status line, or the error.
func request(c *tls.Conn, br *bufio.Reader, n int) (string, error) {
	var b strings.Builder
	b.WriteString("GET / HTTP/1.1\r\nHost: x\r\n")
	for i := range n {
		b.WriteString("X" + strings.Repeat("a", i%7) + ": 1\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.Status, nil
}

// TestHeaderLinesBounded: a request of up to the bound's lines is served,
// on one connection after another request as well; one past it ends the
// connection before the server parses it, counted and logged.
func TestHeaderLinesBounded(t *testing.T) {
	t.Parallel()
	addr, _, logs, closed := server(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	c := dial(t, addr)
	br := bufio.NewReader(c)
	for range 3 { // the count starts over for each request of a connection
		if st, err := request(c, br, DefaultMaxHeaderLines-3); err != nil || st != "200 OK" {
			t.Fatalf("a request within the bound: %q %v", st, err)
		}
	}
	c = dial(t, addr)
	if st, err := request(c, bufio.NewReader(c), DefaultMaxHeaderLines); err == nil {
		t.Fatalf("a request past the bound was answered %q", st)
	}
	if closed.Load() != 1 {
		t.Errorf("%d closures counted, want 1", closed.Load())
	}
	if !strings.Contains(logs.String(), "https_header_lines") {
		t.Errorf("the closure was not logged:\n%s", logs.String())
	}
}

// TestHeaderLinesNeverEnded: header lines that never end (the blank line
// is never sent) end the connection at the bound, not at the header
// timeout, and a blank line first does not stop the count.
func TestHeaderLinesNeverEnded(t *testing.T) {
	t.Parallel()
	addr, _, _, closed := server(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	for _, lead := range []string{"", "\r\n"} {
		c := dial(t, addr)
		var b strings.Builder
		b.WriteString(lead + "GET / HTTP/1.1\r\n")
		for range 4 * DefaultMaxHeaderLines {
			b.WriteString("X1:\r\n")
		}
		_, _ = io.WriteString(c, b.String())
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err := c.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("lead %q: the connection was still open after %d lines", lead, 4*DefaultMaxHeaderLines)
		}
	}
	if closed.Load() != 2 {
		t.Errorf("%d closures counted, want 2", closed.Load())
	}
}

// TestBodyLinesNotCounted: a body of many short lines is not counted as
// header lines, whether read with the headers or after them.
func TestBodyLinesNotCounted(t *testing.T) {
	t.Parallel()
	addr, _, _, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		io.WriteString(w, strings.Repeat("x", int(n%10)))
	})
	c := dial(t, addr)
	body := strings.Repeat("a\n", 5000)
	req := "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a body of %d lines: %v %v", 5000, resp, err)
	}
}

// TestStateCarriesPeerCertificate: the handler sees the browser's
// certificate through State, and the failed handshake of a client that
// speaks plain HTTP is logged at debug.
func TestStateCarriesPeerCertificate(t *testing.T) {
	t.Parallel()
	got := make(chan int, 1)
	addr, _, logs, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		st := State(r)
		if st == nil {
			got <- -1
			return
		}
		got <- len(st.PeerCertificates)
	})
	client := testpki.SelfSigned(t, testpki.CN("browser"), testpki.ClientAuth()).TLS()
	c := dial(t, addr, client)
	if _, err := request(c, bufio.NewReader(c), 0); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != 1 {
		t.Fatalf("the handler saw %d peer certificates, want 1", n)
	}
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_, _ = io.WriteString(raw, "GET / HTTP/1.0\r\n\r\n")
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := io.ReadAll(raw); !strings.HasPrefix(string(b), "HTTP/1.0 400 Bad Request") || !strings.Contains(string(b), "HTTPS server") {
		t.Errorf("plain HTTP was answered %q", b)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "TLS handshake error") {
		if time.Now().After(deadline) {
			t.Fatalf("the failed handshake was not logged:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FuzzCount: the count of a request's header lines does not depend on how
// its bytes arrive: read whole or in two parts, the lines counted, whether
// the headers ended and whether the bound was passed are the same.
func FuzzCount(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody\n\n", "\r\n\r\nX: 1\r\n", "a\rb\r\n\r\r\n", strings.Repeat("X1:\r\n", 300)} {
		f.Add([]byte(s), uint16(3))
	}
	l := &Listener{o: Options{MaxHeaderLines: DefaultMaxHeaderLines}}
	f.Fuzz(func(t *testing.T, b []byte, at uint16) {
		split := int(at) % (len(b) + 1)
		whole := &Conn{l: l, counting: true}
		parts := &Conn{l: l, counting: true}
		overWhole := whole.count(b)
		overParts := parts.count(b[:split])
		if !overParts {
			overParts = parts.count(b[split:])
		}
		if overWhole != overParts || whole.counting != parts.counting || (!overWhole && whole.lines != parts.lines) {
			t.Fatalf("%q split at %d: whole over=%v counting=%v lines=%d; parts over=%v counting=%v lines=%d",
				b, split, overWhole, whole.counting, whole.lines, overParts, parts.counting, parts.lines)
		}
		if whole.lines > l.o.MaxHeaderLines+1 {
			t.Fatalf("%d lines counted past the bound of %d", whole.lines, l.o.MaxHeaderLines)
		}
	})
}

// TestWritesBoundedBeforeTheFirstRequest: until the server sets its own
// deadlines at a request, what the connection writes to a peer that does
// not read (answers to TLS key updates, in an attack) ends at the
// handshake's bound instead of holding the connection for good, and
// closing it then does not wait on that write.
func TestWritesBoundedBeforeTheFirstRequest(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	cert := testpki.SelfSigned(t, testpki.DNS("localhost"), testpki.ServerAuth()).TLS()
	l := Listen(inner, Options{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, Handshake: 500 * time.Millisecond})
	go func() {
		c, err := tls.Dial("tcp", inner.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			io.WriteString(c, "x") // and never read
			time.Sleep(time.Minute)
			c.Close()
		}
	}()
	nc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*Conn)
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, 64<<20))
		wrote <- err
	}()
	select {
	case err := <-wrote:
		if err == nil {
			t.Error("64 MiB were written to a peer that does not read")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write before the first request was not bounded")
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case <-closed:
	case <-time.After(8 * time.Second):
		t.Fatal("Close blocked")
	}
}
