package main

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/clearance/clearance/pkg/certpem"
	"github.com/clearance/clearance/pkg/cli"
	"github.com/clearance/clearance/verifier/config"
	"github.com/clearance/clearance/verifier/idp"
)

// oktaIdPName is the name suggested for the identity provider in Okta.
const oktaIdPName = "Clearance device check"

// oktaCmd prints what to enter in Okta's Admin Console (or Terraform).
func (a *app) oktaCmd() *cli.Command {
	return &cli.Command{
		Name:    "okta",
		Summary: "print the values to enter in Okta to make this verifier its device check",
		Commands: []*cli.Command{a.oktaStatusCmd(), {
			Name:    "setup",
			Summary: "print every value Okta's SAML 2.0 IdP form asks for, in its order (or Terraform)",
			Doc: "Prints every value Okta's \"SAML 2.0 IdP\" form asks for, in the form's order, from the same " +
				"settings as serve (flags, CLEARANCE_* variables, --config) and the SAML signing certificate " +
				"serve created in the data dir.\n\n" +
				"  clearance-verifier okta setup --data-dir /var/lib/clearance \\\n    --sso-public-url https://clearance.example.com:8444",
			Footer: config.SharedFooter,
			Flags: func(fs *cli.FlagSet) cli.Action {
				b := config.Bind(fs, "data-dir", "public-url", "sso-listen", "sso-public-url", "okta-audience", "okta-acs-url", "okta-request-cert", "sign")
				fs.Group("Output")
				terraform := fs.Bool("terraform", false, "print only an okta_idp_saml + okta_idp_saml_key Terraform snippet")
				return func(context.Context, []string) error {
					cfg, err := a.resolveDataDir(b)
					if err != nil {
						return err
					}
					v, err := oktaValuesFor(cfg)
					if err != nil {
						return err
					}
					if *terraform {
						return writeOktaTerraform(a.stdout, v)
					}
					return writeOktaGuide(a.stdout, v)
				}
			},
		}},
	}
}

// oktaValues is everything the guide and the Terraform snippet print.
type oktaValues struct {
	DataDir      string
	SSOPublicURL string
	LocalSSOHost bool // the SSO URL names a host only this machine can reach
	Issuer       string
	SSOURL       string

	CertPath    string
	CertPEM     string
	CertDER     []byte
	KeyBits     int
	Fingerprint string // SHA-256 of the DER, colon-separated upper-case hex (openssl's form)
	X5TS256     string // the same digest, base64url: Okta's key x5t#S256
	NotAfter    time.Time

	Audience        string
	ACSURLs         []string
	RequestCertPath string
	RequestCertNote string // what reading RequestCertPath found
	Sign            string // what responses sign (--sign)
}

func oktaValuesFor(cfg *config.Config) (*oktaValues, error) {
	path := filepath.Join(cfg.DataDir, "idp-cert.pem")
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: run 'clearance-verifier serve --data-dir %s' once first; on its first start it creates the SAML signing certificate Okta needs", path, cfg.DataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the SAML signing certificate: %w", err)
	}
	certs, err := certpem.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cert := certs[0]
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s holds a %s certificate, but Okta accepts only RSA IdP signing certificates (EC keys are for X.509 IdPs only); the verifier's SAML key must be RSA (--idp-key-bits 2048 or 3072)", path, keyKind(cert))
	}
	sum := sha256.Sum256(cert.Raw)
	v := &oktaValues{
		DataDir:      cfg.DataDir,
		SSOPublicURL: cfg.SSOPublicURL,
		LocalSSOHost: isLocalHost(cfg.SSOHost()),
		Issuer:       cfg.MetadataURL(),
		SSOURL:       cfg.SSOURL(),
		CertPath:     path,
		CertPEM:      string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})),
		CertDER:      cert.Raw,
		KeyBits:      pub.N.BitLen(),
		Fingerprint:  colonHex(sum[:]),
		X5TS256:      base64.RawURLEncoding.EncodeToString(sum[:]),
		NotAfter:     cert.NotAfter,
		Audience:     cfg.OktaAudience,
		ACSURLs:      cfg.OktaACSURLs,
		Sign:         cfg.Sign,
	}
	if cfg.OktaRequestCert != "" {
		v.RequestCertPath = cfg.OktaRequestCert
		v.RequestCertNote = describeRequestCert(cfg.OktaRequestCert)
	}
	return v, nil
}

func keyKind(c *x509.Certificate) string {
	switch c.PublicKeyAlgorithm {
	case x509.ECDSA:
		return "ECDSA"
	case x509.Ed25519:
		return "Ed25519"
	}
	return c.PublicKeyAlgorithm.String()
}

// isLocalHost reports whether h names only this machine: a URL with it,
// printed for Okta or Cloudflare to use, cannot be reached from outside.
func isLocalHost(h string) bool {
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

func colonHex(b []byte) string {
	s := strings.ToUpper(hex.EncodeToString(b))
	var out strings.Builder
	for i := 0; i < len(s); i += 2 {
		if i > 0 {
			out.WriteByte(':')
		}
		out.WriteString(s[i : i+2])
	}
	return out.String()
}

// describeRequestCert says what --okta-request-cert holds, so a wrong file
// shows up here rather than as refused sign-ins.
func describeRequestCert(path string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "cannot be read: " + err.Error()
	}
	certs, err := certpem.Parse(raw)
	if err != nil {
		return "is not a PEM certificate: " + err.Error()
	}
	sum := sha256.Sum256(certs[0].Raw)
	note := "SHA-256 " + colonHex(sum[:])
	if time.Now().After(certs[0].NotAfter) {
		note += ", EXPIRED " + certs[0].NotAfter.UTC().Format(time.DateOnly)
	}
	return note
}

func writeOktaGuide(w io.Writer, v *oktaValues) error {
	d := &doc{}
	p := d.p
	signNote := "on (required: until okta_request_cert is set, step 2, the verifier refuses every request)"
	if v.RequestCertPath != "" {
		signNote = "on (required: okta_request_cert is set, unsigned requests are refused)"
	}

	p("Okta setup for this verifier (data dir %s)\n\n", v.DataDir)
	if v.LocalSSOHost {
		p("WARNING: the SSO URL below names %s, which browsers on other machines cannot reach.\n", v.SSOPublicURL)
		p("         Set --sso-public-url (sso_public_url) to the https:// name browsers use, then run this again.\n\n")
	}

	p("0. What the Okta org needs: Okta Identity Engine (the IdP authenticator exists only there) and a plan with\n")
	p("   Adaptive MFA or another that includes the IdP authenticator; authentication policies per app.\n\n")
	p("1. Okta Admin Console: Security > Identity Providers > Add identity provider > SAML 2.0 IdP > Next.\n")
	p("   Enter these values, in the order the form shows them:\n\n")
	// The form's sections and fields, in its order; a row with no value is a
	// section heading.
	rows := [][2]string{
		{"General Settings", ""},
		{"  Name", oktaIdPName + " (a suggestion; any name works)"},
		{"Authentication Settings", ""},
		{"  IdP Usage", "Factor only"},
		{"  Account matching with Persistent Name ID", "leave unselected"},
		{"Account matching with IdP Username", ""},
		{"  IdP username", "idpuser.subjectNameId"},
		{"  Filter", "leave unselected"},
		{"  Match against", "Okta Username"},
		{"  If no match is found", "Redirect to Okta sign-in page (JIT is not supported for an IdP authenticator)"},
		{"SAML Protocol Settings", ""},
		{"  IdP Issuer URI", v.Issuer},
		{"  IdP Single Sign-On URL", v.SSOURL},
		{"  IdP Signature Certificate", "upload " + v.CertPath},
		{"", fmt.Sprintf("RSA %d, SHA-256 fingerprint %s", v.KeyBits, v.Fingerprint)},
		{"", "valid until " + v.NotAfter.UTC().Format(time.DateOnly) + expiryNote(v.NotAfter)},
		{"Advanced Settings", ""},
		{"  Request Binding", "HTTP Redirect"},
		{"  Request Signature", "Sign SAML Authentication Requests: " + signNote},
		{"  Request Signature Algorithm", "SHA-256 (SHA-1 requests are refused)"},
		{"  Response Signature Verification", responseVerification(v.Sign)},
		{"  Response Signature Algorithm", "SHA-256"},
		{"  Destination", v.SSOURL + " (required: requests without it are refused)"},
		{"  Okta Assertion Consumer Service URL", "Trust-specific"},
		{"  Redirect Domain", "Org URL (shown when the org has a custom domain; Dynamic would build the ACS URL from each domain)"},
		{"  Trust claims from this identity provider", "leave unselected (the verifier asserts only the username)"},
		{"  Send Okta application context", "leave unselected (not needed; the verifier shows its own page)"},
		{"  Max Clock Skew", "leave the default"},
	}
	width := 0
	for _, r := range rows {
		if r[1] != "" {
			width = max(width, len(r[0]))
		}
	}
	for _, r := range rows {
		if r[1] == "" {
			p("   %s\n", r[0])
			continue
		}
		p("   %-*s  %s\n", width, r[0], r[1])
	}
	p("\n   Then save the identity provider (Finish / Add Identity Provider).\n\n")
	p("   The IdP Signature Certificate, if you would rather paste it (also served at %s/saml/cert.pem):\n\n", strings.TrimSuffix(v.SSOPublicURL, "/"))
	p("%s\n", v.CertPEM)

	p("2. Okta now shows the identity provider's Assertion Consumer Service URL (https://{your Okta domain}/sso/saml2/{idpId})\n")
	p("   and Audience URI (https://www.okta.com/saml2/service-provider/sp...). Copy them into the verifier's config file\n")
	p("   (or --okta-acs-url / --okta-audience, CLEARANCE_OKTA_ACS_URL / CLEARANCE_OKTA_AUDIENCE) and restart the verifier:\n\n")
	p("     okta_audience: %s\n", orNotSet(v.Audience, "<Audience URI>"))
	p("     okta_acs_url: %s\n", orNotSet(strings.Join(v.ACSURLs, ","), "<Assertion Consumer Service URL>"))
	if v.RequestCertPath != "" {
		p("     okta_request_cert: %s\n", v.RequestCertPath)
	} else {
		p("     okta_request_cert: <file>   (required: Okta's request-signing certificate, downloaded from the IdP's page)\n")
	}
	p("\n   When Okta rotates its signing certificate it shows a second one; put both in the okta_request_cert file\n")
	p("   (one PEM after the other) until the old one is retired.\n")
	p("   With a custom domain, if Redirect Domain must stay Dynamic, give okta_acs_url the ACS URL on each domain,\n")
	p("   comma-separated, the org's first.\n")
	p("\n   Now: ")
	switch {
	case v.Audience != "":
		p("okta_audience and okta_acs_url are set (shown above).")
	default:
		p("okta_audience and okta_acs_url are not set yet; until they are, the verifier refuses every sign-in request.")
	}
	p("\n")
	if v.RequestCertPath != "" {
		p("        okta_request_cert %s\n", v.RequestCertNote)
	}
	p("\n")

	p("3. Security > Authenticators > Setup > Add authenticator > IdP Authenticator > Add:\n")
	p("   choose %q as the Identity Provider, then Add. Add it to an authenticator enrollment policy\n", oktaIdPName)
	p("   (Authenticators > Enrollment) so your users can use it.\n\n")
	p("4. Security > Authentication Policies: in the policy of each app to protect (start with a pilot group), add a rule\n")
	p("   for Device platform macOS whose authentication requires the %q authenticator, with no other\n", oktaIdPName)
	p("   authenticator able to stand in for it. A Mac that fails its checks is then denied there.\n\n")
	p("Terraform: run 'clearance-verifier okta setup --terraform' for okta_idp_saml, okta_idp_saml_key and okta_authenticator.\n")
	p("Walk-through: docs/okta.md.\n")
	return d.writeTo(w)
}

func expiryNote(notAfter time.Time) string {
	switch left := time.Until(notAfter); {
	case left <= 0:
		return " (EXPIRED: Okta will refuse responses signed with it; see docs/okta.md, certificate rotation)"
	case left < 90*24*time.Hour:
		return " (expires in " + strconv.Itoa(int(left.Hours()/24)) + " days: plan a rotation, see docs/okta.md)"
	}
	return ""
}

func orNotSet(v, placeholder string) string {
	if v == "" {
		return placeholder + "   (not set)"
	}
	return v
}

func writeOktaTerraform(w io.Writer, v *oktaValues) error {
	d := &doc{}
	p := d.p
	p("# Clearance as Okta's SAML 2.0 \"Factor only\" identity provider (the IdP authenticator).\n")
	p("# From 'clearance-verifier okta setup --terraform'; signing certificate %s,\n", v.CertPath)
	p("# RSA %d, valid until %s, SHA-256 fingerprint\n", v.KeyBits, v.NotAfter.UTC().Format(time.DateOnly))
	p("#   %s\n", v.Fingerprint)
	p("#\n")
	p("# The okta provider has no argument for \"IdP Usage\": after 'terraform apply', open the\n")
	p("# identity provider in the Admin Console and set IdP Usage to \"Factor only\".\n")
	p("# provisioning_action DISABLED is \"If no match is found: Redirect to Okta sign-in page\"\n")
	p("# (an IdP authenticator does not support JIT).\n\n")
	p("resource \"okta_idp_saml_key\" \"clearance\" {\n")
	p("  x5c = [%s]\n", hclString(base64.StdEncoding.EncodeToString(v.CertDER)))
	p("}\n\n")
	p("resource \"okta_idp_saml\" \"clearance\" {\n")
	attrs := [][2]string{
		{"name", oktaIdPName},
		{"issuer", v.Issuer},
		{"sso_url", v.SSOURL},
		{"sso_destination", v.SSOURL},
		{"sso_binding", "HTTP-REDIRECT"},
		{"username_template", "idpuser.subjectNameId"},
		{"subject_match_type", "USERNAME"},
		{"provisioning_action", "DISABLED"},
		{"acs_type", "INSTANCE"},
		{"issuer_mode", "ORG_URL"},
		{"request_signature_scope", "REQUEST"},
		{"request_signature_algorithm", "SHA-256"},
		{"response_signature_scope", responseScope(v.Sign)},
		{"response_signature_algorithm", "SHA-256"},
	}
	width := len("kid")
	for _, a := range attrs {
		width = max(width, len(a[0]))
	}
	for _, a := range attrs {
		p("  %-*s = %s\n", width, a[0], hclString(a[1]))
	}
	p("  %-*s = okta_idp_saml_key.clearance.id\n", width, "kid")
	p("}\n\n")
	p("# The verifier's okta_audience is this output; its okta_acs_url is\n")
	p("# https://<your Okta domain>/sso/saml2/<clearance_okta_idp_id> (acs_type INSTANCE).\n")
	p("# The IdP authenticator (Identity Engine): the identity provider as a factor. Add it to\n")
	p("# an authenticator enrollment policy (okta_policy_mfa external_idps) and require it in\n")
	p("# an authentication policy rule for macOS (okta_app_signon_policy_rule).\n")
	p("resource \"okta_authenticator\" \"clearance\" {\n")
	p("  name = %s\n", hclString(oktaIdPName))
	p("  key  = \"external_idp\"\n")
	p("  provider_json = jsonencode({ type = \"CLAIMS\", configuration = { idpId = okta_idp_saml.clearance.id } })\n")
	p("}\n\n")
	p("output \"clearance_okta_audience\" {\n  value = okta_idp_saml.clearance.audience\n}\n\n")
	p("output \"clearance_okta_idp_id\" {\n  value = okta_idp_saml.clearance.id\n}\n")
	return d.writeTo(w)
}

// hclString quotes s for HCL: strconv.Quote's escapes are valid there, and
// "${" / "%{" would start a template, so they are escaped by doubling.
func hclString(s string) string {
	s = strings.ReplaceAll(s, "${", "$${")
	s = strings.ReplaceAll(s, "%{", "%%{")
	return strconv.Quote(s)
}

// responseVerification is the Response Signature Verification that accepts
// what the verifier signs (--sign).
func responseVerification(sign string) string {
	switch sign {
	case idp.SignAssertion:
		return "Assertion (the verifier signs only the Assertion: --sign assertion; Either works too)"
	case idp.SignResponse:
		return "Response (the verifier signs only the Response: --sign response; Either works too)"
	}
	return "Response (the verifier signs both the Response and the Assertion)"
}

// responseScope is Terraform's response_signature_scope for what the
// verifier signs (--sign).
func responseScope(sign string) string {
	if sign == idp.SignAssertion {
		return "ASSERTION"
	}
	return "RESPONSE"
}
