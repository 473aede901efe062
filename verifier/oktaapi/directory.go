package oktaapi

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"

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
	SetMembers(ctx context.Context, groupID, source string, userIDs []string) error
	// ListUsers, ListGroups and Members return what source manages ("":
	// every source); Members the group's member IDs, sorted.
	ListUsers(ctx context.Context, source string) ([]DirUser, error)
	ListGroups(ctx context.Context, source string) ([]DirGroup, error)
	Members(ctx context.Context, groupID string) ([]string, error)
}

// MemoryDirectory is a Directory in memory, for tests.
type MemoryDirectory struct {
	mu      sync.Mutex
	users   map[string]DirUser
	groups  map[string]DirGroup
	members map[string][]string
	// Writes counts the calls that changed something.
	Writes int
}

var _ Directory = (*MemoryDirectory)(nil)

// NewMemoryDirectory returns an empty directory.
func NewMemoryDirectory() *MemoryDirectory {
	return &MemoryDirectory{users: map[string]DirUser{}, groups: map[string]DirGroup{}, members: map[string][]string{}}
}

func (m *MemoryDirectory) UpsertUser(_ context.Context, u DirUser) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.users[u.ID]; ok && old.Source != u.Source {
		return ErrOtherSource
	}
	m.users[u.ID] = u
	m.Writes++
	return nil
}

func (m *MemoryDirectory) DeactivateUser(_ context.Context, id, source string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[id]
	if !ok {
		return nil
	}
	if u.Source != source {
		return ErrOtherSource
	}
	u.Active, u.Status = false, "DEPROVISIONED"
	m.users[id] = u
	m.Writes++
	return nil
}

func (m *MemoryDirectory) DeleteUser(_ context.Context, id, source string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	u, ok := m.users[id]
	if !ok {
		return nil
	}
	if u.Source != source {
		return ErrOtherSource
	}
	delete(m.users, id)
	for g, ids := range m.members {
		m.members[g] = slices.DeleteFunc(ids, func(x string) bool { return x == id })
	}
	m.Writes++
	return nil
}

func (m *MemoryDirectory) UpsertGroup(_ context.Context, g DirGroup) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.groups[g.ID]; ok && old.Source != g.Source {
		return ErrOtherSource
	}
	m.groups[g.ID] = g
	m.Writes++
	return nil
}

func (m *MemoryDirectory) DeleteGroup(_ context.Context, id, source string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.groups[id]
	if !ok {
		return nil
	}
	if g.Source != source {
		return ErrOtherSource
	}
	delete(m.groups, id)
	delete(m.members, id)
	m.Writes++
	return nil
}

func (m *MemoryDirectory) SetMembers(_ context.Context, groupID, source string, ids []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if g, ok := m.groups[groupID]; ok && g.Source != source {
		return ErrOtherSource
	}
	ids = slices.Clone(ids)
	sort.Strings(ids)
	m.members[groupID] = slices.Compact(ids)
	m.Writes++
	return nil
}

func (m *MemoryDirectory) ListUsers(_ context.Context, source string) ([]DirUser, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []DirUser
	for _, u := range m.users {
		if source == "" || u.Source == source {
			out = append(out, u)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (m *MemoryDirectory) ListGroups(_ context.Context, source string) ([]DirGroup, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []DirGroup
	for _, g := range m.groups {
		if source == "" || g.Source == source {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (m *MemoryDirectory) Members(_ context.Context, groupID string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.members[groupID]), nil
}
