package policy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that no input panics Parse and that it fails closed:
// either an error, or a non-empty Set of valid policies, never both or neither.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "policies.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(valid))
	f.Add([]byte(rolloutBase + "    enforcement: warn\n    grace: 72h\n    allow_bypass: true\n"))
	for _, tc := range badCases {
		// Skip the size-limit cases: minimizing large inputs stalls the
		// fuzzer, and TestParseErrors already covers them.
		if len(tc.yaml) <= 8<<10 {
			f.Add([]byte(tc.yaml))
		}
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := Parse(data, file)
		if err != nil {
			if set != nil {
				t.Fatalf("Parse returned both a Set and an error: %v", err)
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T is not a non-empty Errors: %v", err, err)
			}
			for _, e := range errs {
				if e.File != file || e.Msg == "" || e.Line < 0 || e.Col < 0 {
					t.Fatalf("malformed error %#v", e)
				}
			}
			return
		}
		if set == nil || len(set.Policies) == 0 {
			t.Fatalf("Parse returned no error and no policies")
		}
		seen := map[string]bool{}
		for _, p := range set.Policies {
			if !ValidID(p.ID) || seen[p.ID] {
				t.Fatalf("bad or duplicate id %q accepted", p.ID)
			}
			seen[p.ID] = true
			if p.Name == "" || CheckQuery(p.Query) != nil || p.Interval < MinInterval || p.Interval > MaxInterval || p.Critical && !p.Required {
				t.Fatalf("invalid policy accepted: %#v", p)
			}
		}
		again, err := Parse(data, file)
		if err != nil || again.Version != set.Version {
			t.Fatalf("second Parse differs: %v, version %v vs %s", err, again, set.Version)
		}
	})
}
