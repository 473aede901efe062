package osquerysim_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/osquerysim"
	"github.com/clearance/clearance/internal/testkit/testpki"
)

// testCA is a throwaway device CA under a throwaway root.
type testCA struct {
	root, ca *x509.Certificate
	issuer   *testpki.CA
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	root := testpki.NewCA(t, testpki.CN("Clearance Root CA"), testpki.Serial(1), testpki.Key(rootKey))
	ca := root.NewIntermediate(t, testpki.CN("Clearance Device CA"), testpki.Serial(0x1d),
		testpki.Template(func(c *x509.Certificate) { c.MaxPathLenZero = true }))
	return &testCA{root: root.Cert, ca: ca.Cert, issuer: ca}
}

// browserCert is what the device CA issues over SCEP: an RSA key from
// macOS, the hardware UUID as CN and SAN URI, client authentication.
func (a *testCA) browserCert(t *testing.T, serial *big.Int, notAfter time.Time) *x509.Certificate {
	t.Helper()
	const hw = "5A1C7E2B-9D4F-4B8A-A3E6-0C2D71F9B846"
	return a.issuer.Issue(t, testpki.MacBrowser(hw), testpki.Valid(time.Now().Add(-time.Minute), notAfter),
		testpki.Template(func(c *x509.Certificate) { c.SerialNumber = serial })).Cert
}

func TestCertificateRow(t *testing.T) {
	a := newTestCA(t)
	notAfter := time.Unix(1816071243, 0)
	leaf := a.browserCert(t, big.NewInt(0x0a1b2c), notAfter)
	const login = "/Users/alice/Library/Keychains/login.keychain-db"
	sum := sha1.Sum(leaf.Raw)

	got := osquerysim.CertificateRow(leaf, login)
	want := osquerysim.Row{
		"common_name":       "5A1C7E2B-9D4F-4B8A-A3E6-0C2D71F9B846",
		"subject":           "/CN=5A1C7E2B-9D4F-4B8A-A3E6-0C2D71F9B846",
		"subject2":          "CN = 5A1C7E2B-9D4F-4B8A-A3E6-0C2D71F9B846",
		"issuer":            "/CN=Clearance Device CA",
		"issuer2":           "CN = Clearance Device CA",
		"ca":                "0",
		"self_signed":       "0",
		"not_valid_before":  strconv.FormatInt(leaf.NotBefore.Unix(), 10),
		"not_valid_after":   "1816071243",
		"signing_algorithm": "ecdsa-with-SHA256",
		"key_algorithm":     "rsaEncryption",
		"key_strength":      "2048",
		"key_usage":         "Key Encipherment, Digital Signature",
		"subject_key_id":    hex.EncodeToString(leaf.SubjectKeyId),
		"authority_key_id":  hex.EncodeToString(a.ca.SubjectKeyId),
		"sha1":              hex.EncodeToString(sum[:]),
		"path":              login,
		// BN_bn2hex: whole bytes, upper case, so the leading zero stays.
		"serial": "0A1B2C",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("leaf row:\n got %v\nwant %v", got, want)
	}
	if len(a.ca.SubjectKeyId) == 0 {
		t.Fatal("device CA has no subject key id")
	}

	root := osquerysim.CertificateRow(a.root, "/Library/Keychains/System.keychain")
	if root["ca"] != "1" || root["self_signed"] != "1" || root["key_strength"] != "secp384r1" || root["key_usage"] != "CRL Sign, Key Cert Sign" || root["serial"] != "01" {
		t.Errorf("root row = %v", root)
	}
	ca := osquerysim.CertificateRow(a.ca, "/Library/Keychains/System.keychain")
	if ca["ca"] != "1" || ca["self_signed"] != "0" || ca["key_algorithm"] != "id-ecPublicKey" || ca["key_strength"] != "prime256v1" || ca["serial"] != "1D" {
		t.Errorf("device CA row = %v", ca)
	}
	// Every column is one the table has: the row loads as a fixture.
	f := osquerysim.Fixture{Tables: map[string][]osquerysim.Row{"certificates": {got, root, ca}}}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestCertificateRowNames(t *testing.T) {
	name := pkix.Name{Country: []string{"US"}, Organization: []string{"Acme, Inc."}, OrganizationalUnit: []string{"IT"}, CommonName: "Acme Device CA"}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0x80), Subject: name,
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
	}
	c := testpki.Issue(t, tmpl, tmpl, key.Public(), key)
	row := osquerysim.CertificateRow(c, "/tmp/x.pem")
	if want := "/C=US/O=Acme, Inc./OU=IT/CN=Acme Device CA"; row["issuer"] != want {
		t.Errorf("issuer = %q, want %q", row["issuer"], want)
	}
	if want := `C = US, O = "Acme, Inc.", OU = IT, CN = Acme Device CA`; row["issuer2"] != want {
		t.Errorf("issuer2 = %q, want %q", row["issuer2"], want)
	}
	// No key usage extension: osquery leaves key_usage empty; no basic
	// constraints on a v3 certificate: not a CA.
	if row["key_usage"] != "" || row["ca"] != "0" || row["serial"] != "80" {
		t.Errorf("row = %v", row)
	}
}

// TestCertificatesSeenByClient serves certificates built from real
// certificates and reads them back through osquery-go's client with the
// query the agent runs, while the host's keychains change.
func TestCertificatesSeenByClient(t *testing.T) {
	a := newTestCA(t)
	r := start(t, "compliant-mac")
	c := client(t, r.socket)
	const q = "SELECT serial, sha1, path, not_valid_after, issuer, issuer2, authority_key_id FROM certificates WHERE path LIKE '/Users/%/Library/Keychains/%'"
	rows := func() []map[string]string {
		t.Helper()
		out, err := c.QueryRows(q)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	// The built-in Mac has one certificate in alice's login keychain.
	if got := rows(); len(got) != 1 || got[0]["serial"] != "710F6B8F43F8B41C" || got[0]["not_valid_after"] != "1816071243" {
		t.Fatalf("compliant-mac user certificates = %v", got)
	}

	// 1. A browser certificate arrives in bob's login keychain.
	leaf := a.browserCert(t, big.NewInt(0x0fedcba987654321), time.Unix(1816071243, 0))
	const bob = "/Users/bob/Library/Keychains/login.keychain-db"
	f := r.sim.Fixture()
	f.Tables = map[string][]osquerysim.Row{
		"certificates": {
			osquerysim.CertificateRow(a.root, "/Library/Keychains/System.keychain"),
			osquerysim.CertificateRow(leaf, bob),
		},
		"system_info": f.Tables["system_info"],
	}
	if err := r.sim.SetState(f); err != nil {
		t.Fatal(err)
	}
	got := rows()
	sum := sha1.Sum(leaf.Raw)
	want := []map[string]string{{
		"serial":           "0FEDCBA987654321",
		"sha1":             hex.EncodeToString(sum[:]),
		"path":             bob,
		"not_valid_after":  "1816071243",
		"issuer":           "/CN=Clearance Device CA",
		"issuer2":          "CN = Clearance Device CA",
		"authority_key_id": hex.EncodeToString(a.ca.SubjectKeyId),
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after install:\n got %v\nwant %v", got, want)
	}
	// authority_key_id compares without case, as in osquery's schema.
	upper := "SELECT 1 FROM certificates WHERE authority_key_id = '" + strings.ToUpper(hex.EncodeToString(a.ca.SubjectKeyId)) + "'"
	if n, err := c.QueryRows(upper); err != nil || len(n) != 1 {
		t.Errorf("nocase authority_key_id: %v, %v", n, err)
	}

	// 2. The user deletes it: the next query no longer sees it.
	f.Tables["certificates"] = f.Tables["certificates"][:1]
	if err := r.sim.SetState(f); err != nil {
		t.Fatal(err)
	}
	if got := rows(); len(got) != 0 {
		t.Fatalf("after removal = %v", got)
	}
}
