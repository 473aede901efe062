package policy

// MaxIDLen is the longest policy id.
const MaxIDLen = 64

// ValidID reports whether id is a policy id: 1 to 64 bytes of lower-case
// ASCII letters, digits, '.', '_' and '-', starting with a letter or digit
// (the regular expression ^[a-z0-9][a-z0-9._-]{0,63}$). Every report's
// results are checked with it, so it is written out rather than matched.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}
