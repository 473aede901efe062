package admin_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/clearance/clearance/proto/gen/clearance/admin/v1"
	"github.com/clearance/clearance/verifier/admin"
	"github.com/clearance/clearance/verifier/hub"
	"github.com/clearance/clearance/verifier/storage"
)

// The audit log through the admin API: changes made through the API are
// listed with their actor, filtered, paged without gaps or repeats (all of
// them share one time here), and hostile requests are refused with
// INVALID_ARGUMENT or bounded, the log unchanged.
func TestListAuditEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newStore(t)
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	s := &admin.Server{Store: store, Hub: &hub.Hub{Nonces: store}, Now: func() time.Time { return now }, Policies: fixedPolicies("v7", "firewall")}

	const (
		dev1 = "3f2a9c10-0000-4000-8000-000000000001"
		dev2 = "3f2a9c10-0000-4000-8000-000000000002"
		dev3 = "b7e10000-0000-4000-8000-000000000003"
	)
	setup := storage.AuditEvent{At: now.Add(-time.Hour), Actor: "cli", Action: "secret.create"}
	if err := store.CreateEnrollSecret(ctx, storage.EnrollSecret{ID: "s", Hash: []byte("h"), CreatedAt: now}, setup); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{dev1, dev2, dev3} {
		if _, _, err := store.EnrollDevice(ctx, storage.Enrollment{
			Device: storage.Device{ID: id, HardwareUUID: "HW-" + id, Platform: "darwin", PublicKey: []byte("key " + id),
				CertSerial: "c" + id, CertNotAfter: now.Add(24 * time.Hour), EnrolledAt: now},
			Cert:     storage.Cert{Serial: "c" + id, Kind: "device", NotBefore: now, NotAfter: now.Add(24 * time.Hour), DER: []byte("der")},
			SecretID: "s", Audit: storage.AuditEvent{At: now.Add(-time.Hour), Actor: "agent", Action: "device.enroll"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	// A reason is outside text: it comes back exactly as typed.
	hostile := "lost \x1b[2J\u202egnp.exe in a taxi"
	if _, err := s.RevokeDevice(ctx, &adminv1.RevokeDeviceRequest{DeviceId: dev1, Reason: hostile}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GrantExemption(ctx, &adminv1.GrantExemptionRequest{DeviceId: dev2, PolicyIds: []string{"firewall"},
		ExpiresAt: timestamppb.New(now.Add(72 * time.Hour)), Reason: "replacement Mac on order"}); err != nil {
		t.Fatal(err)
	}

	list := func(req *adminv1.ListAuditEventsRequest) []*adminv1.AuditEvent {
		t.Helper()
		resp, err := s.ListAuditEvents(ctx, req)
		if err != nil {
			t.Fatalf("ListAuditEvents(%v): %v", req, err)
		}
		return resp.GetEvents()
	}
	type row struct{ actor, action, device string }
	rows := func(es []*adminv1.AuditEvent) []row {
		var out []row
		for _, e := range es {
			out = append(out, row{e.GetActor(), e.GetAction(), e.GetDeviceId()})
		}
		return out
	}
	all := list(&adminv1.ListAuditEventsRequest{})
	want := []row{
		{"admin-api", "exemption.grant", dev2},
		{"admin-api", "device.revoke", dev1},
		{"agent", "device.enroll", dev3},
		{"agent", "device.enroll", dev2},
		{"agent", "device.enroll", dev1},
		{"cli", "secret.create", ""},
	}
	if got := rows(all); !equalRows(got, want) {
		t.Fatalf("ListAuditEvents = %v, want %v", got, want)
	}
	if all[1].GetDetail() != hostile || !all[1].GetAt().AsTime().Equal(now) || all[1].GetId() <= 0 {
		t.Errorf("revocation listed as %v; want the reason as typed, at %v", all[1], now)
	}
	if !strings.Contains(all[0].GetDetail(), "replacement Mac on order") {
		t.Errorf("exemption listed with detail %q", all[0].GetDetail())
	}

	for _, tc := range []struct {
		name string
		req  *adminv1.ListAuditEventsRequest
		want []row
	}{
		// The start two devices share lists both.
		{"device as the tables show it", &adminv1.ListAuditEventsRequest{DeviceId: dev1[:8]}, []row{want[0], want[1], want[3], want[4]}},
		{"device, a longer start", &adminv1.ListAuditEventsRequest{DeviceId: dev3[:4]}, want[2:3]},
		{"device in capitals", &adminv1.ListAuditEventsRequest{DeviceId: strings.ToUpper(dev1)}, []row{want[1], want[4]}},
		{"actor", &adminv1.ListAuditEventsRequest{Actor: "admin-api"}, want[:2]},
		{"action", &adminv1.ListAuditEventsRequest{Action: "device.revoke"}, want[1:2]},
		{"action prefix", &adminv1.ListAuditEventsRequest{Action: "device."}, want[1:5]},
		{"filters and", &adminv1.ListAuditEventsRequest{Actor: "agent", DeviceId: dev2}, want[3:4]},
		{"since", &adminv1.ListAuditEventsRequest{Since: timestamppb.New(now)}, want[:2]},
		{"until", &adminv1.ListAuditEventsRequest{Until: timestamppb.New(now)}, want[2:]},
		{"nothing", &adminv1.ListAuditEventsRequest{Actor: "scim:tok"}, nil},
	} {
		if got := rows(list(tc.req)); !equalRows(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}

	// Pages of every size, following next_page_token, make the whole list.
	for size := int32(1); size <= 7; size++ {
		var got []*adminv1.AuditEvent
		req := &adminv1.ListAuditEventsRequest{PageSize: size}
		for range 10 {
			resp, err := s.ListAuditEvents(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, resp.GetEvents()...)
			if resp.GetNextPageToken() == "" {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		if len(got) != len(all) {
			t.Fatalf("pages of %d: %d events, want %d", size, len(got), len(all))
		}
		for i := range got {
			if !proto.Equal(got[i], all[i]) {
				t.Errorf("pages of %d: event %d is %v, want %v", size, i, got[i], all[i])
			}
		}
	}
	// A huge page size is bounded, not refused.
	if got := list(&adminv1.ListAuditEventsRequest{PageSize: 1 << 30}); len(got) != len(all) {
		t.Errorf("page_size 2^30: %d events, want %d", len(got), len(all))
	}

	mib := strings.Repeat("a", 1<<20)
	bad := map[string]struct {
		req  *adminv1.ListAuditEventsRequest
		want string
	}{
		"negative page size": {&adminv1.ListAuditEventsRequest{PageSize: -1}, "page_size must not be negative"},
		"token not base64":   {&adminv1.ListAuditEventsRequest{PageToken: "%%%"}, "page_token is not one this server returned"},
		"token of decisions": {&adminv1.ListAuditEventsRequest{PageToken: base64.RawURLEncoding.EncodeToString([]byte("42"))}, "page_token is not one this server returned"},
		"token with a sign":  {&adminv1.ListAuditEventsRequest{PageToken: base64.RawURLEncoding.EncodeToString([]byte("1.+4"))}, "page_token is not one this server returned"},
		"token of id 0":      {&adminv1.ListAuditEventsRequest{PageToken: base64.RawURLEncoding.EncodeToString([]byte("1.0"))}, "page_token is not one this server returned"},
		"token, 1 MiB":       {&adminv1.ListAuditEventsRequest{PageToken: mib}, "page_token is not one this server returned"},
		"device, 1 MiB":      {&adminv1.ListAuditEventsRequest{DeviceId: mib}, "device_id is longer than 256 bytes"},
		"actor, 1 MiB":       {&adminv1.ListAuditEventsRequest{Actor: mib}, "actor is longer than 256 bytes"},
		"action, 1 MiB":      {&adminv1.ListAuditEventsRequest{Action: mib}, "action is longer than 256 bytes"},
		"actor with NUL":     {&adminv1.ListAuditEventsRequest{Actor: "admin\x00api"}, "actor holds a control character"},
		"action with ESC":    {&adminv1.ListAuditEventsRequest{Action: "device.\x1b[2J"}, "action holds a control character"},
		"device with C1":     {&adminv1.ListAuditEventsRequest{DeviceId: "3f2a\u009b"}, "device_id holds a control character"},
		"since after until": {&adminv1.ListAuditEventsRequest{Since: timestamppb.New(now), Until: timestamppb.New(now.Add(-time.Second))},
			"since (2026-12-01T09:00:00Z) is after until (2026-12-01T08:59:59Z)"},
		"invalid since": {&adminv1.ListAuditEventsRequest{Since: &timestamppb.Timestamp{Seconds: -1 << 62}}, "since is not a valid timestamp"},
		"invalid until": {&adminv1.ListAuditEventsRequest{Until: &timestamppb.Timestamp{Nanos: -1}}, "until is not a valid timestamp"},
	}
	for name, tc := range bad {
		_, err := s.ListAuditEvents(ctx, tc.req)
		if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != tc.want {
			t.Errorf("%s: %v, want INVALID_ARGUMENT %q", name, err, tc.want)
		}
	}
	// Reading wrote nothing.
	if got := list(&adminv1.ListAuditEventsRequest{}); len(got) != len(all) || !proto.Equal(got[0], all[0]) {
		t.Errorf("after the refused requests the log has %d events, newest %v; want %d, newest %v", len(got), got[0], len(all), all[0])
	}
}

func equalRows[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
