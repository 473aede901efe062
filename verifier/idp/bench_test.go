package idp_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/cpustat"
	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/testkit/testpki"
	"github.com/clearance/clearance/verifier/idp"
)

const (
	benchAudience = "https://www.okta.com/saml2/service-provider/spclearancebench01"
	benchACS      = "https://example.okta.com/sso/saml2/0oa1clearancebench"
	benchMetadata = "https://sso.example.com/saml/metadata"
	benchSSO      = "https://sso.example.com/saml/sso"
	benchUser     = "ada.lovelace@example.com"
)

// benchIdP is an IdP as the server builds it (a 2048-bit key created by
// LoadOrCreate, Okta's request-signing certificate configured) and the
// simulated Okta org that signs requests for it.
type benchIdP struct {
	idp *idp.IdP
	sp  *oktasim.SP
	now time.Time
}

func newBenchIdP(b *testing.B) *benchIdP {
	b.Helper()
	now := time.Now().UTC()
	id, err := idp.LoadOrCreate(context.Background(), b.TempDir(), 2048, "", now)
	if err != nil {
		b.Fatal(err)
	}
	oktaKey := testpki.RSAKey(b)
	oktaCert := testpki.SelfSigned(b, testpki.CN("Okta request signing"), testpki.Key(oktaKey), testpki.Valid(now.Add(-time.Hour), now.Add(time.Hour))).Cert
	p, err := idp.New(id, idp.Settings{
		MetadataURL: benchMetadata, SSOURL: benchSSO, Audience: benchAudience, ACSURLs: []string{benchACS},
		RequestCerts: []*x509.Certificate{oktaCert}, MaxRequestSkew: 3 * time.Minute,
	})
	if err != nil {
		b.Fatal(err)
	}
	sp := oktasim.New(oktasim.Options{
		EntityID: benchAudience, ACSURL: benchACS, IdPSSOURL: benchSSO, IdPIssuer: benchMetadata,
		IdPCert: id.Cert, SigningKey: oktaKey, SigningCert: oktaCert,
		Now: func() time.Time { return now },
	})
	return &benchIdP{idp: p, sp: sp, now: now}
}

// redirectQuery is the raw query of a signed Redirect-binding request, as
// Okta sends it.
func (e *benchIdP) redirectQuery(b *testing.B, r oktasim.Request) string {
	b.Helper()
	u, err := e.sp.RedirectURL(r)
	if err != nil {
		b.Fatal(err)
	}
	pu, err := url.Parse(u)
	if err != nil {
		b.Fatal(err)
	}
	return pu.RawQuery
}

func (e *benchIdP) validate(rawQuery string) (*idp.Request, error) {
	rec, err := idp.DecodeRedirect(rawQuery)
	if err != nil {
		return nil, err
	}
	return idp.Validate(rec, e.idp.Expect(e.now))
}

// BenchmarkValidateRedirect is the cost of reading one Okta request: split
// the query, base64, inflate, the XML safety checks, the RSA-SHA256 query
// signature and the field checks. The replay cache is not consulted here.
func BenchmarkValidateRedirect(b *testing.B) {
	e := newBenchIdP(b)
	q := e.redirectQuery(b, e.sp.NewRequest(benchUser))
	if req, err := e.validate(q); err != nil || !req.Signed || req.Username != benchUser {
		b.Fatalf("request not accepted as signed for %s: %+v %v", benchUser, req, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.validate(q); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRespond is the hot path of an allowed sign-in: build the
// assertion and response and sign both (two RSA-2048 signatures), serialise,
// base64. The response is checked once, by the simulated Okta, before timing.
func BenchmarkRespond(b *testing.B) {
	e := newBenchIdP(b)
	r := e.sp.NewRequest(benchUser)
	req, err := e.validate(e.redirectQuery(b, r))
	if err != nil {
		b.Fatal(err)
	}
	hr := httptest.NewRequest("GET", benchSSO, nil)
	attrs := []idp.Attribute{{Name: "clearance_device_id", Value: "dev-bench"}}
	resp, err := e.idp.Respond(hr, req, idp.Assert{Attributes: attrs}, e.now)
	if err != nil {
		b.Fatal(err)
	}
	if as, err := e.sp.Validate(resp, r.ID); err != nil || as.NameID != benchUser {
		b.Fatalf("Okta refuses the response: %+v %v", as, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.idp.Respond(hr, req, idp.Assert{Attributes: attrs}, e.now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRSA2048Sign is one raw RSA-2048 PKCS#1 v1.5 SHA-256 signature
// (rsa.SignPKCS1v15, what the XML signer's crypto.Signer call comes down
// to) with a key LoadOrCreate made: the ceiling for anything that signs.
// Respond makes two. It runs on every GOMAXPROCS, as BenchmarkSSO does, so
// ns/op is wall time per signature on all of them.
func BenchmarkRSA2048Sign(b *testing.B) {
	id, err := idp.LoadOrCreate(context.Background(), b.TempDir(), 2048, "", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	key, ok := id.Signer.(*rsa.PrivateKey)
	if !ok {
		b.Fatalf("signer is %T, want *rsa.PrivateKey", id.Signer)
	}
	digest := sha256.Sum256([]byte("<ds:SignedInfo>…</ds:SignedInfo>"))
	b.ReportAllocs()
	machine := cpustat.Start()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if c, ok := machine.Cores(); ok {
		b.ReportMetric(c.Steal, "steal-cores")
	}
}

// BenchmarkReparse is the cost of reading a held request again, as the
// presence step of every agent-bound sign-in does: the Subject rules and
// the AuthnRequest, without the clock or the signature.
func BenchmarkReparse(b *testing.B) {
	e := newBenchIdP(b)
	req, err := e.validate(e.redirectQuery(b, e.sp.NewRequest(benchUser)))
	if err != nil {
		b.Fatal(err)
	}
	later := e.idp.Expect(e.now.Add(time.Hour))
	if held, err := idp.Reparse(req.XML, req.RelayState, later); err != nil || held.Username != benchUser {
		b.Fatalf("held request: %+v %v", held, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := idp.Reparse(req.XML, req.RelayState, later); err != nil {
			b.Fatal(err)
		}
	}
}
