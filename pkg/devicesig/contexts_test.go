package devicesig_test

import (
	"strings"
	"testing"

	"github.com/clearance/clearance/pkg/keyrotation"
	"github.com/clearance/clearance/pkg/presence"
	"github.com/clearance/clearance/pkg/report"
)

// TestContextsPrefixFree: a device key signs reports, proofs of presence
// and key-rotation proofs; none of their contexts may start another, or a
// signature made for one could be presented as the other.
func TestContextsPrefixFree(t *testing.T) {
	contexts := map[string]string{"report": report.Context, "presence": presence.Context, "keyrotation": keyrotation.Context}
	for a, ca := range contexts {
		if !strings.HasSuffix(ca, "\n") {
			t.Errorf("%s context %q does not end its line", a, ca)
		}
		for b, cb := range contexts {
			if a != b && strings.HasPrefix(cb, ca) {
				t.Errorf("%s context %q starts %s context %q", a, ca, b, cb)
			}
		}
	}
}
