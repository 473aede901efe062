package admin

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/storage"
)

// maxRevokeReason bounds a revocation reason.
const maxRevokeReason = 200

// ListBrowserCertificates implements AdminService.ListBrowserCertificates.
func (s *Server) ListBrowserCertificates(ctx context.Context, req *adminv1.ListBrowserCertificatesRequest) (*adminv1.ListBrowserCertificatesResponse, error) {
	d, err := s.getDevice(ctx, req.GetDeviceId())
	if err != nil {
		return nil, err
	}
	certs, err := s.Store.ListBrowserCerts(ctx, d.ID)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, s.internal("listing browser certificates", err)
	}
	latest, err := s.latest(ctx, d.ID)
	if err != nil {
		return nil, err
	}
	vouched := map[string]bool{}
	for _, c := range latest.GetReport().GetCertificates() {
		vouched[c.GetSerial()+"/"+c.GetSha1()] = true
	}
	now := s.now()
	out := &adminv1.ListBrowserCertificatesResponse{}
	for _, c := range certs {
		out.Certificates = append(out.Certificates, browserCertProto(c, vouched[c.Serial+"/"+c.SHA1], now))
	}
	return out, nil
}

// RevokeBrowserCertificate implements AdminService.RevokeBrowserCertificate.
func (s *Server) RevokeBrowserCertificate(ctx context.Context, req *adminv1.RevokeBrowserCertificateRequest) (*adminv1.RevokeBrowserCertificateResponse, error) {
	serial := req.GetSerial()
	if serial == "" || len(serial) > 64 {
		return nil, status.Error(codes.InvalidArgument, "serial is required (lowercase hex, as ListBrowserCertificates shows it)")
	}
	if n := len(req.GetReason()); n > maxRevokeReason {
		return nil, status.Errorf(codes.InvalidArgument, "reason is %d characters; the limit is %d", n, maxRevokeReason)
	}
	reason := req.GetReason()
	if reason == "" {
		reason = "revoked by an administrator"
	}
	now := s.now()
	err := s.Store.RevokeBrowserCert(ctx, serial, reason, now, storage.AuditEvent{
		At: now, Actor: actor(ctx), Action: "browsercert.revoke", Detail: "browser certificate " + serial + " revoked: " + reason,
	})
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, status.Errorf(codes.NotFound, "no browser certificate %q", serial)
	case err != nil:
		return nil, s.internal("revoking browser certificate", err)
	}
	c, err := s.Store.GetBrowserCert(ctx, serial)
	if err != nil {
		return nil, s.internal("reading browser certificate", err)
	}
	s.log().Info("browser certificate revoked", "serial", serial, "device_id", c.DeviceID)
	return &adminv1.RevokeBrowserCertificateResponse{Certificate: browserCertProto(c, false, now)}, nil
}

func browserCertProto(c storage.BrowserCert, vouched bool, now time.Time) *adminv1.BrowserCertificate {
	return &adminv1.BrowserCertificate{
		Serial: c.Serial, DeviceId: c.DeviceID, HardwareUuid: c.HardwareUUID, Sha1: c.SHA1,
		NotBefore: ts(c.NotBefore), NotAfter: ts(c.NotAfter), RevokeAfter: ts(c.RevokeAfter),
		RevokedReason: c.RevokedReason, Vouched: vouched,
		Active: !c.RevokedAt(now) && now.Before(c.NotAfter),
	}
}
