// Package knownlist reads the security team's list of managed Macs from the
// CSV an MDM exports (Jamf Pro, Kandji, Microsoft Intune, Fleet) or a plain
// list of serial numbers, for `--enroll-approval known`. It finds the
// serial number column by its header, checks every row, and refuses the
// whole file, naming the line, when anything in it is not what an export
// holds: a list is imported entirely or not at all.
package knownlist

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on what Parse reads.
const (
	// MaxFileSize bounds the file: an export of 100,000 Macs with every
	// column Fleet writes stays well below it.
	MaxFileSize = 32 << 20
	// MaxRows bounds the devices in one list.
	MaxRows = 200_000
	// MaxSerialLen and MaxNameLen bound the two values kept.
	MaxSerialLen = 64
	MaxNameLen   = 255
)

// Entry is one managed device.
type Entry struct {
	// Serial is canonical (storage.CanonicalSerial): upper case, trimmed.
	Serial string
	// Name is the MDM's name for the device, "" when the export has none.
	Name string
	// Line is where it was read, for messages.
	Line int
}

// Summary says what Parse made of a file.
type Summary struct {
	// Format names the export the header matched, e.g. "Jamf Pro".
	Format string
	// SerialColumn and NameColumn are the header names used ("" for a
	// file without a header, or without a name column).
	SerialColumn, NameColumn string
	// Rows counts the data rows read; Blank those without a serial number
	// (an export lists devices it has no serial for, e.g. some Intune
	// rows); Duplicates those whose serial came earlier in the file.
	Rows, Blank, Duplicates int
}

// serialHeaders are the serial number columns of the exports we know,
// normalized (lower case, letters and digits only), with the product whose
// export uses each.
var serialHeaders = []struct{ norm, format string }{
	{"serialnumber", "Jamf Pro, Kandji or Intune"}, // "Serial Number" (Jamf Pro, Kandji), "Serial number" (Intune)
	{"hardwareserial", "Fleet"},                    // hosts report: hardware_serial
	{"deviceserialnumber", "Autopilot"},            // "Device Serial Number"
	{"serial", "a plain list"},
	{"serialno", "a plain list"},
}

// nameHeaders are the device name columns, most specific first.
var nameHeaders = []string{"computername", "devicename", "displayname", "hostname", "name"}

func normalize(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		if r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Parse reads a list. It returns the entries in file order, without
// duplicates (the last name given for a serial wins), or an error that
// names the line and what is wrong with it.
func Parse(r io.Reader) ([]Entry, Summary, error) {
	var sum Summary
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, sum, fmt.Errorf("reading the list: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, sum, fmt.Errorf("the list is larger than %d MiB; split it", MaxFileSize>>20)
	}
	// Excel and Intune write a byte order mark first.
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		line := 1 + bytes.Count(data[:firstInvalid(data)], []byte("\n"))
		return nil, sum, fmt.Errorf("line %d: not UTF-8 text (save the export as CSV UTF-8)", line)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, sum, errors.New("the list is empty")
	}

	cr := csv.NewReader(bytes.NewReader(data))
	cr.Comma = delimiter(data)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	first, err := cr.Read()
	if err != nil {
		return nil, sum, csvError(err)
	}
	serialCol, nameCol, header := findColumns(first)
	switch {
	case header && serialCol < 0:
		return nil, sum, fmt.Errorf("line 1: no serial number column among %s; name it \"Serial Number\", \"serial_number\" or \"hardware_serial\"", quoteAll(first))
	case header:
		sum.SerialColumn = strings.TrimSpace(first[serialCol])
		sum.Format = formatOf(first[serialCol])
		if nameCol >= 0 {
			sum.NameColumn = strings.TrimSpace(first[nameCol])
		}
	default:
		// No header: serial numbers in the first column, optionally a
		// description in the second (Intune's corporate identifiers file).
		serialCol, nameCol = 0, 1
		sum.Format = "a list without a header"
	}

	var out []Entry
	seen := map[string]int{}
	add := func(rec []string, line int) error {
		sum.Rows++
		if sum.Rows > MaxRows {
			return fmt.Errorf("line %d: more than %d devices; split the list", line, MaxRows)
		}
		if serialCol >= len(rec) {
			return fmt.Errorf("line %d: %d fields, but the serial number is field %d", line, len(rec), serialCol+1)
		}
		raw := strings.TrimSpace(rec[serialCol])
		if raw == "" {
			sum.Blank++
			return nil
		}
		// ASCII letters only: Unicode case mapping would turn look-alikes
		// (ı, ſ) into ASCII letters that ValidSerial then accepts.
		serial := strings.Map(func(r rune) rune {
			if 'a' <= r && r <= 'z' {
				return r - 'a' + 'A'
			}
			return r
		}, raw)
		if err := ValidSerial(serial); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		name := ""
		if nameCol >= 0 && nameCol < len(rec) {
			name = strings.TrimSpace(rec[nameCol])
			if err := ValidName(name); err != nil {
				return fmt.Errorf("line %d: %w", line, err)
			}
		}
		if i, dup := seen[serial]; dup {
			sum.Duplicates++
			out[i].Name, out[i].Line = name, line
			return nil
		}
		seen[serial] = len(out)
		out = append(out, Entry{Serial: serial, Name: name, Line: line})
		return nil
	}
	if !header {
		line, _ := cr.FieldPos(0)
		if err := add(first, line); err != nil {
			return nil, sum, err
		}
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, sum, csvError(err)
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // a line of spaces
		}
		line, _ := cr.FieldPos(0)
		if err := add(rec, line); err != nil {
			return nil, sum, err
		}
	}
	if len(out) == 0 {
		return nil, sum, fmt.Errorf("no serial numbers in the list (%d rows, all without one)", sum.Rows)
	}
	return out, sum, nil
}

// ValidSerial checks a serial number (canonical: upper case, trimmed) as
// the list keeps it: 2 to 64 characters, letters, digits and the few marks
// MDMs show in serial numbers of virtual machines (space, - . _ /),
// starting with a letter or digit. Anything else (a formula, a control
// character, a quote) is not a serial number an export holds.
func ValidSerial(s string) error {
	if len(s) < 2 || len(s) > MaxSerialLen {
		return fmt.Errorf("serial number %q is %d characters; it must be 2 to %d", clip(s), len(s), MaxSerialLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == ' ' || c == '-' || c == '.' || c == '_' || c == '/'):
		default:
			return fmt.Errorf("serial number %q has %q at position %d: only upper-case letters, digits, and inner spaces, - . _ / are allowed", clip(s), rune(c), i+1)
		}
	}
	return nil
}

// ValidName checks a device name (or any short label) from a list: at most
// 255 bytes, no control characters.
func ValidName(s string) error {
	if len(s) > MaxNameLen {
		return fmt.Errorf("device name is %d bytes; the limit is %d", len(s), MaxNameLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return fmt.Errorf("device name %q has a control character", clip(s))
		}
	}
	return nil
}

func findColumns(header []string) (serial, name int, isHeader bool) {
	serial, name = -1, -1
	norm := make([]string, len(header))
	for i, h := range header {
		norm[i] = normalize(h)
	}
	for _, want := range serialHeaders {
		if i := index(norm, want.norm); i >= 0 {
			serial = i
			break
		}
	}
	for _, want := range nameHeaders {
		if i := index(norm, want); i >= 0 && i != serial {
			name = i
			break
		}
	}
	if serial >= 0 {
		return serial, name, true
	}
	// A first line whose first field is a serial number as exports write
	// them (upper case) is data; a column name is not.
	first := strings.TrimSpace(header[0])
	if ValidSerial(first) == nil && !columnWords[norm[0]] {
		return -1, -1, false
	}
	return -1, -1, true
}

// columnWords are upper-case column names that would pass for serials.
var columnWords = map[string]bool{"id": true, "udid": true, "uuid": true, "imei": true, "sn": true, "name": true, "device": true, "host": true}

func index(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

func formatOf(h string) string {
	n := normalize(h)
	for _, s := range serialHeaders {
		if s.norm == n {
			return s.format
		}
	}
	return ""
}

// delimiter is the header line's separator: a comma unless the line has
// none and has semicolons (a spreadsheet in a locale with decimal commas)
// or tabs.
func delimiter(data []byte) rune {
	line, _, _ := bufio.NewReader(bytes.NewReader(data)).ReadLine()
	switch {
	case bytes.ContainsRune(line, ','):
		return ','
	case bytes.ContainsRune(line, ';'):
		return ';'
	case bytes.ContainsRune(line, '\t'):
		return '\t'
	}
	return ','
}

func csvError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("line %d: not valid CSV: %v", pe.Line, pe.Err)
	}
	return fmt.Errorf("reading the list: %w", err)
}

func firstInvalid(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

func quoteAll(xs []string) string {
	const max = 12
	var q []string
	for i, x := range xs {
		if i == max {
			q = append(q, fmt.Sprintf("and %d more", len(xs)-max))
			break
		}
		q = append(q, fmt.Sprintf("%q", clip(x)))
	}
	return strings.Join(q, ", ")
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
