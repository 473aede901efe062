package scep_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/testkit"
	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/scep"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlite"
)

// Macs of the tests, by hardware UUID.
const (
	macA       = "6B29FC40-CA47-1067-B31D-00DD010662DA"
	macRate    = "0F5E2C11-3A4B-4C5D-8E9F-A0B1C2D3E4F5"
	macRevoked = "D1E2F3A4-B5C6-4D7E-8F90-A1B2C3D4E5F6"
	macUnknown = "99999999-8888-4777-8666-555555555555"

	staticChallenge = "static-challenge-for-tests-0123"
	rateLimit       = 2
)

var _ scep.Store = (*sqlite.Store)(nil)

// testEnv is a verifier's SCEP endpoint over TLS with a real PKI in a temp
// dir and the real SQLite store, with three Macs enrolled (one revoked).
type testEnv struct {
	dir     string
	ca      *ca.Authority
	ra      *ca.RA
	store   *sqlite.Store
	srv     *httptest.Server
	metrics *fakeMetrics
	logs    *testkit.Buffer
	devices map[string]storage.Device // by hardware UUID
}

// newEnv builds the environment; wrap, when given, stands between the
// handler and the store.
func newEnv(t *testing.T, wrap ...func(scep.Store) scep.Store) *testEnv {
	t.Helper()
	ctx := context.Background()
	e := &testEnv{dir: t.TempDir(), metrics: &fakeMetrics{refused: map[string]int{}}, logs: &testkit.Buffer{}, devices: map[string]storage.Device{}}
	var err error
	if e.ca, err = ca.LoadOrCreate(e.dir, ca.Options{Hosts: []string{"127.0.0.1", "localhost"}}); err != nil {
		t.Fatalf("ca.LoadOrCreate: %v", err)
	}
	if e.ra, _, err = e.ca.LoadOrCreateRA(); err != nil {
		t.Fatalf("LoadOrCreateRA: %v", err)
	}
	if e.store, err = sqlite.Open(ctx, filepath.Join(e.dir, "clearance.db")); err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { _ = e.store.Close() })

	now := time.Now()
	if err := e.store.CreateEnrollSecret(ctx, storage.EnrollSecret{ID: "s1", Hash: []byte("h"), CreatedAt: now},
		storage.AuditEvent{At: now, Actor: "test", Action: "secret.create"}); err != nil {
		t.Fatal(err)
	}
	for _, uuid := range []string{macA, macRate, macRevoked} {
		e.enroll(t, uuid)
	}
	if _, err := e.store.RevokeDevice(ctx, e.devices[macRevoked].ID, "lost", now, storage.AuditEvent{At: now, Actor: "test", Action: "device.revoke"}); err != nil {
		t.Fatal(err)
	}

	var store scep.Store = e.store
	for _, w := range wrap {
		store = w(store)
	}
	h, err := scep.New(scep.Options{
		CA:              e.ca,
		RA:              e.ra,
		Store:           store,
		StaticChallenge: staticChallenge,
		Lifetime:        30 * 24 * time.Hour,
		RateLimit:       rateLimit,
		Logger:          slog.New(slog.NewJSONHandler(e.logs, nil)),
		Metrics:         e.metrics,
	})
	if err != nil {
		t.Fatalf("scep.New: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle(scep.Path, h)
	e.srv = httptest.NewUnstartedServer(mux)
	// The verifier's own TLS certificate (httptest would put in its own otherwise).
	e.srv.TLS = &tls.Config{Certificates: []tls.Certificate{e.ca.ServerCertificate()}}
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	t.Cleanup(func() {
		// Whatever happened, no challenge reached the log.
		logs := e.logs.String()
		for _, secret := range append([]string{staticChallenge}, e.oneTimeChallenges()...) {
			if strings.Contains(logs, secret) {
				t.Errorf("a challenge was logged: %q", secret)
			}
		}
	})
	return e
}

// enroll stands in for an agent's enrollment: a device with that hardware UUID.
func (e *testEnv) enroll(t *testing.T, uuid string) {
	t.Helper()
	now := time.Now()
	serial := fmt.Sprintf("%x", randBytes(t, 8))
	d, _, err := e.store.EnrollDevice(context.Background(), storage.Enrollment{
		Device: storage.Device{
			ID: "dev-" + strings.ToLower(uuid[:8]), HardwareUUID: uuid, Platform: "darwin", PublicKey: []byte("key"),
			CertSerial: serial, CertNotAfter: now.Add(time.Hour), EnrolledAt: now,
		},
		Cert:     storage.Cert{Serial: serial, Kind: storage.CertKindDevice, NotBefore: now, NotAfter: now.Add(time.Hour), DER: []byte("der")},
		SecretID: "s1",
		Audit:    storage.AuditEvent{At: now, Actor: "agent", Action: "device.enroll"},
	})
	if err != nil {
		t.Fatalf("EnrollDevice: %v", err)
	}
	e.devices[uuid] = d
}

var oneTime struct {
	sync.Mutex
	all []string
}

func (e *testEnv) oneTimeChallenges() []string {
	oneTime.Lock()
	defer oneTime.Unlock()
	return append([]string(nil), oneTime.all...)
}

// newOneTimeChallenge stores a one-time challenge as `scep challenge` does.
func (e *testEnv) newOneTimeChallenge(t *testing.T, expiresAt time.Time) string {
	t.Helper()
	c := fmt.Sprintf("otc-%x", randBytes(t, 16))
	oneTime.Lock()
	oneTime.all = append(oneTime.all, c)
	oneTime.Unlock()
	sum := sha256.Sum256([]byte(c))
	if err := e.store.CreateSCEPChallenge(context.Background(), sum[:], expiresAt, storage.AuditEvent{At: time.Now(), Actor: "test", Action: "scep.challenge"}); err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *testEnv) challengeUsable(t *testing.T, c string) bool {
	t.Helper()
	sum := sha256.Sum256([]byte(c))
	ok, err := e.store.SCEPChallengeUsable(context.Background(), sum[:], time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// certCounts is how many browser certificates each Mac has: what a refusal must not change.
func (e *testEnv) certCounts(t *testing.T) map[string]int {
	t.Helper()
	m := map[string]int{}
	for uuid, d := range e.devices {
		certs, err := e.store.ListBrowserCerts(context.Background(), d.ID)
		if err != nil {
			t.Fatal(err)
		}
		m[uuid] = len(certs)
	}
	return m
}

func (e *testEnv) url() string { return e.srv.URL + scep.Path }

// client trusts ca.pem, as a Mac with the profile does.
func (e *testEnv) client() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.ca.RootPool()}}}
}

type fakeMetrics struct {
	mu      sync.Mutex
	issued  int
	refused map[string]int
	last    string
}

func (m *fakeMetrics) SCEPIssued() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.issued++
}

func (m *fakeMetrics) SCEPRefused(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refused[reason]++
	m.last = reason
}

func (m *fakeMetrics) lastRefusal() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}

func (m *fakeMetrics) issuedCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.issued
}

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		t.Fatal(err)
	}
	return b
}
