package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/clearance/clearance/internal/testkit"
	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	agentv1 "github.com/clearance/clearance/proto/gen/clearance/agent/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/storage"
)

// as returns a context presenting token as the admin bearer token.
func (h *harness) as(token string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	h.t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// namedToken makes a named admin token as the CLI does.
func (h *harness) namedToken(name, role string, expires time.Time) (storage.AdminToken, string) {
	h.t.Helper()
	rec, tok, err := admin.CreateNamedToken(context.Background(), h.srv.Store, name, role, expires, "cli", h.clock.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	return rec, tok
}

// A read token lists and reads and changes nothing; an admin token's
// changes are audited with its holder's name; the data dir's token still
// works as it did.
func TestNamedAdminTokens(t *testing.T) {
	h := start(t)
	mac := h.enrolled(h.secret())
	_, reader := h.namedToken("bob@example.com", storage.AdminRoleRead, time.Time{})
	_, writer := h.namedToken("alice@example.com", storage.AdminRoleAdmin, time.Time{})

	if _, err := h.admin.ListDevices(h.as(reader), &adminv1.ListDevicesRequest{}); err != nil {
		t.Fatalf("a read token's ListDevices: %v", err)
	}
	if _, err := h.admin.ListAuditEvents(h.as(reader), &adminv1.ListAuditEventsRequest{}); err != nil {
		t.Fatalf("a read token's ListAuditEvents: %v", err)
	}
	before := h.dump()
	_, err := h.admin.RevokeDevice(h.as(reader), &adminv1.RevokeDeviceRequest{DeviceId: mac.DeviceID, Reason: "lost"})
	checkStatus(t, err, codes.PermissionDenied, "bob@example.com has role read")
	_, err = h.admin.CreateEnrollSecret(h.as(reader), &adminv1.CreateEnrollSecretRequest{Description: "x"})
	checkStatus(t, err, codes.PermissionDenied, "needs a token with role admin")
	_, err = h.admin.RequestCheck(h.as(reader), &adminv1.RequestCheckRequest{DeviceId: mac.DeviceID})
	checkStatus(t, err, codes.PermissionDenied, "RequestCheck changes the verifier")
	if after := h.dump(); after != before {
		t.Errorf("a read token's refused calls changed the store:\n%s\n---\n%s", before, after)
	}

	// What an admin token asks of the Mac and of the policies is audited
	// with its holder's name too.
	st := h.connect(mac)
	go answer(mac, st, 0, agentv1.PolicyStatus_POLICY_STATUS_PASS, make(chan *agentv1.VerifierMessage, 16))
	if _, err := h.admin.RequestCheck(h.as(writer), &adminv1.RequestCheckRequest{DeviceId: mac.DeviceID}); err != nil {
		t.Fatalf("an admin token's RequestCheck: %v", err)
	}
	if _, err := h.admin.ReloadPolicies(h.as(writer), &adminv1.ReloadPoliciesRequest{}); err != nil {
		t.Fatalf("an admin token's ReloadPolicies: %v", err)
	}
	if _, err := h.admin.RevokeDevice(h.as(writer), &adminv1.RevokeDeviceRequest{DeviceId: mac.DeviceID, Reason: "lost"}); err != nil {
		t.Fatalf("an admin token's RevokeDevice: %v", err)
	}
	if _, err := h.admin.CreateEnrollSecret(h.ctx(), &adminv1.CreateEnrollSecretRequest{Description: "by the data dir's token"}); err != nil {
		t.Fatalf("the data dir token: %v", err)
	}
	resp, err := h.admin.ListAuditEvents(h.as(reader), &adminv1.ListAuditEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	actors := map[string]string{}
	for _, e := range resp.GetEvents() {
		actors[e.GetAction()] = e.GetActor()
	}
	if actors["device.revoke"] != "admin:alice@example.com" || actors["device.check"] != "admin:alice@example.com" ||
		actors["policies.reload"] != "admin:alice@example.com" || actors["secret.create"] != admin.DataDirActor ||
		actors["admin_token.create"] != "cli" {
		t.Errorf("audit actors %v: want the revocation by admin:alice@example.com, the secret by %s, the tokens by cli", actors, admin.DataDirActor)
	}
	for _, secret := range []string{reader, writer, h.token} {
		if strings.Contains(h.logs.String(), secret) || strings.Contains(h.logs.String(), secret[len(secret)-20:]) {
			t.Errorf("the log holds a token")
		}
	}
}

// A token that is revoked, expired, forged on a real id, unknown or not a
// token at all gets Unauthenticated, the same message for each, and the
// call changes nothing.
func TestNamedAdminTokensRefused(t *testing.T) {
	h := start(t)
	rec, revoked := h.namedToken("carol@example.com", storage.AdminRoleAdmin, time.Time{})
	if _, err := h.srv.Store.RevokeAdminToken(context.Background(), rec.ID, h.clock.Now(),
		storage.AuditEvent{At: h.clock.Now(), Actor: "cli", Action: "admin_token.revoke"}); err != nil {
		t.Fatal(err)
	}
	_, expiring := h.namedToken("dave@example.com", storage.AdminRoleAdmin, h.clock.Now().Add(time.Hour))
	if _, err := h.admin.ListDevices(h.as(expiring), &adminv1.ListDevicesRequest{}); err != nil {
		t.Fatalf("a token before its expiry: %v", err)
	}
	h.clock.Add(time.Hour)
	good, valid := h.namedToken("erin@example.com", storage.AdminRoleAdmin, time.Time{})
	forged := admin.NamedTokenPrefix + good.ID + "." + strings.Repeat("A", 43)
	before := h.dump()
	for name, tok := range map[string]string{
		"revoked":         revoked,
		"expired":         expiring,
		"forged value":    forged,
		"unknown id":      admin.NamedTokenPrefix + "0123456789abcdef." + strings.Repeat("A", 43),
		"malformed id":    admin.NamedTokenPrefix + "ZZ.x",
		"NUL in id":       admin.NamedTokenPrefix + "0123456789abcde\x00.x",
		"oversized":       admin.NamedTokenPrefix + good.ID + "." + strings.Repeat("A", 8<<10),
		"the value alone": valid[strings.Index(valid, ".")+1:],
		"prefix only":     admin.NamedTokenPrefix,
	} {
		_, err := h.admin.CreateEnrollSecret(h.as(tok), &adminv1.CreateEnrollSecretRequest{Description: name})
		if name == "NUL in id" && err != nil && !strings.Contains(err.Error(), "admin token is not valid") {
			continue // gRPC refuses a NUL in a header before it is sent
		}
		checkStatus(t, err, codes.Unauthenticated, "admin token is not valid")
	}
	if after := h.dump(); after != before {
		t.Errorf("refused tokens changed the store:\n%s\n---\n%s", before, after)
	}
	if !h.logs.HasLine("admin call refused") {
		t.Errorf("no refusal logged:\n%s", h.logs.String())
	}
}

// A live check the caller gave up on still asked the Mac: it is audited.
func TestRequestCheckAuditedWhenTheCallerGivesUp(t *testing.T) {
	h := start(t)
	mac := h.enrolled(h.secret())
	h.connect(mac) // connected, and silent
	ctx, cancel := context.WithTimeout(h.ctx(), 300*time.Millisecond)
	defer cancel()
	if _, err := h.admin.RequestCheck(ctx, &adminv1.RequestCheckRequest{DeviceId: mac.DeviceID}); err == nil {
		t.Fatal("a silent Mac answered")
	}
	testkit.Eventually(t, 10*time.Second, "the check in the audit log", func() bool {
		resp, err := h.admin.ListAuditEvents(h.ctx(), &adminv1.ListAuditEventsRequest{Action: "device.check"})
		return err == nil && len(resp.GetEvents()) == 1 && resp.GetEvents()[0].GetDeviceId() == mac.DeviceID
	})
}
