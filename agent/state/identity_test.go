package state

import (
	"bytes"
	"crypto/x509"
	"testing"

	"github.com/clearance/clearance/internal/testkit/testpki"
)

func TestDeviceCAKeyID(t *testing.T) {
	t.Parallel()
	rootCA := testpki.NewCA(t, testpki.CN("root"))
	deviceCA := rootCA.NewIntermediate(t, testpki.CN("device CA"))
	leaf := deviceCA.Issue(t, testpki.CN("dev-1")).Cert
	root := rootCA.Cert
	// The chain as enrollment stores it: nearest first, ending with the root.
	id := &Identity{Cert: leaf, Chain: []*x509.Certificate{deviceCA.Cert, root}}
	if got := id.DeviceCAKeyID(); len(got) == 0 || !bytes.Equal(got, deviceCA.Cert.SubjectKeyId) {
		t.Errorf("DeviceCAKeyID = %x, want the device CA's %x", got, deviceCA.Cert.SubjectKeyId)
	}
	// The root alone did not issue the device certificate.
	id.Chain = []*x509.Certificate{root}
	if got := id.DeviceCAKeyID(); !bytes.Equal(got, leaf.AuthorityKeyId) {
		t.Errorf("without the device CA = %x, want the certificate's authority key id %x", got, leaf.AuthorityKeyId)
	}
}

// An identity stored with an empty chain (a leaf the root signed, as an
// agent stored it before it kept only the verified path) still loads: it
// must not keep the agent from starting.
func TestEmptyChainLoads(t *testing.T) {
	t.Parallel()
	rootCA := testpki.NewCA(t, testpki.CN("root"))
	leaf := rootCA.Issue(t, testpki.CN("dev-1")).Cert
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SaveIdentity(&Identity{DeviceID: "dev-1", Verifier: "v:443", Cert: leaf}); err != nil {
		t.Fatal(err)
	}
	id, err := d.LoadIdentity()
	if err != nil {
		t.Fatalf("LoadIdentity with an empty chain.pem: %v", err)
	}
	if !id.Cert.Equal(leaf) || len(id.Chain) != 0 {
		t.Errorf("loaded %v with %d chain certificates, want the leaf and none", id.Cert.Subject, len(id.Chain))
	}
}
