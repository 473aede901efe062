package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/clearance/clearance/internal/oktasim"
)

// browser is one browser signing in with a simulated agent's device
// certificate, on one kept-alive connection from its own source address.
type browser struct {
	client *http.Client
	allow  bool // the agent passes its policies: expect the SAMLResponse
}

func newBrowser(t *Target, roots *x509.CertPool, cert tls.Certificate, src netip.Addr, allow bool) (*browser, error) {
	u, err := url.Parse(t.SSOURL)
	if err != nil {
		return nil, err
	}
	d := dialer(src)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: u.Hostname(), Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		// Whatever the URL says, connect to the listener's real address.
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", t.SSODial) },
		MaxIdleConnsPerHost: steadyWorkersPerBrowser,
	}
	return &browser{allow: allow, client: &http.Client{
		Transport: tr,
		Timeout:   30 * time.Second,
		// The verifier never redirects; a redirect would be a bug to see.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// signIn follows Okta's redirect to /saml/sso and reads the page to the
// end. It fails unless the page is the one the device's posture calls for:
// 200 with the auto-POST SAMLResponse, or the 403 remediation page.
func (b *browser) signIn(ctx context.Context, u string, buf *bytes.Buffer) error {
	buf.Reset()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(buf, resp.Body); err != nil {
		return err
	}
	switch {
	case b.allow && (resp.StatusCode != http.StatusOK || !bytes.Contains(buf.Bytes(), []byte("SAMLResponse"))):
		return fmt.Errorf("allowed device's sign-in: status %d, not the SAMLResponse form", resp.StatusCode)
	case !b.allow && resp.StatusCode != http.StatusForbidden:
		return fmt.Errorf("failing device's sign-in: status %d, want 403", resp.StatusCode)
	}
	return nil
}

// okta is the simulated Okta org: requests the target accepts, and the
// check Okta makes of a response.
func okta(ctx context.Context, t *Target, b *browser) (*oktasim.SP, error) {
	// The IdP's signing certificate, as an admin downloads it for Okta.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.SSOURL+"/saml/cert.pem", nil)
	if err != nil {
		return nil, err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the IdP certificate: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(body)
	if resp.StatusCode != http.StatusOK || blk == nil {
		return nil, fmt.Errorf("fetching the IdP certificate: status %d, no PEM", resp.StatusCode)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the IdP certificate: %w", err)
	}
	return oktasim.New(oktasim.Options{
		EntityID: t.OktaAudience, ACSURL: t.OktaACSURL,
		IdPSSOURL: t.SSOURL + "/saml/sso", IdPIssuer: t.SSOURL + "/saml/metadata", IdPCert: cert,
	}), nil
}

// checkFirst signs in once and validates the response as Okta would, so
// that what is measured is sign-ins that work.
func checkFirst(ctx context.Context, sp *oktasim.SP, b *browser) error {
	r := sp.NewRequest(SimUser)
	u, err := sp.RedirectURL(r)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := b.signIn(ctx, u, &buf); err != nil {
		return err
	}
	if !b.allow {
		return nil
	}
	_, saml, _, err := oktasim.ParsePostForm(buf.Bytes())
	if err != nil {
		return err
	}
	if _, err := sp.Validate(saml, r.ID); err != nil {
		return fmt.Errorf("okta refuses the response: %w", err)
	}
	return nil
}

var errNoBrowsers = errors.New("no browsers: no agent of the needed posture connected")
