package agentprefs

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/groob/plist"
)

// ParsePlist reads a preferences plist (the managed-preferences file macOS
// writes from a profile, or the agent's local one) into each key's text
// form. An unknown key or a value of the wrong plist type is an error; the
// values themselves are checked by Check. Payload* keys are skipped:
// configuration profiles carry that bookkeeping, and some MDMs leave it in
// the managed-preferences file.
func ParsePlist(raw []byte) (map[string]string, error) {
	var doc any
	if err := plist.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("not a valid plist: %w", err)
	}
	dict, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the top level must be a dictionary, not %s", kind(doc))
	}
	names := make([]string, 0, len(dict))
	for name := range dict {
		names = append(names, name)
	}
	// Sorted, so the first error reported is the same on every run.
	sort.Strings(names)
	out := make(map[string]string, len(dict))
	for _, name := range names {
		if strings.HasPrefix(name, "Payload") {
			continue
		}
		k, ok := lookup(name)
		if !ok {
			return nil, unknownKey(name)
		}
		switch v := dict[name].(type) {
		case string:
			out[name] = v
		case int64:
			if !k.seconds {
				return nil, fmt.Errorf("key %s must be a string, not an integer", name)
			}
			out[name] = strconv.FormatInt(v, 10) + "s"
		case uint64:
			if !k.seconds {
				return nil, fmt.Errorf("key %s must be a string, not an integer", name)
			}
			out[name] = strconv.FormatUint(v, 10) + "s"
		default:
			return nil, fmt.Errorf("key %s must be a string, not %s", name, kind(v))
		}
	}
	return out, nil
}

// kind names a decoded plist value's type the way plist editors do.
func kind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a dictionary"
	case []any:
		return "an array"
	case bool:
		return "a boolean"
	case int64, uint64:
		return "an integer"
	case float32, float64:
		return "a real"
	case []byte:
		return "data"
	case time.Time:
		return "a date"
	case string:
		return "a string"
	default:
		return fmt.Sprintf("%T", v)
	}
}
