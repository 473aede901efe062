package storage

import (
	"net/url"
	"strings"
)

// PasswordPastHost reports a postgres URL with an '@' after its host, or
// one with an '@' that does not parse: a password holding '/', '?' or '#'
// not percent-encoded ends the host early, and the password would be
// read, and shown, as the database's name, a parameter, a fragment or a
// port.
func PasswordPastHost(database string) bool {
	_, rest, ok := strings.Cut(database, "://")
	if !ok {
		return false
	}
	u, err := url.Parse(database)
	return strings.Contains(rest, "@") && (err != nil || u.User == nil)
}
