package scim

import (
	"net/http"
)

// The discovery endpoints (RFC 7644 §4): what this service provider
// supports, in the words of RFC 7643 §5-7.

func (h *Handler) serviceProviderConfig() map[string]any {
	return map[string]any{
		"schemas":          []string{"urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"},
		"documentationUri": "https://github.com/clearance/clearance/blob/main/docs/okta.md",
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": MaxCount},
		"changePassword":   map[string]any{"supported": false},
		"sort":             map[string]any{"supported": false},
		"etag":             map[string]any{"supported": false},
		"authenticationSchemes": []any{map[string]any{
			"type": "oauthbearertoken", "name": "Bearer token",
			"description": "A token from `clearance-verifier scim token create`, as Authorization: Bearer <token>.",
			"primary":     true,
		}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": h.BaseURL + "/ServiceProviderConfig"},
	}
}

func attr(name, typ string, multi, required bool, extra ...any) map[string]any {
	a := map[string]any{"name": name, "type": typ, "multiValued": multi, "required": required,
		"caseExact": false, "mutability": "readWrite", "returned": "default", "uniqueness": "none"}
	for i := 0; i+1 < len(extra); i += 2 {
		a[extra[i].(string)] = extra[i+1]
	}
	return a
}

func sub(names ...string) []any {
	out := make([]any, 0, len(names))
	for _, n := range names {
		typ := "string"
		if n == "primary" {
			typ = "boolean"
		}
		out = append(out, attr(n, typ, false, false))
	}
	return out
}

func (h *Handler) schemaList() []map[string]any {
	multi := func(name string) map[string]any {
		return attr(name, "complex", true, false, "subAttributes", sub("value", "display", "type", "primary"))
	}
	user := map[string]any{
		"id": UserSchema, "name": "User", "description": "A person Okta provisions.",
		"attributes": []any{
			attr("userName", "string", false, true, "uniqueness", "server"),
			attr("name", "complex", false, false, "subAttributes",
				sub("formatted", "familyName", "givenName", "middleName", "honorificPrefix", "honorificSuffix")),
			attr("displayName", "string", false, false), attr("nickName", "string", false, false),
			attr("profileUrl", "reference", false, false), attr("title", "string", false, false),
			attr("userType", "string", false, false), attr("preferredLanguage", "string", false, false),
			attr("locale", "string", false, false), attr("timezone", "string", false, false),
			attr("active", "boolean", false, false),
			attr("password", "string", false, false, "mutability", "writeOnly", "returned", "never"),
			multi("emails"), multi("phoneNumbers"), multi("ims"), multi("photos"),
			attr("addresses", "complex", true, false, "subAttributes",
				sub("formatted", "streetAddress", "locality", "region", "postalCode", "country", "type", "primary")),
			attr("groups", "complex", true, false, "mutability", "readOnly", "subAttributes", sub("value", "display", "type")),
			multi("entitlements"), multi("roles"), multi("x509Certificates"),
		},
	}
	enterprise := map[string]any{
		"id": EnterpriseSchema, "name": "EnterpriseUser", "description": "Enterprise user attributes.",
		"attributes": []any{
			attr("employeeNumber", "string", false, false), attr("costCenter", "string", false, false),
			attr("organization", "string", false, false), attr("division", "string", false, false),
			attr("department", "string", false, false),
			attr("manager", "complex", false, false, "subAttributes", sub("value", "displayName")),
		},
	}
	group := map[string]any{
		"id": GroupSchema, "name": "Group", "description": "A group Okta pushes; policies may name it.",
		"attributes": []any{
			attr("displayName", "string", false, true, "uniqueness", "server"),
			attr("members", "complex", true, false, "subAttributes", sub("value", "display", "type")),
		},
	}
	out := []map[string]any{user, enterprise, group}
	for _, s := range out {
		s["schemas"] = []string{"urn:ietf:params:scim:schemas:core:2.0:Schema"}
		s["meta"] = map[string]any{"resourceType": "Schema", "location": h.BaseURL + "/Schemas/" + s["id"].(string)}
	}
	return out
}

func (h *Handler) schemas(id string) (int, any, error) {
	return discovery(h.schemaList(), id, "schema")
}

func (h *Handler) resourceTypeList() []map[string]any {
	mk := func(name, endpoint, schema string, ext ...string) map[string]any {
		m := map[string]any{
			"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:ResourceType"},
			"id":      name, "name": name, "endpoint": endpoint, "schema": schema,
			"meta": map[string]any{"resourceType": "ResourceType", "location": h.BaseURL + "/ResourceTypes/" + name},
		}
		if len(ext) > 0 {
			m["schemaExtensions"] = []any{map[string]any{"schema": ext[0], "required": false}}
		}
		return m
	}
	return []map[string]any{mk("User", "/Users", UserSchema, EnterpriseSchema), mk("Group", "/Groups", GroupSchema)}
}

func (h *Handler) resourceTypes(id string) (int, any, error) {
	return discovery(h.resourceTypeList(), id, "resource type")
}

// discovery answers a discovery endpoint: the whole list as a ListResponse,
// or the one entry whose id is id.
func discovery(list []map[string]any, id, what string) (int, any, error) {
	if id == "" {
		res := make([]any, 0, len(list))
		for _, s := range list {
			res = append(res, s)
		}
		return http.StatusOK, listResponse(len(res), 1, res), nil
	}
	for _, s := range list {
		if s["id"] == id {
			return http.StatusOK, s, nil
		}
	}
	return 0, nil, errorf(http.StatusNotFound, "", "%s not found", what)
}
