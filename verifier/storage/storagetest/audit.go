package storagetest

import (
	"testing"

	"github.com/clearance/clearance/verifier/storage"
)

var auditTests = []test{
	{"AppendAndList", testAuditAppendList},
	{"SameTimeNewestAppendedFirst", testAuditSameTime},
}

func testAuditAppendList(t *testing.T, s storage.Store) {
	ctx := t.Context()
	// Appended out of time order: the list is newest first by At.
	events := []storage.AuditEvent{
		{At: at(2 * hour), Actor: "admin-api", Action: "device.revoke", DeviceID: "dev-a", Detail: "stolen"},
		{At: at(hour), Actor: "agent", Action: "device.enroll", DeviceID: "dev-b", Detail: `quotes ' " and \ survive`},
		{At: at(3 * hour), Actor: "agent", Action: "device.renew", DeviceID: "dev-a"},
		{At: at(0), Actor: "cli", Action: "secret.create", Detail: "fleet"},
	}
	for _, e := range events {
		must(t, s.AppendAudit(ctx, e))
	}
	byTime := []storage.AuditEvent{events[2], events[0], events[1], events[3]}

	cases := []struct {
		name     string
		deviceID string
		limit    int
		want     []storage.AuditEvent
	}{
		{"all", "", 10, byTime},
		{"limited", "", 2, byTime[:2]},
		{"one device", "dev-a", 10, []storage.AuditEvent{events[2], events[0]}},
		{"one device limited", "dev-a", 1, []storage.AuditEvent{events[2]}},
		{"other device", "dev-b", 10, []storage.AuditEvent{events[1]}},
		{"no events for device", "dev-unknown", 10, nil},
		{"zero limit means one", "", 0, byTime[:1]},
		{"negative limit means one", "dev-a", -3, byTime[:1]},
	}
	for _, tc := range cases {
		got, err := s.ListAudit(ctx, tc.deviceID, tc.limit)
		must(t, err)
		equal(t, "ListAudit "+tc.name, got, tc.want)
	}
}

func testAuditSameTime(t *testing.T, s storage.Store) {
	var events []storage.AuditEvent
	for _, detail := range []string{"first", "second", "third"} {
		e := storage.AuditEvent{At: t0, Actor: "cli", Action: "secret.create", Detail: detail}
		must(t, s.AppendAudit(t.Context(), e))
		events = append([]storage.AuditEvent{e}, events...)
	}
	equal(t, "ListAudit", listAudit(t, s, ""), events)
}
