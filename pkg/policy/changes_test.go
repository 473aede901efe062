package policy

import (
	"slices"
	"testing"
	"time"
)

func TestChanges(t *testing.T) {
	fv := Policy{ID: "filevault", Name: "FileVault", Query: "SELECT 1;", Required: true, Interval: time.Hour}
	fw := Policy{ID: "firewall", Name: "Firewall", Query: "SELECT 1;", Required: true, Interval: time.Hour, Enforcement: EnforcementMonitor}
	sl := Policy{ID: "screen-lock", Name: "Screen lock", Query: "SELECT 1;", Interval: time.Hour}
	was := &Set{Version: "a", Policies: []Policy{fv, fw, sl}}

	fw2 := fw
	fw2.Enforcement, fw2.Grace, fw2.AllowBypass = "", 72*time.Hour, true
	fv2 := fv
	fv2.Critical, fv2.Query, fv2.UserText = true, "SELECT 2;", "Keeps your disk safe."
	usb := Policy{ID: "usb", Name: "USB", Query: "SELECT 1;", Required: true, Interval: time.Hour, Groups: []string{"Engineering"}}
	sl2 := sl
	sl2.Interval, sl2.Platforms, sl2.ExcludeGroups = 90*time.Second, []string{"darwin"}, []string{"Kiosks"}
	next := &Set{Version: "b", Policies: []Policy{usb, fw2, fv2, sl2}}

	got := Changes(was, next)
	want := []string{
		"added usb",
		"firewall: enforcement monitor → enforce, grace none → 72h, Resolve later not offered → offered",
		"filevault: counts required → critical, query, user text changed",
		"screen-lock: excluded groups none → [Kiosks], interval 1h → 1m30s, platforms all → [darwin]",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Changes:\n got %q\nwant %q", got, want)
	}

	gone := &Set{Version: "c", Policies: []Policy{fw}}
	if got, want := Changes(was, gone), []string{"removed filevault, screen-lock"}; !slices.Equal(got, want) {
		t.Errorf("removed: got %q, want %q", got, want)
	}
	scoped := fw
	scoped.Groups = []string{"Engineering", "Design"}
	if got, want := Changes(gone, &Set{Version: "d", Policies: []Policy{scoped}}), []string{"firewall: groups everyone → [Engineering, Design]"}; !slices.Equal(got, want) {
		t.Errorf("groups: got %q, want %q", got, want)
	}
	if got := Changes(was, &Set{Version: "a", Policies: was.Policies}); got != nil {
		t.Errorf("the same version: %q", got)
	}
	if got, want := Changes(nil, gone), []string{"added firewall"}; !slices.Equal(got, want) {
		t.Errorf("from nothing: got %q, want %q", got, want)
	}
}
