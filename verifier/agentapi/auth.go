package agentapi

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/clearance/clearance/verifier/ca"
	"github.com/clearance/clearance/verifier/storage"
)

// CertVerifier checks a device certificate; *ca.Authority implements it.
type CertVerifier interface {
	VerifyDeviceCert(leaf *x509.Certificate, now time.Time) (string, error)
}

var _ CertVerifier = (*ca.Authority)(nil)

// Authenticate returns the device behind the call's client certificate. The
// listener only requests client certificates (Enroll has none), so every
// check happens here, where each failure gets its own status and message:
// TLS has already proven the client holds the certificate's key.
func Authenticate(ctx context.Context, cv CertVerifier, devices storage.DeviceStore, now time.Time) (storage.Device, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return storage.Device{}, status.Error(codes.Unauthenticated, "no peer information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return storage.Device{}, status.Error(codes.Unauthenticated, "a device certificate is required: connect with the certificate issued at enrollment")
	}
	leaf := info.State.PeerCertificates[0]
	id, err := cv.VerifyDeviceCert(leaf, now)
	switch {
	case errors.Is(err, ca.ErrCertExpired):
		return storage.Device{}, status.Errorf(codes.Unauthenticated, "device certificate expired: %v; enroll again", err)
	case errors.Is(err, ca.ErrCertNotYetValid):
		return storage.Device{}, status.Errorf(codes.Unauthenticated, "device certificate not yet valid: %v (check the device clock)", err)
	case err != nil:
		return storage.Device{}, status.Errorf(codes.Unauthenticated, "device certificate rejected: %v", err)
	}
	key, err := x509.MarshalPKIXPublicKey(leaf.PublicKey)
	if err != nil {
		return storage.Device{}, status.Errorf(codes.PermissionDenied, "device %s: certificate key unreadable", id)
	}
	return currentDevice(ctx, devices, id, key)
}

// currentDevice reads the device and checks it is enrolled, not revoked,
// and still holds key (PKIX DER), the key its caller authenticated with.
func currentDevice(ctx context.Context, devices storage.DeviceStore, id string, key []byte) (storage.Device, error) {
	dev, err := devices.GetDevice(ctx, id)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return storage.Device{}, status.Errorf(codes.Unauthenticated, "device %s is not enrolled", id)
	case err != nil:
		return storage.Device{}, status.Error(codes.Unavailable, "device lookup failed; try again")
	case dev.Revoked():
		return storage.Device{}, status.Errorf(codes.PermissionDenied, "device %s is revoked; "+storage.RevokedWayBack, id)
	}
	if !bytes.Equal(key, dev.PublicKey) {
		return storage.Device{}, status.Errorf(codes.PermissionDenied, "certificate is for a key device %s no longer uses (it enrolled again)", id)
	}
	return dev, nil
}
