package state

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

func TestDeviceCAKeyID(t *testing.T) {
	t.Parallel()
	mk := func(cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, ca bool) (*x509.Certificate, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
			BasicConstraintsValid: true, IsCA: ca,
		}
		if ca {
			tmpl.KeyUsage = x509.KeyUsageCertSign
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, key
	}
	root, rootKey := mk("root", nil, nil, true)
	deviceCA, deviceKey := mk("device CA", root, rootKey, true)
	leaf, _ := mk("dev-1", deviceCA, deviceKey, false)

	// The chain as enrollment stores it: nearest first, ending with the root.
	id := &Identity{Cert: leaf, Chain: []*x509.Certificate{deviceCA, root}}
	if got := id.DeviceCAKeyID(); len(got) == 0 || !bytes.Equal(got, deviceCA.SubjectKeyId) {
		t.Errorf("DeviceCAKeyID = %x, want the device CA's %x", got, deviceCA.SubjectKeyId)
	}
	// The root alone did not issue the device certificate.
	id.Chain = []*x509.Certificate{root}
	if got := id.DeviceCAKeyID(); !bytes.Equal(got, leaf.AuthorityKeyId) {
		t.Errorf("without the device CA = %x, want the certificate's authority key id %x", got, leaf.AuthorityKeyId)
	}
}
