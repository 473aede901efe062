package metrics

import (
	"fmt"
	"maps"
	"strings"
	"testing"
)

// versionSeries is clearance_devices_by_agent_version as a scrape of
// /metrics reads it: version label → devices.
func versionSeries(t *testing.T, m *Metrics) map[string]float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "clearance_devices_by_agent_version" {
			continue
		}
		for _, s := range f.GetMetric() {
			if len(s.GetLabel()) != 1 || s.GetLabel()[0].GetName() != "version" {
				t.Fatalf("series with labels %v", s.GetLabel())
			}
			out[s.GetLabel()[0].GetValue()] = s.GetGauge().GetValue()
		}
	}
	return out
}

func TestPlausibleVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"1.2.3", true},
		{"v1.2.3", true},
		{"1.2.3-rc.1", true},
		{"0.0.0-dev", true},
		{"1.2.3+build.5", true},
		{"1.2.3_beta", true},
		{"dev", true},
		{strings.Repeat("9", 64), true},
		{strings.Repeat("9", 65), false},
		{"", false},
		{"-1.2.3", false},
		{"1.2.3 beta", false},
		{"1.2.3\n", false},
		{"1.2\x00.3", false},
		{"1.2.3\x1b[31m", false},
		{"1.2.3✓", false},
		{"1.2.3\xff", false},
		{`1.2.3"}`, false},
		// The labels that are no version are no version either.
		{"unknown", false},
		{"invalid", false},
		{"other", false},
		{"Other", true},
	} {
		if got := plausibleVersion(tc.v); got != tc.want {
			t.Errorf("plausibleVersion(%q) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

// Whatever versions devices send, the gauge has at most 23 series: the 20
// most common plausible versions by name, then other, invalid and unknown;
// every device is counted once.
func TestAgentVersionsBounded(t *testing.T) {
	t.Parallel()
	counts := map[string]int{"": 7}
	want := map[string]float64{"unknown": 7}
	devices := 7
	// 25 real versions, the 20 most common with a label of their own.
	for i := range 25 {
		v := fmt.Sprintf("1.%d.0", i)
		counts[v] = 1000 - i
		devices += 1000 - i
		if i < 20 {
			want[v] = float64(1000 - i)
		} else {
			want["other"] += float64(1000 - i)
		}
	}
	// 10,000 distinct plausible versions, one Mac each: all other.
	for i := range 10000 {
		counts[fmt.Sprintf("9.9.%d-hostile", i)] = 1
	}
	devices += 10000
	want["other"] += 10000
	// Versions that are no version: control characters, huge strings,
	// label syntax, the reserved words.
	hostile := []string{"1.0\n", "1.0\x00", "\x1b]0;pwned\x07", strings.Repeat("A", 1<<20), strings.Repeat("1", 65),
		`1"} 1e9`, "1.0 ", "é", "other", "unknown", "invalid", "-rc"}
	for i, v := range hostile {
		counts[v] = i + 1
		devices += i + 1
		want["invalid"] += float64(i + 1)
	}

	m := New()
	m.AgentVersions(counts)
	got := versionSeries(t, m)
	if !maps.Equal(got, want) {
		t.Errorf("series:\n%v\nwant:\n%v", got, want)
	}
	if len(got) > maxAgentVersions+3 {
		t.Errorf("%d series, more than %d", len(got), maxAgentVersions+3)
	}
	total := 0.0
	for _, n := range got {
		total += n
	}
	if total != float64(devices) {
		t.Errorf("series add up to %v devices, want %d", total, devices)
	}
}

// A tie at the boundary is decided by the version's name, so the same
// counts always name the same versions.
func TestAgentVersionsTies(t *testing.T) {
	t.Parallel()
	counts := map[string]int{}
	for i := range maxAgentVersions + 5 {
		counts[fmt.Sprintf("2.%02d", i)] = 3
	}
	got := agentVersionLabels(counts)
	for i := range maxAgentVersions + 5 {
		v := fmt.Sprintf("2.%02d", i)
		if _, named := got[v]; named != (i < maxAgentVersions) {
			t.Errorf("%s named: %v", v, named)
		}
	}
	if got["other"] != 15 {
		t.Errorf("other = %d, want 15", got["other"])
	}
}

// A label the last count set and this one does not is removed: a version
// the fleet has left, one that fell into other, other itself.
func TestAgentVersionsRemovesStaleSeries(t *testing.T) {
	t.Parallel()
	m := New()
	first := map[string]int{"1.0.0": 40, "1.1.0": 2, "": 1, "bad\x00": 1}
	for i := range maxAgentVersions {
		first[fmt.Sprintf("0.%d", i)] = 10
	}
	m.AgentVersions(first)
	got := versionSeries(t, m)
	// 1.0.0 and 19 of the twenty at 10 are named; the last of those by
	// name (0.9) and 1.1.0 are other.
	if got["1.0.0"] != 40 || got["other"] != 12 || got["unknown"] != 1 || got["invalid"] != 1 || len(got) != maxAgentVersions+3 {
		t.Fatalf("first count: %v", got)
	}

	// The fleet upgraded: 1.0.0 and the old ones are gone, 1.1.0 takes a
	// label of its own, and nothing is unknown, invalid or other any more.
	m.AgentVersions(map[string]int{"1.1.0": 42, "1.2.0": 3})
	if got, want := versionSeries(t, m), map[string]float64{"1.1.0": 42, "1.2.0": 3}; !maps.Equal(got, want) {
		t.Errorf("after the upgrade: %v, want %v", got, want)
	}

	// No devices at all: no series.
	m.AgentVersions(map[string]int{})
	if got := versionSeries(t, m); len(got) != 0 {
		t.Errorf("with no devices: %v", got)
	}
}

// Like every method, AgentVersions does nothing on a nil *Metrics.
func TestAgentVersionsNil(t *testing.T) {
	t.Parallel()
	var m *Metrics
	m.AgentVersions(map[string]int{"1.0": 1})
}
