package sqlrow

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// CheckText refuses a string a text column should not take: longer than
// max bytes, not valid UTF-8, or holding a NUL byte (PostgreSQL's text
// cannot store the last two, so neither backend accepts them).
func CheckText(field, s string, max int) error {
	switch {
	case len(s) > max:
		return fmt.Errorf("%s is %d bytes, more than the %d allowed", field, len(s), max)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not valid UTF-8", field)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%s contains a NUL byte", field)
	}
	return nil
}
