package scep_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
	smscep "github.com/smallstep/scep"
	"github.com/smallstep/scep/x509util"

	"github.com/clearance/clearance/internal/testkit/testpki"
	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/scep"
)

// Keys are made once per run: RSA generation is slow, and no test depends
// on a key being fresh.
var testKeys = sync.OnceValue(func() map[string]crypto.Signer {
	m := map[string]crypto.Signer{}
	for name, bits := range map[string]int{"rsa2048": 2048, "rsa2048b": 2048} {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err)
		}
		m[name] = k
	}
	for name, c := range map[string]elliptic.Curve{"p256": elliptic.P256(), "p384": elliptic.P384()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			panic(err)
		}
		m[name] = k
	}
	return m
})

func key(name string) crypto.Signer { return testKeys()[name] }

// selfSigned is the throwaway certificate a SCEP client signs its PKCSReq with.
func selfSigned(t testing.TB, k crypto.Signer) *x509.Certificate {
	t.Helper()
	return testpki.SelfSigned(t, testpki.CN("scep client"), testpki.Serial(1), testpki.Key(k), testpki.Valid(time.Now().Add(-time.Hour), time.Now().Add(time.Hour)),
		testpki.Template(func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageKeyEncipherment })).Cert
}

// request is one SCEP PKIOperation built with smallstep/scep, as a client would.
type request struct {
	csrKey     crypto.Signer
	cn         string
	uris       []string
	dns        []string
	challenge  string
	signerKey  crypto.Signer // default: csrKey
	msgType    smscep.MessageType
	recipients []*x509.Certificate // default: the RA
}

type built struct {
	raw    []byte
	nonce  []byte
	tid    string
	signer *x509.Certificate
	key    crypto.Signer
}

func (r request) build(t testing.TB, e *testEnv) built {
	t.Helper()
	var uris []*url.URL
	for _, s := range r.uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		uris = append(uris, u)
	}
	der, err := x509util.CreateCertificateRequest(rand.Reader, &x509util.CertificateRequest{
		CertificateRequest: x509.CertificateRequest{Subject: pkix.Name{CommonName: r.cn}, URIs: uris, DNSNames: r.dns},
		ChallengePassword:  r.challenge,
	}, r.csrKey)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	signerKey := r.signerKey
	if signerKey == nil {
		signerKey = r.csrKey
	}
	signer := selfSigned(t, signerKey)
	msgType, recipients := r.msgType, r.recipients
	if msgType == "" {
		msgType = smscep.PKCSReq
	}
	if recipients == nil {
		recipients = []*x509.Certificate{e.ra.Cert}
	}
	msg, err := smscep.NewCSRRequest(csr, &smscep.PKIMessage{
		MessageType: msgType, Recipients: recipients, SignerKey: signerKey, SignerCert: signer,
	})
	if err != nil {
		t.Fatal(err)
	}
	return built{raw: msg.Raw, nonce: msg.SenderNonce, tid: string(msg.TransactionID), signer: signer, key: signerKey}
}

func macRequest(uuid string) request {
	return request{csrKey: key("rsa2048"), cn: "Clearance browser", uris: []string{ca.HardwareURIPrefix + uuid}, challenge: staticChallenge}
}

func (e *testEnv) post(t testing.TB, body []byte) (int, []byte) {
	t.Helper()
	resp, err := e.client().Post(e.url()+"?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") != "application/x-pki-message" {
		t.Errorf("Content-Type = %q", resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, b
}

// certRep parses a reply as a client does, checking that the RA signed it
// and that it answers req.
func certRep(t testing.TB, e *testEnv, req built, body []byte) *smscep.PKIMessage {
	t.Helper()
	p7, err := pkcs7.Parse(body)
	if err != nil {
		t.Fatalf("reply is not PKCS#7: %v", err)
	}
	if s := p7.GetOnlySigner(); s == nil || !s.Equal(e.ra.Cert) {
		t.Error("reply not signed by the RA")
	}
	msg, err := smscep.ParsePKIMessage(body, smscep.WithCACerts([]*x509.Certificate{e.ra.Cert}))
	if err != nil {
		t.Fatalf("reply is not a SCEP message: %v", err)
	}
	if msg.MessageType != smscep.CertRep || msg.CertRepMessage == nil {
		t.Fatalf("reply type %q, want CertRep", msg.MessageType)
	}
	if string(msg.TransactionID) != req.tid || !bytes.Equal(msg.RecipientNonce, req.nonce) {
		t.Errorf("reply transaction %q nonce %x; want %q %x", msg.TransactionID, msg.RecipientNonce, req.tid, req.nonce)
	}
	return msg
}

func TestRequests(t *testing.T) {
	e := newEnv(t)
	expired := e.newOneTimeChallenge(t, time.Now().Add(-time.Minute))
	ecSigned := macRequest(macA)
	ecSigned.csrKey, ecSigned.signerKey = key("p256"), key("rsa2048")

	for _, tc := range []struct {
		name   string
		req    request
		info   smscep.FailInfo // "" for SUCCESS
		reason string
	}{
		{"EC P-256 key (RSA signer)", ecSigned, "", ""},
		{"EC P-384 key", request{csrKey: key("p384"), signerKey: key("rsa2048"), uris: []string{ca.HardwareURIPrefix + macA}, challenge: staticChallenge}, smscep.BadRequest, "csr_key"},
		{"two URIs", func() request {
			r := macRequest(macA)
			r.uris = append(r.uris, ca.HardwareURIPrefix+macRate)
			return r
		}(), smscep.BadRequest, "csr_san"},
		{"URI not a hardware UUID", func() request { r := macRequest(macA); r.uris = []string{"urn:device:apple:uuid:nope"}; return r }(), smscep.BadRequest, "csr_san"},
		{"device id URI", func() request { r := macRequest(macA); r.uris = []string{"urn:clearance:device:dev-1"}; return r }(), smscep.BadRequest, "csr_san"},
		{"DNS name beside the URI", func() request { r := macRequest(macA); r.dns = []string{"mac.example.com"}; return r }(), smscep.BadRequest, "csr_san"},
		{"common name of 65 characters", func() request { r := macRequest(macA); r.cn = strings.Repeat("é", 65); return r }(), smscep.BadRequest, "csr_subject"},
		{"no challenge", func() request { r := macRequest(macA); r.challenge = ""; return r }(), smscep.BadRequest, "bad_challenge"},
		{"expired one-time challenge", func() request { r := macRequest(macA); r.challenge = expired; return r }(), smscep.BadRequest, "bad_challenge"},
		{"static challenge with a different case", func() request { r := macRequest(macA); r.challenge = strings.ToUpper(staticChallenge); return r }(), smscep.BadRequest, "bad_challenge"},
		{"revoked device", macRequest(macRevoked), smscep.BadRequest, "device_revoked"},
		{"unknown device", macRequest(macUnknown), smscep.BadRequest, "unknown_device"},
		{"RenewalReq", func() request { r := macRequest(macA); r.msgType = smscep.RenewalReq; return r }(), smscep.BadRequest, "renewal_not_supported"},
		{"EC signer (reply cannot be encrypted)", func() request { r := macRequest(macA); r.signerKey = key("p256"); return r }(), smscep.BadAlg, "signer_key_not_rsa"},
		{"encrypted to another certificate", func() request {
			r := macRequest(macA)
			r.recipients = []*x509.Certificate{selfSigned(t, key("rsa2048b"))}
			return r
		}(), smscep.BadMessageCheck, "bad_envelope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.certCounts(t)
			req := tc.req.build(t, e)
			status, body := e.post(t, req.raw)
			if status != http.StatusOK {
				t.Fatalf("status %d %s, want 200", status, body)
			}
			msg := certRep(t, e, req, body)
			if tc.info == "" {
				if msg.PKIStatus != smscep.SUCCESS {
					t.Fatalf("status %s failInfo %s, want SUCCESS", msg.PKIStatus, msg.FailInfo)
				}
				if err := msg.DecryptPKIEnvelope(req.signer, req.key); err != nil {
					t.Fatalf("decrypting the certificate: %v", err)
				}
				c := msg.CertRepMessage.Certificate
				if got, err := ca.HardwareUUIDFromCert(c); err != nil || got != macA {
					t.Errorf("certificate names %q (%v), want %s", got, err, macA)
				}
				if pk, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || !pk.Equal(tc.req.csrKey.Public()) {
					t.Error("certificate is not for the CSR's key")
				}
				if _, err := e.store.GetBrowserCert(t.Context(), ca.SerialHex(c)); err != nil {
					t.Errorf("not recorded: %v", err)
				}
				return
			}
			if msg.PKIStatus != smscep.FAILURE || msg.FailInfo != tc.info {
				t.Errorf("status %s failInfo %q, want FAILURE %s", msg.PKIStatus, msg.FailInfo, tc.info)
			}
			if len(msg.Raw) > 0 {
				if p7, err := pkcs7.Parse(body); err == nil && len(p7.Content) != 0 {
					t.Errorf("a FAILURE carries %d bytes of content", len(p7.Content))
				}
			}
			if after := e.certCounts(t); !maps.Equal(before, after) {
				t.Errorf("browser certificates changed: %v -> %v", before, after)
			}
			if got := e.metrics.lastRefusal(); got != tc.reason {
				t.Errorf("reason = %q, want %q", got, tc.reason)
			}
		})
	}
}

// TestBrokenMessages: what a CertRep can be addressed to gets a FAILURE;
// what cannot (no transaction, no nonce) gets an HTTP error. Nothing is issued.
func TestBrokenMessages(t *testing.T) {
	e := newEnv(t)
	valid := macRequest(macA).build(t, e)

	// A properly signed SCEP message whose content is garbage, not an
	// envelope.
	garbageEnvelope := func() []byte {
		sd, err := pkcs7.NewSignedData(randBytes(t, 300))
		if err != nil {
			t.Fatal(err)
		}
		attrs := []pkcs7.Attribute{
			{Type: asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 7}, Value: "tid-garbage"},
			{Type: asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 2}, Value: "19"},
			{Type: asn1.ObjectIdentifier{2, 16, 840, 1, 113733, 1, 9, 5}, Value: randBytes(t, 16)},
		}
		k := key("rsa2048")
		if err := sd.AddSigner(selfSigned(t, k), k, pkcs7.SignerInfoConfig{ExtraSignedAttributes: attrs}); err != nil {
			t.Fatal(err)
		}
		b, err := sd.Finish()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	tampered := bytes.Clone(valid.raw)
	tampered[len(tampered)-1] ^= 0x01 // in the signature, the last field of the only SignerInfo

	t.Run("CertRep FAILURE", func(t *testing.T) {
		for name, tc := range map[string]struct {
			body   []byte
			reason string
		}{
			"tampered signature":          {tampered, "bad_signature"},
			"signed garbage, no envelope": {garbageEnvelope, "bad_envelope"},
		} {
			t.Run(name, func(t *testing.T) {
				before := e.certCounts(t)
				status, body := e.post(t, tc.body)
				if status != http.StatusOK {
					t.Fatalf("status %d, want 200 with a CertRep", status)
				}
				msg, err := smscep.ParsePKIMessage(body)
				if err != nil {
					t.Fatalf("reply: %v", err)
				}
				if msg.PKIStatus != smscep.FAILURE || msg.FailInfo != smscep.BadMessageCheck {
					t.Errorf("status %s failInfo %q, want FAILURE badMessageCheck", msg.PKIStatus, msg.FailInfo)
				}
				if got := e.metrics.lastRefusal(); got != tc.reason {
					t.Errorf("reason = %q, want %q", got, tc.reason)
				}
				if !maps.Equal(before, e.certCounts(t)) {
					t.Error("browser certificates changed")
				}
			})
		}
	})

	t.Run("HTTP error", func(t *testing.T) {
		for name, tc := range map[string]struct {
			body   []byte
			status int
			reason string
		}{
			"random bytes": {randBytes(t, 512), http.StatusBadRequest, "malformed_message"},
			"empty":        {nil, http.StatusBadRequest, "malformed_message"},
			"truncated":    {valid.raw[:len(valid.raw)/2], http.StatusBadRequest, "malformed_message"},
			"oversized":    {append(bytes.Clone(valid.raw), make([]byte, scep.MaxMessageSize)...), http.StatusRequestEntityTooLarge, "oversized"},
			"PEM, not DER": {[]byte("-----BEGIN PKCS7-----\nMIIB\n-----END PKCS7-----\n"), http.StatusBadRequest, "malformed_message"},
		} {
			t.Run(name, func(t *testing.T) {
				before := e.certCounts(t)
				status, _ := e.post(t, tc.body)
				if status != tc.status {
					t.Errorf("status %d, want %d", status, tc.status)
				}
				if got := e.metrics.lastRefusal(); got != tc.reason {
					t.Errorf("reason = %q, want %q", got, tc.reason)
				}
				if !maps.Equal(before, e.certCounts(t)) {
					t.Error("browser certificates changed")
				}
			})
		}
	})
}

func (e *testEnv) get(t testing.TB, query string) (*http.Response, []byte) {
	t.Helper()
	resp, err := e.client().Get(e.url() + "?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestGetOperations(t *testing.T) {
	e := newEnv(t)

	t.Run("GetCACaps", func(t *testing.T) {
		resp, body := e.get(t, "operation=GetCACaps")
		if resp.StatusCode != http.StatusOK || string(body) != "POSTPKIOperation\nSHA-256\nAES\nSCEPStandard\n" {
			t.Errorf("%d %q", resp.StatusCode, body)
		}
		if strings.Contains(string(body), "Renewal") {
			t.Error("claims Renewal, which is refused")
		}
	})

	t.Run("GetCACert", func(t *testing.T) {
		resp, body := e.get(t, "operation=GetCACert&message=clearance")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-x509-ca-ra-cert" {
			t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		certs, err := smscep.CACerts(body)
		if err != nil {
			t.Fatal(err)
		}
		want := []*x509.Certificate{e.ra.Cert, e.ca.DeviceCA(), e.ca.Root()}
		if len(certs) != len(want) {
			t.Fatalf("%d certificates, want RA, device CA, root", len(certs))
		}
		for i := range want {
			if !certs[i].Equal(want[i]) {
				t.Errorf("certificate %d is %q, want %q", i, certs[i].Subject, want[i].Subject)
			}
		}
		// The one an RSA-only client can encrypt to is the RA.
		if _, ok := certs[0].PublicKey.(*rsa.PublicKey); !ok || certs[0].KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
			t.Error("the RA is not an RSA key-encipherment certificate")
		}
	})

	t.Run("PKIOperation by GET", func(t *testing.T) {
		r := macRequest(macRate)
		req := r.build(t, e)
		resp, body := e.get(t, "operation=PKIOperation&message="+url.QueryEscape(base64.StdEncoding.EncodeToString(req.raw)))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d %s", resp.StatusCode, body)
		}
		if msg := certRep(t, e, req, body); msg.PKIStatus != smscep.SUCCESS {
			t.Errorf("status %s failInfo %s, want SUCCESS", msg.PKIStatus, msg.FailInfo)
		}
		// The '+' of base64 unescaped, as some clients send it.
		req = r.build(t, e)
		resp, body = e.get(t, "operation=PKIOperation&message="+base64.StdEncoding.EncodeToString(req.raw))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("unescaped: status %d %s", resp.StatusCode, body)
		}
		if msg := certRep(t, e, req, body); msg.PKIStatus != smscep.SUCCESS {
			t.Errorf("unescaped: status %s failInfo %s, want SUCCESS", msg.PKIStatus, msg.FailInfo)
		}
	})

	for name, tc := range map[string]struct {
		query  string
		status int
	}{
		"oversized message":  {"operation=PKIOperation&message=" + strings.Repeat("A", base64.StdEncoding.EncodedLen(scep.MaxMessageSize)+68), http.StatusRequestEntityTooLarge},
		"oversized query":    {"operation=PKIOperation&message=" + strings.Repeat("%2B", scep.MaxMessageSize*2), http.StatusRequestURITooLong},
		"message not base64": {"operation=PKIOperation&message=***", http.StatusBadRequest},
		"unknown operation":  {"operation=GetNextCACert", http.StatusBadRequest},
		"no operation":       {"", http.StatusBadRequest},
	} {
		t.Run(name, func(t *testing.T) {
			if resp, _ := e.get(t, tc.query); resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}

	t.Run("other methods", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPut, e.url()+"?operation=GetCACaps", nil)
		resp, err := e.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("PUT: status %d, want 405", resp.StatusCode)
		}
	})
}

func TestNewRefusesBadOptions(t *testing.T) {
	e := newEnv(t)
	good := scep.Options{CA: e.ca, RA: e.ra, Store: e.store, Lifetime: time.Hour, RateLimit: 1}
	for name, mutate := range map[string]func(*scep.Options){
		"no CA":         func(o *scep.Options) { o.CA = nil },
		"no RA":         func(o *scep.Options) { o.RA = nil },
		"no store":      func(o *scep.Options) { o.Store = nil },
		"no lifetime":   func(o *scep.Options) { o.Lifetime = 0 },
		"no rate limit": func(o *scep.Options) { o.RateLimit = 0 },
	} {
		o := good
		mutate(&o)
		if _, err := scep.New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := scep.New(good); err != nil {
		t.Errorf("good options: %v", err)
	}
}

// TestRefusalsLoggedSampled: anyone who reaches the listener can be
// refused as often as the rate limit lets them, so a flood of one reason
// is one warning line (counting the others), while each refusal is still
// counted in the metrics and a refusal of another reason is still logged.
func TestRefusalsLoggedSampled(t *testing.T) {
	e := newEnv(t)
	const n = 20
	for range n {
		if status, _ := e.post(t, []byte("not a PKCS#7 message")); status != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", status)
		}
	}
	e.metrics.mu.Lock()
	got := e.metrics.refused["malformed_message"]
	e.metrics.mu.Unlock()
	if got != n {
		t.Errorf("%d refusals counted, want %d", got, n)
	}
	resp, _ := e.get(t, "operation=Nope")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown operation: status %d, want 400", resp.StatusCode)
	}
	logs := e.logs.String()
	if got := strings.Count(logs, `"reason":"malformed_message"`); got != 1 {
		t.Errorf("%d warning lines for %d malformed messages, want 1:\n%s", got, n, logs)
	}
	if !strings.Contains(logs, `"reason":"unknown_operation"`) {
		t.Errorf("a refusal of another reason was not logged:\n%s", logs)
	}
}
