package scim

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/clearance/clearance/verifier/storage"
)

var groupAttrs = canon("schemas", "id", "externalId", "displayName", "members", "meta")

var memberAttrs = canon("value", "display", "$ref", "type")

// groupDoc is a validated Group.
type groupDoc struct {
	DisplayName, ExternalID string
	Members                 []string
}

// parseGroup validates a whole Group (a POST or PUT body).
func parseGroup(m map[string]any) (groupDoc, error) {
	m, err := canonical(m, groupAttrs, "")
	if err != nil {
		return groupDoc{}, err
	}
	if err := checkSchemas(m["schemas"], GroupSchema); err != nil {
		return groupDoc{}, err
	}
	var doc groupDoc
	if v, ok := m["displayName"].(string); ok {
		doc.DisplayName = v
	}
	if strings.TrimSpace(doc.DisplayName) == "" {
		return groupDoc{}, errorf(http.StatusBadRequest, "invalidValue", "displayName is required")
	}
	if err := checkName("displayName", doc.DisplayName); err != nil {
		return groupDoc{}, err
	}
	if v := m["externalId"]; v != nil {
		s, ok := v.(string)
		if !ok {
			return groupDoc{}, errorf(http.StatusBadRequest, "invalidValue", "externalId must be a string")
		}
		if err := checkName("externalId", s); err != nil {
			return groupDoc{}, err
		}
		doc.ExternalID = s
	}
	if doc.Members, err = memberIDs(m["members"]); err != nil {
		return groupDoc{}, err
	}
	return doc, nil
}

// memberIDs reads a members value: an array of {"value": id, ...}; null is
// none.
func memberIDs(v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, errorf(http.StatusBadRequest, "invalidValue", "members must be an array")
	}
	if len(list) > storage.MaxGroupMembers {
		return nil, errorf(http.StatusBadRequest, "invalidValue", "more than %d members", storage.MaxGroupMembers)
	}
	ids := make([]string, 0, len(list))
	for _, e := range list {
		obj, ok := e.(map[string]any)
		if !ok {
			return nil, errorf(http.StatusBadRequest, "invalidValue", "each member must be an object")
		}
		obj, err := canonical(obj, memberAttrs, " of a member")
		if err != nil {
			return nil, err
		}
		id, _ := obj["value"].(string)
		if id == "" || len(id) > storage.MaxNameLen {
			return nil, errorf(http.StatusBadRequest, "invalidValue", "each member needs a value: the user's id")
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (h *Handler) groupJSON(g storage.Group, withMembers bool) map[string]any {
	out := map[string]any{
		"schemas":     []string{GroupSchema},
		"id":          g.ID,
		"displayName": g.DisplayName,
		"meta":        meta("Group", h.BaseURL+"/Groups/"+g.ID, g.Version, g.CreatedAt, g.UpdatedAt),
	}
	if g.ExternalID != "" {
		out["externalId"] = g.ExternalID
	}
	if withMembers {
		ms := make([]any, 0, len(g.Members))
		for _, id := range g.Members {
			ms = append(ms, map[string]any{"value": id, "$ref": h.BaseURL + "/Users/" + id, "type": "User"})
		}
		out["members"] = ms
	}
	return out
}

// wantsMembers reads excludedAttributes=members, which Okta's imports send
// to keep group lists small.
func wantsMembers(r *http.Request) bool {
	for _, a := range strings.Split(r.URL.Query().Get("excludedAttributes"), ",") {
		if strings.EqualFold(strings.TrimSpace(a), "members") {
			return false
		}
	}
	return true
}

func (h *Handler) createGroup(r *http.Request) (int, any, error) {
	doc, err := readBody(r, parseGroup)
	if err != nil {
		return 0, nil, err
	}
	if err := checkGroupShown(doc, nil); err != nil {
		return 0, nil, err
	}
	done, err := h.room(r.Context(), 0, 1, len(doc.Members))
	if err != nil {
		return 0, nil, err
	}
	defer done()
	id, err := h.newID()
	if err != nil {
		return 0, nil, err
	}
	now := h.now()
	g := storage.Group{ID: id, DisplayName: doc.DisplayName, ExternalID: doc.ExternalID, Members: doc.Members,
		CreatedAt: now, UpdatedAt: now}
	g, err = h.Store.CreateGroup(r.Context(), g, h.audit(r, "group.create", "group "+id+" ("+doc.DisplayName+") created"))
	if errors.Is(err, storage.ErrAlreadyExists) {
		// SCIM wins, as for users.
		p, lerr := h.Store.ListGroups(r.Context(), storage.PeopleQuery{Name: doc.DisplayName, Limit: 1, WithoutMembers: true})
		if lerr == nil && len(p.Groups) == 1 && p.Groups[0].Source == storage.SourceOktaAPI {
			g, err = h.updateGroup(r, p.Groups[0].ID, "group.takeover", func(storage.Group) (groupDoc, error) { return doc, nil })
			if err != nil {
				return 0, nil, err
			}
			return http.StatusCreated, h.groupJSON(g, true), nil
		}
	}
	if err != nil {
		return 0, nil, storeErr(err, "a group with that displayName")
	}
	return http.StatusCreated, h.groupJSON(g, true), nil
}

func (h *Handler) getGroup(r *http.Request, id string) (int, any, error) {
	g, err := h.Store.GetGroup(r.Context(), id)
	if err != nil {
		return 0, nil, storeErr(err, "group")
	}
	return http.StatusOK, h.groupJSON(g, wantsMembers(r)), nil
}

// maxListedMembers is the members one page of groups lists before it
// stops adding groups to the page (a variable for tests).
var maxListedMembers = 10_000

func (h *Handler) listGroups(r *http.Request) (int, any, error) {
	q, start, none, err := listQuery(r, "groups", "displayName")
	if err != nil || none {
		return http.StatusOK, listResponse(0, start, nil), err
	}
	// Members are read group by group, within a budget: a page of large
	// groups would otherwise be millions of members in one response. The
	// page then holds fewer groups than asked (at least one), which SCIM
	// allows; the client asks for the next from its startIndex.
	with := wantsMembers(r)
	q.WithoutMembers = true
	page, err := h.Store.ListGroups(r.Context(), q)
	if err != nil {
		return 0, nil, err
	}
	res := make([]any, 0, len(page.Groups))
	members := 0
	for _, g := range page.Groups {
		if with {
			if len(res) > 0 && members >= maxListedMembers {
				break
			}
			full, err := h.Store.GetGroup(r.Context(), g.ID)
			if err != nil {
				return 0, nil, storeErr(err, "group")
			}
			g = full
			members += len(g.Members)
		}
		res = append(res, h.groupJSON(g, with))
	}
	return http.StatusOK, listResponse(page.Total, start, res), nil
}

func (h *Handler) replaceGroup(r *http.Request, id string) (int, any, error) {
	doc, err := readBody(r, parseGroup)
	if err != nil {
		return 0, nil, err
	}
	g, err := h.updateGroup(r, id, "group.replace", func(storage.Group) (groupDoc, error) { return doc, nil })
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, h.groupJSON(g, true), nil
}

// patchGroup answers 204 No Content, as Okta's Group Push expects: the
// group may have thousands of members, which it does not need back.
func (h *Handler) patchGroup(r *http.Request, id string) (int, any, error) {
	ops, err := readBody(r, ParsePatch)
	if err != nil {
		return 0, nil, err
	}
	_, err = h.updateGroup(r, id, "group.patch", func(cur storage.Group) (groupDoc, error) {
		doc := groupDoc{DisplayName: cur.DisplayName, ExternalID: cur.ExternalID, Members: slices.Clone(cur.Members)}
		if err := applyGroupPatch(&doc, cur.ID, ops); err != nil {
			return groupDoc{}, err
		}
		return doc, nil
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// applyGroupPatch applies ops to a group: its displayName, externalId and
// members.
func applyGroupPatch(doc *groupDoc, id string, ops []Op) error {
	for _, op := range ops {
		if op.Path == nil {
			// Okta's rename: {"op":"replace","value":{"id":…,"displayName":…}}.
			obj, err := canonical(op.Value.(map[string]any), groupAttrs, " of the value")
			if err != nil {
				return err
			}
			for k, v := range obj {
				if err := setGroupAttr(doc, id, op.Op, k, v); err != nil {
					return err
				}
			}
			continue
		}
		attr := groupAttrs[strings.ToLower(op.Path.Attr)]
		switch {
		case op.Path.Sub != "":
			return errorf(http.StatusBadRequest, "invalidPath", "groups have no sub-attributes")
		case op.Path.Filter != nil:
			if attr != "members" || op.Op != "remove" || !strings.EqualFold(op.Path.Filter.Attr, "value") {
				return errorf(http.StatusBadRequest, "invalidPath", `only remove of members[value eq "id"] takes a filter`)
			}
			doc.Members = slices.DeleteFunc(doc.Members, func(m string) bool { return m == op.Path.Filter.Value })
		case op.Op == "remove" && attr == "members":
			if op.Value == nil {
				doc.Members = nil
				continue
			}
			drop, err := memberIDs(op.Value)
			if err != nil {
				return err
			}
			// A set: a remove may list tens of thousands of members of a
			// group of up to storage.MaxGroupMembers.
			gone := make(map[string]bool, len(drop))
			for _, m := range drop {
				gone[m] = true
			}
			doc.Members = slices.DeleteFunc(doc.Members, func(m string) bool { return gone[m] })
		case op.Op == "remove" && attr == "externalId":
			doc.ExternalID = ""
		case op.Op == "remove":
			return errorf(http.StatusBadRequest, "invalidPath", "%q cannot be removed", clip(op.Path.Attr))
		default:
			if attr == "" {
				return errorf(http.StatusBadRequest, "invalidPath", "unknown attribute %q", clip(op.Path.Attr))
			}
			if err := setGroupAttr(doc, id, op.Op, attr, op.Value); err != nil {
				return err
			}
		}
	}
	if len(doc.Members) > storage.MaxGroupMembers {
		return errorf(http.StatusBadRequest, "invalidValue", "more than %d members", storage.MaxGroupMembers)
	}
	return nil
}

func setGroupAttr(doc *groupDoc, id, op, attr string, v any) error {
	switch attr {
	case "displayName":
		s, ok := v.(string)
		if !ok || strings.TrimSpace(s) == "" {
			return errorf(http.StatusBadRequest, "invalidValue", "displayName must be a non-empty string")
		}
		if err := checkName(attr, s); err != nil {
			return err
		}
		doc.DisplayName = s
	case "externalId":
		s, ok := v.(string)
		if !ok {
			return errorf(http.StatusBadRequest, "invalidValue", "externalId must be a string")
		}
		if err := checkName(attr, s); err != nil {
			return err
		}
		doc.ExternalID = s
	case "members":
		ids, err := memberIDs(v)
		if err != nil {
			return err
		}
		if op == "add" {
			doc.Members = append(doc.Members, ids...)
		} else {
			doc.Members = ids
		}
	case "id":
		if s, _ := v.(string); s != id {
			return errorf(http.StatusBadRequest, "mutability", "id cannot be changed")
		}
	case "schemas", "meta":
		// Read-only: ignored.
	default:
		return errorf(http.StatusBadRequest, "invalidPath", "unknown attribute %q", clip(attr))
	}
	return nil
}

// updateGroup reads the group, computes its new state and stores it, again
// from a fresh read when another change came first.
func (h *Handler) updateGroup(r *http.Request, id, action string, change func(storage.Group) (groupDoc, error)) (storage.Group, error) {
	for attempt := 1; ; attempt++ {
		cur, err := h.Store.GetGroup(r.Context(), id)
		if err != nil {
			return storage.Group{}, storeErr(err, "group")
		}
		doc, err := change(cur)
		if err != nil {
			return storage.Group{}, err
		}
		if err := checkGroupShown(doc, map[string]map[string]bool{"displayName": {cur.DisplayName: true}, attrExternalID: {cur.ExternalID: true}}); err != nil {
			return storage.Group{}, err
		}
		next := cur
		next.DisplayName, next.ExternalID, next.Members, next.UpdatedAt = doc.DisplayName, doc.ExternalID, doc.Members, h.now()
		next.Source = storage.SourceSCIM // a SCIM write makes the group SCIM's
		detail := "group " + id + " (" + doc.DisplayName + ") updated"
		if cur.Source != storage.SourceSCIM {
			detail = "group " + id + " (" + doc.DisplayName + ") taken over from the Okta API sync"
		}
		added, removed := diffMembers(cur.Members, doc.Members)
		if added+removed == 0 && next.DisplayName == cur.DisplayName && next.ExternalID == cur.ExternalID && cur.Source == next.Source {
			// Nothing to change (members added that were there, a PUT of
			// what is stored): no write, no audit row, the same version.
			return cur, nil
		}
		if added+removed > 0 {
			detail += ": " + itoa(added) + " members added, " + itoa(removed) + " removed"
		}
		done, err := h.room(r.Context(), 0, 0, added-removed)
		if err != nil {
			return storage.Group{}, err
		}
		g, err := h.Store.UpdateGroup(r.Context(), next, h.audit(r, action, detail))
		done()
		if errors.Is(err, storage.ErrStale) && attempt < updateAttempts {
			continue
		}
		if err != nil {
			return storage.Group{}, storeErr(err, "a group with that displayName")
		}
		return g, nil
	}
}

func diffMembers(before, after []string) (added, removed int) {
	had := make(map[string]bool, len(before))
	for _, m := range before {
		had[m] = true
	}
	has := make(map[string]bool, len(after))
	for _, m := range after {
		if !has[m] && !had[m] {
			added++
		}
		has[m] = true
	}
	for m := range had {
		if !has[m] {
			removed++
		}
	}
	return added, removed
}

func (h *Handler) deleteGroup(r *http.Request, id string) (int, any, error) {
	if err := h.Store.DeleteGroup(r.Context(), id, 0, h.audit(r, "group.delete", "group "+id+" deleted")); err != nil {
		return 0, nil, storeErr(err, "group")
	}
	return http.StatusNoContent, nil, nil
}

// checkGroupShown is checkShown for a group's name (which policies name,
// and which may hold an emoji's joiners) and external id.
func checkGroupShown(doc groupDoc, kept map[string]map[string]bool) error {
	if err := checkShown("displayName", doc.DisplayName, false, kept); err != nil {
		return err
	}
	return checkShown(attrExternalID, doc.ExternalID, true, kept)
}
