package policy

import (
	"fmt"
	"strings"
	"time"
)

// Changes says, one line a change, how next differs from was: the policies
// added and removed (by id, in next's and was's order), then for each kept
// policy, in next's order, what changed in how it counts and whom it stops
// (required, critical, enforcement, grace, Resolve later, groups), in
// words, old before new, and which of its texts and its query changed. A
// nil was is no set at all: every policy is added. Two sets of one Version
// have no changes.
func Changes(was, next *Set) []string {
	if was != nil && next != nil && was.Version == next.Version {
		return nil
	}
	var out []string
	old := map[string]Policy{}
	if was != nil {
		for _, p := range was.Policies {
			old[p.ID] = p
		}
	}
	kept := map[string]bool{}
	var added []string
	if next != nil {
		for _, p := range next.Policies {
			if _, ok := old[p.ID]; ok {
				kept[p.ID] = true
			} else {
				added = append(added, p.ID)
			}
		}
	}
	if len(added) > 0 {
		out = append(out, "added "+strings.Join(added, ", "))
	}
	var removed []string
	if was != nil {
		for _, p := range was.Policies {
			if !kept[p.ID] {
				removed = append(removed, p.ID)
			}
		}
	}
	if len(removed) > 0 {
		out = append(out, "removed "+strings.Join(removed, ", "))
	}
	if next == nil {
		return out
	}
	for _, p := range next.Policies {
		if !kept[p.ID] {
			continue
		}
		if c := policyChanges(old[p.ID], p); len(c) > 0 {
			out = append(out, p.ID+": "+strings.Join(c, ", "))
		}
	}
	return out
}

// policyChanges are what changed between a and b, one policy's two versions.
func policyChanges(a, b Policy) []string {
	var c []string
	from := func(what, x, y string) {
		if x != y {
			c = append(c, fmt.Sprintf("%s %s → %s", what, x, y))
		}
	}
	from("counts", counts(a), counts(b))
	from("enforcement", mode(a.Enforcement), mode(b.Enforcement))
	from("grace", duration(a.Grace), duration(b.Grace))
	from("Resolve later", onOff(a.AllowBypass), onOff(b.AllowBypass))
	from("groups", list(a.Groups, "everyone"), list(b.Groups, "everyone"))
	from("excluded groups", list(a.ExcludeGroups, "none"), list(b.ExcludeGroups, "none"))
	from("interval", duration(a.Interval), duration(b.Interval))
	from("platforms", list(a.Platforms, "all"), list(b.Platforms, "all"))
	var texts []string
	for _, t := range []struct {
		name string
		x, y string
	}{
		{"query", a.Query, b.Query},
		{"name", a.Name, b.Name},
		{"description", a.Description, b.Description},
		{"user text", a.UserText, b.UserText},
		{"resolution", a.Resolution, b.Resolution},
	} {
		if t.x != t.y {
			texts = append(texts, t.name)
		}
	}
	if len(texts) > 0 {
		c = append(c, strings.Join(texts, ", ")+" changed")
	}
	return c
}

// counts is how a policy counts for access, in the words the CLI's
// policies table uses.
func counts(p Policy) string {
	switch {
	case p.Critical:
		return "critical"
	case p.Required:
		return "required"
	}
	return "advisory"
}

func mode(m string) string {
	if m == "" {
		return EnforcementEnforce
	}
	return m
}

// duration is d as a file would write it: 72h, 1h30m, 90s.
func duration(d time.Duration) string {
	if d == 0 {
		return "none"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func onOff(b bool) string {
	if b {
		return "offered"
	}
	return "not offered"
}

// list is names as the file gives them, or empty when there are none.
func list(names []string, empty string) string {
	if len(names) == 0 {
		return empty
	}
	return "[" + strings.Join(names, ", ") + "]"
}
