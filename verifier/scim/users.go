package scim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"

	"github.com/clearance/clearance/pkg/printable"
	"github.com/clearance/clearance/verifier/storage"
)

// userAttrs are the User attributes accepted (RFC 7643 §4.1 and the
// enterprise extension), by lower-case name: SCIM attribute names are
// case-insensitive. Any other attribute is refused.
var userAttrs = canon("schemas", "id", "externalId", "userName", "name", "displayName", "nickName", "profileUrl",
	"title", "userType", "preferredLanguage", "locale", "timezone", "active", "password", "emails", "phoneNumbers",
	"ims", "photos", "addresses", "groups", "entitlements", "roles", "x509Certificates", "meta", EnterpriseSchema)

// readOnly are accepted in a request and ignored: the server sets them, or
// (password) never keeps them.
var readOnly = map[string]bool{"id": true, "meta": true, "groups": true, "password": true, "schemas": true}

var nameAttrs = canon("formatted", "familyName", "givenName", "middleName", "honorificPrefix", "honorificSuffix")

var stringAttrs = map[string]bool{"externalId": true, "userName": true, "displayName": true, "nickName": true,
	"profileUrl": true, "title": true, "userType": true, "preferredLanguage": true, "locale": true, "timezone": true}

var multiAttrs = map[string]bool{"emails": true, "phoneNumbers": true, "ims": true, "photos": true, "addresses": true,
	"entitlements": true, "roles": true, "x509Certificates": true}

func canon(names ...string) map[string]string {
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[strings.ToLower(n)] = n
	}
	return m
}

// userDoc is a validated User: the stored record's fields and the
// attributes kept as its resource.
type userDoc struct {
	UserName, ExternalID, DisplayName, Email string
	Active                                   bool
	// ActiveGiven: the document set active (else Active is true).
	ActiveGiven bool
	Attrs       map[string]any
}

// canonical renames m's keys to the schema's spelling, refusing unknown and
// repeated ones.
func canonical(m map[string]any, known map[string]string, where string) (map[string]any, error) {
	out := make(map[string]any, len(m))
	for k, v := range m {
		name, ok := known[strings.ToLower(k)]
		if !ok {
			return nil, errorf(http.StatusBadRequest, "invalidSyntax", "unknown attribute %q%s", clip(k), where)
		}
		if _, dup := out[name]; dup {
			return nil, errorf(http.StatusBadRequest, "invalidSyntax", "attribute %q appears twice%s", name, where)
		}
		out[name] = v
	}
	return out, nil
}

// parseUser validates a whole User (a POST or PUT body, or the result of
// a PATCH).
func parseUser(m map[string]any) (userDoc, error) {
	m, err := canonical(m, userAttrs, "")
	if err != nil {
		return userDoc{}, err
	}
	if err := checkSchemas(m["schemas"], UserSchema, EnterpriseSchema); err != nil {
		return userDoc{}, err
	}
	doc := userDoc{Active: true, Attrs: map[string]any{}}
	for k, v := range m {
		if readOnly[k] || v == nil {
			continue // null: unassigned (RFC 7643 §2.5)
		}
		switch {
		case stringAttrs[k]:
			s, ok := v.(string)
			if !ok {
				return userDoc{}, errorf(http.StatusBadRequest, "invalidValue", "%s must be a string", k)
			}
			if err := checkName(k, s); err != nil {
				return userDoc{}, err
			}
			doc.Attrs[k] = s
		case k == "active":
			b, ok := v.(bool)
			if !ok {
				return userDoc{}, errorf(http.StatusBadRequest, "invalidValue", "active must be true or false")
			}
			doc.Active, doc.ActiveGiven = b, true
		case k == "name":
			obj, ok := v.(map[string]any)
			if !ok {
				return userDoc{}, errorf(http.StatusBadRequest, "invalidValue", "name must be an object")
			}
			name, err := canonical(obj, nameAttrs, " in name")
			if err != nil {
				return userDoc{}, err
			}
			for sk, sv := range name {
				if s, ok := sv.(string); !ok && sv != nil {
					return userDoc{}, errorf(http.StatusBadRequest, "invalidValue", "name.%s must be a string", sk)
				} else if err := checkName("name."+sk, s); err != nil {
					return userDoc{}, err
				}
			}
			doc.Attrs[k] = name
		case multiAttrs[k]:
			list, ok := v.([]any)
			if !ok {
				return userDoc{}, errorf(http.StatusBadRequest, "invalidValue", "%s must be an array", k)
			}
			for _, e := range list {
				if _, ok := e.(map[string]any); !ok {
					return userDoc{}, errorf(http.StatusBadRequest, "invalidValue", "each of %s must be an object", k)
				}
			}
			doc.Attrs[k] = list
		case k == EnterpriseSchema:
			if _, ok := v.(map[string]any); !ok {
				return userDoc{}, errorf(http.StatusBadRequest, "invalidValue", "the enterprise extension must be an object")
			}
			doc.Attrs[k] = v
		}
	}
	doc.UserName, _ = doc.Attrs["userName"].(string)
	if strings.TrimSpace(doc.UserName) == "" {
		return userDoc{}, errorf(http.StatusBadRequest, "invalidValue", "userName is required")
	}
	delete(doc.Attrs, "userName")
	doc.ExternalID, _ = doc.Attrs["externalId"].(string)
	doc.DisplayName, _ = doc.Attrs["displayName"].(string)
	// The e-mail binds people to their Macs and reaches pages and logs: it
	// is held to the same rule as the names.
	doc.Email = primaryEmail(doc.Attrs["emails"])
	if err := checkName("the e-mail address", doc.Email); err != nil {
		return userDoc{}, err
	}
	return doc, nil
}

// checkName refuses a string attribute too long to keep or holding
// control characters (which no name has, and which would reach logs).
func checkName(attr, s string) error {
	if len(s) > storage.MaxNameLen {
		return errorf(http.StatusBadRequest, "invalidValue", "%s is longer than %d bytes", attr, storage.MaxNameLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return errorf(http.StatusBadRequest, "invalidValue", "%s holds a control character or invalid UTF-8", attr)
		}
	}
	return nil
}

// reorders reports the bidirectional embeddings, overrides and isolates,
// which reorder the text after them wherever it is shown (an admin's
// terminal, grpcurl's output). The marks (LRM, RLM, ALM), which a name in
// a right-to-left script may hold, are not among them.
func reorders(r rune) bool {
	return r >= '\u202A' && r <= '\u202E' || r >= '\u2066' && r <= '\u2069'
}

// checkShown holds text a record shows people to the rules for what
// reaches a screen: a name holds no character that reorders text; an
// identifier (a user name, an external id, an e-mail address) no
// invisible character at all (bidirectional marks, zero-width spaces and
// joiners, the byte-order mark, variation selectors, fillers and blanks,
// spaces but ASCII's), so that two that look alike are the same. The value the stored
// record already holds at attr (kept[attr]) passes: a record stored before
// these rules keeps its text, and a write that leaves it as it is (Okta's
// deactivation) is not refused for it; the same text moved to another
// attribute is held to the rules.
func checkShown(attr, s string, identifier bool, kept map[string]map[string]bool) error {
	if kept[attr][s] {
		return nil
	}
	for _, r := range s {
		switch {
		case reorders(r):
			return errorf(http.StatusBadRequest, "invalidValue", "%s holds a bidirectional control character (U+%04X)", attr, r)
		case identifier && (printable.Invisible(r) || unicode.IsSpace(r) && r != ' '):
			return errorf(http.StatusBadRequest, "invalidValue", "%s holds an invisible character (U+%04X)", attr, r)
		}
	}
	return nil
}

// The identifiers checkShown holds to the stricter rule, by the names it
// gives them.
const (
	attrUserName   = "userName"
	attrExternalID = "externalId"
	attrEmail      = "the e-mail address"
)

// checkUserShown is checkShown for every string a User holds.
func checkUserShown(doc userDoc, kept map[string]map[string]bool) error {
	for _, id := range []struct{ attr, s string }{{attrUserName, doc.UserName}, {attrExternalID, doc.ExternalID}, {attrEmail, doc.Email}} {
		if err := checkShown(id.attr, id.s, true, kept); err != nil {
			return err
		}
	}
	var err error
	walkStrings(doc.Attrs, "", func(attr, s string) bool {
		err = checkShown(attr, s, false, kept)
		return err == nil
	})
	return err
}

// walkStrings calls fn with every string in v and where it is, until fn
// returns false.
func walkStrings(v any, at string, fn func(attr, s string) bool) bool {
	switch v := v.(type) {
	case string:
		return fn(at, v)
	case map[string]any:
		for k, e := range v {
			name := k
			if at != "" {
				name = at + "." + k
			}
			if !walkStrings(e, name, fn) {
				return false
			}
		}
	case []any:
		for _, e := range v {
			if !walkStrings(e, at, fn) {
				return false
			}
		}
	}
	return true
}

// keptText is every string a stored user holds, by where it holds it
// (as checkUserShown names the places).
func keptText(u storage.User) map[string]map[string]bool {
	kept := map[string]map[string]bool{}
	keep := func(attr, s string) bool {
		if kept[attr] == nil {
			kept[attr] = map[string]bool{}
		}
		kept[attr][s] = true
		return true
	}
	m := patchable(u)
	delete(m, "userName")
	walkStrings(m, "", keep)
	keep(attrUserName, u.UserName)
	keep(attrExternalID, u.ExternalID)
	keep(attrEmail, u.Email)
	return kept
}

// checkSchemas accepts an absent schemas attribute or a list of known URNs.
func checkSchemas(v any, known ...string) error {
	if v == nil {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		return errorf(http.StatusBadRequest, "invalidSyntax", "schemas must be an array of URNs")
	}
	for _, s := range list {
		u, _ := s.(string)
		found := false
		for _, k := range known {
			found = found || strings.EqualFold(u, k)
		}
		if !found {
			return errorf(http.StatusBadRequest, "invalidSyntax", "schema %q is not supported here", clip(u))
		}
	}
	return nil
}

// primaryEmail is the primary e-mail's value, or the first one's.
func primaryEmail(v any) string {
	list, _ := v.([]any)
	first := ""
	for _, e := range list {
		m, _ := e.(map[string]any)
		val, _ := m["value"].(string)
		if p, _ := m["primary"].(bool); p && val != "" {
			return val
		}
		if first == "" {
			first = val
		}
	}
	return first
}

func (doc userDoc) resource() ([]byte, error) {
	data, err := json.Marshal(doc.Attrs)
	if err != nil {
		return nil, err
	}
	if len(data) > storage.MaxResourceLen {
		return nil, errorf(http.StatusRequestEntityTooLarge, "", "the user's attributes are larger than %d bytes", storage.MaxResourceLen)
	}
	return data, nil
}

// userJSON is the User as served.
func (h *Handler) userJSON(u storage.User) map[string]any {
	out := map[string]any{}
	_ = json.Unmarshal(u.Resource, &out)
	schemas := []string{UserSchema}
	if _, ok := out[EnterpriseSchema]; ok {
		schemas = append(schemas, EnterpriseSchema)
	}
	out["schemas"] = schemas
	out["id"] = u.ID
	out["userName"] = u.UserName
	out["active"] = u.Active
	out["meta"] = meta("User", h.BaseURL+"/Users/"+u.ID, u.Version, u.CreatedAt, u.UpdatedAt)
	return out
}

// patchable is the User as a PATCH sees it: its resource with userName
// and active.
func patchable(u storage.User) map[string]any {
	m := map[string]any{}
	_ = json.Unmarshal(u.Resource, &m)
	m["userName"] = u.UserName
	m["active"] = u.Active
	return m
}

func (h *Handler) createUser(r *http.Request) (int, any, error) {
	doc, err := readBody(r, parseUser)
	if err != nil {
		return 0, nil, err
	}
	if err := checkUserShown(doc, nil); err != nil {
		return 0, nil, err
	}
	res, err := doc.resource()
	if err != nil {
		return 0, nil, err
	}
	done, err := h.room(r.Context(), 1, 0, 0)
	if err != nil {
		return 0, nil, err
	}
	defer done()
	id, err := h.newID()
	if err != nil {
		return 0, nil, err
	}
	now := h.now()
	u := storage.User{ID: id, UserName: doc.UserName, ExternalID: doc.ExternalID, DisplayName: doc.DisplayName,
		Email: doc.Email, Active: doc.Active, Resource: res, CreatedAt: now, UpdatedAt: now}
	u, err = h.Store.CreateUser(r.Context(), u, h.audit(r, "user.create", "user "+id+" ("+doc.UserName+") created"))
	if errors.Is(err, storage.ErrAlreadyExists) {
		// SCIM wins: a user the Okta API sync made becomes SCIM's, keeping
		// its ID, groups and Macs.
		if cur, gerr := h.Store.GetUserByName(r.Context(), doc.UserName); gerr == nil && cur.Source == storage.SourceOktaAPI {
			u, err = h.updateUser(r, cur.ID, "user.takeover", keepActive(doc))
			if err != nil {
				return 0, nil, err
			}
			return http.StatusCreated, h.userJSON(u), nil
		}
	}
	if err != nil {
		return 0, nil, storeErr(err, "a user with that userName")
	}
	return http.StatusCreated, h.userJSON(u), nil
}

func (h *Handler) getUser(r *http.Request, id string) (int, any, error) {
	u, err := h.Store.GetUser(r.Context(), id)
	if err != nil {
		return 0, nil, storeErr(err, "user")
	}
	return http.StatusOK, h.userJSON(u), nil
}

func (h *Handler) listUsers(r *http.Request) (int, any, error) {
	q, start, none, err := listQuery(r, "users", "userName")
	if err != nil || none {
		return http.StatusOK, listResponse(0, start, nil), err
	}
	page, err := h.Store.ListUsers(r.Context(), q)
	if err != nil {
		return 0, nil, err
	}
	res := make([]any, 0, len(page.Users))
	for _, u := range page.Users {
		res = append(res, h.userJSON(u))
	}
	return http.StatusOK, listResponse(page.Total, start, res), nil
}

func (h *Handler) replaceUser(r *http.Request, id string) (int, any, error) {
	doc, err := readBody(r, parseUser)
	if err != nil {
		return 0, nil, err
	}
	u, err := h.updateUser(r, id, "user.replace", func(cur storage.User) (userDoc, error) {
		if err := checkUserShown(doc, keptText(cur)); err != nil {
			return userDoc{}, err
		}
		return keepActive(doc)(cur)
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, h.userJSON(u), nil
}

// keepActive is the change to doc, except that a document that leaves
// active out keeps the stored value: active has no default (RFC 7643
// §4.1.1), and a write without it must never reactivate a user Okta
// deactivated.
func keepActive(doc userDoc) func(storage.User) (userDoc, error) {
	return func(cur storage.User) (userDoc, error) {
		if !doc.ActiveGiven {
			doc.Active = cur.Active
		}
		return doc, nil
	}
}

func (h *Handler) patchUser(r *http.Request, id string) (int, any, error) {
	ops, err := readBody(r, ParsePatch)
	if err != nil {
		return 0, nil, err
	}
	u, err := h.updateUser(r, id, "user.patch", func(cur storage.User) (userDoc, error) {
		m := patchable(cur)
		if err := applyUserPatch(m, ops); err != nil {
			return userDoc{}, err
		}
		doc, err := parseUser(m)
		if err != nil {
			return userDoc{}, err
		}
		if err := checkUserShown(doc, keptText(cur)); err != nil {
			return userDoc{}, err
		}
		// Removing active, or setting it to null, leaves it as it was.
		return keepActive(doc)(cur)
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, h.userJSON(u), nil
}

// updateUser reads the user, computes its new state with change and
// stores it, again from a fresh read when another change came first.
func (h *Handler) updateUser(r *http.Request, id, action string, change func(storage.User) (userDoc, error)) (storage.User, error) {
	for attempt := 1; ; attempt++ {
		cur, err := h.Store.GetUser(r.Context(), id)
		if err != nil {
			return storage.User{}, storeErr(err, "user")
		}
		doc, err := change(cur)
		if err != nil {
			return storage.User{}, err
		}
		res, err := doc.resource()
		if err != nil {
			return storage.User{}, err
		}
		next := cur
		next.UserName, next.ExternalID, next.DisplayName, next.Email = doc.UserName, doc.ExternalID, doc.DisplayName, doc.Email
		next.Active, next.Resource, next.UpdatedAt = doc.Active, res, h.now()
		next.Source = storage.SourceSCIM // a SCIM write makes the user SCIM's
		if sameUser(cur, next) {
			// Nothing to change (a PUT of what is stored, a PATCH of
			// attributes the verifier does not keep): no write, no audit
			// row, and the version (the ETag) stays.
			return cur, nil
		}
		act, detail := action, "user "+id+" ("+doc.UserName+") updated"
		if cur.Source != storage.SourceSCIM {
			detail = "user " + id + " (" + doc.UserName + ") taken over from the Okta API sync"
		}
		switch {
		case cur.Active && !next.Active:
			act, detail = "user.deactivate", "user "+id+" ("+doc.UserName+") deactivated"
		case !cur.Active && next.Active:
			act, detail = "user.reactivate", "user "+id+" ("+doc.UserName+") reactivated"
		}
		u, err := h.Store.UpdateUser(r.Context(), next, h.audit(r, act, detail))
		if errors.Is(err, storage.ErrStale) && attempt < updateAttempts {
			continue
		}
		if err != nil {
			return storage.User{}, storeErr(err, "a user with that userName")
		}
		return u, nil
	}
}

// sameUser reports whether next stores what cur holds, whatever its
// UpdatedAt.
func sameUser(cur, next storage.User) bool {
	return cur.UserName == next.UserName && cur.ExternalID == next.ExternalID &&
		cur.DisplayName == next.DisplayName && cur.Email == next.Email && cur.Active == next.Active &&
		cur.Source == next.Source && bytes.Equal(cur.Resource, next.Resource)
}

func (h *Handler) deleteUser(r *http.Request, id string) (int, any, error) {
	err := h.Store.DeleteUser(r.Context(), id, 0, h.audit(r, "user.delete", "user "+id+" deleted"))
	if err != nil {
		return 0, nil, storeErr(err, "user")
	}
	return http.StatusNoContent, nil, nil
}

func (h *Handler) audit(r *http.Request, action, detail string) storage.AuditEvent {
	return storage.AuditEvent{At: h.now(), Actor: actor(r.Context()), Action: action, Detail: fmt.Sprint(detail)}
}
