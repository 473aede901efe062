package signin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/oktasim"
	"github.com/clearance/clearance/verifier/decision"
	"github.com/clearance/clearance/verifier/idp"
	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/web"
)

// lazyStore records decisions and makes them durable when the test says;
// the rest of Store is not used by finish.
type lazyStore struct {
	Store
	durableOK error
	appended  atomic.Int64
	// written reports whether the response had been written when durable
	// was called; durables counts the calls.
	written  func() bool
	durables atomic.Int64
	early    atomic.Bool
	lazies   atomic.Int64
}

func (s *lazyStore) AppendDecision(context.Context, storage.DecisionRecord) (int64, error) {
	return s.appended.Add(1), nil
}

type lazyOnly struct{ *lazyStore }

func (s lazyOnly) AppendDecisionLazy(context.Context, storage.DecisionRecord) (int64, func(context.Context) error, error) {
	s.lazies.Add(1)
	id := s.appended.Add(1)
	return id, func(context.Context) error {
		s.durables.Add(1)
		if s.written() {
			s.early.Store(true)
		}
		return s.durableOK
	}, nil
}

func finishRig(t *testing.T) (*Handler, *attempt) {
	t.Helper()
	now := time.Now().UTC()
	const (
		md  = "https://v.example.com/saml/metadata"
		sso = "https://v.example.com/saml/sso"
		aud = "https://www.okta.com/saml2/service-provider/spabc"
		acs = "https://example.okta.com/sso/saml2/0oa1"
	)
	id, err := idp.LoadOrCreate(t.Context(), t.TempDir(), 2048, "", now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := idp.New(id, idp.Settings{MetadataURL: md, SSOURL: sso, Audience: aud, ACSURLs: []string{acs}})
	if err != nil {
		t.Fatal(err)
	}
	sp := oktasim.New(oktasim.Options{EntityID: aud, ACSURL: acs, IdPSSOURL: sso, IdPIssuer: md, IdPCert: id.Cert,
		Now: func() time.Time { return now }})
	req, err := idp.Reparse(sp.RequestXML(sp.NewRequest("ada@example.com")), "relay", p.Expect(now))
	if err != nil {
		t.Fatal(err)
	}
	pages, err := web.New()
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{IdP: p, Pages: pages, Options: Options{Now: func() time.Time { return now }}}
	return h, &attempt{req: req, ident: Identity{DeviceID: "dev-1", Via: "certificate"}, source: sourceSSO, start: now, binding: BindingCertificate}
}

// An allowed sign-in's response leaves only once its decision is durable:
// with a store that commits first and syncs later, the response is written
// after durable returned nil, and not at all (a 503) when it returns an
// error. A store without that ability is durable when AppendDecision
// returns.
func TestResponseWaitsForADurableDecision(t *testing.T) {
	h, a := finishRig(t)
	var logs strings.Builder
	h.Log = slog.New(slog.NewTextHandler(&logs, nil))
	allow := decision.Decision{Allow: true, Reason: "ok"}

	for _, tc := range []struct {
		name       string
		durableErr error
		wantCode   int
		wantResp   bool
	}{
		{"durable", nil, 200, true},
		{"fsync failed", syscall.EIO, 503, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s := &lazyStore{durableOK: tc.durableErr, written: func() bool { return rec.Body.Len() > 0 || rec.Code != 200 }}
			h.Store = lazyOnly{s}
			h.finish(rec, httptest.NewRequest("GET", "https://v.example.com/saml/sso", nil), a, allow)
			if rec.Code != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.wantCode, rec.Body)
			}
			if got := strings.Contains(rec.Body.String(), "SAMLResponse"); got != tc.wantResp {
				t.Fatalf("response in the page: %v, want %v", got, tc.wantResp)
			}
			if s.durables.Load() != 1 {
				t.Fatalf("durable called %d times, want 1", s.durables.Load())
			}
			if s.early.Load() {
				t.Fatal("the page was written before the decision was durable")
			}
			// The committed row whose response was not sent is named.
			unsent := `level=ERROR msg=sso_unavailable component=sso step="making decision durable" err="input/output error" ref=`
			unsent2 := fmt.Sprintf("decision_id=%d response_sent=false", s.appended.Load())
			for _, want := range []string{unsent, unsent2} {
				if got := strings.Contains(logs.String(), want); got != !tc.wantResp {
					t.Fatalf("log names the unsent decision (%q): %v, want %v:\n%s", want, got, !tc.wantResp, logs.String())
				}
			}
			logs.Reset()
		})
	}

	// A store without the ability is durable when AppendDecision returns.
	rec := httptest.NewRecorder()
	s := &lazyStore{durableOK: errors.New("not to be called"), written: func() bool { return false }}
	h.Store = s
	h.finish(rec, httptest.NewRequest("GET", "https://v.example.com/saml/sso", nil), a, allow)
	if rec.Code != 200 || s.appended.Load() != 1 || !strings.Contains(rec.Body.String(), "SAMLResponse") {
		t.Fatalf("without lazy appends: status %d, %d appended", rec.Code, s.appended.Load())
	}
}

// Only a decision that lets a response go is appended lazily: a denial's
// page says nothing that needs a fsync to come later, so its decision is
// durable when it is appended, whatever the store can do.
func TestOnlyAllowedDecisionsAppendLazily(t *testing.T) {
	h := &Handler{}
	for _, allow := range []bool{false, true} {
		s := &lazyStore{written: func() bool { return false }}
		h.Store = lazyOnly{s}
		_, durable, err := h.appendDecision(t.Context(), storage.DecisionRecord{Allow: allow}, allow)
		if err != nil {
			t.Fatal(err)
		}
		if err := durable(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got, want := s.lazies.Load(), map[bool]int64{false: 0, true: 1}[allow]; got != want {
			t.Errorf("allow %v: %d lazy appends, want %d", allow, got, want)
		}
		if s.appended.Load() != 1 {
			t.Errorf("allow %v: %d appends, want 1", allow, s.appended.Load())
		}
	}
}
