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
// groups. Letters that differ only in case are one ("Staff" and "staff",
// "Ärzte" and "ärzte", "ΠΩΛΗΣΕΙΣ" and "Πωλησεις", "STRAẞE" and
// "straße"), as Unicode's simple case folding has them; but a sign or
// symbol that folds with a letter it only looks like (U+212A KELVIN SIGN
// with k, U+212B ANGSTROM SIGN with å, U+2126 OHM SIGN with ω, U+017F long s with s, U+00B5 MICRO
// SIGN with μ, the Greek symbol forms) stays itself, so that a group named
// with one is another group. One rule in every place: no name the
// directory keeps apart from a scope's group matches it there.
func GroupKey(name string) string { return strings.Map(foldGroupRune, name) }

// lookAlikeFolds are the code points Unicode's simple case folding puts
// with a letter they only look like: compatibility signs and symbol
// forms. Each folds to itself alone.
var lookAlikeFolds = map[rune]bool{
	0x212A: true,                                                         // KELVIN SIGN
	0x212B: true,                                                         // ANGSTROM SIGN
	0x2126: true,                                                         // OHM SIGN
	0x017F: true,                                                         // LATIN SMALL LETTER LONG S
	0x1E9B: true,                                                         // LATIN SMALL LETTER LONG S WITH DOT ABOVE
	0x00B5: true,                                                         // MICRO SIGN
	0x0345: true,                                                         // COMBINING GREEK YPOGEGRAMMENI
	0x1FBE: true,                                                         // GREEK PROSGEGRAMMENI
	0x03D0: true,                                                         // GREEK BETA SYMBOL
	0x03D1: true,                                                         // GREEK THETA SYMBOL
	0x03D5: true,                                                         // GREEK PHI SYMBOL
	0x03D6: true,                                                         // GREEK PI SYMBOL
	0x03F0: true,                                                         // GREEK KAPPA SYMBOL
	0x03F1: true,                                                         // GREEK RHO SYMBOL
	0x03F4: true,                                                         // GREEK CAPITAL THETA SYMBOL
	0x03F5: true,                                                         // GREEK LUNATE EPSILON SYMBOL
	0x1C80: true, 0x1C81: true, 0x1C82: true, 0x1C83: true, 0x1C84: true, // CYRILLIC SMALL LETTER ROUNDED VE …
	0x1C85: true, 0x1C86: true, 0x1C87: true, 0x1C88: true, // … TALL TE, TALL HARD SIGN, TALL YAT, UNBLENDED UK
}

// foldGroupRune is r's key: the lower-case letter of its simple case
// folding orbit (the least, when there are several: σ for Σ, σ and ς),
// or the least of the orbit when it has none; look-alikes left out both
// ways.
func foldGroupRune(r rune) rune {
	if lookAlikeFolds[r] {
		return r
	}
	best, bestLower := r, unicode.IsLower(r)
	for o := unicode.SimpleFold(r); o != r; o = unicode.SimpleFold(o) {
		if lookAlikeFolds[o] {
			continue
		}
		switch lower := unicode.IsLower(o); {
		case lower && !bestLower, lower == bestLower && o < best:
			best, bestLower = o, lower
		}
	}
	return best
}
