package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/storage"
)

// Bounds of ExpectReinstall's within: long enough to wipe a Mac and set it
// up again, short enough that the door it opens does not stay open.
const (
	DefaultReinstallWithin = 24 * time.Hour
	MaxReinstallWithin     = 168 * time.Hour
)

// ExpectReinstall implements AdminService.ExpectReinstall.
func (s *Server) ExpectReinstall(ctx context.Context, req *adminv1.ExpectReinstallRequest) (*adminv1.ExpectReinstallResponse, error) {
	within := DefaultReinstallWithin
	if w := req.GetWithin(); w != nil {
		if err := w.CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "within: %v", err)
		}
		within = w.AsDuration()
		if req.GetCancel() {
			return nil, status.Error(codes.InvalidArgument, "within and cancel together: cancel takes an expectation back, within sets one")
		}
		if within < time.Minute || within > MaxReinstallWithin {
			return nil, status.Errorf(codes.InvalidArgument, "within %s is outside 1m to %s", within, MaxReinstallWithin)
		}
	}
	id, err := s.deviceID(ctx, req.GetDeviceId())
	if err != nil {
		return nil, err
	}
	d, err := s.getDevice(ctx, id)
	if err != nil {
		return nil, err
	}
	if d.Revoked() {
		return nil, status.Errorf(codes.FailedPrecondition, "device %s is revoked: a revoked Mac comes back only by approval of its request (devices pending, devices approve)", d.ID)
	}
	if storage.CanonicalSerial(d.SerialNumber) == "" && !req.GetCancel() {
		return nil, status.Errorf(codes.FailedPrecondition, "device %s enrolled with no serial number: a reinstall is recognised by the hardware UUID and the serial number together, so its new key waits for approval", d.ID)
	}
	now := s.now()
	if req.GetCancel() {
		// Nothing to take back: nothing changes, nothing is audited.
		cur, err := s.Store.ReinstallExpected(ctx, d.ID)
		if err != nil {
			return nil, s.internal("reading the expected reinstall", err)
		}
		if !cur.After(now) {
			return &adminv1.ExpectReinstallResponse{Device: s.device(d, nil)}, nil
		}
	}
	var until time.Time
	detail := "expected reinstall taken back"
	if !req.GetCancel() {
		until = now.Add(within)
		detail = fmt.Sprintf("reinstall expected until %s: the next new key from hardware UUID %s, serial %s enrolls without approval, once",
			until.UTC().Format(time.RFC3339), d.HardwareUUID, d.SerialNumber)
	}
	err = s.Store.ExpectReinstall(ctx, d.ID, until, storage.AuditEvent{At: now, Actor: actor(ctx), Action: "device.expect_reinstall", DeviceID: d.ID, Detail: detail})
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, status.Errorf(codes.NotFound, "no device %q", req.GetDeviceId())
	case errors.Is(err, storage.ErrDeviceRevoked):
		return nil, status.Errorf(codes.FailedPrecondition, "device %s was revoked meanwhile", d.ID)
	case err != nil:
		return nil, s.internal("recording the expected reinstall", err)
	}
	s.log().Info("reinstall expected", "device_id", d.ID, "until", until, "cancel", req.GetCancel(), "by", actor(ctx))
	return &adminv1.ExpectReinstallResponse{Device: s.device(d, nil), Until: ts(until)}, nil
}
