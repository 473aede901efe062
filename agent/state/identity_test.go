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
