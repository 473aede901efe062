package policy

import (
	"strings"
	"testing"
	"time"
)

const rolloutBase = `policies:
  - id: fw
    name: Firewall
    query: SELECT 1 FROM alf WHERE global_state >= 1
`

func TestRolloutKeys(t *testing.T) {
	t.Parallel()
	set := mustParse(t, rolloutBase+"    enforcement: warn\n    grace: 72h\n    allow_bypass: true\n")
	p := set.Policies[0]
	if p.Enforcement != EnforcementWarn || p.Grace != 72*time.Hour || !p.AllowBypass {
		t.Fatalf("got %+v", p)
	}
	if p := mustParse(t, rolloutBase+"    enforcement: monitor\n").Policies[0]; p.Enforcement != EnforcementMonitor {
		t.Fatalf("monitor: %+v", p)
	}
	// The defaults, and "enforce" spelled out, are one policy and one version.
	plain := mustParse(t, rolloutBase)
	for _, src := range []string{"    enforcement: enforce\n", "    grace: 0s\n", "    allow_bypass: false\n", "    enforcement: null\n    grace: null\n"} {
		s := mustParse(t, rolloutBase+src)
		if s.Version != plain.Version || s.Policies[0].Enforcement != "" {
			t.Errorf("%q: version %s (%+v), want %s", src, s.Version, s.Policies[0], plain.Version)
		}
	}
	// Each setting changes the version.
	seen := map[string]string{plain.Version: "defaults"}
	for _, src := range []string{"    enforcement: warn\n", "    enforcement: monitor\n", "    grace: 72h\n", "    grace: 73h\n", "    allow_bypass: true\n"} {
		v := mustParse(t, rolloutBase+src).Version
		if prev, ok := seen[v]; ok {
			t.Errorf("%q has the version of %q", src, prev)
		}
		seen[v] = src
	}
}

func TestRolloutKeyErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ src, want string }{
		"unknown mode":         {"    enforcement: enforse\n", `policies.yaml:5:18: policy "fw": "enforcement" "enforse" is not one of monitor, warn, enforce (did you mean "enforce"?)`},
		"mode not a string":    {"    enforcement: [warn]\n", `"enforcement" must be`},
		"grace not a duration": {"    grace: 3 days\n", `"grace" "3 days" is not a duration`},
		"grace in days":        {"    grace: 3d\n", `days are written in hours`},
		"grace negative":       {"    grace: -1h\n", `"grace" -1h0m0s is negative`},
		"grace too long":       {"    grace: 2161h\n", `longer than the maximum of 2160h0m0s`},
		"grace a mapping":      {"    grace: {h: 1}\n", `"grace" must be a duration`},
		"bypass not a bool":    {"    allow_bypass: sometimes\n", `allow_bypass`},
		"critical bypass":      {"    critical: true\n    allow_bypass: true\n", `a critical policy can never be bypassed`},
		"advisory grace":       {"    required: false\n    grace: 1h\n", `"grace" applies only to a required policy`},
		"advisory bypass":      {"    required: false\n    allow_bypass: true\n", `"allow_bypass" applies only to a required policy`},
		"hostile long mode":    {"    enforcement: " + strings.Repeat("x", 5000) + "\n", `is not one of monitor, warn, enforce`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			set, err := Parse([]byte(rolloutBase+c.src), file)
			if set != nil || err == nil {
				t.Fatalf("accepted: %+v", set)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
			if len(err.Error()) > 2000 {
				t.Fatalf("error of %d bytes echoes the input", len(err.Error()))
			}
		})
	}
}
