package admin_test

import (
	"context"
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

// "What changed for alice?" through the admin API: ListAuditEvents' user
// filter finds every change about a person, by id or by the username they
// had (a deleted user's history too, and, for a username given to someone
// else later, both people's, each event naming its subject's id); the
// API's own changes about a person (device assignment, user exemptions)
// name them; a look-alike username is someone else; pages neither skip
// nor repeat; a bad filter is refused with INVALID_ARGUMENT and changes
// nothing.
func TestListAuditEventsByUser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newStore(t)
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	s := &admin.Server{Store: store, Hub: &hub.Hub{Nonces: store}, Now: func() time.Time { return now }, Policies: fixedPolicies("v7", "firewall")}

	const dev = "3f2a9c10-0000-4000-8000-000000000001"
	scim := func(action string) storage.AuditEvent {
		return storage.AuditEvent{At: now, Actor: "scim:tok1", Action: action}
	}
	user := func(id, name string) storage.User {
		return storage.User{ID: id, UserName: name, Active: true, Resource: []byte("{}"), CreatedAt: now, UpdatedAt: now}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := store.CreateEnrollSecret(ctx, storage.EnrollSecret{ID: "s", Hash: []byte("h"), CreatedAt: now},
		storage.AuditEvent{At: now, Actor: "cli", Action: "secret.create"}); err != nil {
		t.Fatal(err)
	}
	_, _, err := store.EnrollDevice(ctx, storage.Enrollment{
		Device: storage.Device{ID: dev, HardwareUUID: "HW-1", Platform: "darwin", PublicKey: []byte("key"),
			CertSerial: "c1", CertNotAfter: now.Add(24 * time.Hour), EnrolledAt: now},
		Cert:     storage.Cert{Serial: "c1", Kind: "device", NotBefore: now, NotAfter: now.Add(24 * time.Hour), DER: []byte("der")},
		SecretID: "s", Audit: storage.AuditEvent{At: now, Actor: "agent", Action: "device.enroll"},
	})
	must(err)

	// Alice and Bob from SCIM, in one group; a look-alike of Alice's name
	// (a Cyrillic а) is a third person.
	_, err = store.CreateUser(ctx, user("00u-alice", "alice@example.com"), scim("user.create"))
	must(err)
	_, err = store.CreateUser(ctx, user("00u-bob", "bob@example.com"), scim("user.create"))
	must(err)
	_, err = store.CreateUser(ctx, user("00u-fake", "\u0430lice@example.com"), scim("user.create"))
	must(err)
	_, err = store.CreateGroup(ctx, storage.Group{ID: "g1", DisplayName: "Eng", Members: []string{"00u-alice", "00u-bob"},
		CreatedAt: now, UpdatedAt: now}, scim("group.create"))
	must(err)
	// The admin API's changes about Alice.
	_, err = s.AssignDevice(ctx, &adminv1.AssignDeviceRequest{DeviceId: dev, User: "ALICE@example.com"})
	must(err)
	_, err = s.UnassignDevice(ctx, &adminv1.UnassignDeviceRequest{DeviceId: dev, User: "00u-alice"})
	must(err)
	g, err := s.GrantExemption(ctx, &adminv1.GrantExemptionRequest{Username: "Alice@Example.com", ExpiresAt: timestamppb.New(now.Add(time.Hour)), Reason: "travelling"})
	must(err)
	_, err = s.RevokeExemption(ctx, &adminv1.RevokeExemptionRequest{Id: g.GetExemption().GetId()})
	must(err)
	// An exemption for a username no directory user has names the name.
	_, err = s.GrantExemption(ctx, &adminv1.GrantExemptionRequest{Username: "dora@example.com", ExpiresAt: timestamppb.New(now.Add(time.Hour)), Reason: "new hire"})
	must(err)
	// Alice leaves; her username goes to someone else.
	must(store.DeleteUser(ctx, "00u-alice", 0, scim("user.delete")))
	_, err = store.CreateUser(ctx, user("00u-alice2", "alice@example.com"), scim("user.create"))
	must(err)

	list := func(req *adminv1.ListAuditEventsRequest) []*adminv1.AuditEvent {
		t.Helper()
		resp, err := s.ListAuditEvents(ctx, req)
		if err != nil {
			t.Fatalf("ListAuditEvents(%v): %v", req, err)
		}
		return resp.GetEvents()
	}
	// row is an event's action and its first subject.
	type row struct{ action, userID, username string }
	rows := func(es []*adminv1.AuditEvent) []row {
		var out []row
		for _, e := range es {
			r := row{action: e.GetAction()}
			if subs := e.GetSubjects(); len(subs) > 0 {
				r.userID, r.username = subs[0].GetUserId(), subs[0].GetUsername()
			}
			out = append(out, r)
		}
		return out
	}
	alice := []row{
		{"user.delete", "00u-alice", "alice@example.com"},
		{"exemption.revoke", "00u-alice", "alice@example.com"},
		{"exemption.grant", "00u-alice", "alice@example.com"},
		{"device.unassign", "00u-alice", "alice@example.com"},
		{"device.assign", "00u-alice", "alice@example.com"},
		{"group.create", "00u-alice", "alice@example.com"},
		{"user.create", "00u-alice", "alice@example.com"},
	}
	for _, tc := range []struct {
		name string
		req  *adminv1.ListAuditEventsRequest
		want []row
	}{
		{"by id", &adminv1.ListAuditEventsRequest{User: "00u-alice"}, alice},
		// Both people who had the name, each event naming its own.
		{"by username", &adminv1.ListAuditEventsRequest{User: "alice@example.com"},
			append([]row{{"user.create", "00u-alice2", "alice@example.com"}}, alice...)},
		{"by username in capitals", &adminv1.ListAuditEventsRequest{User: "ALICE@EXAMPLE.COM"},
			append([]row{{"user.create", "00u-alice2", "alice@example.com"}}, alice...)},
		{"a look-alike is someone else", &adminv1.ListAuditEventsRequest{User: "\u0430lice@example.com"},
			[]row{{"user.create", "00u-fake", "\u0430lice@example.com"}}},
		// The group's event names Bob first when he is asked for.
		{"bob", &adminv1.ListAuditEventsRequest{User: "bob@example.com"},
			[]row{{"group.create", "00u-bob", "bob@example.com"}, {"user.create", "00u-bob", "bob@example.com"}}},
		{"a name with no user", &adminv1.ListAuditEventsRequest{User: "dora@example.com"}, []row{{"exemption.grant", "", "dora@example.com"}}},
		{"and action", &adminv1.ListAuditEventsRequest{User: "00u-alice", Action: "device."}, alice[3:5]},
		{"and device", &adminv1.ListAuditEventsRequest{User: "alice@example.com", DeviceId: dev[:8]}, alice[3:5]},
		{"and actor", &adminv1.ListAuditEventsRequest{User: "alice@example.com", Actor: "scim:tok1"},
			[]row{{"user.create", "00u-alice2", "alice@example.com"}, alice[0], alice[5], alice[6]}},
		{"nobody", &adminv1.ListAuditEventsRequest{User: "zed@example.com"}, nil},
	} {
		if got := rows(list(tc.req)); !equalRows(got, tc.want) {
			t.Errorf("%s:\n got %v\nwant %v", tc.name, got, tc.want)
		}
	}
	// The group's event names both members, in the JSON a script reads.
	all := list(&adminv1.ListAuditEventsRequest{User: "00u-alice", Action: "group.create"})
	if len(all) != 1 || len(all[0].GetSubjects()) != 2 || all[0].GetSubjects()[1].GetUserId() != "00u-bob" || all[0].GetMoreSubjects() != 0 {
		t.Errorf("group.create listed as %v, want both members", all)
	}

	// Pages of every size, following next_page_token, make the whole list.
	whole := list(&adminv1.ListAuditEventsRequest{User: "alice@example.com"})
	for size := int32(1); size <= 4; size++ {
		var got []*adminv1.AuditEvent
		req := &adminv1.ListAuditEventsRequest{User: "alice@example.com", PageSize: size}
		for range 20 {
			resp, err := s.ListAuditEvents(ctx, req)
			must(err)
			got = append(got, resp.GetEvents()...)
			if resp.GetNextPageToken() == "" {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		if len(got) != len(whole) {
			t.Fatalf("pages of %d: %d events, want %d", size, len(got), len(whole))
		}
		for i := range got {
			if !proto.Equal(got[i], whole[i]) {
				t.Errorf("pages of %d: event %d is %v, want %v", size, i, got[i], whole[i])
			}
		}
	}

	before := list(&adminv1.ListAuditEventsRequest{PageSize: 1000})
	for name, tc := range map[string]struct {
		user, want string
	}{
		"user, 513 bytes": {strings.Repeat("a", 513), "user is longer than 512 bytes"},
		"user, 1 MiB":     {strings.Repeat("a", 1<<20), "user is longer than 512 bytes"},
		"user with NUL":   {"alice\x00@example.com", "user holds a control character"},
		"user with ESC":   {"alice@example.com\x1b[2J", "user holds a control character"},
		"user with C1":    {"alice\u009b@example.com", "user holds a control character"},
		"user with LF":    {"alice@example.com\n", "user holds a control character"},
	} {
		_, err := s.ListAuditEvents(ctx, &adminv1.ListAuditEventsRequest{User: tc.user})
		if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != tc.want {
			t.Errorf("%s: %v, want INVALID_ARGUMENT %q", name, err, tc.want)
		}
	}
	// 256 bytes is a filter like any other.
	if got := list(&adminv1.ListAuditEventsRequest{User: strings.Repeat("a", 256)}); len(got) != 0 {
		t.Errorf("a 256-byte user matched %v", got)
	}
	after := list(&adminv1.ListAuditEventsRequest{PageSize: 1000})
	if len(after) != len(before) || !proto.Equal(after[0], before[0]) {
		t.Errorf("after the refused requests the log has %d events, newest %v; want %d, newest %v", len(after), after[0], len(before), before[0])
	}
}
