package scep_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
	smscep "github.com/smallstep/scep"

	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/scep"
	"github.com/clearance/clearance/verifier/storage"
)

// memStore is an in-memory Store with one enrolled Mac: fast enough to fuzz with.
type memStore struct {
	mu       sync.Mutex
	recorded []storage.BrowserCert
	down     error // when set, every read fails with it
}

var _ scep.Store = (*memStore)(nil)

func (s *memStore) GetDeviceByHardwareUUID(_ context.Context, uuid string) (storage.Device, error) {
	if s.down != nil {
		return storage.Device{}, s.down
	}
	if uuid != macA {
		return storage.Device{}, storage.ErrNotFound
	}
	return storage.Device{ID: "dev-a", HardwareUUID: macA}, nil
}

func (s *memStore) CountBrowserCertsSince(context.Context, string, time.Time) (int, error) {
	return 0, nil
}

func (s *memStore) SCEPChallengeUsable(context.Context, []byte, time.Time) (bool, error) {
	return false, nil
}

func (s *memStore) RecordBrowserCert(_ context.Context, c storage.BrowserCert, _ []byte, _ storage.IssueLimit, _ time.Time, _ storage.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recorded = append(s.recorded, c)
	return nil
}

func (s *memStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recorded)
}

// FuzzPKIOperation feeds arbitrary bytes to PKIOperation (POST), the path
// anyone who can reach /scep drives: the PKCS#7 and ASN.1 parsers, the
// decryption and the CSR checks. Whatever arrives, the answer is an HTTP
// error or a CertRep signed by the RA, and a certificate is recorded only
// with a SUCCESS for the enrolled Mac.
func FuzzPKIOperation(f *testing.F) {
	dir := f.TempDir()
	authority, err := ca.LoadOrCreate(dir, ca.Options{Hosts: []string{"localhost"}})
	if err != nil {
		f.Fatal(err)
	}
	ra, _, err := authority.LoadOrCreateRA()
	if err != nil {
		f.Fatal(err)
	}
	store := &memStore{}
	h, err := scep.New(scep.Options{
		CA: authority, RA: ra, Store: store, StaticChallenge: staticChallenge,
		Lifetime: time.Hour, RateLimit: 1000, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		f.Fatal(err)
	}
	e := &testEnv{ra: ra}
	valid := macRequest(macA).build(f, e).raw
	f.Add(valid)
	f.Add(macRequest(macUnknown).build(f, e).raw)
	noSAN := macRequest(macA)
	noSAN.uris = nil
	f.Add(noSAN.build(f, e).raw)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x80, 0x00, 0x00})
	f.Add([]byte("-----BEGIN PKCS7-----"))

	f.Fuzz(func(t *testing.T, msg []byte) {
		before := store.count()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, scep.Path+"?operation=PKIOperation", bytes.NewReader(msg)))
		recorded := store.count() - before
		switch rec.Code {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if recorded != 0 {
				t.Fatal("recorded a certificate for an HTTP error")
			}
			return
		case http.StatusOK:
		default:
			t.Fatalf("status %d", rec.Code)
		}
		body := rec.Body.Bytes()
		p7, err := pkcs7.Parse(body)
		if err != nil {
			t.Fatalf("reply is not PKCS#7: %v", err)
		}
		if s := p7.GetOnlySigner(); s == nil || !s.Equal(ra.Cert) {
			t.Fatal("reply not signed by the RA")
		}
		reply, err := smscep.ParsePKIMessage(body, smscep.WithCACerts([]*x509.Certificate{ra.Cert}))
		if err != nil {
			t.Fatalf("reply is not a CertRep: %v", err)
		}
		switch reply.PKIStatus {
		case smscep.FAILURE:
			if recorded != 0 {
				t.Fatal("recorded a certificate for a FAILURE")
			}
		case smscep.SUCCESS:
			if recorded != 1 || store.recorded[len(store.recorded)-1].HardwareUUID != macA {
				t.Fatalf("SUCCESS with %d recorded", recorded)
			}
		default:
			t.Fatalf("pkiStatus %q", reply.PKIStatus)
		}
	})
}

// TestStoreDown: a failing store is an HTTP 503 (the Mac retries), not a
// final CertRep FAILURE, and nothing is recorded.
func TestStoreDown(t *testing.T) {
	authority, err := ca.LoadOrCreate(t.TempDir(), ca.Options{Hosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	ra, _, err := authority.LoadOrCreateRA()
	if err != nil {
		t.Fatal(err)
	}
	store := &memStore{down: errors.New("database is locked")}
	h, err := scep.New(scep.Options{CA: authority, RA: ra, Store: store, StaticChallenge: staticChallenge,
		Lifetime: time.Hour, RateLimit: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	msg := macRequest(macA).build(t, &testEnv{ra: ra}).raw
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, scep.Path+"?operation=PKIOperation", bytes.NewReader(msg)))
	if rec.Code != http.StatusServiceUnavailable || store.count() != 0 {
		t.Errorf("status %d, %d recorded; want 503 and nothing", rec.Code, store.count())
	}
}
