package sqlstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/clearance/clearance/verifier/storage"
)

var _ storage.DeviceFinder = (*Store)(nil)

// lookupChunk bounds the values bound in one IN list, well under both
// engines' limits on parameters.
const lookupChunk = 500

// DevicesBySerial returns the devices whose canonical serial number is one
// of serials (see storage.DeviceFinder).
func (s *Store) DevicesBySerial(ctx context.Context, serials []string) ([]storage.Device, error) {
	// upper(trim()) is the expression the devices_serial_canonical index
	// holds. SQL's trim removes spaces only, so the result is checked again
	// against storage.CanonicalSerial.
	ds, err := s.devicesWhereIn(ctx, `upper(trim(serial_number))`, serials)
	if err != nil {
		return nil, fmt.Errorf("finding devices by serial number: %w", err)
	}
	want := make(map[string]bool, len(serials))
	for _, v := range serials {
		want[v] = true
	}
	out := ds[:0]
	for _, d := range ds {
		if want[storage.CanonicalSerial(d.SerialNumber)] {
			out = append(out, d)
		}
	}
	return out, nil
}

// DevicesByHostname returns the devices whose hostname key is one of
// names (see storage.DeviceFinder): hostname_key, which the database
// computes for every row as storage.HostnameKey does.
func (s *Store) DevicesByHostname(ctx context.Context, names []string) ([]storage.Device, error) {
	ds, err := s.devicesWhereIn(ctx, `hostname_key`, names)
	if err != nil {
		return nil, fmt.Errorf("finding devices by hostname: %w", err)
	}
	return ds, nil
}

// devicesWhereIn reads the devices whose expr is one of values, a chunk of
// values per query. expr is one of a fixed set, never caller input. A
// value no column can hold (a NUL, which PostgreSQL refuses outright, or
// invalid UTF-8) matches nothing, and fails no lookup of the others.
func (s *Store) devicesWhereIn(ctx context.Context, expr string, values []string) ([]storage.Device, error) {
	if !storable(values...) {
		kept := make([]string, 0, len(values))
		for _, v := range values {
			if storable(v) {
				kept = append(kept, v)
			}
		}
		values = kept
	}
	var out []storage.Device
	for len(values) > 0 {
		n := min(len(values), lookupChunk)
		chunk := values[:n]
		values = values[n:]
		var q strings.Builder
		q.WriteString(`SELECT ` + deviceColumns + ` FROM devices WHERE ` + expr + ` IN (`)
		args := make([]any, len(chunk))
		for i, v := range chunk {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString("$" + strconv.Itoa(i+1))
			args[i] = v
		}
		q.WriteString(`)`)
		ds, err := list(ctx, s.reader(), scanDevice, q.String(), args...)
		if err != nil {
			return nil, err
		}
		out = append(out, ds...)
	}
	return out, nil
}
