package storage

import (
	"net/url"
	"strings"
)

// PasswordPastHost reports a postgres URL with an '@' past the end of its
// host (after a '/', '?' or '#'), or one with an '@' that does not parse:
// a password holding '/', '?', '#' or '@' not percent-encoded ends the
// user or the host early, and the rest of the password would be read, and
// shown, as the host, the database's name, a parameter, a fragment or a
// port.
func PasswordPastHost(database string) bool {
	_, rest, ok := strings.Cut(database, "://")
	if !ok || !strings.Contains(rest, "@") {
		return false
	}
	if _, err := url.Parse(database); err != nil {
		return true
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 && strings.Contains(rest[i:], "@") {
		return true
	}
	return strings.Count(rest, "@") > 1
}
