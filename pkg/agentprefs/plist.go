package agentprefs

import (
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/groob/plist"

	"github.com/clearance/clearance/pkg/spelling"
)

// ParsePlist reads a preferences plist (the managed-preferences file macOS
// writes from a profile, or the agent's local one) into each key's text
// form. A value of the wrong plist type is an error; the values themselves
// are checked by Check. Payload* keys are skipped: configuration profiles
// carry that bookkeeping, and some MDMs leave it in the
// managed-preferences file.
//
// A key it does not know is returned in unknown, not refused, so that a
// profile made for a newer agent does not stop an older one; but a key
// that differs from a known one only in case or by a typo (CAFingerprnt)
// is an error naming the key meant: a setting misspelt must not be
// dropped without a word, the CA pin least of all.
func ParsePlist(raw []byte) (values map[string]string, unknown []string, err error) {
	var doc any
	if err := plist.Unmarshal(raw, &doc); err != nil {
		return nil, nil, fmt.Errorf("not a valid plist: %w", withoutValues(err))
	}
	dict, ok := doc.(map[string]any)
	if !ok {
		return nil, nil, fmt.Errorf("the top level must be a dictionary, not %s", kind(doc))
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
			if meant := misspelt(name); meant != "" {
				return nil, nil, &UnknownKeyError{Name: name, Meant: meant}
			}
			unknown = append(unknown, name)
			continue
		}
		switch v := dict[name].(type) {
		case string:
			out[name] = v
		case int64:
			if !k.seconds {
				return nil, nil, fmt.Errorf("key %s must be a string, not an integer", name)
			}
			out[name] = strconv.FormatInt(v, 10) + "s"
		case uint64:
			if !k.seconds {
				return nil, nil, fmt.Errorf("key %s must be a string, not an integer", name)
			}
			out[name] = strconv.FormatUint(v, 10) + "s"
		case []any:
			// A list key given as an array of strings, as plist editors
			// and MDMs write lists: its comma-separated form.
			if name != KeyPresenceBrowsers {
				return nil, nil, fmt.Errorf("key %s must be a string, not an array", name)
			}
			items := make([]string, 0, len(v))
			for _, it := range v {
				s, ok := it.(string)
				if !ok || strings.Contains(s, ",") {
					return nil, nil, fmt.Errorf("key %s: each item of the array must be a string without a comma", name)
				}
				items = append(items, s)
			}
			out[name] = strings.Join(items, ",")
		default:
			return nil, nil, fmt.Errorf("key %s must be a string, not %s", name, kind(v))
		}
	}
	return out, unknown, nil
}

// withoutValues is the plist decoder's error without the document's text
// that some of its messages quote: a value there may be the enroll secret
// (an <integer> holding it says `parsing "…": invalid syntax`), and this
// error goes to the agent's log, to status and to the verifier with the
// agent's reports. The markup it names (elements, lines) stays.
func withoutValues(err error) error {
	var (
		num *strconv.NumError
		tm  *time.ParseError
		syn *xml.SyntaxError
	)
	switch {
	case errors.As(err, &num):
		return errors.New("an <integer> or <real> holds something other than a number")
	case errors.As(err, &tm):
		return errors.New("a <date> holds something other than a date such as 2026-03-04T12:00:00Z")
	case errors.As(err, &syn) && strings.HasPrefix(syn.Msg, "invalid character entity"):
		// The entity's text runs on into the value it is in.
		return fmt.Errorf("XML syntax error on line %d: an & that starts no character entity (write &amp; for &)", syn.Line)
	}
	return err
}

// misspelt returns the known key name likely misspells (the same letters
// in another case, or a few edits away), or, for a key that reads as
// trust in some way (TrustStems: CAFingerprintSHA256, ServerPins,
// TrustedCerts, RootPEM), the trust key it may have meant: such an
// unknown key is refused, never ignored, so that a CA or pin an admin
// meant to set is not silently absent. "" for any other key (ReportProxy,
// LogRetention).
func misspelt(name string) string {
	low := strings.ToLower(name)
	for _, k := range Keys() {
		kl := strings.ToLower(k)
		if low == kl || (len(low) >= 6 && spelling.Distance(low, kl) <= max(1, len(kl)/6)) {
			return k
		}
	}
	for _, stem := range TrustStems {
		if strings.Contains(low, stem) {
			return trustStemKeys[stem]
		}
	}
	if words := keyWords(name); slices.Contains(words, "ca") || slices.Contains(words, "cas") || low == "cas" {
		return KeyCAPEM
	}
	return ""
}

// TrustStems are the word stems (lower case) an unknown key must not hold
// to be ignored rather than refused: whatever names a CA, a certificate,
// a pin, a fingerprint or trust. Keys this agent's later versions add are
// named without them, so that a profile made for a newer agent stops no
// older one; a key that holds one is refused by an agent that does not
// know it.
var TrustStems = []string{"fingerprint", "thumbprint", "spki", "hpkp", "pin", "trust", "anchor", "authority", "cert", "root", "issuer", "verifier", "secret", "enroll"}

// trustStemKeys is the known key a key holding each of TrustStems may
// have meant.
var trustStemKeys = map[string]string{
	"fingerprint": KeyCAFingerprint, "thumbprint": KeyCAFingerprint, "spki": KeyCAFingerprint, "hpkp": KeyCAFingerprint, "pin": KeyCAFingerprint,
	"trust": KeyCAPEM, "anchor": KeyCAPEM, "authority": KeyCAPEM, "cert": KeyCAPEM, "root": KeyCAPEM, "issuer": KeyCAPEM,
	"verifier": KeyVerifier, "secret": KeyEnrollSecret, "enroll": KeyEnrollSecret,
}

// keyWords splits a CamelCase or separated key name into its words, in
// lower case ("RootCAPin": root, ca, pin; "TLSRoots": tls, roots;
// "Finger_Print": finger, print).
func keyWords(name string) []string {
	var words []string
	start := 0
	for i := 1; i <= len(name); i++ {
		if i == len(name) || name[i] == '_' || name[i] == '-' || name[i] == '.' ||
			(isUpper(name[i]) && (!isUpper(name[i-1]) || i+1 < len(name) && isLower(name[i+1]))) {
			if w := strings.Trim(name[start:i], "_-."); w != "" {
				words = append(words, strings.ToLower(w))
			}
			start = i
		}
	}
	return words
}

func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
func isLower(c byte) bool { return 'a' <= c && c <= 'z' }

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
