package admin

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/clearance/clearance/internal/oktaorg"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/oktaapi"
)

// oktaClient is a client of a fake Okta org whose API token reads
// everything, each request delayed by delay.
func oktaClient(t *testing.T, delay time.Duration) (*oktaorg.Org, *oktaapi.Client) {
	t.Helper()
	org := oktaorg.New()
	t.Cleanup(org.Close)
	org.AddToken("tok", oktaorg.Scopes(oktaapi.ScopeUsers, oktaapi.ScopeGroups, oktaapi.ScopeLogs, oktaapi.ScopeApps))
	auth, err := oktaapi.NewAPIToken("tok")
	if err != nil {
		t.Fatal(err)
	}
	client, err := oktaapi.NewClient(org.URL(), auth)
	if err != nil {
		t.Fatal(err)
	}
	client.HTTP = &http.Client{Transport: slowTransport{base: org.Server.Client().Transport, delay: delay}}
	return org, client
}

// OktaStatus asks Okta once per oktaStatusReuse however often it is called,
// so that no caller, a read token's included, spends the org's API rate
// limit the sync and the System Log reads need.
func TestOktaStatusIsReused(t *testing.T) {
	org, client := oktaClient(t, 0)
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	s := &Server{Okta: OktaAPI{Client: client, Credential: "API token"}, Now: func() time.Time { return now }}

	first, err := s.OktaStatus(context.Background(), &adminv1.OktaStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	asked := len(org.Requests())
	if asked == 0 || !first.GetCheckedAt().AsTime().Equal(now) {
		t.Fatalf("first answer: %d requests, checked at %v", asked, first.GetCheckedAt().AsTime())
	}
	for range 50 {
		if _, err := s.OktaStatus(context.Background(), &adminv1.OktaStatusRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(oktaStatusReuse - time.Second)
	again, err := s.OktaStatus(context.Background(), &adminv1.OktaStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(org.Requests()); n != asked || !again.GetCheckedAt().AsTime().Equal(first.GetCheckedAt().AsTime()) {
		t.Fatalf("within %v: %d requests after the first %d, checked at %v", oktaStatusReuse, n, asked, again.GetCheckedAt().AsTime())
	}
	// A caller changing its copy does not change the next one's.
	again.Capabilities = nil
	now = now.Add(2 * time.Second)
	later, err := s.OktaStatus(context.Background(), &adminv1.OktaStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(org.Requests()); n != 2*asked || !later.GetCheckedAt().AsTime().Equal(now) || len(later.GetCapabilities()) == 0 {
		t.Fatalf("after %v: %d requests, want %d; checked at %v", oktaStatusReuse, n, 2*asked, later.GetCheckedAt().AsTime())
	}
}

// slowTransport delays every request to Okta.
type slowTransport struct {
	base  http.RoundTripper
	delay time.Duration
}

func (t slowTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	time.Sleep(t.delay)
	return t.base.RoundTrip(r)
}

// Callers that give up before a slow Okta answers do not make the next
// ask again, and callers at once share one round.
func TestOktaStatusSharedAndKeptWhenCallersGiveUp(t *testing.T) {
	org, client := oktaClient(t, 100*time.Millisecond)
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	s := &Server{Okta: OktaAPI{Client: client, Credential: "API token"}, Now: func() time.Time { return now }}

	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			if _, err := s.OktaStatus(ctx, &adminv1.OktaStatusRequest{}); status.Code(err) != codes.DeadlineExceeded {
				t.Errorf("a caller that gave up: %v", err)
			}
		}()
	}
	wg.Wait()
	// The round goes on without them, and its answer is kept.
	resp, err := s.OktaStatus(context.Background(), &adminv1.OktaStatusRequest{})
	if err != nil || len(resp.GetCapabilities()) == 0 {
		t.Fatalf("the answer after: %v %v", resp, err)
	}
	round := len(org.Requests())
	if _, err := s.OktaStatus(context.Background(), &adminv1.OktaStatusRequest{}); err != nil {
		t.Fatal(err)
	}
	if n := len(org.Requests()); n != round || round == 0 || round > 8 {
		t.Fatalf("Okta was asked %d times, then %d: want one round for nine callers", round, n)
	}
}
