package scim

import (
	"net/http"
	"slices"
	"strings"
)

// Op is one PATCH operation (RFC 7644 §3.5.2).
type Op struct {
	Op   string // "add", "replace" or "remove", lower case
	Path *Path  // nil: the operation's value names the attributes
	// Value is the operation's JSON value (nil when absent).
	Value any
}

// ParsePatch validates a PatchOp message: its schema, and each operation's
// op, path and value. Okta sends op names in lower case; other clients
// capitalise them, so case is ignored.
func ParsePatch(m map[string]any) ([]Op, error) {
	m, err := canonical(m, canon("schemas", "Operations"), " of a PatchOp")
	if err != nil {
		return nil, err
	}
	list, ok := m["schemas"].([]any)
	if !ok || len(list) != 1 || list[0] != PatchSchema {
		return nil, errorf(http.StatusBadRequest, "invalidSyntax", "schemas must be [%q]", PatchSchema)
	}
	raw, ok := m["Operations"].([]any)
	if !ok || len(raw) == 0 {
		return nil, errorf(http.StatusBadRequest, "invalidSyntax", "Operations must be a non-empty array")
	}
	if len(raw) > MaxOperations {
		return nil, errorf(http.StatusBadRequest, "invalidSyntax", "more than %d operations", MaxOperations)
	}
	ops := make([]Op, 0, len(raw))
	for _, r := range raw {
		obj, ok := r.(map[string]any)
		if !ok {
			return nil, errorf(http.StatusBadRequest, "invalidSyntax", "each operation must be an object")
		}
		obj, err := canonical(obj, canon("op", "path", "value"), " of an operation")
		if err != nil {
			return nil, err
		}
		name, _ := obj["op"].(string)
		op := Op{Op: strings.ToLower(name), Value: obj["value"]}
		switch op.Op {
		case "add", "replace", "remove":
		default:
			return nil, errorf(http.StatusBadRequest, "invalidSyntax", "op %q is not add, replace or remove", clip(name))
		}
		if p, ok := obj["path"]; ok && p != nil {
			s, ok := p.(string)
			if !ok {
				return nil, errorf(http.StatusBadRequest, "invalidPath", "path must be a string")
			}
			path, err := ParsePath(s)
			if err != nil {
				return nil, errorf(http.StatusBadRequest, "invalidPath", "%v", err)
			}
			op.Path = &path
		}
		switch {
		case op.Path == nil && op.Op == "remove":
			return nil, errorf(http.StatusBadRequest, "noTarget", "remove needs a path")
		case op.Op != "remove" && op.Value == nil:
			return nil, errorf(http.StatusBadRequest, "invalidValue", "%s needs a value", op.Op)
		}
		if _, isObj := op.Value.(map[string]any); op.Path == nil && !isObj {
			return nil, errorf(http.StatusBadRequest, "invalidValue", "an operation without a path needs an object value")
		}
		// Attribute names ignore case (RFC 7643 §2.1): an object naming
		// one twice ({"active":false,"Active":true}) says two things, and
		// which one would win is not defined. Refused, as in a PUT.
		if k, ok := twice(op.Value); ok {
			return nil, errorf(http.StatusBadRequest, "invalidSyntax", "attribute %q appears twice in an operation's value", clip(k))
		}
		// So does one naming an attribute and a part of it
		// ({"name":{…},"name.givenName":…}, {"active":false,"active.x":true}).
		if v, ok := op.Value.(map[string]any); ok && op.Path == nil {
			if k, ok := overlapping(v); ok {
				return nil, errorf(http.StatusBadRequest, "invalidSyntax", "%q and another key of an operation's value name the same attribute", clip(k))
			}
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// twice finds, in v or any object or array within it, an object with two
// keys that differ only in case, and returns one of them.
func twice(v any) (string, bool) {
	switch v := v.(type) {
	case map[string]any:
		seen := make(map[string]bool, len(v))
		for k, x := range v {
			if seen[strings.ToLower(k)] {
				return k, true
			}
			seen[strings.ToLower(k)] = true
			if k, ok := twice(x); ok {
				return k, true
			}
		}
	case []any:
		for _, x := range v {
			if k, ok := twice(x); ok {
				return k, true
			}
		}
	}
	return "", false
}

// overlapping finds, among the keys of a path-less operation's value, one
// that names the same attribute as another, or a part of it, or the
// whole of which another names a part: applied in map order, which one
// won would not be defined. Two different parts of one attribute
// ("name.givenName", "name.familyName") do not overlap.
func overlapping(v map[string]any) (string, bool) {
	whole := map[string]bool{}
	parts := map[string]bool{}
	for k := range v {
		p, err := ParsePath(k)
		if err != nil {
			continue // refused when applied
		}
		attr, sub := strings.ToLower(p.Attr), strings.ToLower(p.Sub)
		switch {
		case sub == "":
			if whole[attr] || parts[attr] {
				return k, true
			}
			whole[attr] = true
		default:
			if whole[attr] || parts[attr+"."+sub] {
				return k, true
			}
			parts[attr], parts[attr+"."+sub] = true, true
		}
	}
	return "", false
}

// applyUserPatch applies ops to a User's attributes; parseUser then
// validates the result as a whole.
func applyUserPatch(m map[string]any, ops []Op) error {
	for _, op := range ops {
		if op.Path == nil {
			// Okta's deactivation: {"op":"replace","value":{"active":false}}.
			// Keys may be paths themselves ("name.givenName").
			for k, v := range op.Value.(map[string]any) {
				p, err := ParsePath(k)
				if err != nil || p.Filter != nil {
					return errorf(http.StatusBadRequest, "invalidPath", "%q is not an attribute", clip(k))
				}
				setAttr(m, p, v, op.Op == "add")
			}
			continue
		}
		if op.Path.Filter != nil {
			return errorf(http.StatusBadRequest, "invalidPath", "filtered paths are supported for group members only")
		}
		if op.Op == "remove" {
			removeAttr(m, *op.Path)
			continue
		}
		setAttr(m, *op.Path, op.Value, op.Op == "add")
	}
	return nil
}

// key finds m's key for name regardless of case, or returns name.
func key(m map[string]any, name string) string {
	for k := range m {
		if strings.EqualFold(k, name) {
			return k
		}
	}
	return name
}

// setAttr sets p to v: objects merge into objects (RFC 7644 §3.5.2.1 and
// .3, sub-attributes not named are left alone) and add appends to a
// multi-valued attribute; anything else replaces.
func setAttr(m map[string]any, p Path, v any, add bool) {
	k := key(m, p.Attr)
	if p.Sub != "" {
		obj, ok := m[k].(map[string]any)
		if !ok {
			obj = map[string]any{}
		}
		obj[key(obj, p.Sub)] = v
		m[k] = obj
		return
	}
	switch cur := m[k].(type) {
	case map[string]any:
		if nv, ok := v.(map[string]any); ok {
			for sk, sv := range nv {
				cur[key(cur, sk)] = sv
			}
			return
		}
	case []any:
		if nv, ok := v.([]any); ok && add {
			m[k] = append(slices.Clone(cur), nv...)
			return
		}
	}
	m[k] = v
}

func removeAttr(m map[string]any, p Path) {
	k := key(m, p.Attr)
	if p.Sub == "" {
		delete(m, k)
		return
	}
	if obj, ok := m[k].(map[string]any); ok {
		delete(obj, key(obj, p.Sub))
	}
}
