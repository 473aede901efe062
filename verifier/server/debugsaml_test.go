package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/config"
)

// TestDebugSAMLIsSampled: with --debug-saml, anyone can send refused
// requests; each used to be dumped whole (a 15 KB request made a 30 KB log
// line, 5 MB of log in 10 s from one address). The dumps are now at most
// a few a second, each the first 4 KiB, and the next says how many were
// left out.
func TestDebugSAMLIsSampled(t *testing.T) {
	t.Parallel()
	e := startSSO(t, false, func(c *config.Config) { c.DebugSAML = true })
	c := e.browser(nil)
	// No Subject (refused as missing_subject), padded to near the 16 KiB
	// the inflated XML may have.
	r := e.sp.NewRequest("")
	x := string(e.sp.RequestXML(r))
	i := strings.LastIndex(x, "</")
	r.RawXML = []byte(x[:i] + "<!--" + strings.Repeat("A", 15<<10-len(x)) + "-->" + x[i:])

	const sent = 20
	for range sent {
		noResponse(t, e.redirect(t, c, r))
	}
	dumps := func() []string {
		var ds []string
		for _, l := range strings.Split(e.logs.String(), "\n") {
			if strings.Contains(l, "msg=sso_request_refused_xml") {
				ds = append(ds, l)
			}
		}
		return ds
	}
	// The clock stands still: one dump in its window.
	if ds := dumps(); len(ds) != 1 {
		t.Fatalf("%d requests made %d dumps, want 1", sent, len(ds))
	}
	e.clock.Add(time.Second)
	noResponse(t, e.redirect(t, c, r))
	ds := dumps()
	if len(ds) != 2 {
		t.Fatalf("after a second: %d dumps, want 2", len(ds))
	}
	if !strings.Contains(ds[1], "others_not_logged=19") || !strings.Contains(ds[1], "reason=missing_subject") {
		t.Errorf("second dump does not count the ones left out: %.300s", ds[1])
	}
	for _, d := range ds {
		if len(d) > 5<<10 {
			t.Errorf("a dump of %d bytes", len(d))
		}
	}
}
