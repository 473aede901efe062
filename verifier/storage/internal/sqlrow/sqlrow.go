// Package sqlrow owns what the SQL backends (sqlite, postgres) share: how a
// row maps to a storage record and back. Both keep the same schema shape —
// times as unix nanoseconds with 0 for "not set", NOT NULL blobs — so the
// column lists, scans and conversions live here once; each backend keeps only
// its SQL dialect and driver.
package sqlrow

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// MaxListLimit caps every List call so no request can make the server read
// or send an unbounded number of rows.
const MaxListLimit = 1000

// ClampLimit bounds a List limit to [1, MaxListLimit].
func ClampLimit(limit int) int {
	return min(max(limit, 1), MaxListLimit)
}

// Scanner is what a driver's row and rows have in common.
type Scanner interface {
	Scan(dest ...any) error
}

// The range of times that unix nanoseconds in an int64 can hold.
var (
	minTime = time.Unix(0, math.MinInt64).UTC()
	maxTime = time.Unix(0, math.MaxInt64).UTC()
)

// TimeCodec converts times to unix nanoseconds and keeps the first error,
// so a statement with many times checks them once.
type TimeCodec struct{ Err error }

// NS returns t as unix nanoseconds, 0 for the zero time.
func (c *TimeCodec) NS(field string, t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	if t.Before(minTime) || t.After(maxTime) {
		if c.Err == nil {
			c.Err = fmt.Errorf("%s %s is outside the storable range %s to %s",
				field, t.UTC().Format(time.RFC3339), minTime.Format(time.RFC3339), maxTime.Format(time.RFC3339))
		}
		return 0
	}
	return t.UnixNano()
}

// FromNS is the inverse of TimeCodec.NS: UTC, or the zero time for 0.
func FromNS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Blob keeps NOT NULL blob columns from receiving NULL for a nil slice.
func Blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// QuoteIdent quotes an SQL identifier.
func QuoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// DeviceColumns are the devices table's columns in ScanDevice's order.
const DeviceColumns = `id, hardware_uuid, serial_number, model, os_name, os_version, hostname,
	platform, agent_version, public_key, cert_serial, cert_not_after, enrolled_at, enrollments,
	last_seen, last_seq, last_report_at, revoked_at, revoked_reason`

// ScanDevice reads a row of DeviceColumns.
func ScanDevice(sc Scanner) (storage.Device, error) {
	var (
		d                                  storage.Device
		certNotAfter, enrolledAt, lastSeen int64
		lastSeq, lastReportAt, revokedAt   int64
	)
	err := sc.Scan(&d.ID, &d.HardwareUUID, &d.SerialNumber, &d.Model, &d.OSName, &d.OSVersion,
		&d.Hostname, &d.Platform, &d.AgentVersion, &d.PublicKey, &d.CertSerial, &certNotAfter,
		&enrolledAt, &d.Enrollments, &lastSeen, &lastSeq, &lastReportAt, &revokedAt, &d.RevokedReason)
	if err != nil {
		return storage.Device{}, err
	}
	d.CertNotAfter = FromNS(certNotAfter)
	d.EnrolledAt = FromNS(enrolledAt)
	d.LastSeen = FromNS(lastSeen)
	d.LastSeq = uint64(lastSeq) // never negative: CHECK (last_seq >= 0)
	d.LastReportAt = FromNS(lastReportAt)
	d.RevokedAt = FromNS(revokedAt)
	return d, nil
}

// SecretColumns are the enroll_secrets table's columns in ScanSecret's order.
const SecretColumns = `id, description, hash, created_at, revoked_at, uses`

// ScanSecret reads a row of SecretColumns.
func ScanSecret(sc Scanner) (storage.EnrollSecret, error) {
	var (
		s                    storage.EnrollSecret
		createdAt, revokedAt int64
	)
	if err := sc.Scan(&s.ID, &s.Description, &s.Hash, &createdAt, &revokedAt, &s.Uses); err != nil {
		return storage.EnrollSecret{}, err
	}
	s.CreatedAt = FromNS(createdAt)
	s.RevokedAt = FromNS(revokedAt)
	return s, nil
}

// ReportColumns are the reports table's columns in ScanReport's order.
const ReportColumns = `device_id, seq, observed_at, received_at, payload, signature`

// ScanReport reads a row of ReportColumns.
func ScanReport(sc Scanner) (storage.Report, error) {
	var (
		r                    storage.Report
		seq                  int64
		observedAt, received int64
	)
	if err := sc.Scan(&r.DeviceID, &seq, &observedAt, &received, &r.Payload, &r.Signature); err != nil {
		return storage.Report{}, err
	}
	r.Seq = uint64(seq) // never negative: CHECK (seq > 0)
	r.ObservedAt = FromNS(observedAt)
	r.ReceivedAt = FromNS(received)
	return r, nil
}
