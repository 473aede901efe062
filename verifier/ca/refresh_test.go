package ca

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestRefreshServerCert: a verifier that runs for a year re-issues its
// server certificate in place, and listeners see the new one.
func TestRefreshServerCert(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	dir := t.TempDir()
	a, err := LoadOrCreate(dir, Options{Hosts: []string{"localhost"}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := a.GetServerCertificate(nil)
	keyBefore, _ := os.ReadFile(filepath.Join(dir, TLSKeyFile))

	// Still fresh: nothing happens.
	if reason, err := a.RefreshServerCert(); err != nil || reason != ServerCertKept {
		t.Fatalf("fresh certificate: %q, %v", reason, err)
	}

	// Inside the renewal window: re-issued for the same key, on disk too.
	mu.Lock()
	now = first.Leaf.NotAfter.Add(-ServerCertRenewBefore / 2)
	mu.Unlock()
	reason, err := a.RefreshServerCert()
	if err != nil || reason != ServerCertExpiring {
		t.Fatalf("expiring certificate: %q, %v", reason, err)
	}
	second, _ := a.GetServerCertificate(nil)
	if !second.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Fatalf("new certificate expires %s, old %s", second.Leaf.NotAfter, first.Leaf.NotAfter)
	}
	keyAfter, _ := os.ReadFile(filepath.Join(dir, TLSKeyFile))
	if !bytes.Equal(keyBefore, keyAfter) {
		t.Fatal("refresh replaced the server key")
	}
	reloaded, err := LoadOrCreate(dir, Options{Hosts: []string{"localhost"}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if r := reloaded.Report().ServerCert; r != ServerCertKept {
		t.Fatalf("restart after refresh re-issued again: %q", r)
	}
}
