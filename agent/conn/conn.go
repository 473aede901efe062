// Package conn opens the agent's gRPC connections to the verifier: TLS that
// trusts only the configured verifier CA, with the device certificate for
// mutual TLS once the device is enrolled.
package conn

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// ClientCert returns the certificate to present in a handshake.
type ClientCert func() (*tls.Certificate, error)

// Dial returns a client for addr (HOST:PORT). The verifier's certificate must
// chain to roots and name addr's host, and be valid at now (the verifier's
// time as the agent knows it, see package clock; time.Now when nil). With
// cert set, every handshake presents the certificate cert returns at that
// moment, so a renewed certificate is used from the next connection on.
func Dial(addr string, roots *x509.CertPool, cert ClientCert, now func() time.Time) (*grpc.ClientConn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("verifier address %q: %w", addr, err)
	}
	cfg := &tls.Config{
		RootCAs:    roots,
		ServerName: host,
		MinVersion: tls.VersionTLS12,
		Time:       now,
	}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cert()
		}
	}
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		// Long enough for gRPC servers' default ping policy (5 min), short
		// enough to notice a connection that died while the Mac slept.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 5 * time.Minute, Timeout: 20 * time.Second}),
		// gRPC's initial 64 KiB windows, kept fixed: with dynamic ones the
		// agent pings the verifier after nearly every Ack it receives (to
		// estimate the link's bandwidth-delay product), and the verifier
		// answers each; the verifier's messages are a few KiB.
		grpc.WithStaticStreamWindowSize(64<<10), grpc.WithStaticConnWindowSize(64<<10),
	)
}

// Certificate builds a TLS certificate from the device cert, its issuing
// chain (nearest first; a trailing self-signed root is not sent) and the
// device key.
func Certificate(leaf *x509.Certificate, chain []*x509.Certificate, key crypto.Signer) *tls.Certificate {
	c := &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	for _, ca := range chain {
		if ca.CheckSignatureFrom(ca) == nil && ca.IsCA {
			continue
		}
		c.Certificate = append(c.Certificate, ca.Raw)
	}
	return c
}
