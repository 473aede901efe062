package admin

import (
	"context"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/oktaorg"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/oktaapi"
)

// OktaStatus asks Okta once per oktaStatusReuse however often it is called,
// so that no caller, a read token's included, spends the org's API rate
// limit the sync and the System Log reads need.
func TestOktaStatusIsReused(t *testing.T) {
	org := oktaorg.New()
	defer org.Close()
	org.AddToken("tok", oktaorg.Scopes(oktaapi.ScopeUsers, oktaapi.ScopeGroups, oktaapi.ScopeLogs, oktaapi.ScopeApps))
	auth, err := oktaapi.NewAPIToken("tok")
	if err != nil {
		t.Fatal(err)
	}
	client, err := oktaapi.NewClient(org.URL(), auth)
	if err != nil {
		t.Fatal(err)
	}
	client.HTTP = org.Server.Client()
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
