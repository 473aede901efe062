package profile

import (
	"strings"
	"testing"
)

// checkAgentSettings is the last guard before a profile is written: settings
// the agent would refuse, however they got there, stop it.
func TestCheckAgentSettings(t *testing.T) {
	t.Parallel()
	good := payload{"VerifierAddress": "v.example:443", "EnrollSecret": "s", "Interval": int64(60)}
	if err := checkAgentSettings(good); err != nil {
		t.Fatalf("good settings: %v", err)
	}
	for name, tt := range map[string]struct {
		settings payload
		want     string
	}{
		"unknown key":      {payload{"VerifierAddres": "v.example:443"}, `unknown key "VerifierAddres"`},
		"wrong plist type": {payload{"EnrollSecret": int64(1)}, "must be a string, not an integer"},
		"bad value":        {payload{"VerifierAddress": "v.example"}, "the agent would refuse VerifierAddress"},
		"short interval":   {payload{"Interval": int64(0)}, "shorter than the minimum of 1s"},
	} {
		err := checkAgentSettings(tt.settings)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", name, err, tt.want)
		}
	}
}
