package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// pendingColumns are the pending_enrollments table's columns in
// scanPending's order.
const pendingColumns = `id, hardware_uuid, serial_number, model, os_name, os_version, hostname,
	platform, agent_version, public_key, secret_id, device_id, reason, source, requested_at,
	last_request_at, requests, rejected_at, device_key, source_net, device_revoked_at`

func scanPending(sc scanner) (storage.PendingEnrollment, error) {
	var (
		p                                      storage.PendingEnrollment
		requestedAt, lastRequestAt, rejectedAt int64
		deviceRevokedAt                        int64
	)
	err := sc.Scan(&p.ID, &p.HardwareUUID, &p.SerialNumber, &p.Model, &p.OSName, &p.OSVersion,
		&p.Hostname, &p.Platform, &p.AgentVersion, &p.PublicKey, &p.SecretID, &p.DeviceID, &p.Reason,
		&p.Source, &requestedAt, &lastRequestAt, &p.Requests, &rejectedAt, &p.DeviceKey, &p.SourceNet, &deviceRevokedAt)
	if err != nil {
		return storage.PendingEnrollment{}, err
	}
	if len(p.DeviceKey) == 0 {
		p.DeviceKey = nil
	}
	p.RequestedAt = fromNS(requestedAt)
	p.LastRequestAt = fromNS(lastRequestAt)
	p.RejectedAt = fromNS(rejectedAt)
	p.DeviceRevokedAt = fromNS(deviceRevokedAt)
	return p, nil
}

// queryPending returns the request matching where (a fixed condition, never
// caller input) with args, or ErrNotFound.
func queryPending(ctx context.Context, q conn, what, where, lock string, args ...any) (storage.PendingEnrollment, error) {
	return one(ctx, q, scanPending, "enrollment request", "enrollment request "+what,
		`SELECT `+pendingColumns+` FROM pending_enrollments WHERE `+where+lock, args...)
}

// RequestEnrollment records or refreshes a request waiting for approval;
// see storage.ApprovalStore.
func (s *Store) RequestEnrollment(ctx context.Context, p storage.PendingEnrollment, limits storage.PendingLimits, audit storage.AuditEvent) (storage.PendingEnrollment, error) {
	p.HardwareUUID = storage.CanonicalHardwareUUID(p.HardwareUUID)
	if err := checkTexts(true, textField{"request id", p.ID}, textField{"hardware UUID", p.HardwareUUID}); err != nil {
		return storage.PendingEnrollment{}, fmt.Errorf("recording enrollment request: %w", err)
	}
	if err := checkTexts(false,
		textField{"serial number", p.SerialNumber}, textField{"model", p.Model}, textField{"os name", p.OSName},
		textField{"os version", p.OSVersion}, textField{"hostname", p.Hostname}, textField{"platform", p.Platform},
		textField{"agent version", p.AgentVersion}, textField{"secret id", p.SecretID}, textField{"device id", p.DeviceID},
		textField{"reason", p.Reason}, textField{"source", p.Source}, textField{"source net", p.SourceNet}); err != nil {
		return storage.PendingEnrollment{}, fmt.Errorf("recording enrollment request: %w", err)
	}
	if len(p.PublicKey) == 0 {
		return storage.PendingEnrollment{}, errors.New("recording enrollment request: empty public key")
	}
	if (p.DeviceID == "") != (len(p.DeviceKey) == 0) {
		return storage.PendingEnrollment{}, errors.New("recording enrollment request: a device id needs its key, and only it")
	}
	if p.DeviceID == "" && !p.DeviceRevokedAt.IsZero() {
		return storage.PendingEnrollment{}, errors.New("recording enrollment request: a revocation needs its device")
	}
	var c timeCodec
	at := c.ns("request time", p.LastRequestAt)
	deviceRevokedAt := c.ns("device revocation time", p.DeviceRevokedAt)
	c.ns("audit time", audit.At)
	var expired int64
	if limits.MaxAge > 0 {
		expired = c.ns("expiry", p.LastRequestAt.Add(-limits.MaxAge))
	}
	if c.err == nil && at == 0 {
		c.err = errors.New("zero request time")
	}
	if c.err != nil {
		return storage.PendingEnrollment{}, fmt.Errorf("recording enrollment request: %w", c.err)
	}

	var out storage.PendingEnrollment
	err := s.write(ctx, func(q conn) error {
		refiled := false
		if err := lockMac(ctx, q, p.HardwareUUID); err != nil {
			return err
		}
		// The request was decided on the device state it names; if that
		// is gone, recording it would show (and approving it would act
		// on) a state that no longer holds.
		d, err := lockDevice(ctx, q, "hardware_uuid", p.HardwareUUID)
		switch {
		case err == nil && !madeAgainst(d, p),
			errors.Is(err, storage.ErrNotFound) && p.DeviceID != "":
			return fmt.Errorf("hardware UUID %s changed since the request was checked: %w", p.HardwareUUID, storage.ErrKeyReplaced)
		case err == nil && d.Revoked() && bytes.Equal(d.PublicKey, p.PublicKey):
			// The key a revocation cut off never asks to come back: a
			// stolen Mac's key is what revocation is for.
			return fmt.Errorf("hardware UUID %s: its revoked key: %w", p.HardwareUUID, storage.ErrDeviceRevoked)
		case err != nil && !errors.Is(err, storage.ErrNotFound):
			return err
		}
		if err == nil && d.Revoked() {
			// Nor does a key the device held before it.
			had, err := hadKey(ctx, q, d.ID, p.PublicKey)
			if err != nil {
				return err
			}
			if had {
				return fmt.Errorf("hardware UUID %s: a key the revoked device held: %w", p.HardwareUUID, storage.ErrDeviceRevoked)
			}
		}
		if expired > 0 {
			// Other Macs' requests: one being decided (approved) is left
			// for the next clean-up rather than waited on.
			if _, err := q.exec(ctx, `DELETE FROM pending_enrollments WHERE id IN (SELECT id FROM pending_enrollments
				WHERE rejected_at = 0 AND last_request_at < $1`+q.s.d.SkipLocked+`)`, expired); err != nil {
				return fmt.Errorf("removing expired enrollment requests: %w", err)
			}
		}
		old, err := queryPending(ctx, q, "of "+p.HardwareUUID, `hardware_uuid = $1 AND public_key = $2`, q.s.d.LockRow,
			p.HardwareUUID, blob(p.PublicKey))
		switch {
		case err == nil && old.Rejected():
			out = old
			return fmt.Errorf("request %s: %w", old.ID, storage.ErrRequestRejected)
		case err == nil && !sameAsk(old, p):
			// What the security team reads of the request changed:
			// approving the id they read would enroll, or act on, what
			// they did not read. It goes, and this one is filed anew,
			// under another id; not audited again, as a request churning
			// through its own place is not, so that a key alternating
			// facts cannot grow the audit log.
			refiled = true
			if _, err := q.exec(ctx, `DELETE FROM pending_enrollments WHERE id = $1`, old.ID); err != nil {
				return fmt.Errorf("re-filing enrollment request: %w", err)
			}
		case err == nil:
			// The same ask (sameAsk): only its time and count move.
			if _, err := q.exec(ctx, `UPDATE pending_enrollments SET
				last_request_at = CASE WHEN last_request_at > $1 THEN last_request_at ELSE $1 END,
				requests = requests + 1
				WHERE id = $2`, at, old.ID); err != nil {
				return fmt.Errorf("refreshing enrollment request: %w", err)
			}
			out, err = queryPending(ctx, q, old.ID, `id = $1`, "", old.ID)
			return err
		case !errors.Is(err, storage.ErrNotFound):
			return err
		}

		// A new request: over a limit, it takes the place of the oldest
		// request that limit counts.
		churn, err := makeRoom(ctx, q, p, limits)
		if err != nil {
			return err
		}
		res, err := q.insert(ctx, "enrollment request", p.ID, `INSERT INTO pending_enrollments (`+pendingColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, 1, 0, $16, $17, $18)
			ON CONFLICT (hardware_uuid, public_key) DO NOTHING`,
			p.ID, p.HardwareUUID, p.SerialNumber, p.Model, p.OSName, p.OSVersion, p.Hostname, p.Platform,
			p.AgentVersion, blob(p.PublicKey), p.SecretID, p.DeviceID, p.Reason, p.Source, at, blob(p.DeviceKey), p.SourceNet,
			deviceRevokedAt)
		if err != nil {
			return err
		}
		// The same key's request committed after the lookup: refresh it.
		if err := oneRow(res, errRace); err != nil {
			return err
		}
		if !churn && !refiled {
			ev := audit
			if ev.DeviceID == "" {
				ev.DeviceID = p.DeviceID
			}
			if err := insertAudit(ctx, q, ev); err != nil {
				return err
			}
		}
		out, err = queryPending(ctx, q, p.ID, `id = $1`, "", p.ID)
		return err
	})
	if errors.Is(err, storage.ErrRequestRejected) {
		return out, fmt.Errorf("recording enrollment request: %w", err)
	}
	if err != nil {
		return storage.PendingEnrollment{}, fmt.Errorf("recording enrollment request: %w", err)
	}
	return out, nil
}

// sameAsk reports whether p asks for exactly what the stored request old
// shows the security team, so that p may refresh it in place (its time and
// count). Any other ask is filed anew under another id: an id that was
// read can only ever approve what was read. Each field, and why:
//   - serial number: the device keeps it for good, the known list and
//     Cloudflare match it;
//   - hostname, model, OS name and version, platform, agent version: the
//     facts a new device is enrolled with, and what tells a Mac from a
//     virtual machine or a Linux host; an OS or agent update while a
//     request waits files it anew too, which is rare and costs only the id;
//   - source: the approver checks that it is where the Mac is; a laptop
//     that moves files anew, which is safe and changes only the id;
//   - enroll secret: the one the device is enrolled under, which its
//     revocation lists;
//   - reason: a device enrolled on its serial since is a claim the approver
//     must be shown;
//   - device, its key and its revocation: the state approval would change
//     (requests made against another are removed when it changes; compared
//     anyway).
func sameAsk(old, p storage.PendingEnrollment) bool {
	return old.SerialNumber == p.SerialNumber && old.Hostname == p.Hostname && old.Model == p.Model &&
		old.OSName == p.OSName && old.OSVersion == p.OSVersion && old.Platform == p.Platform &&
		old.AgentVersion == p.AgentVersion && old.Source == p.Source && old.SourceNet == p.SourceNet &&
		old.SecretID == p.SecretID && old.Reason == p.Reason &&
		old.DeviceID == p.DeviceID && bytes.Equal(old.DeviceKey, p.DeviceKey) &&
		toNS(old.DeviceRevokedAt) == toNS(p.DeviceRevokedAt)
}

// madeAgainst reports whether d, the device that holds p's hardware UUID,
// is the state p was made against: the same device, key and revocation
// (a device revoked, or reinstated, since is another state).
func madeAgainst(d storage.Device, p storage.PendingEnrollment) bool {
	return d.ID == p.DeviceID && bytes.Equal(d.PublicKey, p.DeviceKey) && toNS(d.RevokedAt) == toNS(p.DeviceRevokedAt)
}

// makeRoom evicts waiting requests so that p fits each limit: for the
// hardware UUID, the oldest from p's source network first (a flood pushes
// out its own requests), else the oldest; for the source network and in
// all, the oldest. Oldest is by LastRequestAt: an agent that keeps asking
// stays. It reports whether it evicted a request from p's own source
// network: then p is a flood churning through its own places, and its
// creation is not audited either (evictions never are), so that a flood
// cannot grow the audit log without bound.
func makeRoom(ctx context.Context, q conn, p storage.PendingEnrollment, limits storage.PendingLimits) (evictedOwn bool, err error) {
	// One new request at a time counts and makes room, on every replica:
	// requests of different Macs (whose own locks do not meet) each saw
	// room under a limit and all went in, or found every candidate
	// already being evicted by another and were refused. The lock is
	// taken last, after the Mac's, and by nothing else, so it waits on no
	// lock order.
	if q.s.d.LockKey != "" {
		if _, err := q.exec(ctx, q.s.d.LockKey, "pending enrollment admission"); err != nil {
			return false, fmt.Errorf("locking enrollment admission: %w", err)
		}
	}
	for _, l := range []struct {
		max   int
		where string
		args  []any
		// order and its argument come first in ORDER BY.
		order    string
		orderArg []any
	}{
		{limits.PerDevice, `hardware_uuid = $1`, []any{p.HardwareUUID}, `CASE WHEN source_net = $2 THEN 0 ELSE 1 END, `, []any{p.SourceNet}},
		{limits.PerSource, `source_net = $1`, []any{p.SourceNet}, ``, nil},
		{limits.Total, `1 = 1`, nil, ``, nil},
	} {
		if l.max <= 0 {
			continue
		}
		// Counted again after each eviction. The oldest is taken among
		// those no other transaction is deciding on (an approval, a
		// rejection, a refresh).
		for {
			n, err := count(ctx, q, `SELECT count(*) FROM pending_enrollments WHERE rejected_at = 0 AND `+l.where, l.args...)
			if err != nil {
				return false, err
			}
			if n < l.max {
				break
			}
			id, net := "", ""
			err = q.queryRow(ctx, `SELECT id, source_net FROM pending_enrollments WHERE rejected_at = 0 AND `+l.where+`
				ORDER BY `+l.order+`last_request_at, id LIMIT 1`+q.s.d.SkipLocked, append(l.args, l.orderArg...)...).Scan(&id, &net)
			if errors.Is(err, sql.ErrNoRows) {
				return false, fmt.Errorf("%d requests wait: %w", n, storage.ErrTooManyPending)
			}
			if err != nil {
				return false, fmt.Errorf("finding the oldest enrollment request: %w", err)
			}
			if _, err := q.exec(ctx, `DELETE FROM pending_enrollments WHERE id = $1`, id); err != nil {
				return false, fmt.Errorf("evicting enrollment request: %w", err)
			}
			evictedOwn = evictedOwn || net == p.SourceNet
		}
	}
	return evictedOwn, nil
}

func count(ctx context.Context, q conn, query string, args ...any) (int, error) {
	var n int
	if err := q.queryRow(ctx, query, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting enrollment requests: %w", err)
	}
	return n, nil
}

// FindEnrollmentRequest returns the request of a hardware UUID and key, or
// ErrNotFound.
func (s *Store) FindEnrollmentRequest(ctx context.Context, hardwareUUID string, key []byte) (storage.PendingEnrollment, error) {
	u := storage.CanonicalHardwareUUID(hardwareUUID)
	return queryPending(ctx, s.reader(), "of "+u, `hardware_uuid = $1 AND public_key = $2`, "", u, blob(key))
}

// DeleteExpiredEnrollmentRequests removes waiting requests last asked before
// before; see storage.ApprovalStore.
func (s *Store) DeleteExpiredEnrollmentRequests(ctx context.Context, before time.Time) (int, error) {
	var c timeCodec
	b := c.ns("expiry", before)
	if c.err != nil {
		return 0, fmt.Errorf("removing expired enrollment requests: %w", c.err)
	}
	res, err := s.writer().exec(ctx, `DELETE FROM pending_enrollments WHERE rejected_at = 0 AND last_request_at < $1`, b)
	if err != nil {
		return 0, fmt.Errorf("removing expired enrollment requests: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// GetPendingEnrollment returns a request by ID, or ErrNotFound.
func (s *Store) GetPendingEnrollment(ctx context.Context, id string) (storage.PendingEnrollment, error) {
	return queryPending(ctx, s.reader(), fmt.Sprintf("%q", id), `id = $1`, "", id)
}

// ListPendingEnrollments returns up to limit (clamped to [1, 1000])
// waiting requests with ID > afterID, ordered by ID.
func (s *Store) ListPendingEnrollments(ctx context.Context, afterID string, limit int) ([]storage.PendingEnrollment, error) {
	ps, err := list(ctx, s.reader(), scanPending,
		`SELECT `+pendingColumns+` FROM pending_enrollments WHERE rejected_at = 0 AND id > $1 ORDER BY id LIMIT $2`,
		afterID, clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("listing enrollment requests: %w", err)
	}
	return ps, nil
}

// ApproveEnrollment enrolls a waiting request's key; see
// storage.ApprovalStore.
func (s *Store) ApproveEnrollment(ctx context.Context, a storage.Approval) (storage.Device, bool, error) {
	if a.NewDeviceID == "" {
		return storage.Device{}, false, errors.New("approving enrollment: empty device ID")
	}
	var c timeCodec
	at := c.ns("approval time", a.At)
	c.ns("audit time", a.Audit.At)
	if c.err == nil && at == 0 {
		c.err = errors.New("zero approval time")
	}
	if c.err != nil {
		return storage.Device{}, false, fmt.Errorf("approving enrollment: %w", c.err)
	}
	var (
		out     storage.Device
		existed bool
		stale   bool
		claimed bool
	)
	err := s.write(ctx, func(q conn) error {
		existed, stale, claimed = false, false, false
		// The hardware UUID's lock first, as a request does (lockMac),
		// then the request's row, read again under it.
		p, err := queryPending(ctx, q, fmt.Sprintf("%q", a.RequestID), `id = $1`, "", a.RequestID)
		if err != nil {
			return err
		}
		if err := lockMac(ctx, q, p.HardwareUUID); err != nil {
			return err
		}
		p, err = queryPending(ctx, q, fmt.Sprintf("%q", a.RequestID), `id = $1`, q.s.d.LockRow, a.RequestID)
		if err != nil {
			return err
		}
		if p.Rejected() {
			return fmt.Errorf("request %s: %w", p.ID, storage.ErrRequestRejected)
		}
		id := a.NewDeviceID
		old, err := lockDevice(ctx, q, "hardware_uuid", p.HardwareUUID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		found := err == nil
		if found && old.Revoked() {
			// The revoked key itself, or one the device held before it: no
			// approval brings it back.
			had, err := hadKey(ctx, q, old.ID, p.PublicKey)
			if err != nil {
				return err
			}
			if had || bytes.Equal(old.PublicKey, p.PublicKey) {
				return fmt.Errorf("hardware UUID %q: a key the revoked device held: %w", p.HardwareUUID, storage.ErrDeviceRevoked)
			}
		}
		// The request may be approved only for the state it was made
		// against: a "new device" request while no device holds the
		// hardware UUID, a key change while the device still has the key
		// it had, a reinstatement while the device is still revoked by the
		// revocation the request saw. Anything else would hand the
		// hardware UUID to a key on the strength of a request the security
		// team read about another state (a device revoked since, or
		// reinstated by another approval). The request is dropped
		// (committed) and refused.
		if found != (p.DeviceID != "") || found && !madeAgainst(old, p) {
			stale = true
			if _, err := q.exec(ctx, `DELETE FROM pending_enrollments WHERE id = $1`, p.ID); err != nil {
				return fmt.Errorf("removing stale request: %w", err)
			}
			ev := a.Audit
			ev.Action = "device.enroll_stale"
			ev.DeviceID = old.ID
			ev.Detail = fmt.Sprintf("request %s removed unapproved: hardware UUID %s enrolled, changed keys, was revoked or was reinstated since it was made", p.ID, p.HardwareUUID)
			return insertAudit(ctx, q, ev)
		}
		if !found {
			// A new device on a serial another device has: only if the
			// request said so all along, so that whoever approves it read
			// the claim (a Mac with a new logic board, or a stolen Mac's
			// serial). Else it says so from now on, and is refused once.
			if serial := storage.CanonicalSerial(p.SerialNumber); serial != "" {
				switch err := serialFree(ctx, q, serial); {
				case errors.Is(err, storage.ErrSerialEnrolled) && (a.ClaimReason == "" || p.Reason != a.ClaimReason):
					// Filed anew under another id, with the reason that
					// shows the claim: approving the id read before (a
					// retry, another approver's earlier listing) finds
					// nothing.
					claimed = true
					if a.ClaimReason == "" || a.NewRequestID == "" {
						return nil
					}
					if _, err := q.exec(ctx, `UPDATE pending_enrollments SET id = $1, reason = $2 WHERE id = $3`, a.NewRequestID, a.ClaimReason, p.ID); err != nil {
						return err
					}
					ev := a.Audit
					ev.Action = "device.enroll_approve_refused"
					ev.Detail = fmt.Sprintf("request %s claims serial %s, which a device has enrolled on since; filed anew as %s (%s)",
						p.ID, serial, a.NewRequestID, a.ClaimReason)
					return insertAudit(ctx, q, ev)
				case err != nil && !errors.Is(err, storage.ErrSerialEnrolled):
					return err
				}
			}
		}
		if err := approvalUse(ctx, q, p.SecretID); err != nil {
			return err
		}
		// The old certificate is for the old key: no certificate is
		// current until the agent picks up its own.
		d := storage.Device{
			ID: id, HardwareUUID: p.HardwareUUID, SerialNumber: storage.StoredSerial(p.SerialNumber),
			Model: p.Model, OSName: p.OSName, OSVersion: p.OSVersion, Hostname: p.Hostname,
			Platform: p.Platform, AgentVersion: p.AgentVersion, PublicKey: p.PublicKey,
			EnrolledAt: a.At, LastSeen: p.LastRequestAt, SecretID: p.SecretID,
		}
		if found {
			existed, d.ID = true, old.ID
			// Another key for the same hardware UUID is the same Mac: it
			// keeps the serial it enrolled with, whatever the request
			// reported (as a re-enrollment does).
			d.SerialNumber = old.SerialNumber
			if err := reenroll(ctx, q, d, 1); err != nil {
				return fmt.Errorf("replacing device key: %w", err)
			}
			if err := dropHeld(ctx, q, d.ID); err != nil {
				return err
			}
			if old.Revoked() {
				if err := reinstate(ctx, q, old); err != nil {
					return err
				}
			}
		} else if err := insertDevice(ctx, q, d); err != nil {
			return err
		}
		// The approved request, and the others waiting for this hardware
		// UUID: they were made against the state just replaced.
		if err := dropWaiting(ctx, q, p.HardwareUUID); err != nil {
			return err
		}
		out, err = enrolled(ctx, q, d.ID, a.Audit)
		return err
	})
	if err == nil && stale {
		err = fmt.Errorf("request %s: %w", a.RequestID, storage.ErrRequestStale)
	}
	if err == nil && claimed {
		err = fmt.Errorf("request %s: %w", a.RequestID, storage.ErrSerialEnrolled)
	}
	if err != nil {
		return storage.Device{}, false, fmt.Errorf("approving enrollment: %w", err)
	}
	return out, existed, nil
}

// reinstate clears the revoked device d's revocation, in the transaction
// that gives it the approved key. Its old device certificates name the old
// key, and are refused as superseded; its browser certificates that still
// counted stop counting from the revocation (it refused them until now), so
// that one issued before it, on a Mac that was out of the security team's
// hands, never speaks for the device again.
func reinstate(ctx context.Context, q conn, d storage.Device) error {
	at := toNS(d.RevokedAt)
	if _, err := q.exec(ctx, `UPDATE certs SET revoke_after = $1, revoked_reason = $2
		WHERE device_id = $3 AND kind = $4 AND (revoke_after = 0 OR revoke_after > $1)`,
		at, "device revoked: "+d.RevokedReason, d.ID, storage.CertKindBrowser); err != nil {
		return fmt.Errorf("ending the revoked device's browser certificates: %w", err)
	}
	if _, err := q.exec(ctx, `UPDATE devices SET revoked_at = 0, revoked_reason = '' WHERE id = $1`, d.ID); err != nil {
		return fmt.Errorf("reinstating device: %w", err)
	}
	return nil
}

// lockMacs takes the locks of the first maxMacs of macs (all of them when
// maxMacs is 0), in their order, and returns those it locked.
func lockMacs(ctx context.Context, q conn, macs []string, maxMacs int) ([]string, error) {
	if maxMacs > 0 && len(macs) > maxMacs {
		macs = macs[:maxMacs]
	}
	for _, mac := range macs {
		if err := lockMac(ctx, q, mac); err != nil {
			return nil, err
		}
	}
	return macs, nil
}

// lockMac orders the writes that decide on a hardware UUID's requests and
// device where several processes write (PostgreSQL): a request recorded
// while an approval of the same Mac commits would otherwise check the
// device before the approval made it, and file a "new device" request for
// the key just enrolled once the approval removed the one it waited on.
func lockMac(ctx context.Context, q conn, hardwareUUID string) error {
	if q.s.d.LockKey == "" {
		return nil
	}
	if _, err := q.exec(ctx, q.s.d.LockKey, "hardware uuid "+storage.CanonicalHardwareUUID(hardwareUUID)); err != nil {
		return fmt.Errorf("locking hardware UUID: %w", err)
	}
	return nil
}

// dropWaiting removes the requests waiting for a hardware UUID (not the
// rejected ones, which keep refusing their keys).
func dropWaiting(ctx context.Context, q conn, hardwareUUID string) error {
	if _, err := q.exec(ctx, `DELETE FROM pending_enrollments WHERE hardware_uuid = $1 AND rejected_at = 0`, hardwareUUID); err != nil {
		return fmt.Errorf("removing the requests waiting for hardware UUID %s: %w", hardwareUUID, err)
	}
	return nil
}

// RejectEnrollment marks a request rejected; see storage.ApprovalStore.
func (s *Store) RejectEnrollment(ctx context.Context, id string, at time.Time, limits storage.PendingLimits, audit storage.AuditEvent) (storage.PendingEnrollment, error) {
	if at.IsZero() {
		return storage.PendingEnrollment{}, errors.New("rejecting enrollment: zero rejection time")
	}
	var c timeCodec
	rejectedAt := c.ns("rejection time", at)
	c.ns("audit time", audit.At)
	if c.err != nil {
		return storage.PendingEnrollment{}, fmt.Errorf("rejecting enrollment: %w", c.err)
	}
	var out storage.PendingEnrollment
	err := s.write(ctx, func(q conn) error {
		// The hardware UUID's lock first, as an enrollment takes it: a key
		// is rejected before its enrollment reads the rejections, or its
		// enrollment commits first and removes the request.
		p, err := queryPending(ctx, q, fmt.Sprintf("%q", id), `id = $1`, "", id)
		if err != nil {
			return err
		}
		if err := lockMac(ctx, q, p.HardwareUUID); err != nil {
			return err
		}
		if _, err := q.exec(ctx, `UPDATE pending_enrollments SET rejected_at = $1 WHERE id = $2 AND rejected_at = 0`, rejectedAt, id); err != nil {
			return fmt.Errorf("updating enrollment request: %w", err)
		}
		if out, err = queryPending(ctx, q, fmt.Sprintf("%q", id), `id = $1`, "", id); err != nil {
			return err
		}
		if audit.DeviceID == "" {
			audit.DeviceID = out.DeviceID
		}
		if err := insertAudit(ctx, q, audit); err != nil {
			return err
		}
		return keepRejected(ctx, q, limits.Rejected)
	})
	if err != nil {
		return storage.PendingEnrollment{}, fmt.Errorf("rejecting enrollment: %w", err)
	}
	return out, nil
}

// RejectEnrollmentKey rejects the waiting requests of the one key whose
// fingerprint starts with prefix; see storage.ApprovalStore.
func (s *Store) RejectEnrollmentKey(ctx context.Context, prefix string, maxMacs int, at time.Time, limits storage.PendingLimits, audit storage.AuditEvent) ([]storage.PendingEnrollment, error) {
	prefix = strings.ToLower(prefix)
	if !hexPrefix(prefix) {
		return nil, fmt.Errorf("rejecting enrollment key: %q is not 1 to 64 hex digits", prefix)
	}
	if at.IsZero() {
		return nil, errors.New("rejecting enrollment key: zero rejection time")
	}
	var c timeCodec
	rejectedAt := c.ns("rejection time", at)
	c.ns("audit time", audit.At)
	if c.err != nil {
		return nil, fmt.Errorf("rejecting enrollment key: %w", c.err)
	}
	var out []storage.PendingEnrollment
	err := s.write(ctx, func(q conn) error {
		out = nil
		// 1. The key, among the waiting requests' (a fingerprint is no
		// column; they are at most PendingLimits.Total), and the hardware
		// UUIDs it waits for.
		key, macs, err := waitingKey(ctx, q, prefix)
		if err != nil {
			return err
		}
		// 2. Each hardware UUID's lock, as RejectEnrollment takes one, in
		// one order whoever takes several: two rejections of keys that
		// share hardware UUIDs queue, never wait on each other.
		if macs, err = lockMacs(ctx, q, macs, maxMacs); err != nil {
			return err
		}
		// 3. The key's requests as they are under the locks: one filed
		// anew since has another id, one answered since is gone.
		for _, mac := range macs {
			p, err := queryPending(ctx, q, "of "+mac, `hardware_uuid = $1 AND public_key = $2 AND rejected_at = 0`, q.s.d.LockRow, mac, blob(key))
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if p, err = markRejected(ctx, q, p, rejectedAt, audit); err != nil {
				return err
			}
			out = append(out, p)
		}
		if len(out) == 0 {
			return fmt.Errorf("key %s: its requests were answered meanwhile: %w", storage.KeyFingerprint(key), storage.ErrNotFound)
		}
		slices.SortFunc(out, func(a, b storage.PendingEnrollment) int { return strings.Compare(a.ID, b.ID) })
		return keepRejected(ctx, q, limits.Rejected)
	})
	if err != nil {
		return nil, fmt.Errorf("rejecting enrollment key: %w", err)
	}
	return out, nil
}

// markRejected rejects the waiting request p, locked, with an audit event
// of its own: audit, its DeviceID filled in as RejectEnrollment does and its
// Detail led by the request's id and hardware UUID.
func markRejected(ctx context.Context, q conn, p storage.PendingEnrollment, rejectedAt int64, audit storage.AuditEvent) (storage.PendingEnrollment, error) {
	if _, err := q.exec(ctx, `UPDATE pending_enrollments SET rejected_at = $1 WHERE id = $2`, rejectedAt, p.ID); err != nil {
		return p, fmt.Errorf("updating enrollment request: %w", err)
	}
	p.RejectedAt = fromNS(rejectedAt)
	ev := audit
	if ev.DeviceID == "" {
		ev.DeviceID = p.DeviceID
	}
	ev.Detail = fmt.Sprintf("request %s, hardware UUID %s", p.ID, p.HardwareUUID)
	if audit.Detail != "" {
		ev.Detail += ", " + audit.Detail
	}
	return p, insertAudit(ctx, q, ev)
}

// RejectEnrollmentSource rejects the waiting requests from a network; see
// storage.ApprovalStore.
func (s *Store) RejectEnrollmentSource(ctx context.Context, network netip.Prefix, maxMacs int, at time.Time, limits storage.PendingLimits, audit storage.AuditEvent) ([]storage.PendingEnrollment, error) {
	if !network.IsValid() || network != network.Masked() {
		return nil, fmt.Errorf("rejecting enrollment requests by source: %s is not a network", network)
	}
	if at.IsZero() {
		return nil, errors.New("rejecting enrollment requests by source: zero rejection time")
	}
	var c timeCodec
	rejectedAt := c.ns("rejection time", at)
	c.ns("audit time", audit.At)
	if c.err != nil {
		return nil, fmt.Errorf("rejecting enrollment requests by source: %w", c.err)
	}
	var out []storage.PendingEnrollment
	err := s.write(ctx, func(q conn) error {
		out = nil
		// 1. The hardware UUIDs that requests from the network wait for
		// (a source is text, compared as an address here: they are at most
		// PendingLimits.Total).
		macs, err := waitingFrom(ctx, q, network)
		if err != nil {
			return err
		}
		// 2. Each hardware UUID's lock, in order, as RejectEnrollmentKey
		// takes them.
		if macs, err = lockMacs(ctx, q, macs, maxMacs); err != nil {
			return err
		}
		// 3. Their requests from the network as they are under the locks.
		for _, mac := range macs {
			ps, err := list(ctx, q, scanPending, `SELECT `+pendingColumns+` FROM pending_enrollments
				WHERE hardware_uuid = $1 AND rejected_at = 0 ORDER BY id`+q.s.d.LockRow, mac)
			if err != nil {
				return fmt.Errorf("reading enrollment requests: %w", err)
			}
			for _, p := range ps {
				if !storage.SourceIn(p.Source, network) {
					continue
				}
				if p, err = markRejected(ctx, q, p, rejectedAt, audit); err != nil {
					return err
				}
				out = append(out, p)
			}
		}
		if len(out) == 0 {
			return fmt.Errorf("no enrollment request from %s waits: %w", network, storage.ErrNotFound)
		}
		slices.SortFunc(out, func(a, b storage.PendingEnrollment) int { return strings.Compare(a.ID, b.ID) })
		return keepRejected(ctx, q, limits.Rejected)
	})
	if err != nil {
		return nil, fmt.Errorf("rejecting enrollment requests by source: %w", err)
	}
	return out, nil
}

// waitingFrom returns the hardware UUIDs that waiting requests from network
// wait for, sorted, each once.
func waitingFrom(ctx context.Context, q conn, network netip.Prefix) ([]string, error) {
	rows, err := q.query(ctx, `SELECT hardware_uuid, source FROM pending_enrollments WHERE rejected_at = 0`)
	if err != nil {
		return nil, fmt.Errorf("reading the waiting requests' sources: %w", err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	var macs []string
	for rows.Next() {
		var mac, source string
		if err := rows.Scan(&mac, &source); err != nil {
			return nil, fmt.Errorf("reading the waiting requests' sources: %w", err)
		}
		if storage.SourceIn(source, network) && !seen[mac] {
			seen[mac] = true
			macs = append(macs, mac)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the waiting requests' sources: %w", err)
	}
	slices.Sort(macs)
	return macs, nil
}

// keepRejected removes the oldest rejected requests (by rejection time,
// then id) beyond keep (zero: keeps all). Only the security team records
// rejections, but each rejection of a flood's requests (up to the waiting
// bound at a time, again and again) would otherwise stay for good. Losing
// an old rejection fails safe: its key asking again is decided as any
// other request, and under the policy that made it wait, waits again.
func keepRejected(ctx context.Context, q conn, keep int) error {
	if keep <= 0 {
		return nil
	}
	// One rejection at a time counts and removes, on every replica, so
	// that two do not both remove the same excess. The lock is taken
	// last, after the Macs', and by nothing else, so it waits on no lock
	// order.
	if q.s.d.LockKey != "" {
		if _, err := q.exec(ctx, q.s.d.LockKey, "rejected enrollment requests"); err != nil {
			return fmt.Errorf("locking rejected enrollment requests: %w", err)
		}
	}
	n, err := count(ctx, q, `SELECT count(*) FROM pending_enrollments WHERE rejected_at <> 0`)
	if err != nil || n <= keep {
		return err
	}
	if _, err := q.exec(ctx, `DELETE FROM pending_enrollments WHERE id IN (SELECT id FROM pending_enrollments
		WHERE rejected_at <> 0 ORDER BY rejected_at, id LIMIT $1)`, n-keep); err != nil {
		return fmt.Errorf("removing the oldest rejected enrollment requests: %w", err)
	}
	return nil
}

// waitingKey returns the one key of the waiting requests whose fingerprint
// starts with prefix, and the hardware UUIDs it waits for, sorted:
// ErrNotFound if none has it, an *storage.AmbiguousKeyError if several do.
func waitingKey(ctx context.Context, q conn, prefix string) ([]byte, []string, error) {
	rows, err := q.query(ctx, `SELECT hardware_uuid, public_key FROM pending_enrollments WHERE rejected_at = 0`)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the waiting requests' keys: %w", err)
	}
	defer rows.Close()
	var (
		key  []byte
		fp   string
		macs []string
		keys = map[string]bool{}
	)
	for rows.Next() {
		var (
			mac string
			k   []byte
		)
		if err := rows.Scan(&mac, &k); err != nil {
			return nil, nil, fmt.Errorf("reading the waiting requests' keys: %w", err)
		}
		f := storage.KeyFingerprint(k)
		if !strings.HasPrefix(f, prefix) {
			continue
		}
		keys[f] = true
		if fp == "" || f == fp {
			key, fp = k, f
			macs = append(macs, mac)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("reading the waiting requests' keys: %w", err)
	}
	switch {
	case len(keys) == 0:
		return nil, nil, fmt.Errorf("no waiting request's key has a fingerprint starting with %s: %w", prefix, storage.ErrNotFound)
	case len(keys) > 1:
		return nil, nil, &storage.AmbiguousKeyError{Prefix: prefix, Keys: len(keys)}
	}
	// One request per hardware UUID and key: the UUIDs are distinct.
	slices.Sort(macs)
	return key, macs, nil
}

// hexPrefix reports whether s is 1 to 64 lowercase hex digits: the start
// of a key fingerprint.
func hexPrefix(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// ImportKnownDevices adds or updates known serial numbers in one
// transaction; see storage.ApprovalStore.
func (s *Store) ImportKnownDevices(ctx context.Context, ds []storage.KnownDevice, audit storage.AuditEvent) (int, error) {
	var c timeCodec
	c.ns("audit time", audit.At)
	for i := range ds {
		c.ns("import time", ds[i].ImportedAt)
		if err := checkTexts(false, textField{"name", ds[i].Name}, textField{"source", ds[i].Source}); err != nil {
			return 0, fmt.Errorf("importing known devices: serial %q: %w", ds[i].SerialNumber, err)
		}
		if !listedSerial(ds[i].SerialNumber) {
			return 0, fmt.Errorf("importing known devices: serial %q is not upper-case ASCII", ds[i].SerialNumber)
		}
		if err := checkText("serial", ds[i].SerialNumber, storage.MaxTextLen); err != nil {
			return 0, fmt.Errorf("importing known devices: %w", err)
		}
	}
	if c.err != nil {
		return 0, fmt.Errorf("importing known devices: %w", c.err)
	}
	// In one order, whoever imports: two imports of the same serials lock
	// their rows one after the other, never each waiting on the other.
	ds = slices.SortedFunc(slices.Values(ds), func(a, b storage.KnownDevice) int { return strings.Compare(a.SerialNumber, b.SerialNumber) })
	var added int
	err := s.write(ctx, func(q conn) error {
		added = 0
		for _, d := range ds {
			found, err := exists(ctx, q, `SELECT 1 FROM known_devices WHERE serial_number = $1`, d.SerialNumber)
			if err != nil {
				return fmt.Errorf("reading known device: %w", err)
			}
			if !found {
				added++
			}
			if _, err := q.exec(ctx, `INSERT INTO known_devices (serial_number, name, source, imported_at)
				VALUES ($1, $2, $3, $4)
				ON CONFLICT (serial_number) DO UPDATE SET name = excluded.name, source = excluded.source,
				imported_at = excluded.imported_at`,
				d.SerialNumber, d.Name, d.Source, toNS(d.ImportedAt)); err != nil {
				return fmt.Errorf("storing known device: %w", err)
			}
		}
		return insertAudit(ctx, q, audit)
	})
	if err != nil {
		return 0, fmt.Errorf("importing known devices: %w", err)
	}
	return added, nil
}

// GetKnownDevice returns a known serial number, or ErrNotFound.
func (s *Store) GetKnownDevice(ctx context.Context, serial string) (storage.KnownDevice, error) {
	if serial = storage.CanonicalSerial(serial); serial == "" {
		return storage.KnownDevice{}, fmt.Errorf("known device: serial without a canonical form: %w", storage.ErrNotFound)
	}
	return one(ctx, s.reader(), scanKnownDevice, "known device", fmt.Sprintf("known device %q", serial),
		`SELECT serial_number, name, source, imported_at FROM known_devices WHERE serial_number = $1`, serial)
}

func scanKnownDevice(sc scanner) (storage.KnownDevice, error) {
	var (
		d  storage.KnownDevice
		at int64
	)
	if err := sc.Scan(&d.SerialNumber, &d.Name, &d.Source, &at); err != nil {
		return storage.KnownDevice{}, err
	}
	d.ImportedAt = fromNS(at)
	return d, nil
}

// listedSerial reports whether s may be on the known list: printable ASCII
// without lower case, trimmed. (Only canonical ones ever match a device.)
func listedSerial(s string) bool {
	if s == "" || s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || 'a' <= c && c <= 'z' {
			return false
		}
	}
	return true
}

// GetDeviceBySerial returns a device with serial's canonical form, an
// unrevoked one first, or ErrNotFound.
func (s *Store) GetDeviceBySerial(ctx context.Context, serial string) (storage.Device, error) {
	c := storage.CanonicalSerial(serial)
	if c == "" {
		return storage.Device{}, fmt.Errorf("device: serial without a canonical form: %w", storage.ErrNotFound)
	}
	return one(ctx, s.reader(), scanDevice, "device", fmt.Sprintf("device with serial %q", c), `SELECT `+deviceColumns+` FROM devices
		WHERE serial_number = $1 ORDER BY revoked_at = 0 DESC, id LIMIT 1`, c)
}

// SerialHolders returns the devices on each of serials, a few per serial;
// see storage.ApprovalStore.
func (s *Store) SerialHolders(ctx context.Context, serials []string, perSerial int) (map[string]storage.SerialHolders, error) {
	perSerial = clampLimit(perSerial)
	canonical := make([]string, 0, len(serials))
	seen := make(map[string]bool, len(serials))
	for _, v := range serials {
		if c := storage.CanonicalSerial(v); c != "" && !seen[c] {
			seen[c] = true
			canonical = append(canonical, c)
		}
	}
	out := map[string]storage.SerialHolders{}
	for len(canonical) > 0 {
		n := min(len(canonical), lookupChunk)
		chunk := canonical[:n]
		canonical = canonical[n:]
		// The same comparison as GetDeviceBySerial (serial_number, which
		// the devices_serial_number index holds, equal to the canonical
		// form), ranked within each serial as it ranks them.
		var q strings.Builder
		args := make([]any, 0, n+1)
		q.WriteString(`SELECT ` + deviceColumns + `, holders FROM (SELECT ` + deviceColumns + `,
			row_number() OVER (PARTITION BY serial_number ORDER BY revoked_at = 0 DESC, id) AS place,
			count(*) OVER (PARTITION BY serial_number) AS holders
			FROM devices WHERE serial_number IN (`)
		for i, c := range chunk {
			if i > 0 {
				q.WriteByte(',')
			}
			args = append(args, c)
			q.WriteString("$" + strconv.Itoa(len(args)))
		}
		args = append(args, perSerial)
		q.WriteString(`)) held WHERE place <= $` + strconv.Itoa(len(args)) + ` ORDER BY serial_number, place`)
		held, err := list(ctx, s.reader(), func(sc scanner) (storage.SerialHolders, error) {
			var h storage.SerialHolders
			d, err := scanDevice(withExtra{sc, []any{&h.Total}})
			h.Devices = []storage.Device{d}
			return h, err
		}, q.String(), args...)
		if err != nil {
			return nil, fmt.Errorf("finding the devices on serial numbers: %w", err)
		}
		for _, h := range held {
			serial := h.Devices[0].SerialNumber
			got := out[serial]
			got.Devices = append(got.Devices, h.Devices[0])
			got.Total = h.Total
			out[serial] = got
		}
	}
	return out, nil
}

// withExtra scans a row's leading columns as its scanner's caller asks, and
// the columns after them into extra.
type withExtra struct {
	sc    scanner
	extra []any
}

func (w withExtra) Scan(dest ...any) error {
	return w.sc.Scan(append(dest, w.extra...)...)
}
