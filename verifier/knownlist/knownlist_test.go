package knownlist

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func serials(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Serial)
	}
	return out
}

// Each MDM's export, as the product writes it, gives its serial numbers.
func TestExports(t *testing.T) {
	t.Parallel()
	cases := []struct {
		file, format, serialCol, nameCol string
		serials                          []string
		firstName                        string
		blank                            int
	}{
		{"jamf-pro.csv", "Jamf Pro, Kandji or Intune", "Serial Number", "Computer Name", []string{"C02ZK1AAMD6R", "H7XQ2LW9PX", "FVFGK2ABQ6L4"}, "Ana's MacBook Pro", 0},
		{"kandji.csv", "Jamf Pro, Kandji or Intune", "Serial Number", "Device Name", []string{"C02ZK1AAMD6R", "FVFGK2ABQ6L4"}, "Ana's MacBook Pro", 0},
		{"intune.csv", "Jamf Pro, Kandji or Intune", "Serial number", "Device name", []string{"C02ZK1AAMD6R", "PF2ABCDE"}, "Ana-MBP", 1},
		{"fleet.csv", "Fleet", "hardware_serial", "computer_name", []string{"C02ZK1AAMD6R"}, "Ana's MacBook Pro", 1},
		{"intune-corporate-identifiers.csv", "a list without a header", "", "", []string{"C02ZK1AAMD6R", "H7XQ2LW9PX"}, "Ana laptop", 0},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			es, sum, err := Parse(f)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := serials(es); !slices.Equal(got, tc.serials) {
				t.Errorf("serials = %q, want %q", got, tc.serials)
			}
			if es[0].Name != tc.firstName {
				t.Errorf("first name = %q, want %q", es[0].Name, tc.firstName)
			}
			if sum.Format != tc.format || sum.SerialColumn != tc.serialCol || sum.NameColumn != tc.nameCol || sum.Blank != tc.blank {
				t.Errorf("summary = %+v; want format %q, columns %q/%q, %d blank", sum, tc.format, tc.serialCol, tc.nameCol, tc.blank)
			}
		})
	}
}

func TestPlainLists(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		in   string
		want []string
	}{
		"serial header, lower case values": {"serial\nc02zk1aamd6r\n h7xq2lw9px \n", []string{"C02ZK1AAMD6R", "H7XQ2LW9PX"}},
		"no header":                        {"C02ZK1AAMD6R\nH7XQ2LW9PX\n", []string{"C02ZK1AAMD6R", "H7XQ2LW9PX"}},
		"semicolons":                       {"Name;Serial Number\nAna;C02ZK1AAMD6R\n", []string{"C02ZK1AAMD6R"}},
		"tabs":                             {"Name\tSerial Number\nAna\tC02ZK1AAMD6R\n", []string{"C02ZK1AAMD6R"}},
		"duplicates and blank lines":       {"Serial Number\nC02ZK1AAMD6R\n\nc02zk1aamd6r\n   \nH7XQ2LW9PX\n", []string{"C02ZK1AAMD6R", "H7XQ2LW9PX"}},
		"VM serials with marks":            {"Serial Number\nVMware-56 4d 2b 3c\nPARALLELS-AB12.CD_34/5\n", []string{"VMWARE-56 4D 2B 3C", "PARALLELS-AB12.CD_34/5"}},
		"CRLF line endings":                {"Serial Number,Name\r\nC02ZK1AAMD6R,Ana\r\n", []string{"C02ZK1AAMD6R"}},
	} {
		t.Run(name, func(t *testing.T) {
			es, _, err := Parse(strings.NewReader(tc.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := serials(es); !slices.Equal(got, tc.want) {
				t.Errorf("serials = %q, want %q", got, tc.want)
			}
		})
	}
}

// Malformed, oversized and hostile lists are refused whole, with an error
// that names the line and the problem.
func TestRefused(t *testing.T) {
	t.Parallel()
	big := "Serial Number\n" + strings.Repeat("C02ZK1AAMD6R\n", MaxFileSize/13+1)
	many := &bytes.Buffer{}
	many.WriteString("Serial Number\n")
	for i := 0; i <= MaxRows; i++ {
		many.WriteString("S")
		many.WriteString(strings.Repeat("0", 8-len(itoa(i))))
		many.WriteString(itoa(i))
		many.WriteString("\n")
	}
	for name, tc := range map[string]struct{ in, want string }{
		"empty":                  {"", "empty"},
		"only spaces":            {" \n\t\n", "empty"},
		"no serial column":       {"Computer Name,Model\nAna,MacBookPro\n", `line 1: no serial number column among "Computer Name", "Model"`},
		"header only":            {"Serial Number,Name\n", "no serial numbers"},
		"all blank":              {"Serial Number,Name\n,Ana\n,Bo\n", "no serial numbers in the list (2 rows"},
		"bare quote":             {"Serial Number,Name\nC02\"ZK,Ana\n", "line 2: not valid CSV"},
		"unterminated quote":     {"Serial Number,Name\n\"C02ZK1AAMD6R,Ana\n", "not valid CSV"},
		"short row":              {"Name,Model,Serial Number\nAna,Mac\n", "line 2: 2 fields, but the serial number is field 3"},
		"formula":                {"Serial Number\n=cmd|/C calc!A0\n", `line 2: serial number "=CMD|/C CALC!A0" has '='`},
		"control character":      {"Serial Number\nC02ZK\x1b[31m\n", "line 2: serial number"},
		"too long":               {"Serial Number\n" + strings.Repeat("A", MaxSerialLen+1) + "\n", "line 2: serial number"},
		"one character":          {"Serial Number\nC\n", "must be 2 to 64"},
		"non-ASCII serial":       {"Serial Number\nC02ZK1ÄMD6R\n", "line 2: serial number"},
		"dotless i look-alike":   {"Serial Number\nc02zk1\u0131md6r\n", "line 2: serial number"},
		"long s look-alike":      {"Serial Number\nc02zk1\u017fmd6r\n", "line 2: serial number"},
		"hostile name":           {"Serial Number,Computer Name\nC02ZK1AAMD6R,\"evil\x1b]0;pwned\x07\"\n", "line 2: device name"},
		"oversized name":         {"Serial Number,Computer Name\nC02ZK1AAMD6R," + strings.Repeat("n", MaxNameLen+1) + "\n", "line 2: device name is 256 bytes"},
		"not UTF-8":              {"Serial Number\nC02ZK1AAMD6R\n\xff\xfe\n", "line 3: not UTF-8"},
		"oversized file":         {big, "larger than 32 MiB"},
		"too many rows":          {many.String(), "more than 200000 devices"},
		"bad row after good one": {"Serial Number\nC02ZK1AAMD6R\nH7XQ2LW9PX\n'; DROP TABLE x\n", "line 4: serial number"},
		"header word as serial":  {"ID\n1234\n", "line 1: no serial number column"},
	} {
		t.Run(name, func(t *testing.T) {
			es, _, err := Parse(strings.NewReader(tc.in))
			if err == nil {
				t.Fatalf("Parse accepted it: %d entries", len(es))
			}
			if es != nil {
				t.Errorf("entries returned with the error: %d", len(es))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestValidSerial(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"C02ZK1AAMD6R", "H7XQ2LW9PX", "AB", "VMWARE-56 4D"} {
		if err := ValidSerial(ok); err != nil {
			t.Errorf("ValidSerial(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "A", "c02zk1aamd6r", " C02", "-C02", "C02,ZK", "C02\x00", strings.Repeat("A", 65)} {
		if ValidSerial(bad) == nil {
			t.Errorf("ValidSerial(%q) = nil", bad)
		}
	}
}

// FuzzParse: any input is parsed or refused, never a panic; what is
// accepted is only valid, canonical, distinct serial numbers.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"jamf-pro.csv", "kandji.csv", "intune.csv", "fleet.csv", "intune-corporate-identifiers.csv"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("Serial Number\n\"C02\"\"ZK\",x\n"))
	f.Add([]byte("serial;name\nAB;c\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		es, _, err := Parse(bytes.NewReader(in))
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, e := range es {
			if ValidSerial(e.Serial) != nil || seen[e.Serial] || ValidName(e.Name) != nil {
				t.Fatalf("accepted entry %+v", e)
			}
			seen[e.Serial] = true
		}
	})
}
