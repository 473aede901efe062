package ca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"
)

// handshake runs one TLS handshake over loopback TCP and returns the
// client's error and what the server saw.
func handshake(t *testing.T, network, addr string, server, client *tls.Config) (clientErr error, serverState tls.ConnectionState, serverErr error) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s %s: %v", network, addr, err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	type result struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		tc := tls.Server(conn, server)
		err = tc.HandshakeContext(ctx)
		if err == nil {
			// Read the client's byte so a client-side rejection of the
			// server cannot race with the server reporting success.
			_, err = tc.Read(make([]byte, 1))
		}
		done <- result{state: tc.ConnectionState(), err: err}
	}()

	conn, err := (&net.Dialer{}).DialContext(ctx, network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(conn, client)
	clientErr = tc.HandshakeContext(ctx)
	if clientErr == nil {
		_, clientErr = tc.Write([]byte{1})
	}
	conn.Close()
	r := <-done
	return clientErr, r.state, r.err
}

func TestServerCertificateHandshake(t *testing.T) {
	t.Parallel()
	// Real clock: crypto/tls checks validity against time.Now.
	a, err := LoadOrCreate(t.TempDir(), Options{Hosts: testHosts})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(a.RootPEM()) {
		t.Fatal("RootPEM() holds no certificate")
	}
	server := &tls.Config{Certificates: []tls.Certificate{a.ServerCertificate()}, MinVersion: tls.VersionTLS12}

	tests := []struct {
		name       string
		network    string
		addr       string
		serverName string
		roots      *x509.CertPool
		wantErr    string
	}{
		{name: "DNS name", network: "tcp4", addr: "127.0.0.1:0", serverName: "localhost", roots: roots},
		{name: "public name", network: "tcp4", addr: "127.0.0.1:0", serverName: "verifier.example.com", roots: roots},
		{name: "IPv4 address", network: "tcp4", addr: "127.0.0.1:0", serverName: "127.0.0.1", roots: roots},
		{name: "IPv6 address", network: "tcp6", addr: "[::1]:0", serverName: "::1", roots: roots},
		{name: "RootPool", network: "tcp4", addr: "127.0.0.1:0", serverName: "localhost", roots: a.RootPool()},
		{name: "name not covered", network: "tcp4", addr: "127.0.0.1:0", serverName: "other.example.com", roots: roots, wantErr: "is valid for"},
		{name: "client trusts another root", network: "tcp4", addr: "127.0.0.1:0", serverName: "localhost", roots: x509.NewCertPool(), wantErr: "unknown authority"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clientErr, _, serverErr := handshake(t, tt.network, tt.addr, server, &tls.Config{RootCAs: tt.roots, ServerName: tt.serverName})
			if tt.wantErr == "" {
				if clientErr != nil || serverErr != nil {
					t.Fatalf("handshake: client %v, server %v", clientErr, serverErr)
				}
				return
			}
			if clientErr == nil || !strings.Contains(clientErr.Error(), tt.wantErr) {
				t.Errorf("client error = %v, want %q", clientErr, tt.wantErr)
			}
		})
	}
}

// TestDeviceMTLS is the agent's connection: mTLS with a device certificate
// from IssueDeviceCert, accepted through ClientCAs, and mapped to its device
// by VerifyDeviceCert.
func TestDeviceMTLS(t *testing.T) {
	t.Parallel()
	a, err := LoadOrCreate(t.TempDir(), Options{Hosts: testHosts})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := LoadOrCreate(t.TempDir(), Options{Hosts: testHosts})
	if err != nil {
		t.Fatal(err)
	}
	deviceKey := testKey("P-256")
	csr := mustParseCSR(t, csrDER(t, deviceKey, nil))
	clientCert := func(a *Authority, withChain bool) []tls.Certificate {
		c, err := a.IssueDeviceCert(csr, "mac-7", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		chain := [][]byte{c.Raw}
		if withChain {
			chain = append(chain, a.Chain()...)
		}
		return []tls.Certificate{{Certificate: chain, PrivateKey: deviceKey}}
	}

	server := &tls.Config{
		Certificates: []tls.Certificate{a.ServerCertificate()},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    a.ClientCAs(),
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := a.VerifyDeviceCert(cs.PeerCertificates[0], time.Now())
			return err
		},
	}
	tests := []struct {
		name    string
		certs   []tls.Certificate
		wantErr bool
	}{
		{name: "leaf only", certs: clientCert(a, false)},
		{name: "leaf and chain", certs: clientCert(a, true)},
		{name: "certificate from another verifier", certs: clientCert(foreign, true), wantErr: true},
		{name: "no certificate", certs: nil, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client := &tls.Config{RootCAs: a.RootPool(), ServerName: "localhost", Certificates: tt.certs}
			clientErr, state, serverErr := handshake(t, "tcp4", "127.0.0.1:0", server, client)
			if tt.wantErr {
				if serverErr == nil {
					t.Fatal("server accepted the client")
				}
				return
			}
			if clientErr != nil || serverErr != nil {
				t.Fatalf("handshake: client %v, server %v", clientErr, serverErr)
			}
			id, err := a.VerifyDeviceCert(state.PeerCertificates[0], time.Now())
			if err != nil || id != "mac-7" {
				t.Errorf("server sees device %q, %v; want mac-7", id, err)
			}
		})
	}
}
