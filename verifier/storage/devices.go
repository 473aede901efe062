package storage

import (
	"context"
	"fmt"
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
	// enrollment of this hardware UUID, the first included. An approval
	// counts as the enrollment it is: the agent collecting the
	// certificate of the approved key (Enrollment.Collect) does not count
	// again.
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
	// SettingsRejectedAt and SettingsRejected are what the device's latest
	// report said of its agent's settings (Report.SettingsRejectedAt): when
	// the agent rejected the settings it was given and runs on others, and
	// why; zero and "" while it runs on them. A re-enrollment keeps them,
	// as it keeps LastReportAt: the next report says.
	SettingsRejectedAt time.Time
	SettingsRejected   string
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
	// certificate, increments Enrollments (unless it is Collect's) and resets LastSeq to 0 (reports
	// signed by the old key can never verify against the new one, and a
	// reinstalled agent starts counting again).
	Device Device
	// Cert is the issued certificate; its DeviceID is ignored and set to the
	// device's final ID.
	Cert Cert
	// SecretID is the enroll secret used. A first enrollment (a new
	// device) spends one of its uses, and the device records it:
	// ErrSecretRevoked if it was revoked in the meantime, ErrSecretExpired
	// if it expired before Device.EnrolledAt, ErrSecretExhausted if it was
	// used up, ErrNotFound if unknown. A re-enrollment of an existing
	// device (its current key again: a lost certificate, or the follow-up
	// of an approval; or a new key the current one signed: a rotation)
	// is the device keeping its enrollment: it spends no use, is refused
	// only for a revoked or unknown secret, and keeps the secret the
	// device records, the one its enrollment began with. Admitting a new
	// device or an unproven key (an approval) is what spends uses.
	//
	// A committed enrollment that gives the hardware UUID a device or a
	// new key removes the requests waiting for it: they were made against
	// the state it replaced. A rejected request stays, and its hardware
	// UUID and key are refused (ErrRequestRejected).
	SecretID string
	// Audit is appended in the same transaction (DeviceID filled in).
	Audit AuditEvent
	// Collect, when set, is the event of an approved key's agent picking
	// up its first certificate: if, as this commits, the device holds this
	// key and no certificate yet, Collect is appended instead of Audit and
	// no enrollment is counted (the approval was the enrollment).
	// Otherwise (another request collected it first) Audit stands.
	Collect *AuditEvent
	// Checked, when set, is what the request was admitted on; the
	// enrollment commits only if it still holds, else ErrKeyReplaced and
	// nothing changes. It keeps a proof checked against one key from
	// replacing another that an approval or a concurrent enrollment
	// committed in between.
	Checked *Checked
	// Limit bounds a re-enrollment: it commits only while the device's
	// certificates within Limit.Per before Cert.NotBefore are fewer than
	// Limit.Certs, else a *TooManyCertsError and nothing changes. A first
	// enrollment has no certificates to count.
	Limit IssueLimit
}

// IssueLimit bounds the device certificates one device is issued, and so
// the rows its own requests (renewals, re-enrollments, rotations) add: a
// certificate is issued only while fewer than Certs of the device's have a
// NotBefore within Per before its own. Counting issue times from the
// stored certificates, in the transaction that adds one, holds across
// replicas and restarts. The zero value bounds nothing.
type IssueLimit struct {
	Certs int
	Per   time.Duration
}

// TooManyCertsError is ErrTooManyCerts for a device: RetryAt is when the
// oldest certificate it counted leaves the window.
type TooManyCertsError struct {
	DeviceID string
	Limit    IssueLimit
	RetryAt  time.Time
}

func (e *TooManyCertsError) Error() string {
	return fmt.Sprintf("device %q was issued %d certificates in %s; the next may be issued at %s",
		e.DeviceID, e.Limit.Certs, e.Limit.Per, e.RetryAt.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrTooManyCerts) true.
func (e *TooManyCertsError) Is(target error) bool { return target == ErrTooManyCerts }

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
	// Reinstall, when set, is the time a known device's new, unproven key
	// was admitted at because a reinstall of the device was expected
	// (ExpectReinstall): the enrollment commits only if the expectation is
	// still in force then, else ErrReinstallNotExpected.
	Reinstall time.Time
}

// DeviceStore keeps devices and their certificates.
type DeviceStore interface {
	// EnrollDevice commits an enrollment (see Enrollment). It returns the
	// stored device and whether an existing device was re-enrolled. A revoked
	// hardware UUID cannot re-enroll: ErrDeviceRevoked. A re-enrollment
	// takes the request's facts but keeps the device's serial number. One
	// with a new key forgets the sign-ins held for the device
	// (PendingSignIn): they were proven by the key it replaces.
	EnrollDevice(ctx context.Context, e Enrollment) (d Device, reenrolled bool, err error)
	// ExpectReinstall lets the next enrollment of the unrevoked device
	// deviceID with a new key that proves nothing (a Mac wiped and set up
	// again) replace its key without approval, once, until until; a zero
	// until takes that back (none expected is no error). Any enrollment of
	// the device (a new key, its key again, an approval) and its
	// revocation end the expectation. It appends audit. ErrNotFound,
	// ErrDeviceRevoked; ErrInvalid for an until not after audit.At.
	ExpectReinstall(ctx context.Context, deviceID string, until time.Time, audit AuditEvent) error
	// ReinstallExpected returns until when the device's reinstall is
	// expected, zero when none is (or the device is revoked).
	ReinstallExpected(ctx context.Context, deviceID string) (time.Time, error)
	// UpdateDeviceFacts sets the model, OS name and version, hostname and
	// agent version of the unrevoked device d.ID to d's, as its agent gives
	// them when it connects (the identity facts, hardware UUID, serial
	// number and platform, stay the enrolled ones), and appends audit.
	// ErrNotFound for no such device, ErrDeviceRevoked for a revoked one.
	UpdateDeviceFacts(ctx context.Context, d Device, audit AuditEvent) error
	// GetDevice returns a device by ID, or ErrNotFound.
	GetDevice(ctx context.Context, id string) (Device, error)
	// GetDeviceByHardwareUUID returns a device by hardware UUID, or ErrNotFound.
	GetDeviceByHardwareUUID(ctx context.Context, hardwareUUID string) (Device, error)
	// ListDevices returns up to limit devices with ID > afterID, ordered by ID.
	ListDevices(ctx context.Context, afterID string, limit int) ([]Device, error)
	// ListDevicesBySecret is ListDevices for the devices whose current key
	// was enrolled with the enroll secret secretID.
	ListDevicesBySecret(ctx context.Context, secretID, afterID string, limit int) ([]Device, error)
	// RevokeDevice marks a device revoked and appends audit. A device
	// revoked already keeps its first RevokedAt/RevokedReason, nothing is
	// appended, and the error is ErrDeviceRevoked, with the device as it
	// is: of revocations racing, one succeeds. The sign-ins held for the
	// device are forgotten with it.
	RevokeDevice(ctx context.Context, id, reason string, at time.Time, audit AuditEvent) (Device, error)
	// RenewDeviceCert records a renewed certificate as the device's current one.
	// ErrDeviceRevoked if the device is revoked; a *TooManyCertsError if
	// limit does not allow another certificate (nothing changes).
	RenewDeviceCert(ctx context.Context, cert Cert, limit IssueLimit, audit AuditEvent) error
	// CheckCertLimit is the check RenewDeviceCert and a re-enrollment make
	// in their transactions, as a read: nil if limit allows the device a
	// certificate with NotBefore notBefore, else a *TooManyCertsError. It
	// lets a flood be answered without taking the write lock.
	CheckCertLimit(ctx context.Context, deviceID string, notBefore time.Time, limit IssueLimit) error
	// DeleteSupersededDeviceCerts removes the records of device
	// certificates that expired before the given time and are no longer
	// their device's current one: nothing honours them (an expired
	// certificate is refused before its record is read), and a device's
	// renewals would otherwise grow the table for good. Browser
	// certificates and current ones are kept.
	DeleteSupersededDeviceCerts(ctx context.Context, before time.Time) (int, error)
	// TouchDevice sets LastSeen (never moves it backwards).
	TouchDevice(ctx context.Context, id string, at time.Time) error
	// GetCert returns an issued certificate by serial, or ErrNotFound.
	GetCert(ctx context.Context, serial string) (Cert, error)
	// DeviceHadKey reports whether the device id has ever held key (PKIX
	// DER): its current key or an earlier one. Keys held before the store
	// kept them are known only as the device's key of that time.
	DeviceHadKey(ctx context.Context, id string, key []byte) (bool, error)
	// CountAgentVersions counts the unrevoked devices by AgentVersion,
	// exactly as stored ("" for a device whose agent gave none), in one
	// grouped read: a row per distinct version comes back, not one per
	// device.
	CountAgentVersions(ctx context.Context) (map[string]int, error)
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
