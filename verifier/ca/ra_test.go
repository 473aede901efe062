package ca

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestLoadOrCreateRA(t *testing.T) {
	a, dir := newAuthority(t)

	// 1. First use: an RSA 2048 key (0600) and a certificate from the device CA.
	ra, reason, err := a.LoadOrCreateRA()
	if err != nil {
		t.Fatalf("LoadOrCreateRA: %v", err)
	}
	if reason != ServerCertCreated {
		t.Errorf("reason = %q, want %q", reason, ServerCertCreated)
	}
	if ra.Key.N.BitLen() != RAKeyBits {
		t.Errorf("key bits = %d, want %d", ra.Key.N.BitLen(), RAKeyBits)
	}
	if err := ra.Cert.CheckSignatureFrom(a.DeviceCA()); err != nil {
		t.Errorf("RA certificate not issued by the device CA: %v", err)
	}
	if pub, ok := ra.Cert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(ra.Key.Public()) {
		t.Error("RA certificate is not for the RA key")
	}
	const usage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	if ra.Cert.KeyUsage != usage || ra.Cert.IsCA {
		t.Errorf("key usage = %v, IsCA = %v; want digitalSignature|keyEncipherment, not a CA", ra.Cert.KeyUsage, ra.Cert.IsCA)
	}
	if !ra.Cert.NotAfter.Equal(a.DeviceCA().NotAfter) {
		t.Errorf("NotAfter = %s, want the device CA's %s", ra.Cert.NotAfter, a.DeviceCA().NotAfter)
	}
	info, err := os.Stat(filepath.Join(dir, RAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("%s mode = %#o, want 0600", RAKeyFile, info.Mode().Perm())
	}

	// 2. Next start: the same identity, nothing written.
	before := snapshot(t, dir)
	again, reason, err := a.LoadOrCreateRA()
	if err != nil {
		t.Fatalf("LoadOrCreateRA again: %v", err)
	}
	if reason != ServerCertKept || !again.Cert.Equal(ra.Cert) || !again.Key.Equal(ra.Key) {
		t.Errorf("second load: reason %q, same cert %v, same key %v; want kept", reason, again.Cert.Equal(ra.Cert), again.Key.Equal(ra.Key))
	}
	if changed := changedFiles(before, snapshot(t, dir)); len(changed) != 0 {
		t.Errorf("second load changed %v", changed)
	}

	// 3. Near the end of the device CA's life: re-issued, same key, only the certificate rewritten.
	late, err := LoadOrCreate(dir, Options{Hosts: testHosts, Now: clock(a.DeviceCA().NotAfter.Add(-time.Hour))})
	if err != nil {
		t.Fatalf("LoadOrCreate late: %v", err)
	}
	before = snapshot(t, dir)
	renewed, reason, err := late.LoadOrCreateRA()
	if err != nil {
		t.Fatalf("LoadOrCreateRA late: %v", err)
	}
	if reason != ServerCertExpiring || !renewed.Key.Equal(ra.Key) || renewed.Cert.Equal(ra.Cert) {
		t.Errorf("late load: reason %q, same key %v, same cert %v; want re-issued for the same key", reason, renewed.Key.Equal(ra.Key), renewed.Cert.Equal(ra.Cert))
	}
	if changed := changedFiles(before, snapshot(t, dir)); !slices.Equal(changed, []string{RACertFile}) {
		t.Errorf("late load changed %v, want only %s", changed, RACertFile)
	}
}

func TestLoadOrCreateRARefuses(t *testing.T) {
	t.Run("half pair", func(t *testing.T) {
		a, dir := newAuthority(t)
		if _, _, err := a.LoadOrCreateRA(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dir, RACertFile)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := a.LoadOrCreateRA(); !errors.Is(err, ErrPartialInit) {
			t.Errorf("err = %v, want ErrPartialInit", err)
		}
	})
	t.Run("open key file", func(t *testing.T) {
		a, dir := newAuthority(t)
		if _, _, err := a.LoadOrCreateRA(); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, RAKeyFile), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := a.LoadOrCreateRA(); !errors.Is(err, ErrKeyFileMode) {
			t.Errorf("err = %v, want ErrKeyFileMode", err)
		}
	})
	t.Run("not RSA", func(t *testing.T) {
		a, dir := newAuthority(t)
		// The TLS pair is a matching ECDSA pair: put it where the RA belongs.
		for from, to := range map[string]string{TLSCertFile: RACertFile, TLSKeyFile: RAKeyFile} {
			b, err := os.ReadFile(filepath.Join(dir, from))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, to), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := a.LoadOrCreateRA(); err == nil {
			t.Error("an ECDSA RA key was accepted")
		}
	})
}
