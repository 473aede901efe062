package storage

import (
	"context"
	"time"
)

// AuditEvent records an administrative or security-relevant change.
type AuditEvent struct {
	At       time.Time
	Actor    string // "admin-api", "cli", "agent", ...
	Action   string // "device.enroll", "device.reenroll", "device.revoke", "secret.create", ...
	DeviceID string
	Detail   string // free text; never secrets
}

// AuditStore keeps the audit log.
type AuditStore interface {
	// AppendAudit appends one event.
	AppendAudit(ctx context.Context, e AuditEvent) error
	// ListAudit returns up to limit events, newest first; deviceID filters when set.
	ListAudit(ctx context.Context, deviceID string, limit int) ([]AuditEvent, error)
}
