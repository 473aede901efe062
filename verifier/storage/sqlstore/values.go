package sqlstore

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/clearance/clearance/verifier/storage"
)

// MaxListLimit caps every List call so no request can make the server read
// or send an unbounded number of rows.
const MaxListLimit = 1000

// clampLimit bounds a List limit to [1, MaxListLimit].
func clampLimit(limit int) int {
	return min(max(limit, 1), MaxListLimit)
}

// The range of times that unix nanoseconds in an int64 can hold.
var (
	minTime = time.Unix(0, math.MinInt64).UTC()
	maxTime = time.Unix(0, math.MaxInt64).UTC()
)

// timeCodec converts times to unix nanoseconds and keeps the first error,
// so a statement with many times checks them once.
type timeCodec struct{ err error }

// ns returns t as unix nanoseconds, 0 for the zero time.
func (c *timeCodec) ns(field string, t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	if t.Before(minTime) || t.After(maxTime) {
		if c.err == nil {
			c.err = fmt.Errorf("%s %s is outside the storable range %s to %s",
				field, t.UTC().Format(time.RFC3339), minTime.Format(time.RFC3339), maxTime.Format(time.RFC3339))
		}
		return 0
	}
	return t.UnixNano()
}

// revocationNS is at as a revocation stores it: never 0, which is how "not
// revoked" is stored.
func revocationNS(at time.Time) (int64, error) {
	if at.IsZero() {
		return 0, errors.New("zero revocation time")
	}
	var c timeCodec
	n := c.ns("revocation time", at)
	return n, c.err
}

// toNS is timeCodec.ns for a time read back from the store or checked
// before, which is in range.
func toNS(t time.Time) int64 {
	var c timeCodec
	return c.ns("stored time", t)
}

// fromNS is the inverse of timeCodec.ns: UTC, or the zero time for 0.
func fromNS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// blob keeps NOT NULL blob columns from receiving NULL for a nil slice.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// checkText refuses a string a text column should not take: longer than
// max bytes, not valid UTF-8, or holding a NUL byte (PostgreSQL's text
// cannot store the last two, so no dialect accepts them).
func checkText(field, s string, max int) error {
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

// textField is a text value and its name in errors.
type textField struct{ name, value string }

// checkTexts checks each field with checkText, up to storage.MaxTextLen;
// nonEmpty also refuses an empty one.
func checkTexts(nonEmpty bool, fields ...textField) error {
	for _, f := range fields {
		if nonEmpty && f.value == "" {
			return fmt.Errorf("empty %s", f.name)
		}
		if err := checkText(f.name, f.value, storage.MaxTextLen); err != nil {
			return err
		}
	}
	return nil
}
