package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// deviceColumns are the devices table's columns in scanDevice's order.
const deviceColumns = `id, hardware_uuid, serial_number, model, os_name, os_version, hostname,
	platform, agent_version, public_key, cert_serial, cert_not_after, enrolled_at, enrollments,
	last_seen, last_seq, last_report_at, revoked_at, revoked_reason, secret_id,
	settings_rejected_at, settings_rejected`

func scanDevice(sc scanner) (storage.Device, error) {
	var (
		d                                  storage.Device
		certNotAfter, enrolledAt, lastSeen int64
		lastSeq, lastReportAt, revokedAt   int64
		settingsRejectedAt                 int64
	)
	err := sc.Scan(&d.ID, &d.HardwareUUID, &d.SerialNumber, &d.Model, &d.OSName, &d.OSVersion,
		&d.Hostname, &d.Platform, &d.AgentVersion, &d.PublicKey, &d.CertSerial, &certNotAfter,
		&enrolledAt, &d.Enrollments, &lastSeen, &lastSeq, &lastReportAt, &revokedAt, &d.RevokedReason, &d.SecretID,
		&settingsRejectedAt, &d.SettingsRejected)
	if err != nil {
		return storage.Device{}, err
	}
	d.SettingsRejectedAt = fromNS(settingsRejectedAt)
	d.CertNotAfter = fromNS(certNotAfter)
	d.EnrolledAt = fromNS(enrolledAt)
	d.LastSeen = fromNS(lastSeen)
	d.LastSeq = uint64(lastSeq) // never negative: CHECK (last_seq >= 0)
	d.LastReportAt = fromNS(lastReportAt)
	d.RevokedAt = fromNS(revokedAt)
	return d, nil
}

// getDevice returns the device matching column = value, or ErrNotFound.
// column is one of a fixed set of names, never caller input.
func getDevice(ctx context.Context, q conn, column, value string) (storage.Device, error) {
	return queryDevice(ctx, q, column, value, "")
}

// lockDevice is getDevice inside a write transaction: the row stays locked
// until the commit, so a concurrent writer deciding on the same device
// (revoke, enroll, report) waits and then sees this one's outcome.
func lockDevice(ctx context.Context, q conn, column, value string) (storage.Device, error) {
	return queryDevice(ctx, q, column, value, q.s.d.LockRow)
}

// lockUnrevoked is lockDevice by ID for a write that a revoked device must
// not get: ErrDeviceRevoked for one.
func lockUnrevoked(ctx context.Context, q conn, id string) (storage.Device, error) {
	d, err := lockDevice(ctx, q, "id", id)
	if err != nil {
		return storage.Device{}, err
	}
	if d.Revoked() {
		return storage.Device{}, fmt.Errorf("device %q: %w", d.ID, storage.ErrDeviceRevoked)
	}
	return d, nil
}

func queryDevice(ctx context.Context, q conn, column, value, lock string) (storage.Device, error) {
	return one(ctx, q, scanDevice, "device", fmt.Sprintf("device %s %q", column, value),
		hotRead(`SELECT `+deviceColumns+` FROM devices WHERE `+column+` = $1`+lock), value)
}

// lastSeenAt is the SQL that moves last_seen forward to the parameter, never
// back (a portable max()).
func lastSeenAt(param string) string {
	return `last_seen = CASE WHEN last_seen > ` + param + ` THEN last_seen ELSE ` + param + ` END`
}

// EnrollDevice commits an enrollment: see storage.Enrollment.
func (s *Store) EnrollDevice(ctx context.Context, e storage.Enrollment) (storage.Device, bool, error) {
	in := e.Device
	in.HardwareUUID = storage.CanonicalHardwareUUID(in.HardwareUUID)
	if in.ID == "" {
		return storage.Device{}, false, errors.New("enrolling device: empty device ID")
	}
	// An empty hardware UUID would make every such machine a re-enrollment
	// of the first one.
	if in.HardwareUUID == "" {
		return storage.Device{}, false, errors.New("enrolling device: empty hardware UUID")
	}
	var c timeCodec
	c.ns("device cert not after", in.CertNotAfter)
	// EnrolledAt is this enrollment's time. It is the device's first one only
	// for a new device, but it is always a moment the device was seen.
	enrolledAt := c.ns("enrolled at", in.EnrolledAt)
	certNotBefore := c.ns("cert not before", e.Cert.NotBefore)
	c.ns("cert not after", e.Cert.NotAfter)
	c.ns("audit time", e.Audit.At)
	if e.Collect != nil {
		c.ns("collection audit time", e.Collect.At)
	}
	if c.err != nil {
		return storage.Device{}, false, fmt.Errorf("enrolling device: %w", c.err)
	}

	var (
		out        storage.Device
		reenrolled bool
	)
	err := s.write(ctx, func(q conn) error {
		reenrolled = false // a retried attempt starts over
		id := in.ID
		if err := lockMac(ctx, q, in.HardwareUUID); err != nil {
			return err
		}
		old, err := lockDevice(ctx, q, "hardware_uuid", in.HardwareUUID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		found := err == nil
		sameKey := found && bytes.Equal(old.PublicKey, in.PublicKey)
		collect := false

		// 1. A key the security team rejected for this hardware UUID
		// never enrolls, whatever admitted it.
		rejected, err := exists(ctx, q, `SELECT 1 FROM pending_enrollments
			WHERE hardware_uuid = $1 AND public_key = $2 AND rejected_at <> 0`, in.HardwareUUID, blob(in.PublicKey))
		if err != nil {
			return fmt.Errorf("reading enrollment requests: %w", err)
		}
		if rejected {
			return fmt.Errorf("hardware UUID %q with this key: %w", in.HardwareUUID, storage.ErrRequestRejected)
		}

		// The serial a new device is admitted on, or a device with none
		// takes, must still be free; its lock is taken before the secret's
		// row, in the order an approval takes them.
		takesSerial := e.Checked != nil && e.Checked.Serial != "" && (!found || storage.CanonicalSerial(old.SerialNumber) == "")
		if takesSerial {
			if err := serialFree(ctx, q, e.Checked.Serial); err != nil {
				return err
			}
		}

		// 2. The secret must still be valid when a new device's enrollment
		// commits, and it spends a use. A re-enrollment is the device
		// keeping its enrollment (its key again, or a new one the current
		// key signed): it needs only an unrevoked secret, spends nothing,
		// and keeps the secret its enrollment began with. (The requests
		// that propose an unproven key wait for approval, which spends a
		// use.)
		// A reinstall the security team expected is admitted as an
		// approval is: the secret it presents enrolls the new key, spends
		// a use and becomes the device's, but must be valid on its own.
		secretID := e.SecretID
		reinstall := found && e.Checked != nil && !e.Checked.Reinstall.IsZero()
		if found && !reinstall {
			if err := holdSecret(ctx, q, e.SecretID); err != nil {
				return err
			}
			secretID = old.SecretID
		} else if err := useSecret(ctx, q, e.SecretID, enrolledAt); err != nil {
			return err
		}

		// 3. Re-enroll the device with this hardware UUID, or create one.
		d := in
		d.SerialNumber = storage.StoredSerial(in.SerialNumber)
		d.LastSeen = in.EnrolledAt
		d.SecretID = secretID
		switch {
		case found:
			if old.Revoked() {
				return fmt.Errorf("hardware UUID %q: %w", in.HardwareUUID, storage.ErrDeviceRevoked)
			}
			if e.Checked != nil && (e.Checked.Key == nil || !bytes.Equal(e.Checked.Key, old.PublicKey)) {
				return fmt.Errorf("hardware UUID %q changed keys since the request was checked: %w", in.HardwareUUID, storage.ErrKeyReplaced)
			}
			if e.Checked != nil && !e.Checked.Reinstall.IsZero() {
				until, err := reinstallUntil(ctx, q, old.ID)
				if err != nil {
					return err
				}
				if !e.Checked.Reinstall.Before(until) {
					return fmt.Errorf("device %s: %w", old.ID, storage.ErrReinstallNotExpected)
				}
			}
			if err := certLimit(ctx, q, old.ID, storage.CertKindDevice, certNotBefore, e.Limit); err != nil {
				return err
			}
			reenrolled = true
			id = old.ID
			d.ID = id
			// A re-enrollment keeps the serial number the device was
			// enrolled or approved with: proving the key proves the
			// hardware UUID, not a serial (the service refuses another),
			// but for a device enrolled with none, which takes the first
			// the service checked, if it is still free.
			d.SerialNumber = old.SerialNumber
			if takesSerial {
				d.SerialNumber = storage.StoredSerial(in.SerialNumber)
			}
			// An approved key's first certificate: the approval counted.
			collect = e.Collect != nil && sameKey && old.CertSerial == ""
			count := 1
			if collect {
				count = 0
			}
			if err := reenroll(ctx, q, d, count); err != nil {
				return fmt.Errorf("re-enrolling device: %w", err)
			}
		default:
			if e.Checked != nil && e.Checked.Key != nil {
				return fmt.Errorf("hardware UUID %q: %w", in.HardwareUUID, storage.ErrNotFound)
			}
			// The enrollment is the first time the device was seen.
			if err := insertDevice(ctx, q, d); err != nil {
				return err
			}
		}

		// 4. Record the issued certificate under the final ID.
		cert := e.Cert
		cert.DeviceID = id
		if err := s.insertCert(ctx, q, cert); err != nil {
			return err
		}

		// 5. A new device or a new key: the requests waiting for this
		// hardware UUID were made against the state just replaced.
		// The same key: those made against another state (a "new device"
		// request filed as the device was approved) are stale all the same.
		if !sameKey {
			if err := dropWaiting(ctx, q, in.HardwareUUID); err != nil {
				return err
			}
			if found {
				if err := dropHeld(ctx, q, id); err != nil {
					return err
				}
			}
		} else if _, err := q.exec(ctx, `DELETE FROM pending_enrollments WHERE hardware_uuid = $1 AND rejected_at = 0
			AND (device_id <> $2 OR device_key <> $3)`, in.HardwareUUID, id, blob(old.PublicKey)); err != nil {
			return fmt.Errorf("removing stale requests for hardware UUID %s: %w", in.HardwareUUID, err)
		}

		// 6. Audit.
		ev := e.Audit
		if collect {
			ev = *e.Collect
		}
		out, err = enrolled(ctx, q, id, ev)
		return err
	})
	if err != nil {
		return storage.Device{}, false, fmt.Errorf("enrolling device: %w", err)
	}
	return out, reenrolled, nil
}

// reenroll gives the device d.ID a new enrollment: d's serial number and
// platform, key, certificate and secret, count enrollments more (1; 0 for
// an approved key collecting its first certificate), and last_seen
// moved forward to d.LastSeen. Its ID, enrolled_at, report history and
// last_report_at stay, and so do its model, OS, hostname and agent
// version: those change only as its agent's Hello gives them
// (UpdateDeviceFacts: audited, and bounded per device), not by enrolling
// again with the same key. The new key restarts the report sequence. d's
// times were checked.
func reenroll(ctx context.Context, q conn, d storage.Device, count int) error {
	_, err := q.exec(ctx, `UPDATE devices SET
		serial_number = $1, platform = $2, public_key = $3, cert_serial = $4,
		cert_not_after = $5, enrollments = enrollments + $9, last_seq = 0, `+lastSeenAt("$6")+`,
		secret_id = $8
		WHERE id = $7`,
		d.SerialNumber, d.Platform, blob(d.PublicKey), d.CertSerial,
		toNS(d.CertNotAfter), toNS(d.LastSeen), d.ID, d.SecretID, count)
	if err != nil {
		return err
	}
	// Any enrollment of the device (an approval and a reinstatement
	// included) ends an expected reinstall: it admits one change at most.
	if err := endReinstall(ctx, q, d.ID); err != nil {
		return err
	}
	return rememberKey(ctx, q, d.ID, d.PublicKey)
}

// dropHeld forgets the sign-ins held for the device (storage.PendingSignIn):
// each was proven by the key the device had then, or by a certificate for
// it, and "Check again" decides it from the device's posture now. Once
// that key is replaced or the device revoked, the browser that holds one
// has proven nothing about the device that now answers for it.
func dropHeld(ctx context.Context, q conn, deviceID string) error {
	if _, err := q.exec(ctx, `DELETE FROM pending_sign_ins WHERE device_id = $1`, deviceID); err != nil {
		return fmt.Errorf("forgetting the sign-ins held for %s: %w", deviceID, err)
	}
	return nil
}

// endReinstall forgets the device's expected reinstall, if any.
func endReinstall(ctx context.Context, q conn, deviceID string) error {
	if _, err := q.exec(ctx, `DELETE FROM reinstall_expected WHERE device_id = $1`, deviceID); err != nil {
		return fmt.Errorf("ending the expected reinstall of %s: %w", deviceID, err)
	}
	return nil
}

// UpdateDeviceFacts implements storage.DeviceStore.
func (s *Store) UpdateDeviceFacts(ctx context.Context, d storage.Device, audit storage.AuditEvent) error {
	return s.write(ctx, func(q conn) error {
		res, err := q.exec(ctx, `UPDATE devices SET model = $1, os_name = $2, os_version = $3, hostname = $4, agent_version = $5
			WHERE id = $6 AND revoked_at = 0`, d.Model, d.OSName, d.OSVersion, d.Hostname, d.AgentVersion, d.ID)
		if err != nil {
			return fmt.Errorf("updating device facts: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 1 {
			audit.DeviceID = d.ID
			return insertAudit(ctx, q, audit)
		}
		cur, err := getDevice(ctx, q, "id", d.ID)
		if err != nil {
			return err
		}
		if cur.Revoked() {
			return storage.ErrDeviceRevoked
		}
		return fmt.Errorf("updating device facts: %d rows", n)
	})
}

// rememberKey records that the device id holds key (storage.DeviceKeys).
func rememberKey(ctx context.Context, q conn, id string, key []byte) error {
	if _, err := q.exec(ctx, `INSERT INTO device_keys (device_id, public_key) VALUES ($1, $2)
		ON CONFLICT (device_id, public_key) DO NOTHING`, id, blob(key)); err != nil {
		return fmt.Errorf("recording the device's key: %w", err)
	}
	return nil
}

// hadKey reports whether the device id has ever held key.
func hadKey(ctx context.Context, q conn, id string, key []byte) (bool, error) {
	var n int
	if err := q.queryRow(ctx, `SELECT count(*) FROM device_keys WHERE device_id = $1 AND public_key = $2`, id, blob(key)).Scan(&n); err != nil {
		return false, fmt.Errorf("reading the device's keys: %w", err)
	}
	return n > 0, nil
}

// DeviceHadKey reports whether the device id has ever held key: its
// current one, or one it held before (storage.DeviceStore).
func (s *Store) DeviceHadKey(ctx context.Context, id string, key []byte) (bool, error) {
	return hadKey(ctx, s.reader(), id, key)
}

// insertDevice stores d as a new device enrolled once, at d.EnrolledAt:
// counters and revocation start fresh whatever d says. d's times were
// checked.
func insertDevice(ctx context.Context, q conn, d storage.Device) error {
	res, err := q.insert(ctx, "device", d.ID, `INSERT INTO devices (
		id, hardware_uuid, serial_number, model, os_name, os_version, hostname,
		platform, agent_version, public_key, cert_serial, cert_not_after,
		enrolled_at, enrollments, last_seen, secret_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $14, $15)
		ON CONFLICT (hardware_uuid) DO NOTHING`,
		d.ID, d.HardwareUUID, d.SerialNumber, d.Model, d.OSName, d.OSVersion, d.Hostname,
		d.Platform, d.AgentVersion, blob(d.PublicKey), d.CertSerial, toNS(d.CertNotAfter),
		toNS(d.EnrolledAt), toNS(d.LastSeen), d.SecretID)
	if err != nil {
		return err
	}
	// Another enrollment of this machine committed after the caller's
	// lookup found none: run again to re-enroll it.
	if err := oneRow(res, errRace); err != nil {
		return fmt.Errorf("first enrollment of hardware UUID %q: %w", d.HardwareUUID, err)
	}
	return rememberKey(ctx, q, d.ID, d.PublicKey)
}

// enrolled ends an enrollment of the device id: it appends audit under
// that device and reads the device back.
func enrolled(ctx context.Context, q conn, id string, audit storage.AuditEvent) (storage.Device, error) {
	audit.DeviceID = id
	if err := insertAudit(ctx, q, audit); err != nil {
		return storage.Device{}, err
	}
	return getDevice(ctx, q, "id", id)
}

// serialFree returns ErrSerialEnrolled if a device, revoked or not, has the
// canonical serial: revoking a Mac does not free its serial for another
// machine to claim without approval. The serial is locked first (no row
// need hold it: a serial not on the known list is admitted under auto), so
// that two new devices admitted on it at once, on two replicas, are
// decided one after the other.
func serialFree(ctx context.Context, q conn, serial string) error {
	if q.s.d.LockKey != "" {
		if _, err := q.exec(ctx, q.s.d.LockKey, "device serial "+serial); err != nil {
			return fmt.Errorf("locking serial number: %w", err)
		}
	}
	// And its row of the known list, which an import may be changing.
	if _, err := exists(ctx, q, `SELECT 1 FROM known_devices WHERE serial_number = $1`+q.s.d.LockRow, serial); err != nil {
		return fmt.Errorf("reading known device: %w", err)
	}
	taken, err := exists(ctx, q, `SELECT 1 FROM devices WHERE serial_number = $1`, serial)
	if err != nil {
		return fmt.Errorf("reading devices: %w", err)
	}
	if taken {
		return fmt.Errorf("serial %q: %w", serial, storage.ErrSerialEnrolled)
	}
	return nil
}

func (s *Store) insertCert(ctx context.Context, q conn, cert storage.Cert) error {
	var c timeCodec
	notBefore := c.ns("cert not before", cert.NotBefore)
	notAfter := c.ns("cert not after", cert.NotAfter)
	if c.err != nil {
		return c.err
	}
	_, err := q.insert(ctx, "certificate", cert.Serial, `INSERT INTO certs (serial, device_id, kind, not_before, not_after, der)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		cert.Serial, cert.DeviceID, cert.Kind, notBefore, notAfter, blob(cert.DER))
	return err
}

// GetDevice returns a device by ID, or ErrNotFound.
func (s *Store) GetDevice(ctx context.Context, id string) (storage.Device, error) {
	return getDevice(ctx, s.reader(), "id", id)
}

// GetDeviceByHardwareUUID returns a device by hardware UUID, or ErrNotFound.
func (s *Store) GetDeviceByHardwareUUID(ctx context.Context, hardwareUUID string) (storage.Device, error) {
	return getDevice(ctx, s.reader(), "hardware_uuid", storage.CanonicalHardwareUUID(hardwareUUID))
}

// ListDevices returns up to limit (clamped to [1, 1000]) devices with
// ID > afterID, ordered by ID.
func (s *Store) ListDevices(ctx context.Context, afterID string, limit int) ([]storage.Device, error) {
	devices, err := list(ctx, s.reader(), scanDevice,
		`SELECT `+deviceColumns+` FROM devices WHERE id > $1 ORDER BY id LIMIT $2`, afterID, clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	return devices, nil
}

// ListDevicesBySecret returns up to limit (clamped to [1, 1000]) devices
// whose current key was enrolled with secretID, with ID > afterID, ordered
// by ID.
func (s *Store) ListDevicesBySecret(ctx context.Context, secretID, afterID string, limit int) ([]storage.Device, error) {
	devices, err := list(ctx, s.reader(), scanDevice,
		`SELECT `+deviceColumns+` FROM devices WHERE secret_id = $1 AND id > $2 ORDER BY id LIMIT $3`,
		secretID, afterID, clampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("listing devices enrolled with secret %q: %w", secretID, err)
	}
	return devices, nil
}

// RevokeDevice marks a device revoked. A device already revoked keeps its
// first revocation, and nothing is appended: storage.ErrDeviceRevoked,
// with the device.
func (s *Store) RevokeDevice(ctx context.Context, id, reason string, at time.Time, audit storage.AuditEvent) (storage.Device, error) {
	revokedAt, err := revocationNS(at)
	if err != nil {
		return storage.Device{}, fmt.Errorf("revoking device: %w", err)
	}
	var out storage.Device
	err = s.write(ctx, func(q conn) error {
		res, err := q.exec(ctx, `UPDATE devices SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at = 0`, revokedAt, reason, id)
		if err != nil {
			return fmt.Errorf("updating device: %w", err)
		}
		// Unknown, or revoked already: the read tells which.
		if out, err = getDevice(ctx, q, "id", id); err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return storage.ErrDeviceRevoked
		}
		// A revoked Mac comes back only by approval: no expected
		// reinstall outlives the revocation, nor a sign-in held for it.
		if err := endReinstall(ctx, q, id); err != nil {
			return err
		}
		if err := dropHeld(ctx, q, id); err != nil {
			return err
		}
		audit.DeviceID = id
		return insertAudit(ctx, q, audit)
	})
	switch {
	case errors.Is(err, storage.ErrDeviceRevoked):
		return out, err
	case err != nil:
		return storage.Device{}, fmt.Errorf("revoking device: %w", err)
	}
	return out, nil
}

// RenewDeviceCert records cert as its device's current certificate, if
// limit allows the device another.
func (s *Store) RenewDeviceCert(ctx context.Context, cert storage.Cert, limit storage.IssueLimit, audit storage.AuditEvent) error {
	var c timeCodec
	notBefore := c.ns("cert not before", cert.NotBefore)
	notAfter := c.ns("cert not after", cert.NotAfter)
	if c.err != nil {
		return fmt.Errorf("renewing device cert: %w", c.err)
	}
	err := s.write(ctx, func(q conn) error {
		d, err := lockUnrevoked(ctx, q, cert.DeviceID)
		if err != nil {
			return err
		}
		if err := certLimit(ctx, q, d.ID, storage.CertKindDevice, notBefore, limit); err != nil {
			return err
		}
		if err := s.insertCert(ctx, q, cert); err != nil {
			return err
		}
		if _, err := q.exec(ctx, `UPDATE devices SET cert_serial = $1, cert_not_after = $2 WHERE id = $3`,
			cert.Serial, notAfter, d.ID); err != nil {
			return fmt.Errorf("updating device: %w", err)
		}
		return insertAuditOf(ctx, q, audit, d.ID)
	})
	if err != nil {
		return fmt.Errorf("renewing device cert: %w", err)
	}
	return nil
}

// CheckCertLimit reports, as a read, whether limit allows the device a
// certificate with NotBefore notBefore.
func (s *Store) CheckCertLimit(ctx context.Context, deviceID string, notBefore time.Time, limit storage.IssueLimit) error {
	var c timeCodec
	nb := c.ns("cert not before", notBefore)
	if c.err != nil {
		return fmt.Errorf("checking device cert limit: %w", c.err)
	}
	return certLimit(ctx, s.reader(), deviceID, storage.CertKindDevice, nb, limit)
}

// certLimit returns a *TooManyCertsError if the device has limit.Certs
// certificates of kind or more with NotBefore within limit.Per before
// notBefore (ns). Inside a write transaction the device's row is locked
// first, so that two replicas issuing to one device count one after the
// other. The index on (device_id, kind, not_before) answers it.
func certLimit(ctx context.Context, q conn, deviceID, kind string, notBefore int64, limit storage.IssueLimit) error {
	if limit.Certs <= 0 || limit.Per <= 0 {
		return nil
	}
	var n, first int64
	err := q.queryRow(ctx, hotRead(`SELECT count(*), COALESCE(min(not_before), 0) FROM certs
		WHERE device_id = $1 AND kind = $2 AND not_before > $3`),
		deviceID, kind, notBefore-int64(limit.Per)).Scan(&n, &first)
	if err != nil {
		return fmt.Errorf("counting %s certs: %w", kind, err)
	}
	if n < int64(limit.Certs) {
		return nil
	}
	return &storage.TooManyCertsError{DeviceID: deviceID, Limit: limit, RetryAt: fromNS(first).Add(limit.Per)}
}

// DeleteSupersededDeviceCerts removes device certificates that expired
// before the given time and are not their device's current one.
func (s *Store) DeleteSupersededDeviceCerts(ctx context.Context, before time.Time) (int, error) {
	n, err := s.deleteBefore(ctx, `DELETE FROM certs WHERE kind = '`+storage.CertKindDevice+`' AND not_after < $1
		AND NOT EXISTS (SELECT 1 FROM devices WHERE devices.id = certs.device_id AND devices.cert_serial = certs.serial)`, before)
	if err != nil {
		return 0, fmt.Errorf("deleting superseded device certs: %w", err)
	}
	return n, nil
}

// TouchDevice moves LastSeen forward to at; an earlier at changes nothing.
func (s *Store) TouchDevice(ctx context.Context, id string, at time.Time) error {
	var c timeCodec
	seen := c.ns("last seen", at)
	if c.err != nil {
		return fmt.Errorf("touching device: %w", c.err)
	}
	if err := s.writer().execOne(ctx, storage.ErrNotFound, `UPDATE devices SET `+lastSeenAt("$1")+` WHERE id = $2`, seen, id); err != nil {
		return fmt.Errorf("touching device %q: %w", id, err)
	}
	return nil
}

// GetCert returns an issued certificate by serial, or ErrNotFound.
func (s *Store) GetCert(ctx context.Context, serial string) (storage.Cert, error) {
	return one(ctx, s.reader(), scanCert, "certificate", fmt.Sprintf("certificate %q", serial),
		hotRead(`SELECT serial, device_id, kind, not_before, not_after, der FROM certs WHERE serial = $1`), serial)
}

func scanCert(sc scanner) (storage.Cert, error) {
	var (
		cert                storage.Cert
		notBefore, notAfter int64
	)
	if err := sc.Scan(&cert.Serial, &cert.DeviceID, &cert.Kind, &notBefore, &notAfter, &cert.DER); err != nil {
		return storage.Cert{}, err
	}
	cert.NotBefore = fromNS(notBefore)
	cert.NotAfter = fromNS(notAfter)
	return cert, nil
}

// reinstallUntil reads until when the device's reinstall is expected; zero
// for none.
func reinstallUntil(ctx context.Context, q conn, deviceID string) (time.Time, error) {
	var until int64
	err := q.queryRow(ctx, `SELECT expires_at FROM reinstall_expected WHERE device_id = $1`, deviceID).Scan(&until)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("reading the expected reinstall of %s: %w", deviceID, err)
	}
	return fromNS(until), nil
}

// ExpectReinstall implements storage.DeviceStore.
func (s *Store) ExpectReinstall(ctx context.Context, deviceID string, until time.Time, audit storage.AuditEvent) error {
	var c timeCodec
	n, at := c.ns("until", until), c.ns("audit time", audit.At)
	if c.err != nil {
		return fmt.Errorf("expecting a reinstall: %w: %v", storage.ErrInvalid, c.err)
	}
	if n != 0 && n <= at {
		return fmt.Errorf("expecting a reinstall: %w: until %s is not after %s", storage.ErrInvalid, until.UTC().Format(time.RFC3339), audit.At.UTC().Format(time.RFC3339))
	}
	if !storable(deviceID) {
		return fmt.Errorf("expecting a reinstall: device %q: %w", deviceID, storage.ErrNotFound)
	}
	err := s.write(ctx, func(q conn) error {
		d, err := lockDevice(ctx, q, "id", deviceID)
		if err != nil {
			return err
		}
		if d.Revoked() {
			return fmt.Errorf("device %s: %w", deviceID, storage.ErrDeviceRevoked)
		}
		if n == 0 {
			if _, err := q.exec(ctx, `DELETE FROM reinstall_expected WHERE device_id = $1`, deviceID); err != nil {
				return err
			}
		} else if _, err := q.exec(ctx, `INSERT INTO reinstall_expected (device_id, expires_at, created_at, created_by) VALUES ($1, $2, $3, $4)
			ON CONFLICT (device_id) DO UPDATE SET expires_at = excluded.expires_at, created_at = excluded.created_at, created_by = excluded.created_by`,
			deviceID, n, at, audit.Actor); err != nil {
			return err
		}
		audit.DeviceID = deviceID
		return insertAudit(ctx, q, audit)
	})
	if err != nil {
		return fmt.Errorf("expecting a reinstall: %w", err)
	}
	return nil
}

// ReinstallExpected implements storage.DeviceStore.
func (s *Store) ReinstallExpected(ctx context.Context, deviceID string) (time.Time, error) {
	if !storable(deviceID) {
		return time.Time{}, nil
	}
	var until int64
	err := s.reader().queryRow(ctx, `SELECT r.expires_at FROM reinstall_expected r JOIN devices d ON d.id = r.device_id
		WHERE r.device_id = $1 AND d.revoked_at = 0`, deviceID).Scan(&until)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("reading the expected reinstall of %s: %w", deviceID, err)
	}
	return fromNS(until), nil
}
