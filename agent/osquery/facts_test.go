package osquery_test

import (
	"context"
	"strings"
	"testing"

	"github.com/clearance/clearance/agent/osquery"
)

// tables answers each query by the table it names.
type tables map[string]map[string]string

func (t tables) Query(_ context.Context, sql string) ([]map[string]string, error) {
	for name, row := range t {
		if strings.Contains(sql, "FROM "+name) {
			return []map[string]string{row}, nil
		}
	}
	return nil, nil
}

// TestFactsNeedASerialOnAMac: a Mac enrolls with its serial number, which
// the verifier keeps for good; osquery returning none (it has, now and then)
// is an error to retry, not an enrollment without one. Elsewhere a machine
// may have none.
func TestFactsNeedASerialOnAMac(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		platform, serial string
		ok               bool
	}{
		{"darwin", "K7Q2XW94LM", true},
		{"darwin", "", false},
		{"darwin", "  ", false},
		{"ubuntu", "", true},
	} {
		q := tables{
			"system_info": {"uuid": "5A1C7E2B-9D4F-4B8A-A3E6-0C2D71F9B846", "hardware_serial": tc.serial, "computer_name": "mac"},
			"os_version":  {"name": "macOS", "version": "15.1", "platform": tc.platform},
		}
		f, err := osquery.Facts(context.Background(), q)
		if (err == nil) != tc.ok {
			t.Errorf("%s, serial %q: %v, %v", tc.platform, tc.serial, f, err)
		}
		if err != nil && !strings.Contains(err.Error(), "no serial number") {
			t.Errorf("%s: error %q does not say what is missing", tc.platform, err)
		}
	}
}
