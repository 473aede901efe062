package storage

import (
	"context"
	"time"
)

// AuditEvent records an administrative or security-relevant change.
type AuditEvent struct {
	// ID is assigned when the event is appended (AppendAudit ignores it):
	// positive, unique, and increasing in append order within one database.
	// With At it is the paging cursor.
	ID       int64
	At       time.Time
	Actor    string // "admin-api", "cli", "agent", ...
	Action   string // "device.enroll", "device.reenroll", "device.revoke", "secret.create", ...
	DeviceID string
	Detail   string // free text; never secrets
}

// DefaultAuditRetention is how long the audit log is kept unless
// configured (audit-retention).
const DefaultAuditRetention = 400 * 24 * time.Hour

// Audit list limits: a list without a limit returns DefaultAuditLimit
// events, and never more than MaxAuditLimit.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// AuditFilter selects audit events. Zero fields do not filter; the others
// must all match.
type AuditFilter struct {
	// DeviceID keeps only the events about the device with this id;
	// DevicePrefix, those about devices whose id starts with it.
	DeviceID, DevicePrefix string
	// Actor keeps only the events of this actor ("admin-api", "scim:<token id>").
	Actor string
	// Action keeps only the events with this action or, when it ends in
	// ".", those whose action starts with it ("device.").
	Action string
	// Since and Until bound At: Since <= At < Until. Any time works, even
	// one outside the range a backend can store.
	Since, Until time.Time
	// BeforeAt and BeforeID page: when BeforeID > 0, only the events after
	// (BeforeAt, BeforeID) in the list's order, that is older, or as old
	// and appended earlier. Pass the last event of one page to get the
	// next: events that share a time are neither skipped nor repeated.
	BeforeAt time.Time
	BeforeID int64
	// Limit caps the result: <= 0 means DefaultAuditLimit, and the backend
	// caps it further at MaxAuditLimit.
	Limit int
}

// AuditStore keeps the audit log.
type AuditStore interface {
	// AppendAudit appends one event.
	AppendAudit(ctx context.Context, e AuditEvent) error
	// ListAudit returns the events matching f, newest first: by At, then
	// by ID (events that share a time, the last appended first).
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
	// DeleteAuditBefore removes the events with At strictly before the
	// given time (retention) and returns how many.
	DeleteAuditBefore(ctx context.Context, before time.Time) (int, error)
}
