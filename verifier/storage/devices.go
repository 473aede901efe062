package storage

import (
	"context"
	"strings"
	"time"
)

// CanonicalHardwareUUID is a hardware UUID as every record keeps it and
// every lookup compares it: upper case. (macOS prints it so; an agent or a
// certificate that spells it otherwise names the same Mac.)
func CanonicalHardwareUUID(u string) string { return strings.ToUpper(u) }

// Device is an enrolled machine.
type Device struct {
	ID string
	// Facts, as last reported at enrollment. HardwareUUID is canonical
	// (CanonicalHardwareUUID): stores convert what they are given.
	HardwareUUID string
	SerialNumber string
	Model        string
	OSName       string
	OSVersion    string
	Hostname     string
	Platform     string
	AgentVersion string
	// PublicKey is the device key (PKIX DER) that signs reports.
	PublicKey []byte
	// Current device certificate.
	CertSerial   string // lowercase hex, no leading zeros
	CertNotAfter time.Time
	// EnrolledAt is the first enrollment; Enrollments counts every
	// enrollment of this hardware UUID, the first included.
	EnrolledAt  time.Time
	Enrollments int
	// LastSeen is the last time anything arrived from the device.
	LastSeen time.Time
	// LastSeq and LastReportAt (the report's observed_at) describe the
	// latest stored report; LastSeq is 0 before the first report.
	LastSeq      uint64
	LastReportAt time.Time
	// RevokedAt is zero unless revoked.
	RevokedAt     time.Time
	RevokedReason string
	// SecretID is the enroll secret of the enrollment that gave the device
	// its current key ("" for devices enrolled before secrets were
	// recorded).
	SecretID string
}

// Revoked reports whether the device is revoked.
func (d Device) Revoked() bool { return !d.RevokedAt.IsZero() }

// Cert records a certificate the verifier issued.
type Cert struct {
	Serial    string // lowercase hex, no leading zeros
	DeviceID  string
	Kind      string // "device" for agent certificates
	NotBefore time.Time
	NotAfter  time.Time
	DER       []byte
}

// Enrollment is one successful Enroll call, committed atomically.
type Enrollment struct {
	// Device carries a freshly generated ID, the facts, PublicKey,
	// CertSerial/CertNotAfter and EnrolledAt. If a device with the same
	// HardwareUUID exists (and is not revoked), the backend keeps that
	// device's ID, EnrolledAt and report history, replaces its facts, key and
	// certificate, increments Enrollments and resets LastSeq to 0 (reports
	// signed by the old key can never verify against the new one, and a
	// reinstalled agent starts counting again).
	Device Device
	// Cert is the issued certificate; its DeviceID is ignored and set to the
	// device's final ID.
	Cert Cert
	// SecretID is the enroll secret used; its use count is incremented
	// and the device records it. ErrSecretRevoked if it was revoked in
	// the meantime, ErrSecretExpired if it expired before
	// Device.EnrolledAt, ErrSecretExhausted if it was used up, ErrNotFound
	// if unknown. An enrollment of the key the device already has (a lost
	// certificate, or the follow-up of an approval) spends no use, is
	// refused only for a revoked or unknown secret, and keeps the secret
	// the device records: the one that gave it that key.
	//
	// A committed enrollment that gives the hardware UUID a device or a
	// new key removes the requests waiting for it: they were made against
	// the state it replaced. A rejected request stays, and its hardware
	// UUID and key are refused (ErrRequestRejected).
	SecretID string
	// Audit is appended in the same transaction (DeviceID filled in).
	Audit AuditEvent
	// Checked, when set, is what the request was admitted on; the
	// enrollment commits only if it still holds, else ErrKeyReplaced and
	// nothing changes. It keeps a proof checked against one key from
	// replacing another that an approval or a concurrent enrollment
	// committed in between.
	Checked *Checked
}

// Checked is the device state an enrollment request was admitted on.
type Checked struct {
	// Key is the key the device with the hardware UUID had; nil: there
	// was no such device (a new device admitted by policy).
	Key []byte
	// Serial, when set, is the canonical serial number a new device was
	// admitted on, or that a device enrolled with no Apple-style serial
	// takes as its first: the enrollment commits only if no device,
	// revoked or not, has it by then, else ErrSerialEnrolled. A device
	// that has a serial keeps it whatever Serial says.
	Serial string
}

// DeviceStore keeps devices and their certificates.
type DeviceStore interface {
	// EnrollDevice commits an enrollment (see Enrollment). It returns the
	// stored device and whether an existing device was re-enrolled. A revoked
	// hardware UUID cannot re-enroll: ErrDeviceRevoked. A re-enrollment
	// takes the request's facts but keeps the device's serial number.
	EnrollDevice(ctx context.Context, e Enrollment) (d Device, reenrolled bool, err error)
	// GetDevice returns a device by ID, or ErrNotFound.
	GetDevice(ctx context.Context, id string) (Device, error)
	// GetDeviceByHardwareUUID returns a device by hardware UUID, or ErrNotFound.
	GetDeviceByHardwareUUID(ctx context.Context, hardwareUUID string) (Device, error)
	// ListDevices returns up to limit devices with ID > afterID, ordered by ID.
	ListDevices(ctx context.Context, afterID string, limit int) ([]Device, error)
	// ListDevicesBySecret is ListDevices for the devices whose current key
	// was enrolled with the enroll secret secretID.
	ListDevicesBySecret(ctx context.Context, secretID, afterID string, limit int) ([]Device, error)
	// RevokeDevice marks a device revoked (idempotent: an already revoked
	// device keeps its first RevokedAt/RevokedReason) and appends audit.
	RevokeDevice(ctx context.Context, id, reason string, at time.Time, audit AuditEvent) (Device, error)
	// RenewDeviceCert records a renewed certificate as the device's current one.
	// ErrDeviceRevoked if the device is revoked.
	RenewDeviceCert(ctx context.Context, cert Cert, audit AuditEvent) error
	// TouchDevice sets LastSeen (never moves it backwards).
	TouchDevice(ctx context.Context, id string, at time.Time) error
	// GetCert returns an issued certificate by serial, or ErrNotFound.
	GetCert(ctx context.Context, serial string) (Cert, error)
}

// DeviceFinder is an optional ability of a DeviceStore: finding devices by
// the facts another system knows them by (Cloudflare's device posture
// integration names a Mac by serial number and hostname).
type DeviceFinder interface {
	// DevicesBySerial returns every device whose serial number, canonical
	// (CanonicalSerial), is one of serials (given canonical), revoked ones
	// included, in no particular order.
	DevicesBySerial(ctx context.Context, serials []string) ([]Device, error)
	// DevicesByHostname returns every device whose HostnameKey is one of
	// names (given as keys), revoked ones included.
	DevicesByHostname(ctx context.Context, names []string) ([]Device, error)
}

// HostnameKey is the form hostnames are compared in: A–Z folded to a–z,
// every other code point as it is. Hostnames compare case-insensitively,
// but Unicode case mapping would make a look-alike (a Kelvin sign for a
// k) the same name as the one it imitates, and a Unicode fold differs
// between Go and a database's locale.
func HostnameKey(h string) string { return asciiLower(h) }
