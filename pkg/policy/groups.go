package policy

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// Bounds on a policy's group lists.
const (
	maxGroups        = 64
	maxGroupNameSize = 256
)

// groups decodes a list of directory group names (groups, exclude_groups).
func (d *decoder) groups(prefix, key string, v *yaml.Node) []string {
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		d.errorf(v, `%s%q must be a list of group names such as [Engineering], not %s`, prefix, key, describe(v))
		return nil
	}
	if len(v.Content) > maxGroups {
		d.errorf(v, "%s%q lists %d groups; the limit is %d", prefix, key, len(v.Content), maxGroups)
		return nil
	}
	var out []string
	for _, item := range v.Content {
		if item.Kind == yaml.AliasNode {
			continue
		}
		if item.Kind != yaml.ScalarNode || isNull(item) {
			d.errorf(item, "%seach of %q must be a group name, not %s", prefix, key, describe(item))
			continue
		}
		name := strings.TrimSpace(item.Value)
		switch {
		case name == "":
			d.errorf(item, "%san empty group name in %q", prefix, key)
		case len(name) > maxGroupNameSize:
			d.errorf(item, "%sa group name in %q is longer than %d bytes", prefix, key, maxGroupNameSize)
		case containsFold(out, name):
			d.errorf(item, "%sduplicate group %q in %q", prefix, clip(name), key)
		default:
			out = append(out, name)
		}
	}
	return out
}

// containsFold reports whether list holds s, compared as GroupKey does.
func containsFold(list []string, s string) bool {
	for _, x := range list {
		if GroupKey(x) == GroupKey(s) {
			return true
		}
	}
	return false
}

// GroupKey is how a group's name is compared, everywhere one is: in a
// policy's groups and exclude_groups, in the directory the verifier keeps
// (one group per key), and when a scope is matched against a person's
// groups. Lower case in the full Unicode sense, so that "Staff" and
// "staff" are one group; one rule in every place, so that no name the
// directory keeps apart from a scope's group (a look-alike such as
// "ſtaff", with U+017F) matches it there.
func GroupKey(name string) string { return strings.ToLower(name) }
