package storagetest

import (
	"slices"
	"testing"

	"github.com/clearance/clearance/verifier/storage"
)

// lookAlikeHostnames are the hostnames of the devices WriteHostnames
// enrolls, in order: a name in two ASCII cases, and look-alikes that a
// Unicode fold (Go's strings.ToLower, lower() on a UTF-8 PostgreSQL
// database) merges with it or with each other.
var lookAlikeHostnames = []string{
	"kate-mac",
	"KATE-MAC.local",
	"\u212Aate-mac",      // Kelvin sign: a Unicode fold makes it kate-mac
	"\u00c4RZTE-MAC",     // Ä: a Unicode fold makes it ärzte-mac
	"\u00e4rzte-mac",     // the same name as a Unicode fold gives it
	"\uff2Bim-mac",       // full-width K
	"\u0130da-mac.local", // dotted capital I
}

// WriteHostnames enrolls a device for each of lookAlikeHostnames. A
// backend writes them, migrates its schema down past the hostname keys and
// up again, and hands the store to CheckHostnames.
func WriteHostnames(t *testing.T, s storage.Store) {
	t.Helper()
	createSecret(t, s, "hosts")
	for i, h := range lookAlikeHostnames {
		e := newEnrollment(200+i, "hosts")
		e.Device.Hostname = h
		enroll(t, s, e)
	}
}

// CheckHostnames checks a store holding the devices WriteHostnames
// enrolled: each is found by its hostname in any ASCII case, and no
// look-alike by another's.
func CheckHostnames(t *testing.T, s storage.Store) {
	t.Helper()
	for _, h := range lookAlikeHostnames {
		var want []string
		for i, o := range lookAlikeHostnames {
			if storage.HostnameKey(o) == storage.HostnameKey(h) {
				want = append(want, newEnrollment(200+i, "").Device.ID)
			}
		}
		for _, q := range []string{h, asciiUpper(h)} {
			got, err := as[storage.DeviceFinder](t, s).DevicesByHostname(t.Context(), []string{storage.HostnameKey(q)})
			must(t, err)
			ids := deviceIDs(got)
			slices.Sort(ids)
			if !slices.Equal(ids, want) {
				t.Errorf("DevicesByHostname(%+q) = %v, want %v", storage.HostnameKey(q), ids, want)
			}
		}
	}
}

func testDevicesByHostnameLookAlikes(t *testing.T, s storage.Store) {
	WriteHostnames(t, s)
	CheckHostnames(t, s)
}
