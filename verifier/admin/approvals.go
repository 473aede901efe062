package admin

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/enroll"
	"github.com/clearance/clearance/verifier/knownlist"
	"github.com/clearance/clearance/verifier/storage"
)

// MaxImport bounds the serial numbers in one ImportKnownDevices call.
const MaxImport = 5000

// maxIDLen bounds the ids a request may name.
const maxIDLen = 64

func checkRequestID(id string) error {
	switch {
	case id == "":
		return status.Error(codes.InvalidArgument, "request_id is required")
	case len(id) > maxIDLen:
		return status.Errorf(codes.InvalidArgument, "request_id is %d characters; request ids are at most %d", len(id), maxIDLen)
	}
	return nil
}

// ListPendingEnrollments implements AdminService.ListPendingEnrollments.
func (s *Server) ListPendingEnrollments(ctx context.Context, req *adminv1.ListPendingEnrollmentsRequest) (*adminv1.ListPendingEnrollmentsResponse, error) {
	size, after, err := keyPage(req.GetPageSize(), req.GetPageToken(), maxIDLen)
	if err != nil {
		return nil, err
	}
	ps, err := s.Store.ListPendingEnrollments(ctx, after, size+1)
	if err != nil {
		return nil, s.internal("listing enrollment requests", err)
	}
	resp := &adminv1.ListPendingEnrollmentsResponse{}
	if len(ps) > size {
		ps = ps[:size]
		resp.NextPageToken = nextKey(ps[len(ps)-1].ID)
	}
	if resp.Pending, err = s.pendingProtos(ctx, ps); err != nil {
		return nil, s.internal("listing enrollment requests", err)
	}
	return resp, nil
}

// maxSerialHolders bounds the devices a request names as holding its
// serial number (PendingEnrollment.serial_holders).
const maxSerialHolders = 5

// pendingProtos is ps as the admin API shows them. A new device's request
// names the devices enrolled on its serial, found for all of ps in one
// store call, and while it waits its reason is serial_enrolled if there
// are any: a device may have enrolled on the serial since the request was
// filed, and the approver must see that it claims another device's serial
// (a stolen Mac's), whatever it waited for at first.
func (s *Server) pendingProtos(ctx context.Context, ps []storage.PendingEnrollment) ([]*adminv1.PendingEnrollment, error) {
	var serials []string
	for _, p := range ps {
		if c := storage.CanonicalSerial(p.SerialNumber); p.DeviceID == "" && c != "" {
			serials = append(serials, c)
		}
	}
	var held map[string]storage.SerialHolders
	if len(serials) > 0 {
		var err error
		if held, err = s.Store.SerialHolders(ctx, serials, maxSerialHolders); err != nil {
			return nil, err
		}
	}
	out := make([]*adminv1.PendingEnrollment, 0, len(ps))
	for _, p := range ps {
		var h storage.SerialHolders
		if p.DeviceID == "" {
			h = held[storage.CanonicalSerial(p.SerialNumber)]
		}
		if h.Total > 0 && !p.Rejected() {
			p.Reason = enroll.PendingSerialEnrolled
		}
		pp := pendingProto(p)
		for _, d := range h.Devices {
			pp.SerialHolders = append(pp.SerialHolders, &adminv1.SerialHolder{DeviceId: d.ID, Hostname: d.Hostname, Revoked: d.Revoked()})
		}
		pp.SerialHolderCount = uint32(h.Total)
		out = append(out, pp)
	}
	return out, nil
}

// wholeRequestID is the length of every request id (enroll.NewDeviceID's).
const wholeRequestID = 36

// requestGone is the answer for a request id that names no request. Requests
// are removed once answered or expired, when their Mac enrolls or changes
// key (they were about a state that is gone), and when their key asks
// again for anything other than what they show (filed anew under another
// id): an id that was read is approved for exactly what was read, or not
// at all.
func requestGone(id string) error {
	if len(id) != wholeRequestID {
		return status.Errorf(codes.NotFound, "no enrollment request %q: a request id is given whole, as 'devices pending' lists it "+
			"(%d characters), not by its start; nothing was changed", id, wholeRequestID)
	}
	return status.Errorf(codes.NotFound, "no enrollment request %q: it was answered or expired, its Mac enrolled or changed key, "+
		"or it asked again with other facts (serial number, hostname, model, OS, platform, agent version, source address, "+
		"enroll secret or reason) and was filed anew under another id; nothing was changed. "+
		"Run 'devices pending' again and decide on what it shows now", id)
}

// ApproveEnrollment implements AdminService.ApproveEnrollment.
func (s *Server) ApproveEnrollment(ctx context.Context, req *adminv1.ApproveEnrollmentRequest) (*adminv1.ApproveEnrollmentResponse, error) {
	if err := checkRequestID(req.GetRequestId()); err != nil {
		return nil, err
	}
	now := s.now()
	p, err := s.Store.GetPendingEnrollment(ctx, req.GetRequestId())
	if errors.Is(err, storage.ErrNotFound) {
		return nil, requestGone(req.GetRequestId())
	}
	if err != nil {
		return nil, s.internal("reading enrollment request", err)
	}
	audit := storage.AuditEvent{At: now, Actor: actor(ctx), Action: "device.enroll_approve",
		Detail: fmt.Sprintf("request %s, hardware UUID %s, serial %q, hostname %q, model %q, enroll secret %s, key %s, reason %s, from %s",
			p.ID, p.HardwareUUID, p.SerialNumber, p.Hostname, p.Model, p.SecretID, enroll.KeyFingerprint(p.PublicKey), p.Reason, p.Source)}
	reinstating := !p.DeviceRevokedAt.IsZero()
	if reinstating {
		// The request was made against this revocation, and storage
		// approves it only while it holds: the audit names the
		// revocation the approval ends.
		audit.Action = "device.reinstate"
		audit.Detail += fmt.Sprintf(", ends the revocation of %s", p.DeviceRevokedAt.UTC().Format(time.RFC3339))
		if d, err := s.Store.GetDevice(ctx, p.DeviceID); err == nil && d.Revoked() {
			audit.Detail += fmt.Sprintf(" (%q)", d.RevokedReason)
		}
		audit.Detail += ", revoked key " + enroll.KeyFingerprint(p.DeviceKey)
	}
	d, replaced, err := s.Store.ApproveEnrollment(ctx, storage.Approval{
		RequestID: p.ID, NewDeviceID: enroll.NewDeviceID(), At: now, Audit: audit,
		ClaimReason: enroll.PendingSerialEnrolled, NewRequestID: enroll.NewDeviceID(),
	})
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, requestGone(req.GetRequestId())
	case errors.Is(err, storage.ErrRequestStale):
		return nil, status.Errorf(codes.FailedPrecondition, "this Mac (hardware UUID %s) enrolled, changed key, was revoked or was reinstated after request %s was made; the request is stale and was removed. If the Mac still asks, its new request shows the current state", p.HardwareUUID, p.ID)
	case errors.Is(err, storage.ErrRequestRejected):
		return nil, status.Errorf(codes.FailedPrecondition, "enrollment request %s was rejected; the agent must ask again with another key", p.ID)
	case errors.Is(err, storage.ErrSecretRevoked):
		return nil, status.Errorf(codes.FailedPrecondition, "enrollment request %s used enroll secret %s, revoked since; reject it, and enroll the Mac with a current secret", p.ID, p.SecretID)
	case errors.Is(err, storage.ErrDeviceRevoked):
		return nil, status.Errorf(codes.FailedPrecondition, "request %s carries the key hardware UUID %s was revoked with; a revoked key never enrolls again", p.ID, p.HardwareUUID)
	case errors.Is(err, storage.ErrSerialEnrolled):
		return nil, status.Errorf(codes.FailedPrecondition, "enrollment request %s claims serial number %q, which a device has enrolled on since the request was made (a Mac with a new logic board, or another machine claiming a Mac's serial); it was filed anew as %s, and nothing was enrolled. List the requests again ('devices pending'), compare it with that device ('devices --wide'), and approve it only if it is that Mac", p.ID, p.SerialNumber, enroll.PendingSerialEnrolled)
	case err != nil:
		return nil, s.internal("approving enrollment", err)
	}
	if replaced {
		// The old key's streams end now, here and on other replicas.
		s.Hub.Reenrolled(d.ID, d.PublicKey)
	}
	s.log().Info("enrollment approved", "request_id", p.ID, "device_id", d.ID, "replaced_key", replaced, "reinstated", reinstating,
		"hardware_uuid", d.HardwareUUID, "key_fingerprint", enroll.KeyFingerprint(d.PublicKey))
	return &adminv1.ApproveEnrollmentResponse{Device: s.device(d, nil), ReplacedKey: replaced, Reinstated: reinstating}, nil
}

// RejectEnrollment implements AdminService.RejectEnrollment.
func (s *Server) RejectEnrollment(ctx context.Context, req *adminv1.RejectEnrollmentRequest) (*adminv1.RejectEnrollmentResponse, error) {
	set := 0
	for _, f := range []string{req.GetRequestId(), req.GetKeyFingerprint(), req.GetSource()} {
		if f != "" {
			set++
		}
	}
	switch {
	case set > 1:
		return nil, status.Error(codes.InvalidArgument, "set one of request_id, key_fingerprint and source, not several")
	case set == 0:
		return nil, status.Error(codes.InvalidArgument, "request_id, key_fingerprint or source is required: the request to reject, or the key or the source address or network whose waiting requests to reject")
	case req.GetKeyFingerprint() != "":
		return s.rejectKey(ctx, req.GetKeyFingerprint())
	case req.GetSource() != "":
		return s.rejectSource(ctx, req.GetSource())
	}
	if err := checkRequestID(req.GetRequestId()); err != nil {
		return nil, err
	}
	now := s.now()
	p, err := s.Store.RejectEnrollment(ctx, req.GetRequestId(), now, enroll.DefaultPendingLimits, storage.AuditEvent{
		At: now, Actor: actor(ctx), Action: "device.enroll_reject", Detail: "request " + req.GetRequestId(),
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, requestGone(req.GetRequestId())
	}
	if err != nil {
		return nil, s.internal("rejecting enrollment", err)
	}
	s.log().Info("enrollment rejected", "request_id", p.ID, "hardware_uuid", p.HardwareUUID, "key_fingerprint", enroll.KeyFingerprint(p.PublicKey))
	out := s.rejectedProtos(ctx, []storage.PendingEnrollment{p})
	return &adminv1.RejectEnrollmentResponse{Pending: out[0], Rejected: out, RejectedCount: 1}, nil
}

// MinKeyPrefix is the fewest hex digits of a key fingerprint that
// RejectEnrollment takes: what 'devices pending' shows, and too many for
// two keys to share by chance.
const MinKeyPrefix = 16

// rejectKeyBatch bounds the hardware UUIDs one transaction of a rejection
// by key locks (on PostgreSQL, each lock takes a place in its shared lock
// table).
const rejectKeyBatch = 1000

// checkKeyPrefix returns a key_fingerprint in lower case, or why it is
// not the start of one.
func checkKeyPrefix(fp string) (string, error) {
	if len(fp) > 64 {
		return "", status.Errorf(codes.InvalidArgument, "key_fingerprint is %d characters; a key fingerprint is 64 hex digits", len(fp))
	}
	fp = strings.ToLower(fp)
	for i := 0; i < len(fp); i++ {
		if c := fp[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", status.Errorf(codes.InvalidArgument, "key_fingerprint %q is not hex: a key fingerprint is 64 hex digits (0-9, a-f), as 'devices pending' shows", fp)
		}
	}
	if len(fp) < MinKeyPrefix {
		return "", status.Errorf(codes.InvalidArgument, "key_fingerprint %q is %d hex digits; give at least %d (as 'devices pending' shows) or all 64", fp, len(fp), MinKeyPrefix)
	}
	return fp, nil
}

// rejectKey rejects every waiting request of the key whose fingerprint
// starts with fp, a batch of hardware UUIDs per store call: one call,
// unless the key waits for more than rejectKeyBatch of them. The batches
// after the first name the key by its whole fingerprint, and they go on
// until one finds nothing: a batch may come back short when a request went
// (evicted, or its Mac enrolled) between the store's reading and locking
// it, with more still waiting.
func (s *Server) rejectKey(ctx context.Context, fp string) (*adminv1.RejectEnrollmentResponse, error) {
	fp, err := checkKeyPrefix(fp)
	if err != nil {
		return nil, err
	}
	now := s.now()
	audit := storage.AuditEvent{At: now, Actor: actor(ctx), Action: "device.enroll_reject", Detail: "by key fingerprint " + fp}
	var all []storage.PendingEnrollment
	// Waiting requests are at most enroll.DefaultPendingLimits.Total: the
	// rounds end, even while the key keeps asking for new hardware UUIDs.
	for round := 0; round <= enroll.DefaultPendingLimits.Total/rejectKeyBatch+1; round++ {
		ps, err := s.Store.RejectEnrollmentKey(ctx, fp, rejectKeyBatch, now, enroll.DefaultPendingLimits, audit)
		var ambiguous *storage.AmbiguousKeyError
		switch {
		case errors.Is(err, storage.ErrNotFound) && len(all) > 0:
			// Nothing of the key waits any more.
		case errors.Is(err, storage.ErrNotFound):
			return nil, status.Errorf(codes.NotFound, "no waiting enrollment request has a key whose fingerprint starts with %s (a rejected request no longer waits); see 'devices pending'", fp)
		case err != nil && len(all) > 0:
			// The first rounds' rejections are committed; the caller must
			// know that the rest may still wait.
			s.log().Error("rejecting an enrollment key's further requests failed", "key_fingerprint", fp, "rejected", len(all), "err", err)
			return nil, status.Errorf(codes.Aborted, "rejected %d requests of key %s, then failed to reject the rest; run the command again", len(all), fp)
		case errors.As(err, &ambiguous):
			return nil, status.Errorf(codes.InvalidArgument, "key_fingerprint %s is ambiguous: waiting requests of %d keys have fingerprints starting with it; give more of it ('devices pending --json' shows whole fingerprints), or reject by request id", fp, ambiguous.Keys)
		case err != nil:
			return nil, s.internal("rejecting enrollment key", err)
		}
		if err != nil {
			break
		}
		if len(ps) == 0 {
			// Every request the round read went before it could lock
			// them: read again.
			continue
		}
		if len(all) == 0 {
			// The key, as found: later rounds reject exactly it.
			fp = storage.KeyFingerprint(ps[0].PublicKey)
			audit.Detail = "by key fingerprint " + fp
		}
		all = append(all, ps...)
	}
	if len(all) == 0 {
		return nil, status.Errorf(codes.NotFound, "no waiting enrollment request has a key whose fingerprint starts with %s (a rejected request no longer waits); see 'devices pending'", fp)
	}
	slices.SortFunc(all, func(a, b storage.PendingEnrollment) int { return strings.Compare(a.ID, b.ID) })
	s.log().Info("enrollment key rejected", "key_fingerprint", enroll.KeyFingerprint(all[0].PublicKey), "requests", len(all))
	out := s.rejectedProtos(ctx, all[:min(len(all), MaxRejectedShown)])
	return &adminv1.RejectEnrollmentResponse{Pending: out[0], Rejected: out, RejectedCount: uint32(len(all))}, nil
}

// Rejecting by source takes a network no broader than these: a /0 or a /8
// is far likelier a slip than a flood's network, and would reject every
// waiting request in it, genuine Macs' too. The per-source bound counts an
// IPv4 address and an IPv6 /64; a flood spread wider takes one call per
// /16 or /32.
const (
	MinSourcePrefix4 = 16
	MinSourcePrefix6 = 32
)

// maxSourceLen bounds a source as given: the longest address or network
// in text ("ffff:…:255.255.255.255/128") is 49 characters.
const maxSourceLen = 64

// ParseSource reads what a rejection by source names: an IP address, whose
// requests are those from exactly it, or a network in CIDR form
// (198.51.100.0/24, 2001:db8:1:2::/64) of at least MinSourcePrefix4 or
// MinSourcePrefix6 bits with none set past its prefix. An IPv4-mapped IPv6
// address is taken as the IPv4 address it is.
func ParseSource(s string) (netip.Prefix, error) {
	const form = "give an IP address (198.51.100.7, 2001:db8::7) or a network in CIDR form (198.51.100.0/24, 2001:db8:1:2::/64)"
	switch {
	case s == "":
		return netip.Prefix{}, errors.New("the source is empty; " + form)
	case len(s) > maxSourceLen:
		return netip.Prefix{}, fmt.Errorf("the source is %d characters; %s", len(s), form)
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address; %s", s, form)
		case a.Zone() != "":
			return netip.Prefix{}, fmt.Errorf("%q has a zone; give the address without it", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return netip.Prefix{}, fmt.Errorf("%q is not a network in CIDR form; %s", s, form)
	case p.Addr().Is4In6():
		return netip.Prefix{}, fmt.Errorf("%s is an IPv4-mapped IPv6 network; give it in IPv4 form", s)
	case p != p.Masked():
		return netip.Prefix{}, fmt.Errorf("%s has bits set past its prefix: the network is %s (or give the address alone)", s, p.Masked())
	case p.Addr().Is4() && p.Bits() < MinSourcePrefix4, p.Addr().Is6() && p.Bits() < MinSourcePrefix6:
		least := MinSourcePrefix4
		if p.Addr().Is6() {
			least = MinSourcePrefix6
		}
		return netip.Prefix{}, fmt.Errorf("%s is broader than /%d, and would reject every waiting request from it, genuine Macs' too; give a network of /%d or longer, one at a time", s, least, least)
	}
	return p, nil
}

// rejectSource rejects every waiting request from an address or network,
// in rounds of hardware UUIDs as rejectKey does.
func (s *Server) rejectSource(ctx context.Context, source string) (*adminv1.RejectEnrollmentResponse, error) {
	network, err := ParseSource(source)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "source: %v", err)
	}
	now := s.now()
	audit := storage.AuditEvent{At: now, Actor: actor(ctx), Action: "device.enroll_reject", Detail: "by source " + network.String()}
	var all []storage.PendingEnrollment
	// Waiting requests are at most enroll.DefaultPendingLimits.Total: the
	// rounds end, even while the network keeps asking.
	for round := 0; round <= enroll.DefaultPendingLimits.Total/rejectKeyBatch+1; round++ {
		ps, err := s.Store.RejectEnrollmentSource(ctx, network, rejectKeyBatch, now, enroll.DefaultPendingLimits, audit)
		switch {
		case errors.Is(err, storage.ErrNotFound) && len(all) > 0:
			// Nothing from there waits any more.
		case errors.Is(err, storage.ErrNotFound):
			return nil, status.Errorf(codes.NotFound, "no waiting enrollment request comes from %s (a rejected request no longer waits); see 'devices pending'", network)
		case err != nil && len(all) > 0:
			s.log().Error("rejecting further enrollment requests by source failed", "source", network.String(), "rejected", len(all), "err", err)
			return nil, status.Errorf(codes.Aborted, "rejected %d requests from %s, then failed to reject the rest; run the command again", len(all), network)
		case err != nil:
			return nil, s.internal("rejecting enrollment requests by source", err)
		}
		if err != nil {
			break
		}
		all = append(all, ps...)
	}
	if len(all) == 0 {
		return nil, status.Errorf(codes.NotFound, "no waiting enrollment request comes from %s (a rejected request no longer waits); see 'devices pending'", network)
	}
	slices.SortFunc(all, func(a, b storage.PendingEnrollment) int { return strings.Compare(a.ID, b.ID) })
	s.log().Info("enrollment requests rejected by source", "source", network.String(), "requests", len(all))
	out := s.rejectedProtos(ctx, all[:min(len(all), MaxRejectedShown)])
	return &adminv1.RejectEnrollmentResponse{Pending: out[0], Rejected: out, RejectedCount: uint32(len(all))}, nil
}

// MaxRejectedShown bounds the requests a rejection by key returns, so that
// the answer for a key that waited for thousands of Macs stays well under
// a gRPC client's default 4 MB message limit.
const MaxRejectedShown = 500

// rejectedProtos is pendingProtos for requests just rejected: the
// rejection is committed, so a failure to find the devices on their serial
// numbers is logged and the requests are returned without them, rather
// than answering as if nothing had been rejected.
func (s *Server) rejectedProtos(ctx context.Context, ps []storage.PendingEnrollment) []*adminv1.PendingEnrollment {
	out, err := s.pendingProtos(ctx, ps)
	if err == nil {
		return out
	}
	s.log().Warn("finding the devices on rejected requests' serial numbers", "err", err)
	out = make([]*adminv1.PendingEnrollment, 0, len(ps))
	for _, p := range ps {
		out = append(out, pendingProto(p))
	}
	return out
}

// ImportKnownDevices implements AdminService.ImportKnownDevices.
func (s *Server) ImportKnownDevices(ctx context.Context, req *adminv1.ImportKnownDevicesRequest) (*adminv1.ImportKnownDevicesResponse, error) {
	n := len(req.GetDevices())
	switch {
	case n == 0:
		return nil, status.Error(codes.InvalidArgument, "devices is empty")
	case n > MaxImport:
		return nil, status.Errorf(codes.InvalidArgument, "%d devices in one call; send at most %d per call", n, MaxImport)
	case len(req.GetSource()) > 200:
		return nil, status.Error(codes.InvalidArgument, "source is longer than 200 characters")
	}
	if err := knownlist.ValidName(req.GetSource()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "source: %v", err)
	}
	now := s.now()
	ds := make([]storage.KnownDevice, 0, n)
	seen := map[string]bool{}
	for i, d := range req.GetDevices() {
		// Trimmed and upper-cased (ASCII only: Unicode case mapping would
		// turn look-alikes such as ı into ASCII letters).
		serial := upperASCII(strings.TrimSpace(d.GetSerialNumber()))
		if err := knownlist.ValidSerial(serial); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "devices[%d]: %v", i, err)
		}
		if err := knownlist.ValidName(d.GetName()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "devices[%d]: %v", i, err)
		}
		if seen[serial] {
			return nil, status.Errorf(codes.InvalidArgument, "devices[%d]: serial number %s is listed twice", i, serial)
		}
		seen[serial] = true
		ds = append(ds, storage.KnownDevice{SerialNumber: serial, Name: strings.TrimSpace(d.GetName()), Source: req.GetSource(), ImportedAt: now})
	}
	added, err := s.Store.ImportKnownDevices(ctx, ds, storage.AuditEvent{At: now, Actor: actor(ctx), Action: "device.import",
		Detail: fmt.Sprintf("%d serial numbers from %q", n, req.GetSource())})
	if err != nil {
		return nil, s.internal("importing known devices", err)
	}
	s.log().Info("known devices imported", "devices", n, "added", added, "source", req.GetSource())
	return &adminv1.ImportKnownDevicesResponse{Added: uint32(added), Updated: uint32(n - added)}, nil
}

func pendingProto(p storage.PendingEnrollment) *adminv1.PendingEnrollment {
	deviceKey := ""
	if len(p.DeviceKey) > 0 {
		deviceKey = enroll.KeyFingerprint(p.DeviceKey)
	}
	return &adminv1.PendingEnrollment{
		DeviceKeyFingerprint: deviceKey,
		RequestId:            p.ID,
		Facts: &agentv1.DeviceFacts{
			HardwareUuid: p.HardwareUUID, SerialNumber: p.SerialNumber, Model: p.Model, OsName: p.OSName,
			OsVersion: p.OSVersion, Hostname: p.Hostname, Platform: p.Platform, AgentVersion: p.AgentVersion,
		},
		DeviceId:        p.DeviceID,
		Reason:          p.Reason,
		Source:          p.Source,
		EnrollSecretId:  p.SecretID,
		RequestedAt:     ts(p.RequestedAt),
		LastRequestAt:   ts(p.LastRequestAt),
		Requests:        uint32(p.Requests),
		KeyFingerprint:  enroll.KeyFingerprint(p.PublicKey),
		RejectedAt:      ts(p.RejectedAt),
		DeviceRevokedAt: ts(p.DeviceRevokedAt),
	}
}

// upperASCII upper-cases ASCII letters only.
func upperASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
