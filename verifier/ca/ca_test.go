package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFirstStartCreatesFiles(t *testing.T) {
	t.Parallel()
	a, dir := newAuthority(t)

	if got := a.Report(); got != (Report{CreatedCA: true, ServerCert: ServerCertCreated}) {
		t.Errorf("Report() = %+v, want CA and server cert created", got)
	}
	wantModes := map[string]fs.FileMode{
		RootCertFile: 0o644, RootKeyFile: 0o600,
		DeviceCACertFile: 0o644, DeviceCAKeyFile: 0o600,
		TLSCertFile: 0o644, TLSKeyFile: 0o600,
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := slices.Sorted(maps.Keys(wantModes)); !slices.Equal(names, want) {
		t.Errorf("data dir holds %v, want exactly %v (no temp files left behind)", names, want)
	}
	for name, want := range wantModes {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s mode = %#o, want %#o", name, got, want)
		}
	}
}

func TestCreatedCertificates(t *testing.T) {
	t.Parallel()
	a, dir := newAuthority(t)
	root, dev, leaf := a.Root(), a.DeviceCA(), a.ServerCertificate().Leaf

	caPEM, err := os.ReadFile(filepath.Join(dir, RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.RootPEM(), caPEM) {
		t.Error("RootPEM() differs from ca.pem")
	}
	if got := a.Chain(); len(got) != 2 || !bytes.Equal(got[0], dev.Raw) || !bytes.Equal(got[1], root.Raw) {
		t.Error("Chain() is not [device CA, root]")
	}

	tests := []struct {
		name                          string
		cert                          *x509.Certificate
		issuer                        *x509.Certificate
		cn                            string
		curve                         elliptic.Curve
		isCA                          bool
		maxPathLen                    int
		lifetime                      time.Duration
		keyUsage                      x509.KeyUsage
		extKeyUsage                   []x509.ExtKeyUsage
		wantDNS                       []string
		wantIPs                       []string
		checkMaxPathLenZero, wantZero bool
	}{
		{
			name: "root", cert: root, issuer: root, cn: RootCommonName, curve: elliptic.P384(),
			isCA: true, maxPathLen: 1, lifetime: RootLifetime,
			keyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		},
		{
			name: "device CA", cert: dev, issuer: root, cn: DeviceCACommonName, curve: elliptic.P256(),
			isCA: true, maxPathLen: 0, checkMaxPathLenZero: true, wantZero: true, lifetime: DeviceCALifetime,
			keyUsage:    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			extKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		},
		{
			name: "server", cert: leaf, issuer: dev, cn: "localhost", curve: elliptic.P256(),
			maxPathLen: -1, lifetime: ServerCertLifetime,
			keyUsage: x509.KeyUsageDigitalSignature, extKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			wantDNS: []string{"localhost", "verifier.example.com"}, wantIPs: []string{"127.0.0.1", "::1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := tt.cert
			if c.Subject.CommonName != tt.cn {
				t.Errorf("CN = %q, want %q", c.Subject.CommonName, tt.cn)
			}
			if err := c.CheckSignatureFrom(tt.issuer); err != nil {
				t.Errorf("not signed by %s: %v", tt.issuer.Subject.CommonName, err)
			}
			if pub, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != tt.curve {
				t.Errorf("key = %T, want ECDSA %s", c.PublicKey, tt.curve.Params().Name)
			}
			if !c.BasicConstraintsValid || c.IsCA != tt.isCA || c.MaxPathLen != tt.maxPathLen {
				t.Errorf("basic constraints: valid %v, CA %v, pathlen %d; want CA %v, pathlen %d",
					c.BasicConstraintsValid, c.IsCA, c.MaxPathLen, tt.isCA, tt.maxPathLen)
			}
			if tt.checkMaxPathLenZero && c.MaxPathLenZero != tt.wantZero {
				t.Errorf("MaxPathLenZero = %v, want %v", c.MaxPathLenZero, tt.wantZero)
			}
			if !c.NotBefore.Equal(t0.Add(-Backdate)) || !c.NotAfter.Equal(t0.Add(tt.lifetime)) {
				t.Errorf("valid %s to %s, want %s to %s", c.NotBefore, c.NotAfter, t0.Add(-Backdate), t0.Add(tt.lifetime))
			}
			if c.KeyUsage != tt.keyUsage || !slices.Equal(c.ExtKeyUsage, tt.extKeyUsage) {
				t.Errorf("key usage %v / %v, want %v / %v", c.KeyUsage, c.ExtKeyUsage, tt.keyUsage, tt.extKeyUsage)
			}
			if !slices.Equal(c.DNSNames, tt.wantDNS) {
				t.Errorf("DNS names %v, want %v", c.DNSNames, tt.wantDNS)
			}
			var ips []string
			for _, ip := range c.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tt.wantIPs) {
				t.Errorf("IP addresses %v, want %v", ips, tt.wantIPs)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %s is not a positive 128-bit number", c.SerialNumber)
			}
		})
	}

	// tls.pem holds the leaf then the device CA, and nothing else.
	tlsPEM, err := os.ReadFile(filepath.Join(dir, TLSCertFile))
	if err != nil {
		t.Fatal(err)
	}
	var ders [][]byte
	for b, rest := pem.Decode(tlsPEM); b != nil; b, rest = pem.Decode(rest) {
		ders = append(ders, b.Bytes)
	}
	if len(ders) != 2 || !bytes.Equal(ders[0], leaf.Raw) || !bytes.Equal(ders[1], dev.Raw) {
		t.Errorf("tls.pem holds %d certificates, want the server leaf and the device CA", len(ders))
	}
	if got := a.ServerCertificate().Certificate; len(got) != 2 || !bytes.Equal(got[1], dev.Raw) {
		t.Error("ServerCertificate() does not carry the device CA after the leaf")
	}
}

func TestRestartReusesEverything(t *testing.T) {
	t.Parallel()
	a1, dir := newAuthority(t)
	before := snapshot(t, dir)

	// Same hosts in another order and case: nothing to re-issue.
	a2, err := LoadOrCreate(dir, Options{Hosts: []string{"::1", "LOCALHOST", "127.0.0.1", "verifier.example.com."}, Now: clock(t0.Add(24 * time.Hour))})
	if err != nil {
		t.Fatalf("second LoadOrCreate: %v", err)
	}
	if changed := changedFiles(before, snapshot(t, dir)); len(changed) != 0 {
		t.Errorf("restart rewrote %v", changed)
	}
	if got := a2.Report(); got != (Report{}) {
		t.Errorf("Report() = %+v, want nothing written", got)
	}
	if !a1.Root().Equal(a2.Root()) || !a1.DeviceCA().Equal(a2.DeviceCA()) ||
		!a1.ServerCertificate().Leaf.Equal(a2.ServerCertificate().Leaf) {
		t.Error("restart loaded different certificates")
	}
	// The loaded device CA key is the one that signed the device CA's leaves.
	csr := mustParseCSR(t, csrDER(t, testKey("P-256"), nil))
	cert, err := a2.IssueDeviceCert(csr, "dev-1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a1.VerifyDeviceCert(cert, t0.Add(25*time.Hour)); err != nil {
		t.Errorf("certificate issued after restart does not verify with the first instance: %v", err)
	}
}

func TestServerCertReissue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		prep   func(t *testing.T, dir string) // runs after first start
		hosts  []string
		now    time.Time
		want   ServerCertReason
		covers string // a host the loaded certificate must cover
	}{
		{name: "unchanged", hosts: testHosts, now: t0.Add(300 * 24 * time.Hour), want: ServerCertKept},
		{
			name: "host added", hosts: append(slices.Clone(testHosts), "clearance.corp.example"),
			now: t0.Add(time.Hour), want: ServerCertHostsChanged, covers: "clearance.corp.example",
		},
		{name: "host removed", hosts: testHosts[1:], now: t0.Add(time.Hour), want: ServerCertHostsChanged, covers: "localhost"},
		{name: "IP added", hosts: append(slices.Clone(testHosts), "10.1.2.3"), now: t0, want: ServerCertHostsChanged, covers: "10.1.2.3"},
		{name: "expires within 30 days", hosts: testHosts, now: t0.Add(ServerCertLifetime - 29*24*time.Hour), want: ServerCertExpiring, covers: "localhost"},
		{name: "expired", hosts: testHosts, now: t0.Add(ServerCertLifetime + time.Hour), want: ServerCertExpiring, covers: "localhost"},
		{
			name: "tls.pem lacks the device CA",
			prep: func(t *testing.T, dir string) {
				path := filepath.Join(dir, TLSCertFile)
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				block, _ := pem.Decode(b)
				if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			hosts: testHosts, now: t0, want: ServerCertNewIssuer, covers: "localhost",
		},
		{
			name: "tls files removed",
			prep: func(t *testing.T, dir string) {
				for _, n := range []string{TLSCertFile, TLSKeyFile} {
					if err := os.Remove(filepath.Join(dir, n)); err != nil {
						t.Fatal(err)
					}
				}
			},
			hosts: testHosts, now: t0, want: ServerCertCreated, covers: "::1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, dir := newAuthority(t)
			if tt.prep != nil {
				tt.prep(t, dir)
			}
			before := snapshot(t, dir)
			a, err := LoadOrCreate(dir, Options{Hosts: tt.hosts, Now: clock(tt.now)})
			if err != nil {
				t.Fatalf("LoadOrCreate: %v", err)
			}
			if got := a.Report(); got != (Report{ServerCert: tt.want}) {
				t.Errorf("Report() = %+v, want server cert %q", got, tt.want)
			}
			changed := changedFiles(before, snapshot(t, dir))
			var want []string
			switch tt.want {
			case ServerCertKept:
			case ServerCertCreated:
				want = []string{TLSKeyFile, TLSCertFile} // sorted
			default:
				// Re-issued for the same key: only the certificate file changes.
				want = []string{TLSCertFile}
			}
			if !slices.Equal(changed, want) {
				t.Errorf("files written: %v, want %v", changed, want)
			}
			leaf := a.ServerCertificate().Leaf
			if tt.covers != "" {
				if err := leaf.VerifyHostname(tt.covers); err != nil {
					t.Errorf("server certificate does not cover %s: %v", tt.covers, err)
				}
			}
			if tt.want != ServerCertKept && !leaf.NotBefore.Equal(tt.now.Add(-Backdate)) {
				t.Errorf("re-issued certificate NotBefore = %s, want Backdate before %s", leaf.NotBefore, tt.now)
			}
			// The re-issued files load again as they are.
			a2, err := LoadOrCreate(dir, Options{Hosts: tt.hosts, Now: clock(tt.now)})
			if err != nil {
				t.Fatalf("LoadOrCreate after re-issue: %v", err)
			}
			if a2.Report().ServerCert != ServerCertKept {
				t.Errorf("second load re-issued again: %q", a2.Report().ServerCert)
			}
		})
	}
}

func TestServerCertNotYetValidIsReissued(t *testing.T) {
	t.Parallel()
	_, dir := newAuthority(t)
	later := t0.Add(100 * 24 * time.Hour)
	if _, err := LoadOrCreate(dir, Options{Hosts: []string{"a.example"}, Now: clock(later)}); err != nil {
		t.Fatal(err)
	}
	// The clock went back: the certificate issued "later" is not valid yet.
	a, err := LoadOrCreate(dir, Options{Hosts: []string{"a.example"}, Now: clock(t0.Add(time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Report().ServerCert; got != ServerCertNotYetValid {
		t.Errorf("ServerCert = %q, want %q", got, ServerCertNotYetValid)
	}
}

func TestKeyFileModeRefused(t *testing.T) {
	t.Parallel()
	for _, name := range []string{RootKeyFile, DeviceCAKeyFile, TLSKeyFile} {
		for _, mode := range []fs.FileMode{0o640, 0o604, 0o644, 0o620} {
			t.Run(name+"/"+mode.String(), func(t *testing.T) {
				t.Parallel()
				_, dir := newAuthority(t)
				if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
					t.Fatal(err)
				}
				before := snapshot(t, dir)
				_, err := LoadOrCreate(dir, Options{Hosts: testHosts, Now: clock(t0)})
				if !errors.Is(err, ErrKeyFileMode) {
					t.Fatalf("LoadOrCreate error = %v, want ErrKeyFileMode", err)
				}
				if !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "chmod 600") {
					t.Errorf("error %q does not name %s and the fix", err, name)
				}
				if changed := changedFiles(before, snapshot(t, dir)); len(changed) != 0 {
					t.Errorf("refused load still wrote %v", changed)
				}
			})
		}
	}
}

func TestPartialInitRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		remove []string
	}{
		{remove: []string{RootKeyFile}},
		{remove: []string{RootCertFile}},
		{remove: []string{DeviceCAKeyFile}},
		{remove: []string{DeviceCACertFile}},
		{remove: []string{DeviceCACertFile, DeviceCAKeyFile}},
		{remove: []string{RootCertFile, RootKeyFile}},
		{remove: []string{RootKeyFile, DeviceCAKeyFile}},
		{remove: []string{TLSKeyFile}},
		{remove: []string{TLSCertFile}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.remove, "+"), func(t *testing.T) {
			t.Parallel()
			_, dir := newAuthority(t)
			for _, n := range tt.remove {
				if err := os.Remove(filepath.Join(dir, n)); err != nil {
					t.Fatal(err)
				}
			}
			before := snapshot(t, dir)
			_, err := LoadOrCreate(dir, Options{Hosts: testHosts, Now: clock(t0)})
			if !errors.Is(err, ErrPartialInit) {
				t.Fatalf("LoadOrCreate error = %v, want ErrPartialInit", err)
			}
			_, missing, _ := strings.Cut(err.Error(), "is missing")
			for _, n := range tt.remove {
				if !strings.Contains(missing, n) {
					t.Errorf("error %q does not name missing %s", err, n)
				}
			}
			if changed := changedFiles(before, snapshot(t, dir)); len(changed) != 0 {
				t.Errorf("refused load still wrote %v", changed)
			}
		})
	}
}

func TestMismatchedFilesRefused(t *testing.T) {
	t.Parallel()
	copyFile := func(t *testing.T, from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		prep    func(t *testing.T, dir, other string)
		wantErr error
		wantMsg string
	}{
		{
			name: "device CA key replaced",
			prep: func(t *testing.T, dir, _ string) {
				copyFile(t, filepath.Join(dir, TLSKeyFile), filepath.Join(dir, DeviceCAKeyFile))
			},
			wantErr: ErrKeyMismatch, wantMsg: "device-ca.pem is not the certificate for device-ca.key",
		},
		{
			name: "root key from another PKI",
			prep: func(t *testing.T, dir, other string) {
				copyFile(t, filepath.Join(other, RootKeyFile), filepath.Join(dir, RootKeyFile))
			},
			wantErr: ErrKeyMismatch, wantMsg: "ca.pem is not the certificate for ca.key",
		},
		{
			name: "tls key replaced",
			prep: func(t *testing.T, dir, _ string) {
				copyFile(t, filepath.Join(dir, DeviceCAKeyFile), filepath.Join(dir, TLSKeyFile))
			},
			wantErr: ErrKeyMismatch, wantMsg: "tls.pem is not the certificate for tls.key",
		},
		{
			name: "device CA from another PKI",
			prep: func(t *testing.T, dir, other string) {
				for _, n := range []string{DeviceCACertFile, DeviceCAKeyFile} {
					copyFile(t, filepath.Join(other, n), filepath.Join(dir, n))
				}
			},
			wantMsg: "device-ca.pem is not signed by ca.pem",
		},
		{
			name: "root file with an extra certificate",
			prep: func(t *testing.T, dir, other string) {
				b, err := os.ReadFile(filepath.Join(dir, RootCertFile))
				if err != nil {
					t.Fatal(err)
				}
				o, err := os.ReadFile(filepath.Join(other, RootCertFile))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, RootCertFile), append(b, o...), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantMsg: "ca.pem holds 2 certificates",
		},
		{
			name: "garbage certificate",
			prep: func(t *testing.T, dir, _ string) {
				if err := os.WriteFile(filepath.Join(dir, RootCertFile), []byte("not a certificate"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantMsg: "loading ca.pem",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, dir := newAuthority(t)
			_, other := newAuthority(t)
			tt.prep(t, dir, other)
			_, err := LoadOrCreate(dir, Options{Hosts: testHosts, Now: clock(t0)})
			if err == nil {
				t.Fatal("LoadOrCreate succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
		})
	}
}

func TestExpiredCARefused(t *testing.T) {
	t.Parallel()
	_, dir := newAuthority(t)
	_, err := LoadOrCreate(dir, Options{Hosts: testHosts, Now: clock(t0.Add(DeviceCALifetime + time.Hour))})
	if err == nil || !strings.Contains(err.Error(), "device-ca.pem expired at") {
		t.Errorf("LoadOrCreate error = %v, want device CA expired", err)
	}
}

func TestInvalidHosts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		hosts   []string
		wantMsg string
	}{
		{hosts: nil, wantMsg: "Options.Hosts is empty"},
		{hosts: []string{"verifier.example.com:8443"}, wantMsg: "without a port"},
		{hosts: []string{"https://verifier.example.com"}, wantMsg: "not a URL"},
		{hosts: []string{"[::1]"}, wantMsg: "without a port"},
		{hosts: []string{"fe80::1%eth0"}, wantMsg: "zone"},
		{hosts: []string{"bad host"}, wantMsg: "not a valid host name"},
		{hosts: []string{""}, wantMsg: "not a valid host name"},
		{hosts: []string{"-lead.example"}, wantMsg: "not a valid host name"},
		{hosts: []string{"a..b"}, wantMsg: "not a valid host name"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.hosts, ","), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			_, err := LoadOrCreate(dir, Options{Hosts: tt.hosts})
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("LoadOrCreate(%q) error = %v, want %q", tt.hosts, err, tt.wantMsg)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("bad hosts still wrote %d files", len(entries))
			}
		})
	}
}

func TestWildcardAndIPHosts(t *testing.T) {
	t.Parallel()
	a, err := LoadOrCreate(t.TempDir(), Options{Hosts: []string{"*.verifier.example", "::ffff:192.0.2.7", "2001:db8::1"}})
	if err != nil {
		t.Fatal(err)
	}
	leaf := a.ServerCertificate().Leaf
	for _, h := range []string{"eu.verifier.example", "192.0.2.7", "2001:db8::1"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("does not cover %s: %v", h, err)
		}
	}
	if want := net.ParseIP("192.0.2.7").To4(); !leaf.IPAddresses[0].Equal(want) || len(leaf.IPAddresses[0]) != 4 {
		t.Errorf("IPv4-mapped address stored as %v, want the 4-byte IPv4 form", leaf.IPAddresses[0])
	}
}
