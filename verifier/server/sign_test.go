package server_test

import (
	"encoding/base64"
	"slices"
	"testing"

	"github.com/beevik/etree"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/testkit"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/idp"
)

// TestSSOSign: with --sign both, response or assertion, the response
// carries exactly those signatures, and an independent SP (gosaml2, then
// xmlsec1) accepts it under each of Okta's Response Signature Verification
// settings that would accept it, and refuses it under the others.
func TestSSOSign(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sign   string
		accept []oktasim.Signatures
	}{
		{idp.SignBoth, []oktasim.Signatures{oktasim.RequireBoth, oktasim.RequireResponse, oktasim.RequireAssertion, oktasim.RequireEither}},
		{idp.SignResponse, []oktasim.Signatures{oktasim.RequireResponse, oktasim.RequireEither}},
		{idp.SignAssertion, []oktasim.Signatures{oktasim.RequireAssertion, oktasim.RequireEither}},
	} {
		t.Run(tc.sign, func(t *testing.T) {
			t.Parallel()
			e := startSSO(t, true, func(c *config.Config) { c.Sign = tc.sign })
			a, _ := e.device(t, agentv1.PolicyStatus_POLICY_STATUS_PASS, nil)
			r := e.sp.NewRequest(testUser)
			p := e.redirect(t, e.browser(deviceCert(a)), r)
			_, resp, _, err := oktasim.ParsePostForm([]byte(p.body))
			if err != nil {
				t.Fatalf("no SAML form (status %d): %v\n%s", p.status, err, p.body)
			}
			raw, err := base64.StdEncoding.DecodeString(resp)
			if err != nil {
				t.Fatal(err)
			}
			doc := etree.NewDocument()
			if err := doc.ReadFromBytes(raw); err != nil {
				t.Fatal(err)
			}
			respSig := doc.Root().SelectElement("Signature") != nil
			assertionSig := doc.Root().SelectElement("Assertion").SelectElement("Signature") != nil
			if respSig != (tc.sign != idp.SignAssertion) || assertionSig != (tc.sign != idp.SignResponse) {
				t.Errorf("--sign %s: Response signed %v, Assertion signed %v", tc.sign, respSig, assertionSig)
			}
			for _, need := range []oktasim.Signatures{oktasim.RequireBoth, oktasim.RequireResponse, oktasim.RequireAssertion, oktasim.RequireEither} {
				o := e.sp.Options()
				o.Signatures = need
				as, err := oktasim.New(o).Validate(resp, r.ID)
				want := slices.Contains(tc.accept, need)
				if want != (err == nil) {
					t.Errorf("Okta set to %s: err = %v, want accepted=%v", need, err, want)
				}
				if err == nil && as.NameID != testUser {
					t.Errorf("Okta set to %s: NameID %q", need, as.NameID)
				}
			}
			testkit.Tool(t, "xmlsec1")
			for _, need := range []oktasim.Signatures{oktasim.RequireBoth, oktasim.RequireResponse, oktasim.RequireAssertion, oktasim.RequireEither} {
				err := oktasim.XMLSec1VerifySigned(raw, e.srv.IdP.CertPEM(), need)
				if want := slices.Contains(tc.accept, need); want != (err == nil) {
					t.Errorf("xmlsec1, Okta set to %s: err = %v, want accepted=%v", need, err, want)
				}
			}
		})
	}
}
