// Package devicewire drives the real clearance-verifier binary as an
// enrolled device gone hostile would: raw HTTP/2 over mutual TLS with a
// device certificate, against the server of device connections
// (verifier/grpclite), and checks that the device's revocation or
// replacement still ends its stream, and that frames no client sends
// neither crash the verifier nor make it grow.
package devicewire

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/clearance/clearance/internal/loadgen"
	"github.com/clearance/clearance/internal/protoagent"
)

type env struct {
	t   *testing.T
	p   *loadgen.Process
	dev *protoagent.Agent
}

// binDir holds the verifier built for these tests (TestMain).
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "clearance-devicewire-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	cmd := exec.Command("go", "build", "-o", dir+"/", "../../verifier/cmd/clearance-verifier")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building clearance-verifier:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func start(t *testing.T) *env {
	t.Helper()
	bin := filepath.Join(binDir, "clearance-verifier")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := loadgen.Start(ctx, loadgen.StartOptions{Binary: bin, Policies: "../../examples/policies.yaml", Hostile: true})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, p: p}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Logf("verifier stop: %v", err)
		}
	})
	e.dev = e.enroll("5F1B0C3E-0000-4000-8000-000000000001")
	return e
}

func (e *env) enroll(uuid string) *protoagent.Agent {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	secret, err := e.p.EnrollSecret(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	a, err := protoagent.New(e.p.GRPCAddr, e.p.RootPEM, uuid)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := a.Enroll(ctx, secret); err != nil {
		e.t.Fatal(err)
	}
	return a
}

func (e *env) alive() bool {
	return e.p.PID != 0 && syscallKill0(e.p.PID)
}

func syscallKill0(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	return !bytes.Contains(b, []byte("State:\tZ"))
}

// status reads VmRSS and Threads (kB) of the verifier.
func (e *env) rssKB() int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", e.p.PID))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	return -1
}

// metric reads one series from /metrics (with the metrics token).
func (e *env) metric(name string) float64 {
	tok, err := os.ReadFile(filepath.Join(e.p.DataDir, "metrics.token"))
	if err != nil {
		return -1
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second}
	// Not kept open: the verifier's goroutines are what is counted.
	defer cl.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://"+e.p.HTTPAddr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := cl.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, name+" ") {
			f, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return f
		}
	}
	return -1
}

func (e *env) snapshot(label string) {
	e.t.Logf("%-28s RSS %7d kB  goroutines %6.0f  heap_inuse %6.1f MiB", label, e.rssKB(), e.metric("go_goroutines"), e.metric("go_memstats_heap_inuse_bytes")/(1<<20))
}

// tlsConfig is the device's mTLS config.
func tlsConfig(a *protoagent.Agent) *tls.Config {
	return &tls.Config{RootCAs: a.Roots, ServerName: "localhost", MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"},
		Certificates: []tls.Certificate{{Certificate: append([][]byte{a.CertDER}, a.Chain...), PrivateKey: a.Key}}}
}

// raw is a bare HTTP/2 connection with the device certificate: the test
// writes every frame itself.
type raw struct {
	t   *testing.T
	tc  *tls.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	hb  bytes.Buffer
	wmu sync.Mutex
}

func (e *env) dialRaw(a *protoagent.Agent) *raw {
	e.t.Helper()
	tc, err := tls.Dial("tcp", e.p.GRPCAddr, tlsConfig(a))
	if err != nil {
		e.t.Fatal(err)
	}
	r := &raw{t: e.t, tc: tc}
	r.fr = http2.NewFramer(tc, tc)
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.fr.SetMaxReadFrameSize(1 << 24)
	r.enc = hpack.NewEncoder(&r.hb)
	e.t.Cleanup(func() { tc.Close() })
	return r
}

func (r *raw) preface(settings ...http2.Setting) {
	r.t.Helper()
	if _, err := io.WriteString(r.tc, http2.ClientPreface); err != nil {
		r.t.Fatal(err)
	}
	if err := r.fr.WriteSettings(settings...); err != nil {
		r.t.Fatal(err)
	}
}

// block encodes a header block.
func (r *raw) block(fields ...[2]string) []byte {
	r.hb.Reset()
	for _, f := range fields {
		_ = r.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return append([]byte(nil), r.hb.Bytes()...)
}

func reqFields(path string, extra ...[2]string) [][2]string {
	return append([][2]string{{":method", "POST"}, {":scheme", "https"}, {":path", path}, {":authority", "localhost"},
		{"content-type", "application/grpc"}, {"te", "trailers"}}, extra...)
}

func (r *raw) headers(id uint32, end bool, fields ...[2]string) {
	r.t.Helper()
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.block(fields...), EndHeaders: true, EndStream: end}); err != nil {
		r.t.Fatal(err)
	}
}

func (r *raw) data(id uint32, end bool, p []byte) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	return r.fr.WriteData(id, end, p)
}

// frames logs what the server sends until the connection ends or d passes.
func (r *raw) drain(d time.Duration, each func(http2.Frame)) error {
	_ = r.tc.SetReadDeadline(time.Now().Add(d))
	defer r.tc.SetReadDeadline(time.Time{})
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			return err
		}
		if each != nil {
			each(f)
		}
	}
}

func describe(f http2.Frame) string {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		var s []string
		for _, hf := range f.Fields {
			s = append(s, hf.Name+"="+hf.Value)
		}
		return fmt.Sprintf("HEADERS id=%d end=%v %v", f.StreamID, f.StreamEnded(), s)
	case *http2.GoAwayFrame:
		return fmt.Sprintf("GOAWAY last=%d code=%v debug=%q", f.LastStreamID, f.ErrCode, f.DebugData())
	case *http2.RSTStreamFrame:
		return fmt.Sprintf("RST id=%d code=%v", f.StreamID, f.ErrCode)
	case *http2.DataFrame:
		return fmt.Sprintf("DATA id=%d len=%d end=%v", f.StreamID, len(f.Data()), f.StreamEnded())
	}
	return fmt.Sprintf("%v", f.Header())
}
