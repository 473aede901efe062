package osquerysim

import (
	"database/sql/driver"
	"errors"
	"strings"
)

// osqueryd declares version columns (os_version.version, alf.version, …)
// with its own VERSION collation, so `version >= '15.2'` compares release
// segments rather than bytes ('15.10' sorts after '15.9'). Policies lean on
// that, so the simulator registers the same collations and the
// version_compare() function, with the same ordering rules.

// versionRules selects the package-flavour refinements; the zero value is
// the generic VERSION collation.
type versionRules struct {
	epoch               bool // a version with an epoch (N:) sorts after one without
	delimPrecedence     bool // delimiters order among themselves: ~ < - < ^ < . < :
	compRemaining       bool // look at what follows when one version is a prefix
	remainderPrecedence bool // …but only when the last shared character was not a digit
}

var (
	rulesGeneric = versionRules{}
	rulesARCH    = versionRules{epoch: true, compRemaining: true, remainderPrecedence: true}
	rulesDPKG    = versionRules{epoch: true, delimPrecedence: true}
	rulesRHEL    = versionRules{epoch: true, delimPrecedence: true, compRemaining: true}
)

func delimRank(c byte) int {
	switch c {
	case '~':
		return 1
	case '-':
		return 2
	case '^':
		return 3
	case '.':
		return 4
	case ':':
		return 5
	}
	return 0
}

// charDiff compares bytes as macOS's signed char does, so non-ASCII bytes
// order the way they do under osqueryd on a Mac.
func charDiff(a, b byte) int { return int(int8(a)) - int(int8(b)) }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// compareVersions returns <0, 0 or >0. Within a segment the first differing
// character decides, unless one segment is longer, in which case it is the
// greater; segments end at a delimiter.
func compareVersions(l, r string, rules versionRules) int {
	switch {
	case l == "" && r == "":
		return 0
	case l == "":
		return -1
	case r == "":
		return 1
	case l == r:
		return 0
	}
	if rules.epoch {
		li, ri := strings.IndexByte(l, ':'), strings.IndexByte(r, ':')
		switch {
		case li >= 0 && ri >= 0:
			if li != ri {
				return li - ri
			}
		case li >= 0:
			return 1
		case ri >= 0:
			return -1
		}
	}
	diff := 0
	n := min(len(l), len(r))
	for i := 0; i < n; i++ {
		ld, rd := delimRank(l[i]), delimRank(r[i])
		switch {
		case ld == 0 && rd == 0:
			if diff == 0 {
				diff = charDiff(l[i], r[i])
			}
			continue
		case ld == 0:
			return 1
		case rd == 0:
			return -1
		}
		if diff != 0 {
			return diff
		}
		if rules.delimPrecedence && ld != rd {
			return ld - rd
		}
	}
	if len(l) == len(r) {
		return diff
	}
	return compareRemainder(l, r, n, diff, rules)
}

// compareRemainder decides between a version and a longer one it prefixes
// (up to the first segment difference diff), at position pos.
func compareRemainder(l, r string, pos, diff int, rules versionRules) int {
	if len(l) == pos {
		if rules.compRemaining {
			switch r[pos] {
			case '~':
				return 1
			case '-':
				return 0
			case '^':
				return -1
			default:
				if diff != 0 && (!rules.remainderPrecedence || !isDigit(l[pos-1])) {
					return diff
				}
			}
		} else if diff != 0 && delimRank(r[pos]) > 0 {
			return diff
		}
	}
	if len(r) == pos {
		if rules.compRemaining {
			switch l[pos] {
			case '~':
				return -1
			case '-':
				return 0
			case '^':
				return 1
			default:
				if diff != 0 && (!rules.remainderPrecedence || !isDigit(r[pos-1])) {
					return diff
				}
			}
		} else if diff != 0 && delimRank(l[pos]) > 0 {
			return diff
		}
	}
	return len(l) - len(r)
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// versionCompareFunc is osqueryd's version_compare(a, b [, 'ARCH'|'DPKG'|'RHEL']),
// returning -1, 0 or 1, with osqueryd's error messages.
func versionCompareFunc(args []driver.Value) (driver.Value, error) {
	if len(args) < 2 {
		return nil, errors.New("Must provide two version strings to compare.")
	}
	l, lok := args[0].(string)
	r, rok := args[1].(string)
	if !lok || !rok {
		return nil, errors.New("Must provide two version strings to compare.")
	}
	rules := rulesGeneric
	if len(args) > 2 {
		flavor, ok := args[2].(string)
		if !ok {
			return nil, errors.New("The optional third parameter is not a string.")
		}
		switch strings.ToUpper(flavor) {
		case "ARCH":
			rules = rulesARCH
		case "DPKG":
			rules = rulesDPKG
		case "RHEL":
			rules = rulesRHEL
		default:
			return nil, errors.New("The optional third parameter does not match one of: (ARCH, DPKG, RHEL).")
		}
	}
	return int64(sign(compareVersions(l, r, rules))), nil
}
