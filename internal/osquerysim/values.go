package osquerysim

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// sqlValue turns a fixture string into the SQLite value osquery's virtual
// table would hand to SQLite for a column of type typ: text stays text,
// numbers become numbers, and "" in a numeric column becomes NULL (osquery
// casts it, fails, and yields NULL). Other unparsable numbers are errors
// here, where osquery would also yield NULL, because in a fixture they are
// mistakes.
func sqlValue(typ colType, s string) (any, error) {
	switch typ {
	case typeInteger, typeBigint, typeUBigint:
		if s == "" {
			return nil, nil
		}
		n, err := parseCInt(s)
		if err != nil {
			return nil, err
		}
		return n, nil
	case typeDouble:
		if s == "" {
			return nil, nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		return f, nil
	default:
		return s, nil
	}
}

// parseCInt parses the way osquery's tryTo<long>(s, 0) does (strtol with base
// 0): an optional sign, then 0x for hex, a leading 0 for octal, else decimal.
func parseCInt(s string) (int64, error) {
	body := s
	neg := false
	if body != "" && (body[0] == '+' || body[0] == '-') {
		neg = body[0] == '-'
		body = body[1:]
	}
	base := 10
	switch {
	case len(body) > 2 && (body[:2] == "0x" || body[:2] == "0X"):
		base, body = 16, body[2:]
	case len(body) > 1 && body[0] == '0':
		base, body = 8, body[1:]
	}
	if body == "" || strings.ContainsAny(body, "_+-") {
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	u, err := strconv.ParseUint(body, base, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("%q is out of range for a 64-bit integer", s)
		}
		return 0, fmt.Errorf("%q is not an integer", s)
	}
	switch {
	case neg && u <= 1<<63:
		return int64(-u), nil // two's complement: -(1<<63) is MinInt64
	case !neg && u <= math.MaxInt64:
		return int64(u), nil
	}
	return 0, fmt.Errorf("%q is out of range for a 64-bit integer", s)
}

// resultString renders a SQLite result value as osqueryd does in query
// results: integers in decimal, NULL as "" (osqueryd's default --nullvalue),
// and doubles the way boost::lexical_cast prints them (17 significant digits)
// with ".0" appended when that leaves no decimal point.
func resultString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return doubleString(v)
	case string:
		return v
	case []byte:
		return string(v)
	case bool:
		if v {
			return "1"
		}
		return "0"
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	default:
		return fmt.Sprint(v)
	}
}

func doubleString(f float64) string {
	var s string
	switch {
	case math.IsInf(f, 1):
		s = "inf"
	case math.IsInf(f, -1):
		s = "-inf"
	case math.IsNaN(f):
		s = "nan"
	default:
		s = strconv.FormatFloat(f, 'g', 17, 64)
	}
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}
