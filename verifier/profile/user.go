package profile

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// DefaultUserIdentifier is the user-scope profile's PayloadIdentifier when
// none is given; inner payloads append a suffix to it.
const DefaultUserIdentifier = "com.clearance.user"

// DefaultHardwareUUIDVariable is the macOS profile variable the device
// replaces with its hardware UUID while installing the profile.
const DefaultHardwareUUIDVariable = "%HardwareUUID%"

// DeviceSANPrefix starts the SAN URI the verifier maps a browser certificate
// to a device by; the hardware UUID follows it.
const DeviceSANPrefix = "urn:device:apple:uuid:"

// DeviceCertCN is the subject common name every browser certificate asks for.
// The device is named by the SAN, not the CN, so one fixed CN is enough.
const DeviceCertCN = "Clearance device"

// SCEP payload settings that are not options: Apple's defaults made explicit,
// so the profile reads the same on every macOS version.
const (
	scepName       = "Clearance"
	scepKeyType    = "RSA" // Apple: "Always RSA"
	scepKeyUsage   = 5     // 1 signing | 4 encryption: TLS client auth signs
	scepRetries    = 3
	scepRetryDelay = 10 // seconds
)

// UserScopeOptions are the inputs of the user-scope profile.
type UserScopeOptions struct {
	// Organization is shown to the user as the profile's publisher.
	Organization string
	// SCEPURL is the verifier's SCEP endpoint, such as https://host/scep.
	SCEPURL string
	// Challenge is the SCEP challenge password. It appears only in the SCEP
	// payload's Challenge field.
	Challenge string
	// SSOURL is the URL Okta sends the browser to, https://host/saml/sso.
	SSOURL string
	// CACert is the Clearance root CA, installed as a trusted root.
	CACert *x509.Certificate
	// IssuerCN is the common name of the CA that signs browser certificates;
	// Chrome picks the certificate whose issuer CN matches it.
	IssuerCN string
	// Identifier is the base PayloadIdentifier (DefaultUserIdentifier).
	Identifier string
	// KeySize is the RSA key size in bits, 2048 (default) or 4096.
	KeySize int
	// HardwareUUIDVariable replaces DefaultHardwareUUIDVariable in the SAN,
	// for an MDM that substitutes its own variable for the device UUID
	// before delivery instead of leaving it to macOS.
	HardwareUUIDVariable string
}

func (o *UserScopeOptions) check() error {
	var errs []error
	if strings.TrimSpace(o.Organization) == "" {
		errs = append(errs, errors.New("organization is required (shown to users as the profile's publisher)"))
	}
	if _, err := checkHTTPURL("SCEP URL", o.SCEPURL, false); err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(o.Challenge) == "" {
		// The value itself never appears in an error.
		errs = append(errs, errors.New("SCEP challenge is required (clearance-verifier scep challenge)"))
	}
	if _, err := checkHTTPURL("SSO URL", o.SSOURL, true); err != nil {
		errs = append(errs, err)
	}
	if err := checkCA(o.CACert); err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(o.IssuerCN) == "" {
		errs = append(errs, errors.New("issuer CN is required (common name of the CA that signs browser certificates, for Chrome's certificate auto-selection)"))
	}
	if err := checkIdentifier(o.Identifier); err != nil {
		errs = append(errs, err)
	}
	if o.KeySize != 2048 && o.KeySize != 4096 {
		errs = append(errs, fmt.Errorf("key size %d is not supported: use 2048 or 4096 (the SCEP endpoint refuses smaller keys)", o.KeySize))
	}
	if !strings.Contains(o.HardwareUUIDVariable, "%") && !strings.Contains(o.HardwareUUIDVariable, "$") {
		errs = append(errs, fmt.Errorf("hardware UUID variable %q does not look like a profile variable (%%HardwareUUID%% or the MDM's own, such as $UDID)", o.HardwareUUIDVariable))
	}
	return errors.Join(errs...)
}

// UserScope returns the user-scope profile as an XML plist: it trusts the
// Clearance root CA, enrolls a non-extractable browser certificate through
// SCEP with the Mac's hardware UUID in its SAN, and makes Safari and Chrome
// present that certificate to the SSO URL without asking.
func UserScope(o UserScopeOptions) ([]byte, error) {
	if o.Identifier == "" {
		o.Identifier = DefaultUserIdentifier
	}
	if o.KeySize == 0 {
		o.KeySize = 2048
	}
	if o.HardwareUUIDVariable == "" {
		o.HardwareUUIDVariable = DefaultHardwareUUIDVariable
	}
	if err := o.check(); err != nil {
		return nil, fmt.Errorf("user-scope profile: %w", err)
	}
	sso, _ := checkHTTPURL("SSO URL", o.SSOURL, true)
	caFP := fingerprint(o.CACert)
	san := DeviceSANPrefix + o.HardwareUUIDVariable

	// 1. The root CA, so macOS trusts the verifier's TLS certificate and the
	// certificate chain SCEP returns.
	root := inner(o.Identifier+".root", TypeRoot, "Clearance root CA", caFP)
	root["PayloadContent"] = o.CACert.Raw
	root["PayloadCertificateFileName"] = "clearance-ca.cer"

	// 2. The SCEP enrollment. ExtendedKeyUsage is absent on purpose: Apple's
	// SCEP payload defines no such key (only the ACME payload does), so the
	// request cannot ask for one; the verifier's CA puts the clientAuth EKU
	// in every browser certificate it issues (ca.IssueBrowserCert). Key
	// Usage 5 asks for digitalSignature and keyEncipherment, which is what
	// that certificate carries.
	scep := inner(o.Identifier+".scep", TypeSCEP, "Clearance device certificate",
		o.SCEPURL, strconv.Itoa(o.KeySize), san)
	scep["PayloadContent"] = payload{
		"URL":                o.SCEPURL,
		"Name":               scepName,
		"Challenge":          o.Challenge,
		"Subject":            [][][]string{{{"CN", DeviceCertCN}}},
		"SubjectAltName":     payload{"uniformResourceIdentifier": san},
		"Keysize":            o.KeySize,
		"Key Type":           scepKeyType,
		"Key Usage":          scepKeyUsage,
		"KeyIsExtractable":   false,
		"AllowAllAppsAccess": true, // browsers sign with the key without a keychain prompt
		"Retries":            scepRetries,
		"RetryDelay":         scepRetryDelay,
	}

	// 3. The identity preference: Safari (and anything using the system's
	// identity preferences) presents the SCEP identity to the SSO URL.
	pref := inner(o.Identifier+".identitypreference", TypeIdentityPreference, "Clearance sign-in certificate",
		o.SSOURL, scep["PayloadUUID"].(string))
	pref["Name"] = o.SSOURL
	pref["PayloadCertificateUUID"] = scep["PayloadUUID"]

	// 4. Chrome ignores identity preferences; its own policy picks the
	// certificate by issuer for the SSO origin.
	rule, err := chromeRule(sso.Scheme+"://"+sso.Host, o.IssuerCN)
	if err != nil {
		return nil, err
	}
	chrome := inner(o.Identifier+".chrome", TypeChrome, "Chrome: Clearance certificate selection", rule)
	chrome["AutoSelectCertificateForUrls"] = []string{rule}

	doc := profileDoc(o.Identifier, ScopeUser, o.Organization,
		"Clearance device certificate",
		"Enrolls this Mac's device certificate for "+o.Organization+" sign-in and trusts the Clearance root CA.",
		[]payload{root, scep, pref, chrome})
	return encode(doc)
}

// chromeRule is one AutoSelectCertificateForUrls entry. Chrome's policy takes
// each entry as a JSON string, not a dictionary.
func chromeRule(pattern, issuerCN string) (string, error) {
	type name struct {
		CN string `json:"CN"`
	}
	type filter struct {
		Issuer name `json:"ISSUER"`
	}
	type rule struct {
		Pattern string `json:"pattern"`
		Filter  filter `json:"filter"`
	}
	b, err := json.Marshal(rule{Pattern: pattern, Filter: filter{Issuer: name{CN: issuerCN}}})
	if err != nil {
		return "", fmt.Errorf("encoding Chrome certificate rule: %w", err)
	}
	return string(b), nil
}
