package admin

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Page sizes and tokens come from any admin client: out-of-range sizes are
// bounded or refused, and a token this server did not make is refused as
// such, never passed on to the store.
func TestKeyPage(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size      int32
		token     string
		wantSize  int
		wantAfter string
	}{
		{"defaults", 0, "", 50, ""},
		{"asked", 7, "", 7, ""},
		{"bounded", 1 << 30, "", 500, ""},
		{"a token it made", 10, nextKey("device-42"), 10, "device-42"},
		{"a token of the longest key", 10, nextKey(strings.Repeat("k", 64)), 10, strings.Repeat("k", 64)},
	} {
		size, after, err := keyPage(tc.size, tc.token, 64)
		if err != nil || size != tc.wantSize || after != tc.wantAfter {
			t.Errorf("%s: got %d %q %v, want %d %q", tc.name, size, after, err, tc.wantSize, tc.wantAfter)
		}
	}
	for _, tc := range []struct {
		name  string
		size  int32
		token string
		want  string
	}{
		{"negative size", -1, "", "page_size must not be negative"},
		{"not base64", 10, "%%%", "page_token is not one this server returned"},
		{"padded base64", 10, "ZGV2aWNl==", "page_token is not one this server returned"},
		{"an empty key", 10, "=", "page_token is not one this server returned"},
		{"a key too long", 10, nextKey(strings.Repeat("k", 65)), "page_token is not one this server returned"},
		{"huge", 10, strings.Repeat("A", 1<<20), "page_token is not one this server returned"},
	} {
		_, _, err := keyPage(tc.size, tc.token, 64)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want InvalidArgument %q", tc.name, err, tc.want)
		}
	}
}
