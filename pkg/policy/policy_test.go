package policy

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

const file = "policies.yaml"

// valid is a one-policy file that passes; cases below break one thing each.
const valid = `policies:
  - id: filevault
    name: FileVault is on
    query: SELECT 1 FROM disk_encryption WHERE filevault_status = 'on'
`

// badCases holds one file per validation rule and the exact errors a user
// sees. FuzzParse seeds from it too.
var badCases = []struct {
	name string
	yaml string
	want string
}{
	// The file as a whole.
	{"empty file", "", `policies.yaml:1:1: no policies defined (the file is empty)`},
	{"only comments", "# nothing yet\n", `policies.yaml:1:1: no policies defined (the file is empty)`},
	{"bad indentation", valid + "      more: x\n", `policies.yaml:5: invalid YAML: mapping values are not allowed in this context`},
	{"misaligned key", "policies:\n  - id: a\n   name: b\n", `policies.yaml:2: invalid YAML: did not find expected '-' indicator`},
	{"list after mapping", valid + "- id: b\n", `policies.yaml:5: invalid YAML: did not find expected key`},
	{"unclosed flow list", valid + "    platforms: [darwin\n", `policies.yaml:5: invalid YAML: did not find expected ',' or ']'`},
	{"unclosed quote", valid + "    name: \"x\n", `policies.yaml:5: invalid YAML: found unexpected end of stream`},
	{"unknown alias", valid + "    name: *x\n", `policies.yaml: invalid YAML: unknown anchor 'x' referenced`},
	{"tab indentation", "policies:\n\t- id: a\n", `policies.yaml:2: invalid YAML: found character that cannot start any token`},
	{"two documents", valid + "---\n" + valid, `policies.yaml:5:1: only one YAML document is allowed`},
	{"top level is a list", "- id: a\n", `policies.yaml:1:1: the top level must be a mapping with a "policies" list, not a list`},
	{"top level is a scalar", "filevault\n", `policies.yaml:1:1: the top level must be a mapping with a "policies" list, not "filevault"`},
	{"top level null", "~\n", `policies.yaml:1:1: no policies defined`},
	{"unknown top-level key", valid + "polices: []\n", `policies.yaml:5:1: unknown key "polices" (did you mean "policies"?)`},
	{"missing policies", "version: 2\n", "policies.yaml:1:1: unknown key \"version\"\n" +
		`policies.yaml:1:1: no policies defined (add a "policies" list)`},
	{"duplicate top-level key", valid + "policies: []\n", `policies.yaml:5:1: duplicate key "policies" (first at line 1)`},
	{"empty policy list", "policies: []\n", `policies.yaml:1:11: no policies defined`},
	{"null policy list", "policies:\n", `policies.yaml:1:10: no policies defined`},
	{"policies not a list", "policies: filevault\n", `policies.yaml:1:11: "policies" must be a list, not "filevault"`},
	{"policies a mapping", "policies:\n  filevault: {}\n", `policies.yaml:2:3: "policies" must be a list, not a mapping`},

	// A policy's shape and keys.
	{"policy not a mapping", "policies:\n  - filevault\n", `policies.yaml:2:5: policy 1: must be a mapping with id, name and query, not "filevault"`},
	{"unknown key with suggestion", valid + "    requried: true\n", `policies.yaml:5:5: policy "filevault": unknown key "requried" (did you mean "required"?)`},
	{"unknown key in capitals", valid + "    Name: x\n", `policies.yaml:5:5: policy "filevault": unknown key "Name" (did you mean "name"?)`},
	{"unknown key", valid + "    colour: red\n", `policies.yaml:5:5: policy "filevault": unknown key "colour"`},
	{"duplicate key", valid + "    name: Again\n", `policies.yaml:5:5: policy "filevault": duplicate key "name" (first at line 3)`},
	{"non-string key", valid + "    ? [a]\n    : b\n", `policies.yaml:5:7: policy "filevault": keys must be plain strings, not a list`},

	// id
	{"missing id", "policies:\n  - name: x\n    query: SELECT 1\n", `policies.yaml:2:5: policy 1: missing "id"`},
	{"empty id", "policies:\n  - id: ''\n    name: x\n    query: SELECT 1\n", `policies.yaml:2:9: policy 1: "id" is empty`},
	{"id with capitals", "policies:\n  - id: FileVault\n    name: x\n    query: SELECT 1\n",
		`policies.yaml:2:9: policy 1: invalid id "FileVault": use 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit`},
	{"id too long", "policies:\n  - id: " + strings.Repeat("a", 65) + "\n    name: x\n    query: SELECT 1\n",
		`policies.yaml:2:9: policy 1: invalid id "` + strings.Repeat("a", 64) + `…": use 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit`},
	{"id starts with a dash", "policies:\n  - id: -x\n    name: x\n    query: SELECT 1\n",
		`policies.yaml:2:9: policy 1: invalid id "-x": use 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit`},
	{"id a list", "policies:\n  - id: [a]\n    name: x\n    query: SELECT 1\n", `policies.yaml:2:9: policy 1: "id" must be a string, not a list`},
	{"duplicate id", valid + "  - id: filevault\n    name: Again\n    query: SELECT 1\n",
		`policies.yaml:5:9: policy "filevault": duplicate id (first defined at line 2)`},

	// name
	{"missing name", "policies:\n  - id: a\n    query: SELECT 1\n", `policies.yaml:2:5: policy "a": missing "name"`},
	{"empty name", "policies:\n  - id: a\n    name: '  '\n    query: SELECT 1\n", `policies.yaml:3:11: policy "a": "name" is empty`},
	{"null name", "policies:\n  - id: a\n    name:\n    query: SELECT 1\n", `policies.yaml:3:10: policy "a": "name" is empty`},
	{"name too long", "policies:\n  - id: a\n    name: " + strings.Repeat("é", 201) + "\n    query: SELECT 1\n",
		`policies.yaml:3:11: policy "a": "name" is 201 characters; the limit is 200`},
	{"name a mapping", "policies:\n  - id: a\n    name: {en: x}\n    query: SELECT 1\n", `policies.yaml:3:11: policy "a": "name" must be a string, not a mapping`},
	{"name binary", "policies:\n  - id: a\n    name: !!binary aGk=\n    query: SELECT 1\n", `policies.yaml:3:11: policy "a": "name" must be a string, not a !!binary value`},

	// query
	{"missing query", "policies:\n  - id: a\n    name: x\n", `policies.yaml:2:5: policy "a": missing "query"`},
	{"blank query", "policies:\n  - id: a\n    name: x\n    query: \"  \\n\\t\"\n", `policies.yaml:4:12: policy "a": "query" is empty`},
	{"query too long", "policies:\n  - id: a\n    name: x\n    query: SELECT " + strings.Repeat("1", 64<<10) + "\n",
		`policies.yaml:4:12: policy "a": "query" is 65543 bytes; the limit is 65536`},
	{"query writes", "policies:\n  - id: a\n    name: x\n    query: DELETE FROM users\n",
		`policies.yaml:4:12: policy "a": "query" must start with SELECT or WITH: policies are read-only osquery queries`},
	{"query hides behind a comment", "policies:\n  - id: a\n    name: x\n    query: |\n      -- SELECT\n      /* SELECT */ ATTACH 'x' AS y\n",
		`policies.yaml:4:12: policy "a": "query" must start with SELECT or WITH: policies are read-only osquery queries`},
	{"query only a comment", "policies:\n  - id: a\n    name: x\n    query: /* SELECT 1\n",
		`policies.yaml:4:12: policy "a": "query" must start with SELECT or WITH: policies are read-only osquery queries`},
	{"query keyword prefix", "policies:\n  - id: a\n    name: x\n    query: SELECTED 1\n",
		`policies.yaml:4:12: policy "a": "query" must start with SELECT or WITH: policies are read-only osquery queries`},

	// platforms
	{"platforms a scalar", valid + "    platforms: darwin\n", `policies.yaml:5:16: policy "filevault": "platforms" must be a list such as [darwin], not "darwin"`},
	{"platform macos", valid + "    platforms: [macos]\n", `policies.yaml:5:17: policy "filevault": unknown platform "macos" (osquery calls it "darwin")`},
	{"platform capitalised", valid + "    platforms: [Darwin]\n", `policies.yaml:5:17: policy "filevault": unknown platform "Darwin" (did you mean "darwin"?)`},
	{"platform unknown", valid + "    platforms: [solaris]\n", `policies.yaml:5:17: policy "filevault": unknown platform "solaris" (want one of darwin, linux, windows, chrome)`},
	{"platform null item", valid + "    platforms: [darwin, ~]\n", `policies.yaml:5:25: policy "filevault": each platform must be one of darwin, linux, windows, chrome, not null`},
	{"platform duplicate", valid + "    platforms: [darwin, linux, darwin]\n", `policies.yaml:5:32: policy "filevault": duplicate platform "darwin"`},

	// resolution
	{"resolution too long", valid + "    resolution: " + strings.Repeat("x", 4097) + "\n", `policies.yaml:5:17: policy "filevault": "resolution" is 4097 bytes; the limit is 4096`},
	// user_text
	{"user text too long", valid + "    user_text: " + strings.Repeat("x", 2049) + "\n", `policies.yaml:5:16: policy "filevault": "user_text" is 2049 bytes; the limit is 2048: a sentence or two is enough`},
	{"user text not a string", valid + "    user_text: [a, b]\n", `policies.yaml:5:16: policy "filevault": "user_text" must be a string, not a list`},
	{"user text misspelt", valid + "    usertext: Keeps your files safe.\n", `policies.yaml:5:5: policy "filevault": unknown key "usertext" (did you mean "user_text"?)`},

	// required and critical
	{"required not a bool", valid + "    required: \"yes please\"\n", `policies.yaml:5:15: policy "filevault": "required" must be true or false, got "yes please"`},
	{"required yes", valid + "    required: yes\n", `policies.yaml:5:15: policy "filevault": "required" must be true or false, got "yes"`},
	{"required quoted", valid + "    required: 'true'\n", `policies.yaml:5:15: policy "filevault": "required" must be true or false, got "true" (remove the quotes)`},
	{"critical a list", valid + "    critical: [true]\n", `policies.yaml:5:15: policy "filevault": "critical" must be true or false, got a list`},
	{"critical but not required", valid + "    critical: true\n    required: false\n",
		`policies.yaml:5:15: policy "filevault": a critical policy must be required: set "required: true" or "critical: false"`},

	// interval
	{"interval not a duration", valid + "    interval: soon\n", `policies.yaml:5:15: policy "filevault": "interval" "soon" is not a duration: use a value such as "60s" or "5m"`},
	{"interval without unit", valid + "    interval: 60\n", `policies.yaml:5:15: policy "filevault": "interval" "60" is not a duration: use a value such as "60s" or "5m"`},
	{"interval too short", valid + "    interval: 5s\n", `policies.yaml:5:15: policy "filevault": "interval" 5s is shorter than the minimum of 10s`},
	{"interval negative", valid + "    interval: -1m\n", `policies.yaml:5:15: policy "filevault": "interval" -1m0s is shorter than the minimum of 10s`},
	{"interval too long", valid + "    interval: 25h\n", `policies.yaml:5:15: policy "filevault": "interval" 25h0m0s is longer than the maximum of 24h0m0s`},
	{"interval a mapping", valid + "    interval: {seconds: 60}\n", `policies.yaml:5:15: policy "filevault": "interval" must be a duration such as "60s" or "5m", not a mapping`},

	// Hostile input.
	{"alias", "policies:\n  - &p\n    id: a\n    name: x\n    query: SELECT 1\n  - *p\n",
		"policies.yaml:2:5: YAML anchors (&p) are not allowed\n" +
			"policies.yaml:6:5: YAML aliases (*p) are not allowed"},
	{"merge key", "base: &b {name: x, query: SELECT 1}\npolicies:\n  - <<: *b\n    id: a\n",
		"policies.yaml:1:1: unknown key \"base\"\n" +
			"policies.yaml:1:7: YAML anchors (&b) are not allowed\n" +
			"policies.yaml:3:5: policy \"a\": unknown key \"<<\"\n" +
			"policies.yaml:3:5: policy \"a\": missing \"name\"\n" +
			"policies.yaml:3:5: policy \"a\": missing \"query\"\n" +
			"policies.yaml:3:9: YAML aliases (*b) are not allowed"},

	// Text that would steer a terminal: refused where it is written.
	{"name with escape sequences", "policies:\n  - id: a\n    name: \"Disk \\e[2J\\e[32mALL PASS\\e[0m\"\n    query: SELECT 1\n",
		`policies.yaml:3:11: policy "a": "name" has control character U+001B at byte 5; write it as plain text`},
	{"name with a line break", "policies:\n  - id: a\n    name: \"one\\ntwo\"\n    query: SELECT 1\n",
		`policies.yaml:3:11: policy "a": "name" has control character U+000A at byte 3; write it as plain text`},
	{"name with a tab", "policies:\n  - id: a\n    name: \"one\\ttwo\"\n    query: SELECT 1\n",
		`policies.yaml:3:11: policy "a": "name" has control character U+0009 at byte 3; write it as plain text`},
	{"name with a C1 control", "policies:\n  - id: a\n    name: \"x\\u009b2J\"\n    query: SELECT 1\n",
		`policies.yaml:3:11: policy "a": "name" has control character U+009B at byte 1; write it as plain text`},
	{"name with DEL", "policies:\n  - id: a\n    name: \"x\\x7f\"\n    query: SELECT 1\n",
		`policies.yaml:3:11: policy "a": "name" has control character U+007F at byte 1; write it as plain text`},
	{"resolution with a hyperlink escape", valid + "    resolution: \"Fix \\e]8;;https://evil.example/\\aclick here\\e]8;;\\a\"\n",
		`policies.yaml:5:17: policy "filevault": "resolution" has control character U+001B at byte 4; write it as plain text`},
	{"resolution with a carriage return", valid + "    resolution: \"1. Open Settings\\r2. Done\"\n",
		`policies.yaml:5:17: policy "filevault": "resolution" has control character U+000D at byte 16; write it as plain text`},
	{"user text with a bell", valid + "    user_text: \"Keeps files safe\\a\"\n",
		`policies.yaml:5:16: policy "filevault": "user_text" has control character U+0007 at byte 16; write it as plain text`},
	{"user text with NUL", valid + "    user_text: \"a\\0b\"\n",
		`policies.yaml:5:16: policy "filevault": "user_text" has control character U+0000 at byte 1; write it as plain text`},
	{"description with an escape sequence", valid + "    description: \"Disk \\e[2J\"\n",
		`policies.yaml:5:18: policy "filevault": "description" has control character U+001B at byte 5; write it as plain text`},

	// Every problem is reported, not only the first.
	{"all errors", "policies:\n" +
		"  - id: a\n    name: x\n    query: SELECT 1\n    interval: 1s\n" +
		"  - id: B\n    name: y\n    query: DROP TABLE x\n" +
		"  - id: a\n    query: SELECT 1\n    platforms: [beos]\n",
		"policies.yaml:5:15: policy \"a\": \"interval\" 1s is shorter than the minimum of 10s\n" +
			"policies.yaml:6:9: policy 2: invalid id \"B\": use 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit\n" +
			"policies.yaml:8:12: policy 2: \"query\" must start with SELECT or WITH: policies are read-only osquery queries\n" +
			"policies.yaml:9:5: policy \"a\": missing \"name\"\n" +
			"policies.yaml:9:9: policy \"a\": duplicate id (first defined at line 2)\n" +
			"policies.yaml:11:17: policy \"a\": unknown platform \"beos\" (want one of darwin, linux, windows, chrome)"},
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range badCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			set, err := Parse([]byte(tc.yaml), file)
			if err == nil {
				t.Fatalf("Parse succeeded with %d policies; want error:\n%s", len(set.Policies), tc.want)
			}
			if set != nil {
				t.Errorf("Parse returned a Set alongside its error")
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error mismatch\n got: %s\nwant: %s", got, tc.want)
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) != strings.Count(tc.want, "\n")+1 {
				t.Errorf("error is %T with %d entries; want Errors with one per line", err, len(errs))
			}
		})
	}
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	set, err := Parse([]byte(valid), file)
	if err != nil {
		t.Fatal(err)
	}
	want := Policy{
		ID: "filevault", Name: "FileVault is on",
		Query:    "SELECT 1 FROM disk_encryption WHERE filevault_status = 'on'",
		Required: true, Critical: false, Interval: 60 * time.Second,
	}
	if got := set.Policies[0]; fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
}

func TestParseAccepts(t *testing.T) {
	t.Parallel()
	const src = `# leading comment
policies:
  - id: a.b_c-1
    name: "  Padded name  "
    description:
    query: |
      -- a comment first is fine
      /* and a block one */
      with x AS (SELECT 1) select * FROM x
    platforms: []
    resolution: "1. Open System Settings\n2. Turn it\ton"
    user_text: |
      Keeps your files safe.
      Even when the Mac is lost.
    required: false
    critical: ~
    interval: 1h30m
  - id: "2024"
    name: 2024
    query: "\tSELECT*FROM os_version"
    platforms: [darwin, linux, windows, chrome]
    required: TRUE
    critical: True
    interval: 10s
`
	set, err := Parse([]byte(src), file)
	if err != nil {
		t.Fatal(err)
	}
	want := []Policy{{
		ID: "a.b_c-1", Name: "Padded name",
		Resolution: "1. Open System Settings\n2. Turn it\ton", UserText: "Keeps your files safe.\nEven when the Mac is lost.",
		Query:    "-- a comment first is fine\n/* and a block one */\nwith x AS (SELECT 1) select * FROM x",
		Required: false, Interval: 90 * time.Minute,
	}, {
		ID: "2024", Name: "2024", Query: "SELECT*FROM os_version",
		Platforms: []string{"darwin", "linux", "windows", "chrome"},
		Required:  true, Critical: true, Interval: 10 * time.Second,
	}}
	if got, w := fmt.Sprintf("%#v", set.Policies), fmt.Sprintf("%#v", want); got != w {
		t.Errorf("got  %s\nwant %s", got, w)
	}
	if p, ok := set.Lookup("2024"); !ok || p.Name != "2024" {
		t.Errorf("Lookup(2024) = %v, %v", p, ok)
	}
	if _, ok := set.Lookup("missing"); ok {
		t.Error("Lookup found a policy that is not there")
	}
}

func TestVersionIgnoresFormatting(t *testing.T) {
	t.Parallel()
	base := `policies:
  - id: fv
    name: FileVault
    description: Disk encryption.
    user_text: Keeps your files safe.
    query: SELECT 1 FROM disk_encryption WHERE filevault_status = 'on'
    platforms: [darwin]
    resolution: Turn it on.
    required: true
    critical: true
    interval: 5m
`
	same := map[string]string{
		"comments and blank lines": "# header\n\n" + strings.ReplaceAll(base, "    name: FileVault\n", "    name: FileVault # inline\n\n"),
		"flow style":               `{policies: [{id: fv, name: FileVault, description: Disk encryption., user_text: Keeps your files safe., query: "SELECT 1 FROM disk_encryption WHERE filevault_status = 'on'", platforms: [darwin], resolution: Turn it on., required: true, critical: true, interval: 5m}]}`,
		"key order and quoting": `policies:
- interval: "300s"
  critical: true
  required: true
  resolution: 'Turn it on.'
  platforms:
    - darwin
  query: >
    SELECT 1 FROM disk_encryption WHERE filevault_status = 'on'
  description: "Disk encryption."
  user_text: "  Keeps your files safe.  "
  name: "FileVault"
  id: "fv"
`,
		"document markers": "---\n" + base + "...\n",
	}
	changed := map[string]string{
		"id":            strings.Replace(base, "id: fv", "id: fv2", 1),
		"name":          strings.Replace(base, "name: FileVault", "name: FileVault!", 1),
		"description":   strings.Replace(base, "Disk encryption.", "Disk encryption", 1),
		"user text":     strings.Replace(base, "Keeps your files safe.", "Keeps your files safe!", 1),
		"query":         strings.Replace(base, "= 'on'", "= 'on' LIMIT 1", 1),
		"platforms":     strings.Replace(base, "[darwin]", "[darwin, linux]", 1),
		"no platforms":  strings.Replace(base, "    platforms: [darwin]\n", "", 1),
		"resolution":    strings.Replace(base, "Turn it on.", "Turn it on!", 1),
		"required":      strings.Replace(strings.Replace(base, "required: true", "required: false", 1), "critical: true", "critical: false", 1),
		"critical":      strings.Replace(base, "critical: true", "critical: false", 1),
		"interval":      strings.Replace(base, "5m", "6m", 1),
		"second policy": base + "  - id: fw\n    name: Firewall\n    query: SELECT 1 FROM alf WHERE global_state >= 1\n",
	}

	want := mustParse(t, base).Version
	if len(want) != 16 || strings.Trim(want, "0123456789abcdef") != "" {
		t.Fatalf("version %q is not 16 lowercase hex digits", want)
	}
	for name, src := range same {
		if got := mustParse(t, src).Version; got != want {
			t.Errorf("%s: version %s, want %s", name, got, want)
		}
	}
	seen := map[string]string{want: "base"}
	for name, src := range changed {
		got := mustParse(t, src).Version
		if prev, dup := seen[got]; dup {
			t.Errorf("%s: version %s is the same as for %s", name, got, prev)
		}
		seen[got] = name
	}
	// Order is content: the same policies listed the other way round differ.
	two := mustParse(t, changed["second policy"])
	swapped := "policies:\n  - id: fw\n    name: Firewall\n    query: SELECT 1 FROM alf WHERE global_state >= 1\n" + strings.TrimPrefix(base, "policies:\n")
	if mustParse(t, swapped).Version == two.Version {
		t.Error("reordering policies kept the version")
	}
}

// TestVersionCoversEveryField changes each Policy field in turn: every one
// must change the version, or agents would keep a stale set after an edit.
// A field of a kind this test does not know fails it, so a new field gets
// its place in version's encoding before it ships.
func TestVersionCoversEveryField(t *testing.T) {
	t.Parallel()
	base := Policy{ID: "a", Name: "A", Query: "SELECT 1", Required: true, Interval: DefaultInterval}
	want := version([]Policy{base})
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		p := base
		f := reflect.ValueOf(&p).Elem().Field(i)
		switch {
		case f.Kind() == reflect.String:
			f.SetString(f.String() + "x")
		case f.Kind() == reflect.Bool:
			f.SetBool(!f.Bool())
		case f.Kind() == reflect.Int64:
			f.SetInt(f.Int() + 1)
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
			f.Set(reflect.Append(f, reflect.ValueOf("x").Convert(f.Type().Elem())))
		default:
			t.Fatalf("Policy.%s is a %s: teach version and this test about it", typ.Field(i).Name, f.Type())
		}
		if version([]Policy{p}) == want {
			t.Errorf("changing Policy.%s keeps the version", typ.Field(i).Name)
		}
	}
}

func mustParse(t *testing.T, src string) *Set {
	t.Helper()
	set, err := Parse([]byte(src), file)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, src)
	}
	return set
}

// TestExamplesGolden loads the shipped example file and compares what the
// verifier would hand agents with testdata/examples.golden.
func TestExamplesGolden(t *testing.T) {
	t.Parallel()
	path := filepath.Join("..", "..", "examples", "policies.yaml")
	set, err := Load(path)
	if err != nil {
		t.Fatalf("examples/policies.yaml does not load:\n%v", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version: %s\n", set.Version)
	for _, p := range set.Policies {
		fmt.Fprintf(&b, "\n== %s\nname: %s\nplatforms: %s\nrequired: %t\ncritical: %t\ninterval: %s\n",
			p.ID, p.Name, strings.Join(p.Platforms, ","), p.Required, p.Critical, p.Interval)
		fmt.Fprintf(&b, "description:\n%s\nuser_text:\n%s\nquery:\n%s\nresolution:\n%s\n", p.Description, p.UserText, p.Query, p.Resolution)
	}
	golden := filepath.Join("testdata", "examples.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if b.String() != string(want) {
		t.Errorf("examples/policies.yaml no longer matches %s (run go test -update if the change is intended):\n%s", golden, b.String())
	}

	// What the example file promises: real macOS checks, each required except
	// screen lock (osquery's screenlock table is empty when queried as root),
	// with FileVault and SIP critical.
	for _, id := range []string{"filevault", "firewall", "sip", "gatekeeper", "screen-lock", "macos-version"} {
		p, ok := set.Lookup(id)
		if !ok {
			t.Errorf("example policy %q missing", id)
			continue
		}
		if p.Required != (id != "screen-lock") || p.Resolution == "" || p.UserText == "" || len(p.Platforms) != 1 || p.Platforms[0] != "darwin" {
			t.Errorf("%s: want required (all but screen-lock), darwin-only, with user text and a resolution; got %+v", id, p)
		}
		if critical := id == "filevault" || id == "sip"; p.Critical != critical {
			t.Errorf("%s: critical = %t, want %t", id, p.Critical, critical)
		}
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()

	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(valid), 0o600); err != nil {
		t.Fatal(err)
	}
	if set, err := Load(good); err != nil || len(set.Policies) != 1 {
		t.Fatalf("Load(good) = %v, %v", set, err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(valid+"    interval: 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(bad)
	if want := bad + `:5:15: policy "filevault": "interval" 1s is shorter than the minimum of 10s`; err == nil || err.Error() != want {
		t.Errorf("Load(bad) error = %v, want %s", err, want)
	}

	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(valid+"# "+strings.Repeat("x", MaxFileSize)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(big)
	if want := big + ": file is larger than the limit of 1048576 bytes (1 MiB)"; err == nil || err.Error() != want {
		t.Errorf("Load(big) error = %v, want %s", err, want)
	}

	if _, err := Load(filepath.Join(dir, "absent.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(absent) error = %v, want os.ErrNotExist", err)
	}
}

func TestParseRefusesLargeInput(t *testing.T) {
	t.Parallel()
	data := []byte(valid + "# " + strings.Repeat("x", MaxFileSize))
	_, err := Parse(data, file)
	if want := "policies.yaml: file is larger than the limit of 1048576 bytes (1 MiB)"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
	// Exactly at the limit is parsed (and here it is valid).
	at := []byte(valid + "#" + strings.Repeat("x", MaxFileSize-len(valid)-2) + "\n")
	if len(at) != MaxFileSize {
		t.Fatalf("test input is %d bytes", len(at))
	}
	if _, err := Parse(at, file); err != nil {
		t.Errorf("a file of exactly MaxFileSize bytes: %v", err)
	}
}

// TestBillionLaughs checks that an alias bomb is refused without expanding:
// nine levels of ten aliases would be 10^9 nodes if anything followed them.
func TestBillionLaughs(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [", i, i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString("policies: *a9\n")

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Parse([]byte(b.String()), file)
	runtime.ReadMemStats(&after)

	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error = %v, want Errors", err)
	}
	if !strings.Contains(err.Error(), "policies.yaml:2:10: YAML aliases (*a0) are not allowed") {
		t.Errorf("error does not report the aliases:\n%s", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("parsing the alias bomb allocated %d bytes", alloc)
	}
}

func TestDeepNesting(t *testing.T) {
	t.Parallel()
	for _, depth := range []int{100, 9000, 20000} {
		src := valid + "    description: " + strings.Repeat("[", depth) + strings.Repeat("]", depth) + "\n"
		_, err := Parse([]byte(src), file)
		if err == nil {
			t.Fatalf("depth %d: no error", depth)
		}
		want := `policies.yaml:5:18: policy "filevault": "description" must be a string, not a list`
		if depth > 10000 {
			want = "policies.yaml:5: invalid YAML: exceeded max depth of 10000"
		}
		if err.Error() != want {
			t.Errorf("depth %d: error = %v, want %s", depth, err, want)
		}
	}
}

func TestTooManyErrors(t *testing.T) {
	t.Parallel()
	src := "policies:\n" + strings.Repeat("  - nope\n", 500)
	_, err := Parse([]byte(src), file)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error = %v", err)
	}
	if len(errs) != maxErrors+1 {
		t.Fatalf("%d errors reported, want %d", len(errs), maxErrors+1)
	}
	if got, want := errs[maxErrors].Error(), "policies.yaml:101:5: too many errors (400 more not shown)"; got != want {
		t.Errorf("last error = %s, want %s", got, want)
	}
}

func TestSuggest(t *testing.T) {
	t.Parallel()
	for word, want := range map[string]string{
		"requried":  ` (did you mean "required"?)`,
		"critcal":   ` (did you mean "critical"?)`,
		"platform":  ` (did you mean "platforms"?)`,
		"intervall": ` (did you mean "interval"?)`,
		"ID":        ` (did you mean "id"?)`,
		"x":         ``,
		"colour":    ``,
	} {
		if got := suggest(word, policyKeys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", word, got, want)
		}
	}
}

// TestParseRefusesTooManyPolicies: a set larger than an agent runs is
// refused, saying so; one at the limit is parsed.
func TestParseRefusesTooManyPolicies(t *testing.T) {
	t.Parallel()
	set := func(n int) []byte {
		var b strings.Builder
		b.WriteString("policies:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - id: p%d\n    name: Policy %d\n    query: SELECT 1\n", i, i)
		}
		return []byte(b.String())
	}
	_, err := Parse(set(MaxPolicies+1), file)
	if want := "policies.yaml: 1001 policies, more than the 1000 an agent runs (and a report holds results for)"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
	if s, err := Parse(set(MaxPolicies), file); err != nil || len(s.Policies) != MaxPolicies {
		t.Errorf("a set of exactly MaxPolicies: %v", err)
	}
}
