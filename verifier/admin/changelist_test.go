package admin

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// A reload's changes are recorded whole up to the bound, then counted; one
// change longer than the bound is cut on a character.
func TestChangeList(t *testing.T) {
	if got := changeList([]string{"added usb", "removed sip"}, 100); got != "added usb; removed sip" {
		t.Errorf("within the bound: %q", got)
	}
	if got := changeList([]string{"added usb", "removed sip", "firewall: grace none → 72h"}, 25); got != "added usb; removed sip; and 1 more" {
		t.Errorf("past the bound: %q", got)
	}
	long := "eng: groups everyone → [" + strings.Repeat("é", 40) + "]"
	got := changeList([]string{long, "added usb"}, 31)
	if !utf8.ValidString(got) || !strings.HasPrefix(got, "eng: groups everyone → [é") || !strings.HasSuffix(got, "…; and 1 more") {
		t.Errorf("one change past the bound: %q", got)
	}
	if got := changeList(nil, 10); got != "" {
		t.Errorf("none: %q", got)
	}
}
