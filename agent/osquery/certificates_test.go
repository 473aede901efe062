package osquery_test

import (
	"context"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/clearance/clearance/agent/osquery"
	"github.com/clearance/clearance/internal/osquerysim"
	"github.com/clearance/clearance/internal/testkit/testpki"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
)

// ca is a throwaway CA that issues leaf certificates.
type ca struct{ *testpki.CA }

func newCA(t *testing.T, cn string) ca {
	t.Helper()
	return ca{testpki.NewCA(t, testpki.CN(cn), testpki.Serial(1),
		testpki.Template(func(c *x509.Certificate) { c.Subject.Organization = []string{"Clearance"} }))}
}

// leaf issues a client certificate (an EC key keeps the test fast; the
// table reads serials, fingerprints and key ids the same for any key).
func (a ca) leaf(t *testing.T, serial int64, notAfter time.Time) *x509.Certificate {
	t.Helper()
	return a.Issue(t, testpki.CN("5A1C7E2B-9D4F-4B8A-A3E6-0C2D71F9B846"), testpki.Serial(serial),
		testpki.Valid(time.Now().Add(-time.Minute), notAfter), testpki.ClientAuth()).Cert
}

func fingerprint(c *x509.Certificate) string {
	sum := sha1.Sum(c.Raw)
	return hex.EncodeToString(sum[:])
}

const (
	aliceLogin = "/Users/alice/Library/Keychains/login.keychain-db"
	bobLogin   = "/Users/bob/Library/Keychains/login.keychain-db"
	systemKC   = "/Library/Keychains/System.keychain"
)

// TestKeychainCertificates serves certificates as osqueryd renders them
// and reads them through osquery-go, as the agent does.
func TestKeychainCertificates(t *testing.T) {
	device := newCA(t, "Clearance Device CA")
	other := newCA(t, "Some Other CA")
	base := time.Date(2027, 7, 1, 0, 0, 0, 0, time.UTC)

	// 0x0a1b: osquery writes "0A1B"; the verifier writes "a1b".
	mine := device.leaf(t, 0x0a1b, base.Add(48*time.Hour))
	older := device.leaf(t, 0x2c, base)
	rows := []osquerysim.Row{
		osquerysim.CertificateRow(device.Cert, systemKC),
		osquerysim.CertificateRow(mine, aliceLogin),
		osquerysim.CertificateRow(older, bobLogin),
		// The same certificate listed twice by one keychain counts once.
		osquerysim.CertificateRow(older, bobLogin),
		// Issued by the device CA but outside users' keychains.
		osquerysim.CertificateRow(device.leaf(t, 0x3d, base.Add(72*time.Hour)), systemKC),
		// In a user keychain but from another CA.
		osquerysim.CertificateRow(other.leaf(t, 0x4e, base.Add(96*time.Hour)), aliceLogin),
	}
	f, err := osquerysim.LoadFixture("compliant-mac")
	if err != nil {
		t.Fatal(err)
	}
	f.Tables["certificates"] = rows
	socket := filepath.Join(shortDir(t), "osquery.em")
	sim, _ := serveSim(t, "compliant-mac", socket)
	if err := sim.SetState(f); err != nil {
		t.Fatal(err)
	}
	r := attach(t, socket)

	got, err := osquery.KeychainCertificates(context.Background(), r, device.Cert.SubjectKeyId)
	if err != nil {
		t.Fatal(err)
	}
	want := []*agentv1.KeychainCertificate{
		{Serial: "a1b", Sha1: fingerprint(mine), Path: aliceLogin, NotValidAfter: timestamppb.New(base.Add(48 * time.Hour)), Issuer: "Clearance Device CA"},
		{Serial: "2c", Sha1: fingerprint(older), Path: bobLogin, NotValidAfter: timestamppb.New(base), Issuer: "Clearance Device CA"},
	}
	if !equalCerts(got, want) {
		t.Errorf("KeychainCertificates =\n%v\nwant\n%v", got, want)
	}
	// The serial is the one the verifier records for the certificate.
	if got[0].GetSerial() != mine.SerialNumber.Text(16) {
		t.Errorf("serial %q, verifier writes %q", got[0].GetSerial(), mine.SerialNumber.Text(16))
	}

	// Another CA's key id finds only its own certificate.
	theirs, err := osquery.KeychainCertificates(context.Background(), r, other.Cert.SubjectKeyId)
	if err != nil || len(theirs) != 1 || theirs[0].GetSerial() != "4e" || theirs[0].GetIssuer() != "Some Other CA" {
		t.Errorf("other CA: %v, %v", theirs, err)
	}
}

// The built-in Mac holds one Clearance certificate in alice's login keychain.
func TestKeychainCertificatesBuiltinFixture(t *testing.T) {
	socket := filepath.Join(shortDir(t), "osquery.em")
	serveSim(t, "compliant-mac", socket)
	keyID, _ := hex.DecodeString("bca8f45552b6744879a05f175e1b6a6a3a47915f")
	got, err := osquery.KeychainCertificates(context.Background(), attach(t, socket), keyID)
	if err != nil {
		t.Fatal(err)
	}
	want := []*agentv1.KeychainCertificate{{
		Serial: "710f6b8f43f8b41c", Sha1: "cb34111958d52ef6e58766de88bbbab202e85717", Path: aliceLogin,
		NotValidAfter: timestamppb.New(time.Unix(1816071243, 0)), Issuer: "Clearance Device CA",
	}}
	if !equalCerts(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestKeychainCertificatesBounded(t *testing.T) {
	device := newCA(t, "Clearance Device CA")
	base := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	var rows []osquerysim.Row
	for i := range 40 {
		path := fmt.Sprintf("/Users/u%02d/Library/Keychains/login.keychain-db", i)
		rows = append(rows, osquerysim.CertificateRow(device.leaf(t, int64(100+i), base.Add(time.Duration(i)*time.Hour)), path))
	}
	got := listedFull(t, device, rows)
	// Newest expiry first: the 32 latest of the 40.
	for i, c := range got {
		if want := base.Add(time.Duration(39-i) * time.Hour); !c.GetNotValidAfter().AsTime().Equal(want) {
			t.Fatalf("certificates[%d] expires %s, want %s", i, c.GetNotValidAfter().AsTime(), want)
		}
	}
}

// listedFull lists rows' certificates of device's issuing, which must fill
// the report's bound.
func listedFull(t *testing.T, device ca, rows []osquerysim.Row) []*agentv1.KeychainCertificate {
	t.Helper()
	got, err := osquery.KeychainCertificates(context.Background(), &rowsQuerier{rows: simRows(t, rows)}, device.Cert.SubjectKeyId)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != osquery.MaxKeychainCertificates {
		t.Fatalf("%d certificates, want %d", len(got), osquery.MaxKeychainCertificates)
	}
	return got
}

// One user's keychain full of certificates naming the device CA (anyone can
// make one: the table's authority key id is whatever the certificate says)
// does not push another user's out: the users take turns, each newest
// first.
func TestKeychainCertificatesUsersTakeTurns(t *testing.T) {
	device := newCA(t, "Clearance Device CA")
	base := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	// Mallory's 40, expiring long after Alice's and Bob's.
	rows := []osquerysim.Row{
		osquerysim.CertificateRow(device.leaf(t, 1, base), aliceLogin),
		osquerysim.CertificateRow(device.leaf(t, 2, base.Add(time.Hour)), bobLogin),
		osquerysim.CertificateRow(device.leaf(t, 3, base.Add(-time.Hour)), bobLogin),
	}
	for i := range 40 {
		rows = append(rows, osquerysim.CertificateRow(device.leaf(t, int64(100+i), base.AddDate(70, 0, i)), "/Users/mallory/Library/Keychains/login.keychain-db"))
	}
	got := listedFull(t, device, rows)
	// Round one: each user's newest, the users in the order of those.
	for i, want := range []string{"/Users/mallory/", bobLogin, aliceLogin} {
		if p := got[i].GetPath(); p[:len(want)] != want {
			t.Errorf("certificates[%d] in %s, want %s", i, p, want)
		}
	}
	if got[1].GetSerial() != "2" || got[2].GetSerial() != "1" || got[4].GetSerial() != "3" {
		t.Errorf("Bob's and Alice's certificates: %s, %s, %s; want serials 2, 1 and then Bob's 3 in round two", got[1].GetSerial(), got[2].GetSerial(), got[4].GetSerial())
	}
	mallory := 0
	for _, c := range got {
		if c.GetPath()[:len("/Users/mallory/")] == "/Users/mallory/" {
			mallory++
		}
	}
	if mallory != osquery.MaxKeychainCertificates-3 {
		t.Errorf("%d of Mallory's, want the %d places left", mallory, osquery.MaxKeychainCertificates-3)
	}
}

// Rows osquery could produce but a report cannot carry are left out, so
// the verifier never refuses the whole report over one of them.
func TestKeychainCertificatesSkipsUnreportable(t *testing.T) {
	keyID := []byte{0xbc, 0xa8}
	good := map[string]string{
		"serial": "00FF", "sha1": "CB:34:11:19:58:D5:2E:F6:E5:87:66:DE:88:BB:BA:B2:02:E8:57:17",
		"path": aliceLogin, "not_valid_after": "", "issuer": "/O=Clearance/CN=Clearance Device CA",
		"issuer2": "", "authority_key_id": "BC:A8",
	}
	with := func(k, v string) map[string]string {
		row := map[string]string{}
		for kk, vv := range good {
			row[kk] = vv
		}
		row[k] = v
		return row
	}
	long := make([]byte, 2000)
	for i := range long {
		long[i] = 'a'
	}
	q := &rowsQuerier{rows: []map[string]string{
		good,
		with("serial", ""),
		with("serial", "-01"),
		with("serial", "not hex"),
		with("serial", string(long[:65])),
		with("sha1", "cb34"),
		with("path", "/Users/"+string(long)),
		with("path", "/Users/\xff/Library/Keychains/login.keychain-db"),
	}}
	got, err := osquery.KeychainCertificates(context.Background(), q, keyID)
	if err != nil {
		t.Fatal(err)
	}
	// Colon-separated, upper-case hex is normalized; a missing expiry stays unset.
	want := []*agentv1.KeychainCertificate{{Serial: "ff", Sha1: "cb34111958d52ef6e58766de88bbbab202e85717", Path: aliceLogin, Issuer: "Clearance Device CA"}}
	if !equalCerts(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestKeychainCertificatesQueryFails(t *testing.T) {
	q := &rowsQuerier{err: &osquery.QueryError{Code: 1, Message: "no such table: certificates"}}
	got, err := osquery.KeychainCertificates(context.Background(), q, []byte{1})
	var qe *osquery.QueryError
	if !errors.As(err, &qe) || got != nil {
		t.Errorf("got %v, %v; want osquery's error", got, err)
	}
	// No key id to match: nothing is asked.
	if got, err := osquery.KeychainCertificates(context.Background(), q, nil); got != nil || err != nil {
		t.Errorf("without a key id: %v, %v", got, err)
	}
}

func TestIssuerCommonName(t *testing.T) {
	device := newCA(t, "Clearance Device CA")
	tests := []struct {
		issuer2, issuer, want string
	}{
		{"O = Clearance, CN = Clearance Device CA", "", "Clearance Device CA"},
		{`O = "Acme, Inc.", CN = "Acme CA, East"`, "", "Acme CA, East"},
		{`CN = Caf\C3\A9 CA`, "", "Café CA"},
		{"O = Clearance", "/O=Clearance", ""},
		{"", "/C=US/O=Clearance/CN=Old Style CA", "Old Style CA"},
	}
	for _, tc := range tests {
		row := osquerysim.CertificateRow(device.leaf(t, 7, time.Now().Add(time.Hour)), aliceLogin)
		row["issuer2"], row["issuer"] = tc.issuer2, tc.issuer
		got, err := osquery.KeychainCertificates(context.Background(), &rowsQuerier{rows: simRows(t, []osquerysim.Row{row})}, device.Cert.SubjectKeyId)
		if err != nil || len(got) != 1 {
			t.Fatalf("%q: %v, %v", tc.issuer2, got, err)
		}
		if got[0].GetIssuer() != tc.want {
			t.Errorf("issuer of %q / %q = %q, want %q", tc.issuer2, tc.issuer, got[0].GetIssuer(), tc.want)
		}
	}
}

// rowsQuerier answers CertificatesQuery with fixed rows.
type rowsQuerier struct {
	rows []map[string]string
	err  error
}

func (q *rowsQuerier) Query(_ context.Context, sql string) ([]map[string]string, error) {
	if sql != osquery.CertificatesQuery {
		return nil, &osquery.QueryError{Code: 1, Message: "unexpected query"}
	}
	return q.rows, q.err
}

// simRows runs CertificatesQuery over rows in the stand-in, so the rows
// are exactly what osquery's columns give back.
func simRows(t *testing.T, rows []osquerysim.Row) []map[string]string {
	t.Helper()
	sim, err := osquerysim.New(osquerysim.Fixture{Tables: map[string][]osquerysim.Row{"certificates": rows}})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	out, err := sim.Query(context.Background(), osquery.CertificatesQuery)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalCerts(a, b []*agentv1.KeychainCertificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
