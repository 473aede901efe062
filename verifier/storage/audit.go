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
	// Subjects are the people the change is about, as they were when it
	// was made: the user created, changed or deleted, the members a group
	// change added or removed, the user a device was assigned to or an
	// exemption covers. Empty for a change about no one (and for every
	// event recorded before subjects were kept). ListAudit returns at
	// most MaxListedAuditSubjects of them.
	Subjects []AuditSubject
	// MoreSubjects, on an event ListAudit returns, counts its subjects
	// beyond those listed; AppendAudit ignores it.
	MoreSubjects int
}

// AuditSubject names a person an audit event is about. Either may be
// empty, not both: a user exemption for a username no directory user
// has names no id.
type AuditSubject struct {
	// UserID is the directory user's id (storage.User.ID).
	UserID string
	// UserName is their Okta username when the event was recorded: a
	// later rename or a deletion does not change it.
	UserName string
}

// MaxListedAuditSubjects bounds the subjects ListAudit returns with one
// event: a page of events about many people must still fit in one
// response.
const MaxListedAuditSubjects = 20

// MaxAuditSubjects and MaxAuditSubjectBytes bound the subjects kept with
// one event: a group change names every member it added or removed, and a
// group deleted every member it had, up to MaxGroupMembers, which would
// let one request write tens of megabytes to the log. AppendAudit keeps
// the first subjects while there are at most MaxAuditSubjects of them and
// their ids and usernames hold at most MaxAuditSubjectBytes, and says in
// the event's detail how many there were. A thousand people of ordinary
// names fit; a request naming people of 512-byte names writes at most
// about a hundred.
const (
	MaxAuditSubjects     = 1000
	MaxAuditSubjectBytes = 64 << 10
)

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
	// User keeps only the events about a person (a subject) whose user
	// id is User, or whose username had User's UserNameKey when the event
	// was recorded: a deleted user's events are found by name, and a
	// username given to someone else later finds both people's.
	User string
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
	// AppendAudit appends one event with its subjects (a subject named
	// twice is kept once).
	AppendAudit(ctx context.Context, e AuditEvent) error
	// ListAudit returns the events matching f, newest first: by At, then
	// by ID (events that share a time, the last appended first). Each
	// event has its first MaxListedAuditSubjects subjects, in the order
	// they were appended, those f.User matches first.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
	// DeleteAuditBefore removes the events with At strictly before the
	// given time (retention), with their subjects, and returns how many
	// events.
	DeleteAuditBefore(ctx context.Context, before time.Time) (int, error)
}
