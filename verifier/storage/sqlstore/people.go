package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

// --- SCIM tokens ---

const scimTokenColumns = `id, description, hash, created_at, revoked_at`

func scanSCIMToken(sc scanner) (storage.SCIMToken, error) {
	var (
		t                    storage.SCIMToken
		createdAt, revokedAt int64
	)
	if err := sc.Scan(&t.ID, &t.Description, &t.Hash, &createdAt, &revokedAt); err != nil {
		return storage.SCIMToken{}, err
	}
	t.CreatedAt, t.RevokedAt = fromNS(createdAt), fromNS(revokedAt)
	return t, nil
}

func getSCIMToken(ctx context.Context, q conn, id string) (storage.SCIMToken, error) {
	return one(ctx, q, scanSCIMToken, "scim token", fmt.Sprintf("scim token %q", id),
		`SELECT `+scimTokenColumns+` FROM scim_tokens WHERE id = $1`, id)
}

// CreateSCIMToken stores a new token and its audit event.
func (s *Store) CreateSCIMToken(ctx context.Context, t storage.SCIMToken, audit storage.AuditEvent) error {
	var c timeCodec
	createdAt, revokedAt := c.ns("created at", t.CreatedAt), c.ns("revoked at", t.RevokedAt)
	if c.err != nil {
		return fmt.Errorf("creating scim token: %w", c.err)
	}
	if err := checkTexts(true, textField{"token id", t.ID}); err != nil {
		return fmt.Errorf("creating scim token: %w", err)
	}
	if err := checkTexts(false, textField{"token description", t.Description}); err != nil {
		return fmt.Errorf("creating scim token: %w", err)
	}
	err := s.insertAudited(ctx, audit, "scim token", t.ID,
		`INSERT INTO scim_tokens (`+scimTokenColumns+`) VALUES ($1, $2, $3, $4, $5)`,
		t.ID, t.Description, blob(t.Hash), createdAt, revokedAt)
	if err != nil {
		return fmt.Errorf("creating scim token: %w", err)
	}
	return nil
}

// GetSCIMToken returns a token by ID, or ErrNotFound.
func (s *Store) GetSCIMToken(ctx context.Context, id string) (storage.SCIMToken, error) {
	return getSCIMToken(ctx, s.reader(), id)
}

// ListSCIMTokens returns every token, oldest first (ties by ID).
func (s *Store) ListSCIMTokens(ctx context.Context) ([]storage.SCIMToken, error) {
	ts, err := list(ctx, s.reader(), scanSCIMToken, `SELECT `+scimTokenColumns+` FROM scim_tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing scim tokens: %w", err)
	}
	return ts, nil
}

// RevokeSCIMToken marks a token revoked; one already revoked keeps its
// first revocation time.
func (s *Store) RevokeSCIMToken(ctx context.Context, id string, at time.Time, audit storage.AuditEvent) (storage.SCIMToken, error) {
	return revokeOnce(ctx, s, audit, "scim token", "scim_tokens", id, at, getSCIMToken)
}

// --- users ---

const userColumns = `id, user_name, external_id, display_name, email, active, resource, source, version, created_at, updated_at`

func scanUser(sc scanner) (storage.User, error) {
	var (
		u                    storage.User
		createdAt, updatedAt int64
	)
	if err := sc.Scan(&u.ID, &u.UserName, &u.ExternalID, &u.DisplayName, &u.Email, &u.Active, &u.Resource,
		&u.Source, &u.Version, &createdAt, &updatedAt); err != nil {
		return storage.User{}, err
	}
	u.CreatedAt, u.UpdatedAt = fromNS(createdAt), fromNS(updatedAt)
	return u, nil
}

// storable reports whether s can be a stored key at all: valid UTF-8
// without NUL (which PostgreSQL refuses outright). A key that is not
// cannot name anything, so a lookup of it finds nothing.
func storable(keys ...string) bool {
	for _, k := range keys {
		if checkText("key", k, storage.MaxTextLen) != nil {
			return false
		}
	}
	return true
}

func getUser(ctx context.Context, q conn, where string, arg string) (storage.User, error) {
	if !storable(arg) {
		return storage.User{}, fmt.Errorf("user %q: %w", arg, storage.ErrNotFound)
	}
	return one(ctx, q, scanUser, "user", fmt.Sprintf("user %q", arg),
		hotRead(`SELECT `+userColumns+` FROM directory_users WHERE `+where+` = $1`), arg)
}

// recordSource is a record's source as stored: SCIM's when not given.
func recordSource(s string) string {
	if s == "" {
		return storage.SourceSCIM
	}
	return s
}

// checkSource refuses a source the store does not know, so a typo cannot
// make a record nobody manages.
func checkSource(s string) error {
	switch s {
	case "", storage.SourceSCIM, storage.SourceOktaAPI:
		return nil
	}
	return fmt.Errorf("unknown source %q", s)
}

func checkUser(u storage.User) error {
	if err := checkSource(u.Source); err != nil {
		return err
	}
	if err := checkTexts(true, textField{"user id", u.ID}, textField{"user name", u.UserName}); err != nil {
		return err
	}
	for _, f := range []textField{{"user id", u.ID}, {"user name", u.UserName}, {"external id", u.ExternalID},
		{"display name", u.DisplayName}, {"email", u.Email}} {
		if err := checkText(f.name, f.value, storage.MaxNameLen); err != nil {
			return err
		}
	}
	if len(u.Resource) > storage.MaxResourceLen {
		return fmt.Errorf("resource is %d bytes, more than the %d allowed", len(u.Resource), storage.MaxResourceLen)
	}
	return nil
}

// CreateUser stores a new user with version 1.
func (s *Store) CreateUser(ctx context.Context, u storage.User, audit storage.AuditEvent) (storage.User, error) {
	if err := checkUser(u); err != nil {
		return storage.User{}, fmt.Errorf("creating user: %w: %w", storage.ErrInvalid, err)
	}
	var c timeCodec
	createdAt, updatedAt := c.ns("created at", u.CreatedAt), c.ns("updated at", u.UpdatedAt)
	if c.err != nil {
		return storage.User{}, fmt.Errorf("creating user: %w", c.err)
	}
	u.Version = 1
	u.Resource = blob(u.Resource)
	u.Source = recordSource(u.Source)
	audit.Subjects = withSubjects(audit.Subjects, storage.AuditSubject{UserID: u.ID, UserName: u.UserName})
	err := s.insertAudited(ctx, audit, "user", u.UserName, `INSERT INTO directory_users (`+userColumns+`, user_name_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		u.ID, u.UserName, u.ExternalID, u.DisplayName, u.Email, u.Active, u.Resource, u.Source, u.Version,
		createdAt, updatedAt, storage.UserNameKey(u.UserName))
	if err != nil {
		return storage.User{}, fmt.Errorf("creating user: %w", err)
	}
	return normalizeUser(u), nil
}

// normalizeUser is u, its times checked, as a read returns it: in UTC.
func normalizeUser(u storage.User) storage.User {
	u.CreatedAt, u.UpdatedAt = fromNS(toNS(u.CreatedAt)), fromNS(toNS(u.UpdatedAt))
	return u
}

// GetUser returns a user by ID, or ErrNotFound.
func (s *Store) GetUser(ctx context.Context, id string) (storage.User, error) {
	return getUser(ctx, s.reader(), "id", id)
}

// GetUserByName returns the user whose name has userName's key.
func (s *Store) GetUserByName(ctx context.Context, userName string) (storage.User, error) {
	return getUser(ctx, s.reader(), "user_name_key", storage.UserNameKey(userName))
}

// UpdateUser replaces a user if it is still at u.Version.
func (s *Store) UpdateUser(ctx context.Context, u storage.User, audit storage.AuditEvent) (storage.User, error) {
	if err := checkUser(u); err != nil {
		return storage.User{}, fmt.Errorf("updating user: %w: %w", storage.ErrInvalid, err)
	}
	var c timeCodec
	updatedAt := c.ns("updated at", u.UpdatedAt)
	if c.err != nil {
		return storage.User{}, fmt.Errorf("updating user: %w", c.err)
	}
	out, err := updateVersioned(ctx, s, audit, "user", u.ID, u.UserName,
		func(q conn) (storage.User, error) { return getUser(ctx, q, "id", u.ID) },
		func(q conn) ([]storage.AuditSubject, error) {
			// The person by the name they get and, renamed, by the one
			// they had: either finds the change. Read at the version
			// replaced; at another, the update fails (ErrStale).
			subjects := []storage.AuditSubject{{UserID: u.ID, UserName: u.UserName}}
			old, err := optionalString(ctx, q, `SELECT user_name FROM directory_users WHERE id = $1 AND version = $2`, u.ID, u.Version)
			if err != nil {
				return nil, fmt.Errorf("reading user: %w", err)
			}
			if old != "" {
				subjects = append(subjects, storage.AuditSubject{UserID: u.ID, UserName: old})
			}
			return subjects, nil
		}, nil,
		`UPDATE directory_users SET user_name = $1, user_name_key = $2, external_id = $3,
		display_name = $4, email = $5, active = $6, resource = $7, version = version + 1, updated_at = $8,
		source = $11 WHERE id = $9 AND version = $10`,
		u.UserName, storage.UserNameKey(u.UserName), u.ExternalID, u.DisplayName, u.Email, u.Active,
		blob(u.Resource), updatedAt, u.ID, u.Version, recordSource(u.Source))
	if err != nil {
		return storage.User{}, fmt.Errorf("updating user: %w", err)
	}
	return out, nil
}

// DeleteUser removes a user (at version, unless 0); its memberships and
// bindings go with it (ON DELETE CASCADE).
func (s *Store) DeleteUser(ctx context.Context, id string, version int64, audit storage.AuditEvent) error {
	// Deleted explicitly too: the cascade needs SQLite's foreign_keys
	// pragma, which a reader of this code should not have to know.
	err := s.deleteVersioned(ctx, "directory_users", "user", id, version, audit,
		func(q conn) ([]storage.AuditSubject, error) {
			// The username as it was: the caller may not have read it.
			name, err := optionalString(ctx, q, `SELECT user_name FROM directory_users WHERE id = $1`, id)
			if err != nil {
				return nil, fmt.Errorf("reading user: %w", err)
			}
			return []storage.AuditSubject{{UserID: id, UserName: name}}, nil
		},
		`DELETE FROM group_members WHERE user_id = $1`, `DELETE FROM device_users WHERE user_id = $1`)
	if err != nil {
		return fmt.Errorf("deleting user: %w", err)
	}
	return nil
}

// updateVersioned runs query, an UPDATE of the what named id that changes
// it only at the version it names, then more (when set), and returns the
// record as get reads it after, with audit appended: ErrAlreadyExists
// (after name) when the update takes a name in use, ErrStale when the
// record is at another version, ErrNotFound when there is none. The
// subjects before (run ahead of the update) and more return are added to
// audit's.
func updateVersioned[T any](ctx context.Context, s *Store, audit storage.AuditEvent, what, id, name string,
	get func(q conn) (T, error), before, more func(q conn) ([]storage.AuditSubject, error), query string, args ...any) (T, error) {
	var out T
	err := s.write(ctx, func(q conn) error {
		a := audit
		if before != nil {
			subjects, err := before(q)
			if err != nil {
				return err
			}
			a.Subjects = withSubjects(a.Subjects, subjects...)
		}
		res, err := q.exec(ctx, query, args...)
		if s.d.IsUniqueViolation(err) {
			return fmt.Errorf("%s %q: %w", what, name, storage.ErrAlreadyExists)
		}
		if err != nil {
			return fmt.Errorf("updating %s: %w", what, err)
		}
		if err := oneRow(res, storage.ErrStale); err != nil {
			// At another version, or gone: the read tells which.
			if _, gerr := get(q); gerr != nil {
				return gerr
			}
			return fmt.Errorf("%s %q: %w", what, id, err)
		}
		if more != nil {
			subjects, err := more(q)
			if err != nil {
				return err
			}
			a.Subjects = withSubjects(a.Subjects, subjects...)
		}
		if out, err = get(q); err != nil {
			return err
		}
		return insertAudit(ctx, q, a)
	})
	return out, err
}

// withSubjects is subjects followed by more, in a slice of its own (the
// caller's stays as it was: a write may run again).
func withSubjects(subjects []storage.AuditSubject, more ...storage.AuditSubject) []storage.AuditSubject {
	return append(slices.Clip(subjects), more...)
}

// optionalString runs query, a SELECT of at most one text value: "" when
// there is no row.
func optionalString(ctx context.Context, q conn, query string, args ...any) (string, error) {
	var v string
	err := q.queryRow(ctx, query, args...).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

// deleteVersioned deletes the row id of table (at version, unless 0) after
// the statements that remove its links, and appends audit with the
// subjects subjects reads (before anything is removed): ErrNotFound, or
// ErrStale when the row is at another version.
func (s *Store) deleteVersioned(ctx context.Context, table, what, id string, version int64, audit storage.AuditEvent,
	subjects func(q conn) ([]storage.AuditSubject, error), links ...string) error {
	if !storable(id) {
		return fmt.Errorf("%s %q: %w", what, id, storage.ErrNotFound)
	}
	return s.write(ctx, func(q conn) error {
		// A write that changes nothing, to check the version and hold the
		// row until the delete commits: a concurrent update waits, then
		// finds the row gone (a plain read would let one commit in
		// between, at PostgreSQL's READ COMMITTED), and what subjects
		// reads (a group's members) is what the delete removes.
		lock, largs := `UPDATE `+table+` SET version = version WHERE id = $1`, []any{id}
		if version != 0 {
			lock, largs = lock+` AND version = $2`, append(largs, version)
		}
		res, err := q.exec(ctx, lock, largs...)
		if err != nil {
			return err
		}
		if err := oneRow(res, storage.ErrStale); err != nil {
			if ok, xerr := exists(ctx, q, `SELECT 1 FROM `+table+` WHERE id = $1`, id); xerr != nil {
				return xerr
			} else if !ok {
				err = storage.ErrNotFound
			}
			return fmt.Errorf("%s %q: %w", what, id, err)
		}
		a := audit
		if subjects != nil {
			more, err := subjects(q)
			if err != nil {
				return err
			}
			a.Subjects = withSubjects(a.Subjects, more...)
		}
		for _, stmt := range links {
			if _, err := q.exec(ctx, stmt, id); err != nil {
				return fmt.Errorf("deleting %s's links: %w", what, err)
			}
		}
		res, err = q.exec(ctx, `DELETE FROM `+table+` WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if err := oneRow(res, storage.ErrNotFound); err != nil {
			return fmt.Errorf("%s %q: %w", what, id, err)
		}
		return insertAudit(ctx, q, a)
	})
}

// peopleWhere builds the WHERE clause of a people query over a table whose
// name key column is nameKey, holding key of each name.
func peopleWhere(q storage.PeopleQuery, nameKey string, key func(string) string) (string, []any) {
	var (
		conds []string
		args  []any
	)
	if q.Name != "" {
		args = append(args, key(q.Name))
		conds = append(conds, fmt.Sprintf("%s = $%d", nameKey, len(args)))
	}
	if q.ExternalID != "" {
		args = append(args, q.ExternalID)
		conds = append(conds, fmt.Sprintf("external_id = $%d", len(args)))
	}
	if q.Group != "" {
		args = append(args, q.Group)
		conds = append(conds, fmt.Sprintf("id IN (SELECT user_id FROM group_members WHERE group_id = $%d)", len(args)))
	}
	if len(conds) == 0 {
		return "", args
	}
	w := " WHERE " + conds[0]
	for _, c := range conds[1:] {
		w += " AND " + c
	}
	return w, args
}

// page runs a counted, paged query: the total and the rows at
// [offset, offset+limit) by ID, in one read transaction.
func page[T any](ctx context.Context, s *Store, table, columns string, q storage.PeopleQuery, nameKey string,
	key func(string) string, scan func(scanner) (T, error), more func(q conn, rows []T) error) ([]T, int, error) {
	where, args := peopleWhere(q, nameKey, key)
	limit := min(max(q.Limit, 0), storage.MaxPeoplePage)
	offset := max(q.Offset, 0)
	var (
		total int
		out   = []T{}
	)
	if !storable(q.Name, q.ExternalID, q.Group) {
		return out, 0, nil // matches nothing stored
	}
	if q.After != "" && !storable(q.After) {
		return out, 0, fmt.Errorf("page key %q: %w", q.After, storage.ErrInvalid)
	}
	err := s.read(ctx, func(c conn) error {
		if err := c.queryRow(ctx, `SELECT COUNT(*) FROM `+table+where, args...).Scan(&total); err != nil {
			return err
		}
		if limit == 0 || offset >= total {
			return nil
		}
		rowsWhere, rowsArgs := where, args
		if q.After != "" {
			rowsArgs = append(slices.Clone(args), q.After)
			cond := fmt.Sprintf("id > $%d", len(rowsArgs))
			if where == "" {
				rowsWhere = " WHERE " + cond
			} else {
				rowsWhere = where + " AND " + cond
			}
		}
		n := len(rowsArgs)
		var err error
		out, err = list(ctx, c, scan, fmt.Sprintf(`SELECT %s FROM %s%s ORDER BY id LIMIT $%d OFFSET $%d`,
			columns, table, rowsWhere, n+1, n+2), append(rowsArgs, limit, offset)...)
		if err != nil || more == nil {
			return err
		}
		return more(c, out)
	})
	return out, total, err
}

// ListUsers returns a page of the matching users, by ID.
func (s *Store) ListUsers(ctx context.Context, q storage.PeopleQuery) (storage.UserPage, error) {
	users, total, err := page(ctx, s, "directory_users", userColumns, q, "user_name_key", storage.UserNameKey, scanUser, nil)
	if err != nil {
		return storage.UserPage{}, fmt.Errorf("listing users: %w", err)
	}
	return storage.UserPage{Users: users, Total: total}, nil
}

// CountPeople counts the users, groups and memberships stored, in one
// statement on a reader.
func (s *Store) CountPeople(ctx context.Context) (storage.PeopleCount, error) {
	var c storage.PeopleCount
	err := s.reader().queryRow(ctx, `SELECT (SELECT count(*) FROM directory_users),
		(SELECT count(*) FROM directory_groups), (SELECT count(*) FROM group_members)`).Scan(&c.Users, &c.Groups, &c.Memberships)
	if err != nil {
		return storage.PeopleCount{}, fmt.Errorf("counting people: %w", err)
	}
	return c, nil
}

// --- groups ---

const groupColumns = `id, display_name, external_id, source, version, created_at, updated_at`

func scanGroup(sc scanner) (storage.Group, error) {
	var (
		g                    storage.Group
		createdAt, updatedAt int64
	)
	if err := sc.Scan(&g.ID, &g.DisplayName, &g.ExternalID, &g.Source, &g.Version, &createdAt, &updatedAt); err != nil {
		return storage.Group{}, err
	}
	g.CreatedAt, g.UpdatedAt = fromNS(createdAt), fromNS(updatedAt)
	return g, nil
}

func getGroup(ctx context.Context, q conn, id string) (storage.Group, error) {
	if !storable(id) {
		return storage.Group{}, fmt.Errorf("group %q: %w", id, storage.ErrNotFound)
	}
	g, err := one(ctx, q, scanGroup, "group", fmt.Sprintf("group %q", id),
		`SELECT `+groupColumns+` FROM directory_groups WHERE id = $1`, id)
	if err != nil {
		return storage.Group{}, err
	}
	if g.Members, err = groupMembers(ctx, q, id); err != nil {
		return storage.Group{}, fmt.Errorf("reading group members: %w", err)
	}
	return g, nil
}

// groupMembers returns the IDs of the group's members, sorted.
func groupMembers(ctx context.Context, q conn, groupID string) ([]string, error) {
	return list(ctx, q, scanString, `SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY user_id`, groupID)
}

func checkGroup(g storage.Group) error {
	if err := checkSource(g.Source); err != nil {
		return err
	}
	if err := checkTexts(true, textField{"group id", g.ID}, textField{"group name", g.DisplayName}); err != nil {
		return err
	}
	for _, f := range []textField{{"group id", g.ID}, {"group name", g.DisplayName}, {"external id", g.ExternalID}} {
		if err := checkText(f.name, f.value, storage.MaxNameLen); err != nil {
			return err
		}
	}
	if len(g.Members) > storage.MaxGroupMembers {
		return fmt.Errorf("group has %d members, more than the %d allowed", len(g.Members), storage.MaxGroupMembers)
	}
	return nil
}

// members returns g's members sorted and without repeats.
func members(g storage.Group) []string {
	m := slices.Clone(g.Members)
	slices.Sort(m)
	m = slices.Compact(m)
	if m == nil {
		m = []string{}
	}
	return m
}

// memberSubjects returns the group's members as audit subjects, with
// their usernames, by user ID.
func memberSubjects(ctx context.Context, q conn, groupID string) ([]storage.AuditSubject, error) {
	return list(ctx, q, func(sc scanner) (storage.AuditSubject, error) {
		var m storage.AuditSubject
		return m, sc.Scan(&m.UserID, &m.UserName)
	}, `SELECT m.user_id, u.user_name FROM group_members m JOIN directory_users u ON u.id = m.user_id
		WHERE m.group_id = $1 ORDER BY m.user_id`, groupID)
}

// setMembers makes the group's members exactly want, changing only the
// rows that differ, and returns the members it added and then those it
// removed, as audit subjects.
func setMembers(ctx context.Context, q conn, groupID string, want []string) ([]storage.AuditSubject, error) {
	have, err := memberSubjects(ctx, q, groupID)
	if err != nil {
		return nil, fmt.Errorf("reading group members: %w", err)
	}
	var added, removed []storage.AuditSubject
	had := make(map[string]bool, len(have))
	for _, m := range have {
		had[m.UserID] = true
		if _, ok := slices.BinarySearch(want, m.UserID); !ok {
			if _, err := q.exec(ctx, `DELETE FROM group_members WHERE group_id = $1 AND user_id = $2`, groupID, m.UserID); err != nil {
				return nil, fmt.Errorf("removing group member: %w", err)
			}
			removed = append(removed, m)
		}
	}
	for _, id := range want {
		if had[id] {
			continue
		}
		var name string
		if storable(id) {
			if name, err = optionalString(ctx, q, `SELECT user_name FROM directory_users WHERE id = $1`, id); err != nil {
				return nil, fmt.Errorf("checking group member: %w", err)
			}
		}
		if name == "" { // user names are never empty: no such user
			return nil, fmt.Errorf("user %q: %w", id, storage.ErrUnknownMember)
		}
		if _, err := q.exec(ctx, `INSERT INTO group_members (group_id, user_id) VALUES ($1, $2)`, groupID, id); err != nil {
			return nil, fmt.Errorf("adding group member: %w", err)
		}
		added = append(added, storage.AuditSubject{UserID: id, UserName: name})
	}
	return append(added, removed...), nil
}

// CreateGroup stores a new group and its members with version 1.
func (s *Store) CreateGroup(ctx context.Context, g storage.Group, audit storage.AuditEvent) (storage.Group, error) {
	if err := checkGroup(g); err != nil {
		return storage.Group{}, fmt.Errorf("creating group: %w: %w", storage.ErrInvalid, err)
	}
	var c timeCodec
	createdAt, updatedAt := c.ns("created at", g.CreatedAt), c.ns("updated at", g.UpdatedAt)
	if c.err != nil {
		return storage.Group{}, fmt.Errorf("creating group: %w", c.err)
	}
	var out storage.Group
	err := s.write(ctx, func(q conn) error {
		_, err := q.insert(ctx, "group", g.DisplayName,
			`INSERT INTO directory_groups (`+groupColumns+`, display_name_key) VALUES ($1, $2, $3, $4, 1, $5, $6, $7)`,
			g.ID, g.DisplayName, g.ExternalID, recordSource(g.Source), createdAt, updatedAt, storage.GroupNameKey(g.DisplayName))
		if err != nil {
			return err
		}
		added, err := setMembers(ctx, q, g.ID, members(g))
		if err != nil {
			return err
		}
		if out, err = getGroup(ctx, q, g.ID); err != nil {
			return err
		}
		a := audit
		a.Subjects = withSubjects(a.Subjects, added...)
		return insertAudit(ctx, q, a)
	})
	if err != nil {
		return storage.Group{}, fmt.Errorf("creating group: %w", err)
	}
	return out, nil
}

// GetGroup returns a group with its members.
func (s *Store) GetGroup(ctx context.Context, id string) (storage.Group, error) {
	var g storage.Group
	err := s.read(ctx, func(q conn) error {
		var err error
		g, err = getGroup(ctx, q, id)
		return err
	})
	return g, err
}

// UpdateGroup replaces a group if it is still at g.Version.
func (s *Store) UpdateGroup(ctx context.Context, g storage.Group, audit storage.AuditEvent) (storage.Group, error) {
	if err := checkGroup(g); err != nil {
		return storage.Group{}, fmt.Errorf("updating group: %w: %w", storage.ErrInvalid, err)
	}
	var c timeCodec
	updatedAt := c.ns("updated at", g.UpdatedAt)
	if c.err != nil {
		return storage.Group{}, fmt.Errorf("updating group: %w", c.err)
	}
	out, err := updateVersioned(ctx, s, audit, "group", g.ID, g.DisplayName,
		func(q conn) (storage.Group, error) { return getGroup(ctx, q, g.ID) }, nil,
		func(q conn) ([]storage.AuditSubject, error) { return setMembers(ctx, q, g.ID, members(g)) },
		// A group not renamed keeps its key: one RekeyGroups left on its
		// old key (a name another group's new key merged) stays writable.
		`UPDATE directory_groups SET display_name = $1,
		display_name_key = CASE WHEN display_name = $1 THEN display_name_key ELSE $2 END, external_id = $3,
		version = version + 1, updated_at = $4, source = $7 WHERE id = $5 AND version = $6`,
		g.DisplayName, storage.GroupNameKey(g.DisplayName), g.ExternalID, updatedAt, g.ID, g.Version, recordSource(g.Source))
	if err != nil {
		return storage.Group{}, fmt.Errorf("updating group: %w", err)
	}
	return out, nil
}

// DeleteGroup removes a group (at version, unless 0) and its memberships.
func (s *Store) DeleteGroup(ctx context.Context, id string, version int64, audit storage.AuditEvent) error {
	// The members it had are the people the deletion is about.
	err := s.deleteVersioned(ctx, "directory_groups", "group", id, version, audit,
		func(q conn) ([]storage.AuditSubject, error) { return memberSubjects(ctx, q, id) },
		`DELETE FROM group_members WHERE group_id = $1`)
	if err != nil {
		return fmt.Errorf("deleting group: %w", err)
	}
	return nil
}

// ListGroups returns a page of the matching groups with their members.
func (s *Store) ListGroups(ctx context.Context, q storage.PeopleQuery) (storage.GroupPage, error) {
	q.Group = "" // a filter of users
	groups, total, err := page(ctx, s, "directory_groups", groupColumns, q, "display_name_key", storage.GroupNameKey, scanGroup,
		func(c conn, gs []storage.Group) error {
			if q.WithoutMembers {
				return nil
			}
			for i := range gs {
				var err error
				if gs[i].Members, err = groupMembers(ctx, c, gs[i].ID); err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil {
		return storage.GroupPage{}, fmt.Errorf("listing groups: %w", err)
	}
	return storage.GroupPage{Groups: groups, Total: total}, nil
}

// UserGroups returns the groups a user belongs to, by display name.
func (s *Store) UserGroups(ctx context.Context, userID string) ([]storage.Group, error) {
	if !storable(userID) {
		return nil, nil
	}
	gs, err := list(ctx, s.reader(), scanGroup, `SELECT g.id, g.display_name, g.external_id, g.source, g.version, g.created_at, g.updated_at
		FROM group_members m JOIN directory_groups g ON g.id = m.group_id WHERE m.user_id = $1 ORDER BY g.display_name_key, g.id`, userID)
	if err != nil {
		return nil, fmt.Errorf("listing user's groups: %w", err)
	}
	return gs, nil
}

// --- devices and users ---

func scanDeviceUser(sc scanner) (storage.DeviceUser, error) {
	var (
		b  storage.DeviceUser
		at int64
	)
	err := sc.Scan(&b.DeviceID, &b.UserID, &b.Source, &at)
	b.CreatedAt = fromNS(at)
	return b, err
}

// BindDevice binds a user to a device; an existing binding stays as it was.
func (s *Store) BindDevice(ctx context.Context, b storage.DeviceUser, audit storage.AuditEvent) error {
	var c timeCodec
	createdAt := c.ns("created at", b.CreatedAt)
	if c.err != nil {
		return fmt.Errorf("binding device: %w", c.err)
	}
	if err := checkTexts(false, textField{"binding source", b.Source}); err != nil {
		return fmt.Errorf("binding device: %w", err)
	}
	if !storable(b.DeviceID, b.UserID) {
		return fmt.Errorf("binding device: %w", storage.ErrNotFound)
	}
	err := s.write(ctx, func(q conn) error {
		for _, k := range []struct{ what, query, id string }{
			{"device", `SELECT 1 FROM devices WHERE id = $1`, b.DeviceID},
			{"user", `SELECT 1 FROM directory_users WHERE id = $1`, b.UserID},
		} {
			ok, err := exists(ctx, q, k.query, k.id)
			if err != nil {
				return fmt.Errorf("reading %s: %w", k.what, err)
			}
			if !ok {
				return fmt.Errorf("%s %q: %w", k.what, k.id, storage.ErrNotFound)
			}
		}
		if _, err := q.exec(ctx, `INSERT INTO device_users (device_id, user_id, source, created_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (device_id, user_id) DO NOTHING`, b.DeviceID, b.UserID, b.Source, createdAt); err != nil {
			return fmt.Errorf("inserting binding: %w", err)
		}
		return insertAudit(ctx, q, audit)
	})
	if err != nil {
		return fmt.Errorf("binding device: %w", err)
	}
	return nil
}

// UnbindDevice removes a binding, or ErrNotFound.
func (s *Store) UnbindDevice(ctx context.Context, deviceID, userID string, audit storage.AuditEvent) error {
	if !storable(deviceID, userID) {
		return fmt.Errorf("unbinding device: %w", storage.ErrNotFound)
	}
	err := s.write(ctx, func(q conn) error {
		res, err := q.exec(ctx, `DELETE FROM device_users WHERE device_id = $1 AND user_id = $2`, deviceID, userID)
		if err != nil {
			return fmt.Errorf("deleting binding: %w", err)
		}
		if err := oneRow(res, storage.ErrNotFound); err != nil {
			return fmt.Errorf("binding of %q to %q: %w", userID, deviceID, err)
		}
		return insertAudit(ctx, q, audit)
	})
	if err != nil {
		return fmt.Errorf("unbinding device: %w", err)
	}
	return nil
}

// DeviceUsers lists the users bound to a device.
func (s *Store) DeviceUsers(ctx context.Context, deviceID string) ([]storage.DeviceUser, error) {
	if !storable(deviceID) {
		return nil, nil
	}
	bs, err := list(ctx, s.reader(), scanDeviceUser,
		`SELECT device_id, user_id, source, created_at FROM device_users WHERE device_id = $1 ORDER BY user_id`, deviceID)
	if err != nil {
		return nil, fmt.Errorf("listing device users: %w", err)
	}
	return bs, nil
}

// UserDevices lists the devices bound to a user.
func (s *Store) UserDevices(ctx context.Context, userID string) ([]storage.DeviceUser, error) {
	if !storable(userID) {
		return nil, nil
	}
	bs, err := list(ctx, s.reader(), scanDeviceUser,
		`SELECT device_id, user_id, source, created_at FROM device_users WHERE user_id = $1 ORDER BY device_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("listing user devices: %w", err)
	}
	return bs, nil
}
