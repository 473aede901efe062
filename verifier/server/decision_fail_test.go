package server_test

import (
	"database/sql"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/clearance/clearance/internal/oktasim"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/idp"
)

// TestDecisionWriteFailsSendsNoResponse: an allowed sign-in whose decision row cannot
// be written sends no SAMLResponse, in each --sign mode.
func TestDecisionWriteFailsSendsNoResponse(t *testing.T) {
	for _, mode := range []string{idp.SignBoth, idp.SignResponse, idp.SignAssertion} {
		t.Run(mode, func(t *testing.T) {
			e := startSSO(t, true, func(c *config.Config) { c.Sign = mode })
			a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
			c := e.browser(deviceCert(a))
			r := e.sp.NewRequest(testUser)
			p := e.redirect(t, c, r)
			if _, _, _, err := oktasim.ParsePostForm([]byte(p.body)); err != nil {
				t.Fatalf("baseline sign-in not allowed: %d %v", p.status, err)
			}
			files, _ := filepath.Glob(filepath.Join(e.cfg.DataDir, "*.db"))
			if len(files) != 1 {
				t.Fatalf("db files %v", files)
			}
			db, err := sql.Open("sqlite", "file:"+files[0]+"?_pragma=busy_timeout(5000)")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(`CREATE TRIGGER fail_decisions BEFORE INSERT ON decisions BEGIN SELECT RAISE(ABORT, 'refused'); END`); err != nil {
				t.Fatal(err)
			}
			r2 := e.sp.NewRequest(testUser)
			p2 := e.redirect(t, c, r2)
			if strings.Contains(p2.body, "SAMLResponse") || p2.status != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503 with no SAMLResponse: the decision was not written", p2.status)
			}
			// Replaying the first request: refused, no response.
			p3 := e.redirect(t, c, r)
			if strings.Contains(p3.body, "SAMLResponse") || p3.status == 200 {
				t.Fatalf("replay answered: %d", p3.status)
			}
		})
	}
}
