package server_test

import (
	"bytes"
	"compress/flate"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/clearance/clearance/internal/protoagent"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/grpcconn"
	"github.com/clearance/clearance/verifier/server"
	"github.com/clearance/clearance/verifier/signin"
)

// TestAdminMessagesBoundedWithoutCertificate: a call on a connection
// without a device certificate cannot announce a large message, token or
// not (gRPC reads it whole before the token is checked), while an import
// of the largest list the CLI sends in one call still works.
func TestAdminMessagesBoundedWithoutCertificate(t *testing.T) {
	t.Parallel()
	h := start(t)
	big := &adminv1.ImportKnownDevicesRequest{Source: "test"}
	for i := 0; len(big.Devices)*80 < grpcconn.UnauthenticatedMaxMessage*2; i++ {
		big.Devices = append(big.Devices, &adminv1.KnownDevice{SerialNumber: strings.Repeat("C", 12), Name: strings.Repeat("n", 60)})
	}
	_, err := h.admin.ImportKnownDevices(h.ctx(), big)
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a %d-device import in one message: %v, want ResourceExhausted", len(big.Devices), err)
	}
	small := &adminv1.ImportKnownDevicesRequest{Source: "test", Devices: []*adminv1.KnownDevice{{SerialNumber: "C02XK0AAJG5H", Name: "mac"}}}
	if _, err := h.admin.ImportKnownDevices(h.ctx(), small); err != nil {
		t.Errorf("a small import: %v", err)
	}
}

// TestRevokedDeviceGetsNoDeviceTerms: a certificate that chains to the
// device CA but whose device is revoked is served like a connection without
// one (and its calls refused as before); an unrevoked device's is a device
// connection. Connect without a certificate, called over and over, is
// logged by sample.
func TestRevokedDeviceGetsNoDeviceTerms(t *testing.T) {
	t.Parallel()
	h := start(t)
	secret := h.secret()
	good, bad := h.enrolled(secret), h.enrolled(secret)
	if _, err := h.admin.RevokeDevice(h.ctx(), &adminv1.RevokeDeviceRequest{DeviceId: bad.DeviceID, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"good", "revoked"} {
		ag := good
		if a == "revoked" {
			ag = bad
		}
		conn, err := ag.Dial()
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := healthpb.NewHealthClient(conn).Check(h.ctx(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("%s: %v", a, err)
		}
	}
	if g := gauges(t, h, "clearance_grpc_connections"); g[`class="device"`] != 1 {
		t.Errorf("clearance_grpc_connections %v: want only the unrevoked device's connection on device terms", g)
	}

	// Connect without a certificate, many times: one line at warn.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(h.rootPEM)
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for range 20 {
		st, err := agentv1.NewAgentServiceClient(conn).Connect(h.ctx())
		if err == nil {
			_, err = st.Recv()
		}
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("Connect without a certificate: %v", err)
		}
	}
	if n := strings.Count(h.logs.String(), `msg="connect refused"`); n != 1 {
		t.Errorf("%d connect refused lines for 20 refusals, want 1 (sampled)", n)
	}
}

// TestHTTPSListenersBounded: bare TCP connections from one address past
// the sign-in listener's per-address bound close that address's oldest;
// a request from elsewhere is answered meanwhile; 429 and 401 answers
// close their connection.
func TestHTTPSListenersBounded(t *testing.T) {
	t.Parallel()
	e := startSSO(t, false, func(c *config.Config) {
		c.SSOMaxConnsPerSource = 4
		c.SSORateLimit, c.SSORateBurst = 0.5, 1
	})
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.7"), 0))}
	for range 6 {
		c, err := d.Dial("tcp", e.srv.SSOAddr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitFor(t, "the oldest two closed", func() bool {
		return counters(t, e.harness, "clearance_http_connections_closed_total")[`listener="sso",reason="evicted_per_source"`] == 2
	})
	if g := gauges(t, e.harness, "clearance_http_connections"); g[`listener="sso"`] != 4 {
		t.Errorf("clearance_http_connections %v, want 4 on sso", g)
	}
	b := e.from("127.0.0.8")
	if p := e.fetch(t, b, signin.PathMetadata, ""); p.status != http.StatusOK {
		t.Errorf("another address: %d", p.status)
	}
	if code, closes := closingAnswer(t, b, e.url+signin.PathMetadata); code != http.StatusTooManyRequests || !closes {
		t.Errorf("over the rate: %d, closes %v; want 429 that closes", code, closes)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(e.rootPEM)
	m := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	if code, closes := closingAnswer(t, m, "https://"+e.srv.HTTPAddr.String()+"/metrics"); code != http.StatusUnauthorized || !closes {
		t.Errorf("/metrics without the token: %d, closes %v; want 401 that closes", code, closes)
	}
}

// closingAnswer is a GET's status and whether the server closes the connection
// after it (Connection: close, which the client takes out of the header).
func closingAnswer(t *testing.T, c *http.Client, u string) (int, bool) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Close
}

// TestHTTPSListenersSpeakHTTP1: the sign-in listener and the one of
// /metrics and /healthz do not offer HTTP/2, whose many requests on one
// connection would multiply what each connection the bound admits holds.
func TestHTTPSListenersSpeakHTTP1(t *testing.T) {
	t.Parallel()
	h := start(t)
	for _, addr := range []net.Addr{h.srv.SSOAddr, h.srv.HTTPAddr} {
		c, err := tls.Dial("tcp", addr.String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		if p := c.ConnectionState().NegotiatedProtocol; p == "h2" {
			t.Errorf("%s offers HTTP/2", addr)
		}
		c.Close()
	}
}

// TestHeaderLinesBoundedOnListeners: on both HTTPS listeners, a request
// whose headers run past 200 lines closes its connection before they are
// parsed (they never end here: such a request never reaches a handler),
// and one of 30 lines is served.
func TestHeaderLinesBoundedOnListeners(t *testing.T) {
	t.Parallel()
	h := startLogging(t, nil, slog.LevelInfo)
	for _, addr := range []net.Addr{h.srv.SSOAddr, h.srv.HTTPAddr} {
		for _, n := range []int{30, 300} {
			c, err := tls.Dial("tcp", addr.String(), &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			b.WriteString("GET /healthz HTTP/1.1\r\nHost: x\r\n")
			for range n {
				b.WriteString("X1:\r\n")
			}
			if n < 200 {
				b.WriteString("\r\n")
			}
			_, _ = c.Write([]byte(b.String()))
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 64)
			k, err := c.Read(buf)
			served := strings.HasPrefix(string(buf[:k]), "HTTP/1.1 ")
			var ne net.Error
			timedOut := errors.As(err, &ne) && ne.Timeout()
			switch {
			case n < 200 && !served:
				t.Errorf("%s: %d header lines not served: %q %v", addr, n, buf[:k], err)
			case n > 200 && (served || timedOut):
				t.Errorf("%s: %d header lines that never end: the connection was not closed (%q %v)", addr, n, buf[:k], err)
			}
			c.Close()
		}
	}
	waitFor(t, "the closures logged", func() bool { return strings.Contains(h.logs.String(), "https_header_lines") })
}

// TestAnyonesRefusalsSampledAndClipped: requests refused before they
// identify anything, each quoting kilobytes of its own text, are logged at
// warn once per interval, and no line quotes more than a few hundred bytes
// of them.
func TestAnyonesRefusalsSampledAndClipped(t *testing.T) {
	t.Parallel()
	e := startSSO(t, true, nil)
	c := e.from("127.0.0.11")
	junk := strings.Repeat("A", 10000)
	for _, doc := range []string{
		`<?` + junk + ` x?><samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"/>`,
		`<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="a" Version="` + junk + `"/>`,
		`<a ` + junk + ``,
	} {
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.BestCompression)
		w.Write([]byte(doc))
		w.Close()
		q := url.Values{"SAMLRequest": {base64.StdEncoding.EncodeToString(buf.Bytes())}}.Encode()
		for range 3 {
			if p := e.fetch(t, c, signin.PathSSO+"?"+q, ""); p.status != http.StatusBadRequest {
				t.Fatalf("%d", p.status)
			}
		}
	}
	logs := e.logs.String()
	if n := strings.Count(logs, `msg=sso_request_refused`); n < 1 || n > 3 {
		t.Errorf("%d sso_request_refused lines at warn for 9 refusals of at most 3 reasons, want one a reason", n)
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "AAAAAAAAAA"+strings.Repeat("A", 1000)) {
			t.Errorf("a log line quotes the request at length: %.200s…", line)
		}
	}
}

// TestFailedHandshakesAtDebug: a failed TLS handshake on either HTTPS
// listener (anyone's to cause) is logged by the verifier's logger at debug,
// never through the process's default logger (which a main routes to the
// log at info). Not parallel: it reads the default logger.
func TestFailedHandshakesAtDebug(t *testing.T) {
	var fallback logBuffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&fallback, nil)))
	defer slog.SetDefault(prev)
	h := startLogging(t, nil, slog.LevelDebug)
	for _, addr := range []net.Addr{h.srv.HTTPAddr, h.srv.SSOAddr} {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		_, _ = c.Read(make([]byte, 1)) // the server answers or closes
		c.Close()
	}
	for _, comp := range []string{"component=http", "component=sso"} {
		waitFor(t, "the "+comp+" handshake error", func() bool {
			for _, line := range strings.Split(h.logs.String(), "\n") {
				if strings.Contains(line, comp) && strings.Contains(line, "TLS handshake error") && strings.Contains(line, "level=DEBUG") {
					return true
				}
			}
			return false
		})
	}
	if strings.Contains(fallback.String(), "TLS handshake error") {
		t.Errorf("a failed handshake went to the default logger:\n%s", fallback.String())
	}
}

// TestRenewedCertificateTerms: after a renewal, the new certificate gets
// device terms at once, and the one it replaced no longer does.
func TestRenewedCertificateTerms(t *testing.T) {
	t.Parallel()
	h := start(t)
	a := h.enrolled(h.secret())
	check := func(what string) {
		t.Helper()
		conn, err := a.Dial()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := healthpb.NewHealthClient(conn).Check(h.ctx(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	check("the first certificate")
	conn, err := a.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	csr, err := protoagent.CSR(a.Key)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := agentv1.NewAgentServiceClient(conn).Renew(h.ctx(), &agentv1.RenewRequest{Csr: csr})
	if err != nil {
		t.Fatal(err)
	}
	old := a.CertDER
	a.CertDER = resp.GetCertificate()
	check("the renewed certificate")
	a.CertDER = old
	check("the replaced certificate")
	// The first certificate's two connections and the renewed one's.
	if g := gauges(t, h, "clearance_grpc_connections"); g[`class="device"`] != 3 {
		t.Errorf("clearance_grpc_connections %v: want 3 device connections (the replaced certificate's last one is not)", g)
	}
}

// A Connect stream that sends no Hello is ended (DEADLINE_EXCEEDED): until
// its Hello it is nobody's session, so neither a revocation nor a newer
// stream would end it, and it held a handler and a worker for as long as
// its connection lasted. One that sends its Hello in time is served.
func TestConnectWithoutHelloEnds(t *testing.T) {
	t.Parallel()
	h := startWithOptions(t, nil, server.WithHelloTimeout(200*time.Millisecond))
	a := h.enrolled(h.secret())
	cc, err := a.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	stream, err := agentv1.NewAgentServiceClient(cc).Connect(h.ctx())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a stream without its Hello: %v, want DEADLINE_EXCEEDED", err)
	}
	h.connect(a)
}
