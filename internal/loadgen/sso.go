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
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/pkg/presence"
)

// browser is one browser signing in, on kept-alive connections from its
// own source address: with a simulated agent's device certificate, or —
// when proof is set — with no certificate, by the agent's proof of
// presence. Either way the verifier may send it to the agent on its Mac
// (under --browser-binding either, a certificate's Mac whose agent is
// connected proves itself too): the loopback hop is played in process,
// the statement signed with the agent's key.
type browser struct {
	client *http.Client
	allow  bool      // the agent passes its policies: expect the SAMLResponse
	agent  *simAgent // the agent on this browser's Mac
	proof  bool      // no certificate: the verifier must send it to the agent
	sso    string    // the sign-in listener's base URL
}

func newBrowser(t *Target, roots *x509.CertPool, s *simAgent, src netip.Addr, allow, proof bool) (*browser, error) {
	u, err := url.Parse(t.SSOURL)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{RootCAs: roots, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	b := &browser{allow: allow, agent: s, proof: proof, sso: strings.TrimSuffix(t.SSOURL, "/")}
	// The sign-in cookie ties the agent's statement to this browser.
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	if !proof {
		tc.Certificates = []tls.Certificate{s.tlsCert()}
	}
	d := dialer(src)
	tr := &http.Transport{
		TLSClientConfig: tc,
		// Whatever the URL says, connect to the listener's real address.
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", t.SSODial) },
		MaxIdleConnsPerHost: steadyWorkersPerBrowser,
	}
	b.client = &http.Client{
		Transport: tr,
		Jar:       jar,
		Timeout:   30 * time.Second,
		// Redirects are followed by hand: the one to the agent is played
		// in process, and any other would be a bug to see.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return b, nil
}

// signIn follows Okta's redirect to /saml/sso and reads the page to the
// end. It fails unless the page is the one the device's posture calls for:
// 200 with the auto-POST SAMLResponse, or the 403 remediation page.
func (b *browser) signIn(ctx context.Context, u string, buf *bytes.Buffer) error {
	resp, err := b.get(ctx, u, buf)
	if err != nil {
		return err
	}
	if b.proof && resp.StatusCode != http.StatusSeeOther {
		return fmt.Errorf("sign-in with the agent's proof: status %d, not the redirect to the agent", resp.StatusCode)
	}
	if resp.StatusCode == http.StatusSeeOther {
		// The verifier sends the browser to the agent, which signs and
		// sends it back.
		back, err := b.agentAnswer(resp.Header.Get("Location"))
		if err != nil {
			return err
		}
		if resp, err = b.get(ctx, back, buf); err != nil {
			return err
		}
	}
	switch {
	case b.allow && (resp.StatusCode != http.StatusOK || !bytes.Contains(buf.Bytes(), []byte("SAMLResponse"))):
		return fmt.Errorf("allowed device's sign-in: status %d, not the SAMLResponse form", resp.StatusCode)
	case !b.allow && resp.StatusCode != http.StatusForbidden:
		return fmt.Errorf("failing device's sign-in: status %d, want 403", resp.StatusCode)
	}
	return nil
}

// get fetches u and reads the page into buf.
func (b *browser) get(ctx context.Context, u string, buf *bytes.Buffer) (*http.Response, error) {
	buf.Reset()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(buf, resp.Body); err != nil {
		return nil, err
	}
	return resp, nil
}

// agentAnswer is what the agent on the Mac does with the verifier's
// redirect: check the return URL, sign the statement, and send the browser
// back.
func (b *browser) agentAnswer(location string) (string, error) {
	u, err := url.Parse(location)
	if err != nil || u.Path != presence.AgentPath {
		return "", fmt.Errorf("redirected to %.200q, not the agent", location)
	}
	challenge, ret, err := presence.ParseAgentQuery(u.RawQuery)
	if err != nil {
		return "", err
	}
	origin, err := presence.OriginOf(ret)
	if err != nil || ret != b.sso+"/saml/presence" {
		return "", fmt.Errorf("return URL %.200q is not the verifier's presence URL", ret)
	}
	raw, sig, err := presence.Sign(b.agent.a.Key, presence.Statement{
		Challenge: challenge, DeviceID: b.agent.a.DeviceID, Origin: origin, Time: time.Now().Truncate(time.Second),
	})
	if err != nil {
		return "", err
	}
	return ret + "?" + presence.RedirectQuery(raw, sig), nil
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
