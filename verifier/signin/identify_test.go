package signin_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/reason"
	"github.com/clearance/clearance/verifier/signin"
	"github.com/clearance/clearance/verifier/storage"
)

// identifyStore is a CertStore over maps that counts its reads.
type identifyStore struct {
	mu      sync.Mutex
	certs   map[string]storage.Cert
	devices map[string]storage.Device
	certErr error
	reads   map[string]int
}

func (s *identifyStore) count(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads[what]++
}

func (s *identifyStore) GetCert(_ context.Context, serial string) (storage.Cert, error) {
	s.count("cert")
	if s.certErr != nil {
		return storage.Cert{}, s.certErr
	}
	c, ok := s.certs[serial]
	if !ok {
		return storage.Cert{}, storage.ErrNotFound
	}
	return c, nil
}

func (s *identifyStore) GetBrowserCert(context.Context, string) (storage.BrowserCert, error) {
	s.count("browser")
	return storage.BrowserCert{}, storage.ErrNotFound
}

func (s *identifyStore) GetDevice(_ context.Context, id string) (storage.Device, error) {
	s.count("device")
	d, ok := s.devices[id]
	if !ok {
		return storage.Device{}, storage.ErrNotFound
	}
	return d, nil
}

func issueDeviceCert(t *testing.T, a *ca.Authority, id string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := a.IssueDeviceCert(csr, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestIdentifyDeviceCert holds the one-read path for a device's current
// certificate to what the full path decides, and shows that every other
// case still reads the certificate's record and says why it is refused.
func TestIdentifyDeviceCert(t *testing.T) {
	t.Parallel()
	a, err := ca.LoadOrCreate(t.TempDir(), ca.Options{Hosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	const dev, other, gone = "dev-current", "dev-other", "dev-gone"
	current := issueDeviceCert(t, a, dev)
	replaced := issueDeviceCert(t, a, dev)
	unrecorded := issueDeviceCert(t, a, dev)
	misfiled := issueDeviceCert(t, a, dev)
	ofRevoked := issueDeviceCert(t, a, other)
	ofGone := issueDeviceCert(t, a, gone)
	record := func(c *x509.Certificate, device string) storage.Cert {
		return storage.Cert{Serial: ca.SerialHex(c), DeviceID: device, Kind: storage.CertKindDevice, NotBefore: c.NotBefore, NotAfter: c.NotAfter, DER: c.Raw}
	}
	newStore := func() *identifyStore {
		return &identifyStore{
			certs: map[string]storage.Cert{
				ca.SerialHex(current):   record(current, dev),
				ca.SerialHex(replaced):  record(replaced, dev),
				ca.SerialHex(misfiled):  record(misfiled, other),
				ca.SerialHex(ofRevoked): record(ofRevoked, other),
				ca.SerialHex(ofGone):    record(ofGone, gone),
			},
			devices: map[string]storage.Device{
				dev:   {ID: dev, CertSerial: ca.SerialHex(current)},
				other: {ID: other, CertSerial: "", RevokedAt: time.Now().Add(-time.Minute), RevokedReason: "lost"},
			},
			reads: map[string]int{},
		}
	}
	identify := func(s *identifyStore, leaf *x509.Certificate) (signin.Identity, *signin.IdentifyError) {
		i := &signin.Identifier{CA: a, Store: s}
		r := httptest.NewRequest("GET", "https://localhost/saml/sso", nil)
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}
		return i.Identify(t.Context(), r, time.Now())
	}

	t.Run("current", func(t *testing.T) {
		s := newStore()
		id, ierr := identify(s, current)
		if ierr != nil {
			t.Fatalf("refused: %v", ierr)
		}
		if id.DeviceID != dev || id.CertSerial != ca.SerialHex(current) || id.Via != "tls" || id.Device == nil || id.Device.ID != dev {
			t.Fatalf("identity %+v", id)
		}
		if s.reads["cert"] != 0 || s.reads["device"] != 1 {
			t.Errorf("reads %v, want the device alone", s.reads)
		}
	})
	t.Run("current, the record unreadable", func(t *testing.T) {
		// The one-read path does not need the record; the full path would
		// have read it, and the device's current serial vouches for it.
		s := newStore()
		s.certErr = errors.New("disk on fire")
		if _, ierr := identify(s, current); ierr != nil {
			t.Fatalf("refused: %v", ierr)
		}
	})
	refusals := []struct {
		name string
		leaf *x509.Certificate
		want reason.Code
	}{
		{"replaced", replaced, reason.SupersededCert},
		{"not on record", unrecorded, reason.UnknownCert},
		{"recorded for another device", misfiled, reason.UnknownCert},
		{"device not enrolled", ofGone, reason.UnknownCert},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore()
			_, ierr := identify(s, tc.leaf)
			if ierr == nil || ierr.Reason != tc.want {
				t.Fatalf("got %v, want %s", ierr, tc.want)
			}
			if s.reads["cert"] != 1 {
				t.Errorf("reads %v: the certificate's record was not read", s.reads)
			}
		})
	}
	t.Run("revoked device, its old certificate", func(t *testing.T) {
		// Not current (the device has none), so the full path: the record
		// names the device, whose revocation the decision reports.
		s := newStore()
		id, ierr := identify(s, ofRevoked)
		if ierr != nil {
			t.Fatalf("refused: %v", ierr)
		}
		if id.DeviceID != other || id.Device == nil || !id.Device.Revoked() || s.reads["cert"] != 1 {
			t.Fatalf("identity %+v, reads %v", id, s.reads)
		}
	})
	t.Run("record unreadable", func(t *testing.T) {
		s := newStore()
		s.certErr = errors.New("disk on fire")
		if _, ierr := identify(s, replaced); ierr == nil || ierr.Reason != reason.Storage {
			t.Fatalf("got %v, want %s", ierr, reason.Storage)
		}
	})
}
