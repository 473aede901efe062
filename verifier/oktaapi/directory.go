package oktaapi

import (
	"context"
	"errors"

	"github.com/clearance/clearance/verifier/storage"
)

// Sources of directory records: who manages a user or group.
const (
	// SourceSCIM: Okta pushes it to the verifier's SCIM endpoint.
	SourceSCIM = storage.SourceSCIM
	// SourceAPI: the verifier pulls it from Okta's management API.
	SourceAPI = storage.SourceOktaAPI
)

// ErrOtherSource: the record is managed by another source and was left
// as it was. SCIM wins: a user or group SCIM manages is never changed by
// the API sync (docs/okta.md says why).
var ErrOtherSource = errors.New("managed by another source")

// ErrNotStored: the record breaks the directory's bounds (e.g. a field too
// long, a group with more members than are kept) and was left out; the
// sync counts it skipped and says so in its log.
var ErrNotStored = errors.New("not stored")

// DirUser is a person as the verifier's directory keeps them.
type DirUser struct {
	ID         string // Okta's user ID, stable and case-sensitive
	Login      string // Okta username, the SAML NameID at sign-in
	Email      string
	GivenName  string
	FamilyName string
	// Active is false once Okta deactivates (DEPROVISIONED) or suspends
	// the user: their sign-ins are refused.
	Active bool
	Status string // Okta's status, e.g. ACTIVE, SUSPENDED, DEPROVISIONED
	Source string
}

// DirGroup is a group as the directory keeps it.
type DirGroup struct {
	ID     string
	Name   string
	Source string
}

// Directory is where synced users and groups go: the verifier's user and
// group store (which SCIM writes too). The API sync calls it with Source
// SourceAPI only.
type Directory interface {
	// UpsertUser stores u, replacing the user with u.ID; ErrOtherSource
	// (nothing changed) if that user has another source.
	UpsertUser(ctx context.Context, u DirUser) error
	// DeactivateUser marks the user inactive; ErrOtherSource as above.
	// A user not stored is no error.
	DeactivateUser(ctx context.Context, id, source string) error
	// DeleteUser removes the user and their memberships; ErrOtherSource
	// as above. A user not stored is no error.
	DeleteUser(ctx context.Context, id, source string) error
	// UpsertGroup and DeleteGroup are UpsertUser and DeleteUser for groups.
	UpsertGroup(ctx context.Context, g DirGroup) error
	DeleteGroup(ctx context.Context, id, source string) error
	// SetMembers makes userIDs (in any order) the group's members;
	// ErrOtherSource if the group has another source.
	// changed is whether anything was written.
	SetMembers(ctx context.Context, groupID, source string, userIDs []string) (changed bool, err error)
	// ListUsers, ListGroups and Members return what source manages ("":
	// every source); Members the group's member IDs, sorted.
	ListUsers(ctx context.Context, source string) ([]DirUser, error)
	ListGroups(ctx context.Context, source string) ([]DirGroup, error)
	Members(ctx context.Context, groupID string) ([]string, error)
}
