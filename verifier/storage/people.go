package storage

import (
	"context"
	"errors"
	"time"

	"github.com/clearance/clearance/pkg/policy"
)

// People: the users and groups Okta provisions over SCIM or the Okta API
// sync reads, the SCIM tokens Okta authenticates with, and which directory
// users use which Mac.

// Errors of the people store.
var (
	// ErrStale: the record changed since it was read (its Version is not
	// the stored one); read it again and redo the change.
	ErrStale = errors.New("record changed since it was read")
	// ErrUnknownMember: a group names a user that does not exist.
	ErrUnknownMember = errors.New("group member is not a known user")
	// ErrInvalid: the user or group breaks the store's bounds (an empty,
	// oversized or non-UTF-8 field, an unknown source); nothing is stored.
	ErrInvalid = errors.New("invalid record")
)

// Bounds the people store enforces, so a client cannot grow a row without
// limit.
const (
	// MaxResourceLen bounds User.Resource, in bytes.
	MaxResourceLen = 64 << 10
	// MaxNameLen bounds user names, group names, ids and external ids.
	MaxNameLen = 512
	// MaxGroupMembers bounds one group's members.
	MaxGroupMembers = 100_000
	// MaxPeoplePage bounds one page of ListUsers or ListGroups.
	MaxPeoplePage = 1000
)

// Bounds on what SCIM may add in all (PeopleCount), so that a SCIM token
// cannot fill the disk: at most about 13 GiB of users at MaxResourceLen
// each, where Okta's run to a few KiB, and about 200 MiB of memberships.
// An org larger than this is refused new people, with the bound named in
// the error Okta shows.
const (
	MaxUsers       = 200_000
	MaxGroups      = 50_000
	MaxMemberships = 2_000_000
)

// PeopleCount is how many users, groups and group memberships are stored.
type PeopleCount struct {
	Users, Groups, Memberships int
}

// Sources of directory users and groups: who manages the record.
const (
	// SourceSCIM: Okta pushes it to the verifier's SCIM endpoint. A record
	// stored without a source is SCIM's.
	SourceSCIM = "scim"
	// SourceOktaAPI: the verifier pulls it from Okta's management API.
	SourceOktaAPI = "okta_api"
)

// SCIMToken is a SCIM bearer token's record. Only Hash, the SHA-256 of
// the token, is stored.
type SCIMToken struct {
	ID          string
	Description string
	Hash        []byte
	CreatedAt   time.Time
	RevokedAt   time.Time
}

// Revoked reports whether the token is revoked.
func (t SCIMToken) Revoked() bool { return !t.RevokedAt.IsZero() }

// User is a directory user as SCIM or the Okta API sync provisioned it.
type User struct {
	// ID is issued by the verifier when the user is created; it never
	// changes and is compared case-sensitively.
	ID string
	// UserName is Okta's username, unique regardless of the case of its
	// ASCII letters (see UserNameKey).
	UserName    string
	ExternalID  string
	DisplayName string
	// Email is the primary e-mail address, when one was given.
	Email string
	// Active is false for a user Okta deactivated: they may not sign in.
	Active bool
	// Resource is the SCIM attributes as the client last set them (JSON,
	// without id, meta, password or groups), returned on reads.
	Resource []byte
	// Source is who manages the user: SourceSCIM or SourceOktaAPI. An
	// update stores the source it carries, so a SCIM write takes over a
	// record the API sync made.
	Source string
	// Version counts changes: 1 when created. An update must carry the
	// version it read.
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// UserNameKey is the form of a user name that names one user: its ASCII
// letters in lower case, every other code point as it is. Okta's usernames
// are case-insensitive, but only A–Z fold to a–z here: Unicode case
// mapping would make a look-alike (a Kelvin sign for a k, a long s for an
// s, a dotted İ for an i) the same user as the name it imitates, so that
// signing in as it would be signing in as them. Two names with the same
// key are the same user; SameUserName compares without building keys.
func UserNameKey(name string) string { return asciiLower(name) }

// asciiLower is s with A–Z folded to a–z and every other byte as it is:
// the fold of SQLite's lower() and of translate() over A–Z on PostgreSQL,
// whatever the database's locale. s is returned itself when it has no
// upper-case ASCII letter.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// SameUserName reports whether a and b name the same user: whether
// UserNameKey(a) == UserNameKey(b). It applies to whatever is compared
// with a user name, e-mail addresses and their local parts included.
func SameUserName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// GroupNameKey is how group display names are compared: policy.GroupKey,
// the rule policy scopes are matched by too.
func GroupNameKey(name string) string { return policy.GroupKey(name) }

// Group is a directory group as SCIM provisioned it (Okta Group Push) or
// the Okta API sync read it.
type Group struct {
	ID          string
	DisplayName string // unique regardless of case
	ExternalID  string
	// Members are user IDs, sorted. Nil on records listed without them.
	Members []string
	// Source is as User.Source.
	Source    string
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// PeopleQuery selects users or groups. Zero fields do not filter.
type PeopleQuery struct {
	// Name matches UserName (users, by UserNameKey) or DisplayName
	// (groups, by GroupNameKey).
	Name       string
	ExternalID string
	// Group (ListUsers only) keeps the members of the group with this ID.
	Group string
	// After keeps the records whose ID sorts after it (a keyset page,
	// which rows created or deleted elsewhere do not shift); Offset then
	// skips that many records of the stable order (by ID); Limit caps
	// the page at MaxPeoplePage (<= 0: an empty page, which still counts
	// Total). Total counts the matching records before and after After.
	After         string
	Offset, Limit int
	// WithoutMembers: ListGroups leaves each group's Members empty.
	WithoutMembers bool
}

// UserPage is a page of users and how many match in all.
type UserPage struct {
	Users []User
	Total int
}

// GroupPage is a page of groups (with members) and how many match in all.
type GroupPage struct {
	Groups []Group
	Total  int
}

// DeviceUser binds a directory user to a Mac.
type DeviceUser struct {
	DeviceID string
	UserID   string
	// Source says how: "admin" (AssignDevice).
	Source    string
	CreatedAt time.Time
}

// PeopleStore keeps users, groups, SCIM tokens and device bindings. Every
// change appends its audit event in the same transaction. The user and
// group changes add to the event's subjects the people they are about, as
// the store has them then, whoever the caller: the user created, updated
// (by the username it gets and, when renamed, the one it had) or deleted
// (by the username it had); the members a group change adds or removes;
// the members a group had when it is deleted. A binding's subject is the
// caller's to name.
type PeopleStore interface {
	// CreateSCIMToken stores a new token; ErrAlreadyExists on a duplicate ID.
	CreateSCIMToken(ctx context.Context, t SCIMToken, audit AuditEvent) error
	// GetSCIMToken returns a token by ID, or ErrNotFound.
	GetSCIMToken(ctx context.Context, id string) (SCIMToken, error)
	// ListSCIMTokens returns every token, oldest first.
	ListSCIMTokens(ctx context.Context) ([]SCIMToken, error)
	// RevokeSCIMToken marks a token revoked (idempotent), or ErrNotFound.
	RevokeSCIMToken(ctx context.Context, id string, at time.Time, audit AuditEvent) (SCIMToken, error)

	// CreateUser stores a new user with Version 1; ErrAlreadyExists when
	// the ID or the user name (by UserNameKey) is taken.
	CreateUser(ctx context.Context, u User, audit AuditEvent) (User, error)
	// GetUser returns a user by ID, or ErrNotFound.
	GetUser(ctx context.Context, id string) (User, error)
	// GetUserByName returns the user whose user name has userName's
	// UserNameKey, or ErrNotFound.
	GetUserByName(ctx context.Context, userName string) (User, error)
	// UpdateUser replaces the user u.ID if its stored version is
	// u.Version, and returns it with the next version: ErrNotFound,
	// ErrStale, or ErrAlreadyExists when the new user name is taken.
	UpdateUser(ctx context.Context, u User, audit AuditEvent) (User, error)
	// DeleteUser removes a user, its group memberships and its device
	// bindings, or ErrNotFound; with a version (not 0), only if the user
	// is still at it, else ErrStale.
	DeleteUser(ctx context.Context, id string, version int64, audit AuditEvent) error
	// ListUsers returns a page of the matching users, by ID.
	ListUsers(ctx context.Context, q PeopleQuery) (UserPage, error)

	// CreateGroup stores a new group with its members and Version 1:
	// ErrAlreadyExists when the ID or display name is taken,
	// ErrUnknownMember when a member is not a user.
	CreateGroup(ctx context.Context, g Group, audit AuditEvent) (Group, error)
	// GetGroup returns a group by ID with its members, or ErrNotFound.
	GetGroup(ctx context.Context, id string) (Group, error)
	// UpdateGroup replaces the group's name, external ID and members if its
	// stored version is g.Version: as CreateGroup, plus ErrNotFound and
	// ErrStale.
	UpdateGroup(ctx context.Context, g Group, audit AuditEvent) (Group, error)
	// DeleteGroup removes a group, or ErrNotFound; a version as for
	// DeleteUser.
	DeleteGroup(ctx context.Context, id string, version int64, audit AuditEvent) error
	// ListGroups returns a page of the matching groups with members, by ID.
	ListGroups(ctx context.Context, q PeopleQuery) (GroupPage, error)
	// UserGroups returns the groups userID belongs to, by display name,
	// without members.
	UserGroups(ctx context.Context, userID string) ([]Group, error)
	// CountPeople counts the users, groups and memberships stored.
	CountPeople(ctx context.Context) (PeopleCount, error)

	// BindDevice binds a user to a device (idempotent: the first binding
	// stays): ErrNotFound when either is unknown.
	BindDevice(ctx context.Context, b DeviceUser, audit AuditEvent) error
	// UnbindDevice removes a binding, or ErrNotFound.
	UnbindDevice(ctx context.Context, deviceID, userID string, audit AuditEvent) error
	// DeviceUsers lists the users bound to a device, by user ID.
	DeviceUsers(ctx context.Context, deviceID string) ([]DeviceUser, error)
	// UserDevices lists the devices bound to a user, by device ID.
	UserDevices(ctx context.Context, userID string) ([]DeviceUser, error)
}
