package policy

import (
	"strings"
	"unicode"

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
// groups. Each capital letter is lowered when it is that lower-case
// letter's own capital ("Staff" and "staff", "Ärzte" and "ärzte" are one
// group); a sign that only lowers to a letter (U+212A KELVIN SIGN to k,
// U+212B ANGSTROM SIGN to å) stays itself, as does a lower-case
// look-alike (U+017F long s), so that a group named with one is another
// group. One rule in every place: no name the directory keeps apart from
// a scope's group matches it there.
func GroupKey(name string) string { return strings.Map(foldCapital, name) }

// foldCapital lowers r when it is the capital of its lower case.
func foldCapital(r rune) rune {
	if l := unicode.ToLower(r); l != r && unicode.ToUpper(l) == r {
		return l
	}
	return r
}
