package idp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	id, err := LoadOrCreate(context.Background(), dir, 0, "", tNow)
	if err != nil || !id.Created {
		t.Fatalf("%+v %v", id, err)
	}
	if n := id.Signer.Public().(*rsa.PublicKey).N.BitLen(); n != 2048 {
		t.Errorf("key of %d bits", n)
	}
	st, _ := os.Stat(filepath.Join(dir, KeyFile))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v", st.Mode().Perm())
	}
	again, err := LoadOrCreate(context.Background(), dir, 3072, "", tNow)
	if err != nil || again.Created || !again.Cert.Equal(id.Cert) {
		t.Fatalf("restart: %v created=%v", err, again.Created)
	}
	if !strings.Contains(id.Fingerprint(), ":") || len(id.Fingerprint()) != 95 {
		t.Errorf("fingerprint %q", id.Fingerprint())
	}

	// 3072 on request.
	id3, err := LoadOrCreate(context.Background(), t.TempDir(), 3072, "", tNow)
	if err != nil || id3.Signer.Public().(*rsa.PublicKey).N.BitLen() != 3072 {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(context.Background(), t.TempDir(), 1024, "", tNow); err == nil {
		t.Error("1024-bit key created")
	}

	// A readable key is refused.
	os.Chmod(filepath.Join(dir, KeyFile), 0o644)
	if _, err := LoadOrCreate(context.Background(), dir, 0, "", tNow); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: %v", err)
	}
	os.Chmod(filepath.Join(dir, KeyFile), 0o600)

	// A certificate without its key, or for another key, is refused rather
	// than silently replaced (Okta holds the old one).
	lone := t.TempDir()
	os.WriteFile(filepath.Join(lone, CertFile), id.CertPEM, 0o644)
	if _, err := LoadOrCreate(context.Background(), lone, 0, "", tNow); err == nil {
		t.Error("cert without key accepted")
	}
	other := t.TempDir()
	LoadOrCreate(context.Background(), other, 0, "", tNow)
	os.WriteFile(filepath.Join(other, CertFile), id.CertPEM, 0o644)
	if _, err := LoadOrCreate(context.Background(), other, 0, "", tNow); err == nil || !strings.Contains(err.Error(), "not the certificate") {
		t.Errorf("mismatched cert: %v", err)
	}

	// An EC key is refused: Okta takes RSA only.
	ec := t.TempDir()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	os.WriteFile(filepath.Join(ec, KeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	if _, err := LoadOrCreate(context.Background(), ec, 0, "", tNow); err == nil || !strings.Contains(err.Error(), "RSA") {
		t.Errorf("EC key: %v", err)
	}
}

// TestLoadOrCreateKMS: a softkms URI names the key; the certificate is made for it.
func TestLoadOrCreateKMS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	keyPath := filepath.Join(t.TempDir(), "kms.pem")
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	id, err := LoadOrCreate(context.Background(), dir, 0, "softkms:path="+keyPath, tNow)
	if err != nil {
		t.Fatal(err)
	}
	if !id.Cert.PublicKey.(*rsa.PublicKey).Equal(&k.PublicKey) {
		t.Error("certificate is not for the KMS key")
	}
	if _, err := os.Stat(filepath.Join(dir, KeyFile)); !os.IsNotExist(err) {
		t.Error("a key file was written although the key is in the KMS")
	}
}
