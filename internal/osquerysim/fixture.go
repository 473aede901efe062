package osquerysim

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// MaxFixtureSize caps a fixture file. Real host state is a few kilobytes; the
// cap keeps a wrong path (a disk image, /dev/zero) from eating memory.
const MaxFixtureSize = 4 << 20

// Fixture is the host state the simulator serves: for each osquery table,
// its rows. Tables a fixture leaves out exist and are empty, as they would
// be on a host where osquery finds nothing.
//
// On disk a fixture is a JSON object:
//
//	{
//	  "description": "MacBook Pro, macOS 15.6.1, every policy passes",
//	  "tables": {
//	    "alf": [{"global_state": "1", "stealth_enabled": 0}],
//	    "screenlock": [{"enabled": "1", "grace_period": "0"}]
//	  }
//	}
//
// A value is a string (what osquery's table code produces) or a JSON number
// (shorthand for its decimal text). null, or leaving the column out, makes
// the column NULL, which osquery returns as "". An INTEGER or BIGINT column
// must hold an integer or "", and a DOUBLE column a number or "": osquery
// would silently turn anything else into NULL, which in a fixture is a typo.
// Unknown tables, columns and top-level keys are errors that name them.
type Fixture struct {
	// Description says what the fixture models; it is logged on load.
	Description string `json:"description,omitempty"`
	// Tables maps an osquery table name to its rows.
	Tables map[string][]Row `json:"tables"`
}

// Row is one table row: column name to value. A column missing from the map
// is NULL.
type Row map[string]string

// UnmarshalJSON accepts strings, numbers and null as column values.
func (r *Row) UnmarshalJSON(data []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	if raw == nil {
		return errors.New("a row must be a JSON object, not null")
	}
	row := make(Row, len(raw))
	for col, v := range raw {
		v = bytes.TrimSpace(v)
		switch {
		case len(v) == 0:
			return fmt.Errorf("column %q: empty value", col)
		case v[0] == '"':
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("column %q: %w", col, err)
			}
			row[col] = s
		case string(v) == "null":
			// NULL: the column stays out of the row.
		case v[0] == '-' || (v[0] >= '0' && v[0] <= '9'):
			row[col] = string(v)
		default:
			return fmt.Errorf("column %q: value must be a string, a number or null, not %s", col, v)
		}
	}
	*r = row
	return nil
}

//go:embed testdata/compliant-mac.json testdata/failing-mac.json
var embedded embed.FS

// Fixtures returns the names of the fixtures built into the package, which
// LoadFixture accepts in place of a path.
func Fixtures() []string {
	entries, err := embedded.ReadDir("testdata")
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".json"))
	}
	sort.Strings(names)
	return names
}

// LoadFixture returns a built-in fixture by name (see Fixtures), or else
// reads the fixture file at nameOrPath. A file with a built-in name can be
// given as ./name.
func LoadFixture(nameOrPath string) (Fixture, error) {
	for _, name := range Fixtures() {
		if nameOrPath == name {
			data, err := embedded.ReadFile("testdata/" + name + ".json")
			if err != nil {
				return Fixture{}, fmt.Errorf("reading built-in fixture %s: %w", name, err)
			}
			f, err := ParseFixture(data)
			if err != nil {
				return Fixture{}, fmt.Errorf("built-in fixture %s: %w", name, err)
			}
			return f, nil
		}
	}
	data, err := readCapped(nameOrPath)
	if err != nil {
		return Fixture{}, err
	}
	f, err := ParseFixture(data)
	if err != nil {
		return Fixture{}, fmt.Errorf("fixture %s: %w", nameOrPath, err)
	}
	return f, nil
}

func readCapped(path string) ([]byte, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening fixture: %w", err)
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		return nil, fmt.Errorf("opening fixture: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("fixture %s is not a regular file", path)
	}
	if fi.Size() > MaxFixtureSize {
		return nil, fmt.Errorf("fixture %s is %d bytes; the limit is %d", path, fi.Size(), MaxFixtureSize)
	}
	// The file may grow between Stat and Read; the limit holds regardless.
	data, err := io.ReadAll(io.LimitReader(file, MaxFixtureSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading fixture %s: %w", path, err)
	}
	if len(data) > MaxFixtureSize {
		return nil, fmt.Errorf("fixture %s is larger than the limit of %d bytes", path, MaxFixtureSize)
	}
	return data, nil
}

// ParseFixture decodes and validates a fixture (see Fixture for the format).
func ParseFixture(data []byte) (Fixture, error) {
	if len(data) > MaxFixtureSize {
		return Fixture{}, fmt.Errorf("fixture is %d bytes; the limit is %d", len(data), MaxFixtureSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f Fixture
	if err := dec.Decode(&f); err != nil {
		return Fixture{}, fmt.Errorf("decoding fixture: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Fixture{}, errors.New("decoding fixture: unexpected data after the top-level object")
	}
	if f.Tables == nil {
		return Fixture{}, errors.New(`fixture has no "tables" object`)
	}
	if err := f.Validate(); err != nil {
		return Fixture{}, err
	}
	return f, nil
}

// maxReported bounds how many problems Validate lists, so a fixture for the
// wrong tool yields a readable error.
const maxReported = 10

// Validate checks every table and column name against osquery's schemas and
// every value against its column's type.
func (f Fixture) Validate() error {
	var errs []error
	add := func(err error) bool {
		errs = append(errs, err)
		return len(errs) < maxReported
	}
	names := make([]string, 0, len(f.Tables))
	for name := range f.Tables {
		names = append(names, name)
	}
	sort.Strings(names)
tables:
	for _, name := range names {
		t, ok := tablesByName[name]
		if !ok {
			if !add(fmt.Errorf("unknown table %q (the simulator serves %s)", name, strings.Join(Tables(), ", "))) {
				break
			}
			continue
		}
		for i, row := range f.Tables[name] {
			if row == nil {
				if !add(fmt.Errorf("table %q row %d: a row must be a JSON object, not null", name, i)) {
					break tables
				}
				continue
			}
			cols := make([]string, 0, len(row))
			for col := range row {
				cols = append(cols, col)
			}
			sort.Strings(cols)
			for _, col := range cols {
				c, ok := t.column(col)
				if !ok {
					if !add(fmt.Errorf("table %q row %d: unknown column %q", name, i, col)) {
						break tables
					}
					continue
				}
				if _, err := sqlValue(c.typ, row[col]); err != nil {
					if !add(fmt.Errorf("table %q row %d column %q: %w", name, i, col, err)) {
						break tables
					}
				}
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid fixture: %w", errors.Join(errs...))
}
