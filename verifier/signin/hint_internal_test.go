package signin

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/internal/testkit/testpki"
	"github.com/clearance/clearance/pkg/presence"
	"github.com/clearance/clearance/verifier/access"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/idp"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlite"
	"github.com/clearance/clearance/verifier/web"
)

// deviceMap is the enrolled devices a presence rig knows.
type deviceMap map[string]storage.Device

func (m deviceMap) GetDevice(_ context.Context, id string) (storage.Device, error) {
	d, ok := m[id]
	if !ok {
		return storage.Device{}, storage.ErrNotFound
	}
	return d, nil
}

// noGate fails the test if a decision is asked of the access gate.
type noGate struct{ t *testing.T }

func (g noGate) Decide(_ context.Context, q access.Query, _ access.Mode) (decision.Decision, error) {
	g.t.Errorf("the gate was asked about device %q", q.DeviceID)
	return decision.Decision{}, access.ErrStorage
}

// presenceRig is a sign-in handler bound by the agent's proof, with Okta
// signing its requests and a real decision log.
type presenceRig struct {
	h         *Handler
	mux       *http.ServeMux
	sp        *oktasim.SP
	store     *sqlite.Store
	devices   deviceMap
	connected map[string]bool
	now       time.Time
}

const (
	rigMetadata = "https://v.example.com/saml/metadata"
	rigSSO      = "https://v.example.com/saml/sso"
	rigPresence = "https://v.example.com/saml/presence"
	rigAudience = "https://www.okta.com/saml2/service-provider/spabc"
	rigACS      = "https://example.okta.com/sso/saml2/0oa1"
)

func newPresenceRig(t *testing.T) *presenceRig {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	id, err := idp.LoadOrCreate(t.Context(), t.TempDir(), 2048, "", now)
	if err != nil {
		t.Fatal(err)
	}
	okta := testpki.SelfSigned(t, testpki.RSA())
	p, err := idp.New(id, idp.Settings{MetadataURL: rigMetadata, SSOURL: rigSSO, Audience: rigAudience,
		ACSURLs: []string{rigACS}, RequestCerts: []*x509.Certificate{okta.Cert}})
	if err != nil {
		t.Fatal(err)
	}
	rsaKey := okta.Key.(*rsa.PrivateKey)
	sp := oktasim.New(oktasim.Options{EntityID: rigAudience, ACSURL: rigACS, IdPSSOURL: rigSSO, IdPIssuer: rigMetadata, IdPCert: id.Cert,
		SigningKey: rsaKey, SigningCert: okta.Cert, Now: func() time.Time { return now }})
	pages, err := web.New()
	if err != nil {
		t.Fatal(err)
	}
	store, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	rg := &presenceRig{sp: sp, store: store, devices: deviceMap{}, connected: map[string]bool{}, now: now}
	pr := &Presence{AgentAddr: presence.DefaultAgentAddr, URL: rigPresence, Devices: rg.devices,
		Connected: func(id string) bool { return rg.connected[id] }, HintKey: bytes.Repeat([]byte{7}, 32)}
	if err := pr.Check(); err != nil {
		t.Fatal(err)
	}
	rg.h = &Handler{IdP: p, Binding: BindingAgent, Presence: pr, Gate: noGate{t}, Store: store, Pages: pages,
		Options: Options{Now: func() time.Time { return rg.now }}}
	rg.mux = http.NewServeMux()
	rg.h.Register(rg.mux)
	return rg
}

// get is a browser's GET of u with cookies.
func (rg *presenceRig) get(u string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, u, nil)
	for _, c := range cookies {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	rg.mux.ServeHTTP(rec, req)
	return rec
}

// signIn starts user's sign-in, as Okta sends the browser, with cookies.
func (rg *presenceRig) signIn(t *testing.T, user string, cookies ...*http.Cookie) (oktasim.Request, *httptest.ResponseRecorder) {
	t.Helper()
	r := rg.sp.NewRequest(user)
	u, err := rg.sp.RedirectURL(r)
	if err != nil {
		t.Fatal(err)
	}
	return r, rg.get(u, cookies...)
}

// hint is the device-hint cookie the verifier gives a browser that proved
// to be on deviceID.
func (rg *presenceRig) hint(deviceID string) *http.Cookie {
	return &http.Cookie{Name: cookieDevice, Value: rg.h.Presence.hintFor(deviceID, rg.now.Add(hintLifetime))}
}

func (rg *presenceRig) decisions(t *testing.T, f storage.DecisionFilter) []storage.DecisionRecord {
	t.Helper()
	ds, err := rg.store.ListDecisions(t.Context(), f)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// hintDropped reports whether rec tells the browser to forget its hint.
func hintDropped(rec *httptest.ResponseRecorder) bool {
	for _, c := range rec.Result().Cookies() {
		if c.Name == cookieDevice && c.MaxAge < 0 {
			return true
		}
	}
	return false
}

// The browser of a revoked Mac that signed in before holds its hint; the
// Mac's agent cannot connect. The person is told the Mac was removed (not
// that its agent is not running), and the security team gets a
// device_revoked row under the Mac, marked as named by the hint only. The
// hint is dropped, so the next sign-in asks the agent on whichever Mac the
// browser is on. A hint naming a Mac that is enrolled with its agent not
// connected still gets the agent-not-running page; one naming no enrolled
// Mac is no hint.
func TestRememberedBrowserOfRevokedMac(t *testing.T) {
	t.Parallel()
	rg := newPresenceRig(t)
	rg.devices["dev-stolen"] = storage.Device{ID: "dev-stolen", Hostname: "ada-mbp", RevokedAt: rg.now.Add(-time.Hour), RevokedReason: "laptop reported stolen"}
	rg.devices["dev-off"] = storage.Device{ID: "dev-off", Hostname: "bob-mbp"}

	r, rec := rg.signIn(t, "ada@example.com", rg.hint("dev-stolen"))
	body := rec.Body.String()
	if rec.Code != http.StatusForbidden || !strings.Contains(body, "device_revoked") || strings.Contains(body, "agent_not_running") {
		t.Fatalf("revoked Mac's browser: status %d, want 403 device_revoked:\n%s", rec.Code, body)
	}
	if !strings.Contains(body, "no longer allowed to sign in") {
		t.Errorf("the page does not say the Mac was removed:\n%s", body)
	}
	if !hintDropped(rec) {
		t.Errorf("the hint is kept: %v", rec.Result().Cookies())
	}
	ds := rg.decisions(t, storage.DecisionFilter{DeviceID: "dev-stolen"})
	if len(ds) != 1 {
		t.Fatalf("%d decisions under the revoked Mac, want 1: %+v", len(ds), ds)
	}
	if d := ds[0]; d.Allow || d.Reason != "device_revoked" || d.Binding != "hint" || d.Username != "ada@example.com" || d.RequestID != r.ID || d.Source != "sso" {
		t.Errorf("decision %+v, want a device_revoked denial of ada's request %s bound by the hint", d, r.ID)
	}
	// The request is answered once.
	u, _ := rg.sp.RedirectURL(r)
	if rec := rg.get(u, rg.hint("dev-stolen")); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "replayed") {
		t.Errorf("replay: status %d:\n%s", rec.Code, rec.Body)
	}

	// Enrolled, agent not connected: the page that says so, no row.
	if _, rec := rg.signIn(t, "bob@example.com", rg.hint("dev-off")); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "agent_not_running") || hintDropped(rec) {
		t.Errorf("enrolled Mac without its agent: status %d:\n%s", rec.Code, rec.Body)
	}
	// Naming no enrolled Mac: sent to the agent, the hint dropped.
	if _, rec := rg.signIn(t, "cy@example.com", rg.hint("dev-gone")); rec.Code != http.StatusSeeOther || !hintDropped(rec) {
		t.Errorf("hint naming no enrolled Mac: status %d, hint dropped %v:\n%s", rec.Code, hintDropped(rec), rec.Body)
	}
	if ds := rg.decisions(t, storage.DecisionFilter{}); len(ds) != 1 {
		t.Errorf("%d decisions in all, want 1: %+v", len(ds), ds)
	}
}

// agentURL returns the challenge a sign-in's redirect sends to the agent.
func agentChallenge(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("sign-in answered %d, want 303 to the agent:\n%s", rec.Code, rec.Body)
	}
	u, err := url.Parse(rec.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	ch, _, err := presence.ParseAgentQuery(u.RawQuery)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// Mallory starts a real sign-in as herself and presents a proof naming
// Ada's Mac, signed with her own key, or naming a Mac that is not
// enrolled. Each is refused and on record under Mallory, with the device
// it named as the claimed device: Ada's Mac's decisions hold none of them.
func TestProofNotSignedByTheNamedMac(t *testing.T) {
	t.Parallel()
	rg := newPresenceRig(t)
	ada, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	adaPub, err := x509.MarshalPKIXPublicKey(ada.Public())
	if err != nil {
		t.Fatal(err)
	}
	rg.devices["dev-ada"] = storage.Device{ID: "dev-ada", Hostname: "ada-mbp", PublicKey: adaPub}
	rg.connected["dev-ada"] = true
	mallory, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ named, reason string }{
		{"dev-ada", "presence_bad_signature"},
		{"dev-nowhere", "presence_unknown_device"},
	} {
		r, rec := rg.signIn(t, "mallory@example.com")
		ch := agentChallenge(t, rec)
		var signIn *http.Cookie
		for _, c := range rec.Result().Cookies() {
			if c.Name == cookieSignIn {
				signIn = c
			}
		}
		raw, sig, err := presence.Sign(mallory, presence.Statement{Challenge: ch, DeviceID: tc.named, Origin: "https://v.example.com", Time: rg.now})
		if err != nil {
			t.Fatal(err)
		}
		rec = rg.get(rigPresence+"?"+presence.RedirectQuery(raw, sig), signIn)
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), tc.reason) {
			t.Errorf("proof naming %s: status %d, want 403 %s:\n%s", tc.named, rec.Code, tc.reason, rec.Body)
		}
		ds := rg.decisions(t, storage.DecisionFilter{Username: "mallory@example.com", Limit: 1})
		if len(ds) != 1 {
			t.Fatalf("proof naming %s: no decision for mallory", tc.named)
		}
		if d := ds[0]; d.Allow || d.Reason != tc.reason || d.DeviceID != "" || d.ClaimedDeviceID != tc.named || d.RequestID != r.ID {
			t.Errorf("proof naming %s: decision %+v, want %s under no device, claiming %s, for request %s", tc.named, d, tc.reason, tc.named, r.ID)
		}
	}
	if ds := rg.decisions(t, storage.DecisionFilter{DeviceID: "dev-ada"}); len(ds) != 0 {
		t.Errorf("Ada's Mac has decisions it made no proof for: %+v", ds)
	}
}
