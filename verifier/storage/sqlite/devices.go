package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/internal/sqlrow"
)

// getDevice returns the device matching column = value, or ErrNotFound.
// column is one of a fixed set of names, never caller input.
func getDevice(ctx context.Context, q querier, column string, value string) (storage.Device, error) {
	row := q.QueryRowContext(ctx, `SELECT `+sqlrow.DeviceColumns+` FROM devices WHERE `+column+` = ?`, value)
	d, err := sqlrow.ScanDevice(row)
	if errors.Is(err, sql.ErrNoRows) {
		return storage.Device{}, fmt.Errorf("device %s %q: %w", column, value, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Device{}, fmt.Errorf("reading device: %w", err)
	}
	return d, nil
}

// EnrollDevice commits an enrollment: see storage.Enrollment.
func (s *Store) EnrollDevice(ctx context.Context, e storage.Enrollment) (storage.Device, bool, error) {
	in := e.Device
	if in.ID == "" {
		return storage.Device{}, false, errors.New("enrolling device: empty device ID")
	}
	// An empty hardware UUID would make every such machine a re-enrollment
	// of the first one.
	if in.HardwareUUID == "" {
		return storage.Device{}, false, errors.New("enrolling device: empty hardware UUID")
	}
	var c sqlrow.TimeCodec
	certNotAfter := c.NS("device cert not after", in.CertNotAfter)
	// EnrolledAt is this enrollment's time. It is the device's first one only
	// for a new device, but it is always a moment the device was seen.
	enrolledAt := c.NS("enrolled at", in.EnrolledAt)
	c.NS("cert not before", e.Cert.NotBefore)
	c.NS("cert not after", e.Cert.NotAfter)
	c.NS("audit time", e.Audit.At)
	if c.Err != nil {
		return storage.Device{}, false, fmt.Errorf("enrolling device: %w", c.Err)
	}

	var (
		out        storage.Device
		reenrolled bool
	)
	err := s.write(ctx, func(tx *sql.Tx) error {
		// 1. The secret must still be valid when the enrollment commits.
		if err := useSecret(ctx, tx, e.SecretID); err != nil {
			return err
		}

		// 2. Re-enroll the device with this hardware UUID, or create one.
		id := in.ID
		old, err := getDevice(ctx, tx, "hardware_uuid", in.HardwareUUID)
		switch {
		case err == nil:
			if old.Revoked() {
				return fmt.Errorf("hardware UUID %q: %w", in.HardwareUUID, storage.ErrDeviceRevoked)
			}
			reenrolled = true
			id = old.ID
			// ID, enrolled_at, report history and last_report_at stay; the
			// new key restarts the report sequence.
			_, err = tx.ExecContext(ctx, `UPDATE devices SET
				serial_number = ?, model = ?, os_name = ?, os_version = ?, hostname = ?,
				platform = ?, agent_version = ?, public_key = ?, cert_serial = ?,
				cert_not_after = ?, enrollments = enrollments + 1, last_seq = 0,
				last_seen = max(last_seen, ?)
				WHERE id = ?`,
				in.SerialNumber, in.Model, in.OSName, in.OSVersion, in.Hostname,
				in.Platform, in.AgentVersion, sqlrow.Blob(in.PublicKey), in.CertSerial,
				certNotAfter, enrolledAt, id)
			if err != nil {
				return fmt.Errorf("re-enrolling device: %w", err)
			}
		case errors.Is(err, storage.ErrNotFound):
			// Counters and revocation start fresh whatever the caller set;
			// the enrollment is the first time the device was seen.
			_, err = tx.ExecContext(ctx, `INSERT INTO devices (
				id, hardware_uuid, serial_number, model, os_name, os_version, hostname,
				platform, agent_version, public_key, cert_serial, cert_not_after,
				enrolled_at, enrollments, last_seen)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)`,
				id, in.HardwareUUID, in.SerialNumber, in.Model, in.OSName, in.OSVersion, in.Hostname,
				in.Platform, in.AgentVersion, sqlrow.Blob(in.PublicKey), in.CertSerial, certNotAfter,
				enrolledAt, enrolledAt)
			if isDuplicate(err) {
				return fmt.Errorf("device %q: %w", id, storage.ErrAlreadyExists)
			}
			if err != nil {
				return fmt.Errorf("inserting device: %w", err)
			}
		default:
			return err
		}

		// 3. Record the issued certificate under the final ID.
		cert := e.Cert
		cert.DeviceID = id
		if err := insertCert(ctx, tx, cert); err != nil {
			return err
		}

		// 4. Audit.
		ev := e.Audit
		ev.DeviceID = id
		if err := insertAudit(ctx, tx, ev); err != nil {
			return err
		}

		out, err = getDevice(ctx, tx, "id", id)
		return err
	})
	if err != nil {
		return storage.Device{}, false, fmt.Errorf("enrolling device: %w", err)
	}
	return out, reenrolled, nil
}

func insertCert(ctx context.Context, q querier, cert storage.Cert) error {
	var c sqlrow.TimeCodec
	notBefore := c.NS("cert not before", cert.NotBefore)
	notAfter := c.NS("cert not after", cert.NotAfter)
	if c.Err != nil {
		return c.Err
	}
	_, err := q.ExecContext(ctx, `INSERT INTO certs (serial, device_id, kind, not_before, not_after, der)
		VALUES (?, ?, ?, ?, ?, ?)`,
		cert.Serial, cert.DeviceID, cert.Kind, notBefore, notAfter, sqlrow.Blob(cert.DER))
	if isDuplicate(err) {
		return fmt.Errorf("certificate %q: %w", cert.Serial, storage.ErrAlreadyExists)
	}
	if err != nil {
		return fmt.Errorf("inserting certificate: %w", err)
	}
	return nil
}

// GetDevice returns a device by ID, or ErrNotFound.
func (s *Store) GetDevice(ctx context.Context, id string) (storage.Device, error) {
	return getDevice(ctx, s.r, "id", id)
}

// GetDeviceByHardwareUUID returns a device by hardware UUID, or ErrNotFound.
func (s *Store) GetDeviceByHardwareUUID(ctx context.Context, hardwareUUID string) (storage.Device, error) {
	return getDevice(ctx, s.r, "hardware_uuid", hardwareUUID)
}

// ListDevices returns up to limit (clamped to [1, 1000]) devices with
// ID > afterID, ordered by ID.
func (s *Store) ListDevices(ctx context.Context, afterID string, limit int) ([]storage.Device, error) {
	rows, err := s.r.QueryContext(ctx,
		`SELECT `+sqlrow.DeviceColumns+` FROM devices WHERE id > ? ORDER BY id LIMIT ?`,
		afterID, sqlrow.ClampLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	defer rows.Close()
	devices := []storage.Device{}
	for rows.Next() {
		d, err := sqlrow.ScanDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("listing devices: %w", err)
		}
		devices = append(devices, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	return devices, nil
}

// RevokeDevice marks a device revoked. A device already revoked keeps its
// first revocation; the audit event is appended either way, since it records
// the request.
func (s *Store) RevokeDevice(ctx context.Context, id, reason string, at time.Time, audit storage.AuditEvent) (storage.Device, error) {
	// A zero time is how "not revoked" is stored.
	if at.IsZero() {
		return storage.Device{}, errors.New("revoking device: zero revocation time")
	}
	var c sqlrow.TimeCodec
	revokedAt := c.NS("revocation time", at)
	if c.Err != nil {
		return storage.Device{}, fmt.Errorf("revoking device: %w", c.Err)
	}
	var out storage.Device
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			`UPDATE devices SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at = 0`,
			revokedAt, reason, id)
		if err != nil {
			return fmt.Errorf("updating device: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			// Unknown, or already revoked: getDevice tells which.
			if _, err := getDevice(ctx, tx, "id", id); err != nil {
				return err
			}
		}
		if audit.DeviceID == "" {
			audit.DeviceID = id
		}
		if err := insertAudit(ctx, tx, audit); err != nil {
			return err
		}
		out, err = getDevice(ctx, tx, "id", id)
		return err
	})
	if err != nil {
		return storage.Device{}, fmt.Errorf("revoking device: %w", err)
	}
	return out, nil
}

// RenewDeviceCert records cert as its device's current certificate.
func (s *Store) RenewDeviceCert(ctx context.Context, cert storage.Cert, audit storage.AuditEvent) error {
	var c sqlrow.TimeCodec
	notAfter := c.NS("cert not after", cert.NotAfter)
	if c.Err != nil {
		return fmt.Errorf("renewing device cert: %w", c.Err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		d, err := getDevice(ctx, tx, "id", cert.DeviceID)
		if err != nil {
			return err
		}
		if d.Revoked() {
			return fmt.Errorf("device %q: %w", d.ID, storage.ErrDeviceRevoked)
		}
		if err := insertCert(ctx, tx, cert); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			`UPDATE devices SET cert_serial = ?, cert_not_after = ? WHERE id = ?`,
			cert.Serial, notAfter, d.ID); err != nil {
			return fmt.Errorf("updating device: %w", err)
		}
		if audit.DeviceID == "" {
			audit.DeviceID = d.ID
		}
		return insertAudit(ctx, tx, audit)
	})
	if err != nil {
		return fmt.Errorf("renewing device cert: %w", err)
	}
	return nil
}

// TouchDevice moves LastSeen forward to at; an earlier at changes nothing.
func (s *Store) TouchDevice(ctx context.Context, id string, at time.Time) error {
	var c sqlrow.TimeCodec
	seen := c.NS("last seen", at)
	if c.Err != nil {
		return fmt.Errorf("touching device: %w", c.Err)
	}
	res, err := s.w.ExecContext(ctx, `UPDATE devices SET last_seen = max(last_seen, ?) WHERE id = ?`, seen, id)
	if err != nil {
		return fmt.Errorf("touching device: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("touching device: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("touching device %q: %w", id, storage.ErrNotFound)
	}
	return nil
}

// GetCert returns an issued certificate by serial, or ErrNotFound.
func (s *Store) GetCert(ctx context.Context, serial string) (storage.Cert, error) {
	var (
		cert                storage.Cert
		notBefore, notAfter int64
	)
	err := s.r.QueryRowContext(ctx,
		`SELECT serial, device_id, kind, not_before, not_after, der FROM certs WHERE serial = ?`, serial).
		Scan(&cert.Serial, &cert.DeviceID, &cert.Kind, &notBefore, &notAfter, &cert.DER)
	if errors.Is(err, sql.ErrNoRows) {
		return storage.Cert{}, fmt.Errorf("certificate %q: %w", serial, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Cert{}, fmt.Errorf("reading certificate: %w", err)
	}
	cert.NotBefore = sqlrow.FromNS(notBefore)
	cert.NotAfter = sqlrow.FromNS(notAfter)
	return cert, nil
}
