package scim

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/clearance/clearance/verifier/storage"
)

// benchDo runs one request through the handler as Okta would send it.
func benchDo(b *testing.B, f *fixture, method, path, body string, want int) {
	r := httptest.NewRequest(method, "https://sso.example.com"+path, strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+f.token)
	r.Header.Set("Content-Type", "application/scim+json; charset=utf-8")
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	if w.Code != want {
		b.Fatalf("%s %s: %d, want %d: %s", method, path, w.Code, want, w.Body.String())
	}
}

// BenchmarkSCIMCreate is Okta's create: the userName lookup, then the
// POST, each authenticated, durable on SQLite, from several connections at
// once. creates/s is the figure: a user is both requests.
func BenchmarkSCIMCreate(b *testing.B) {
	f := newFixture(b)
	var n atomic.Int64
	f.h.NewID = func() string { return fmt.Sprintf("id-%08d", n.Add(1)) }
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			name := fmt.Sprintf("user%08d@example.com", seq.Add(1))
			benchDo(b, f, "GET", "/scim/v2/Users?filter=userName%20eq%20%22"+name+"%22&startIndex=1&count=100", "", http.StatusOK)
			benchDo(b, f, "POST", "/scim/v2/Users", strings.Replace(oktaUser, "test.user@okta.local", name, 2), http.StatusCreated)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
}

// BenchmarkSCIMPatch is Okta's deactivate and reactivate: path-less PATCH
// of active, on a pool of users, each a read, a versioned update and its
// audit event.
func BenchmarkSCIMPatch(b *testing.B) {
	f := newFixture(b)
	const users = 64
	for i := range users {
		benchDo(b, f, "POST", "/scim/v2/Users", strings.Replace(oktaUser, "test.user@okta.local", fmt.Sprintf("u%d@example.com", i), 2), http.StatusCreated)
	}
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			active := i%2 == 0
			body := fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":%v}}]}`, active)
			benchDo(b, f, "PATCH", fmt.Sprintf("/scim/v2/Users/id-%04d", i%users+1), body, http.StatusOK)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "patches/s")
}

// BenchmarkGroupRemoveMany is one PATCH removing a long list of members
// from a group at storage.MaxGroupMembers: the work is linear in the two
// lists, not their product (a list of 60,000 against 100,000 members cost
// seconds of CPU while it was).
func BenchmarkGroupRemoveMany(b *testing.B) {
	members := make([]string, storage.MaxGroupMembers)
	for i := range members {
		members[i] = fmt.Sprintf("%032x", i)
	}
	const listed = 60_000
	var body strings.Builder
	body.WriteString(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members","value":[`)
	for i := range listed {
		if i > 0 {
			body.WriteByte(',')
		}
		fmt.Fprintf(&body, `{"value":"%032x"}`, i)
	}
	body.WriteString(`]}]}`)
	m, err := decodeObject([]byte(body.String()))
	if err != nil {
		b.Fatal(err)
	}
	ops, err := ParsePatch(m)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		doc := groupDoc{DisplayName: "Everyone", Members: slices.Clone(members)}
		if err := applyGroupPatch(&doc, "g1", ops); err != nil {
			b.Fatal(err)
		}
		if len(doc.Members) != len(members)-listed {
			b.Fatalf("%d members left, want %d", len(doc.Members), len(members)-listed)
		}
	}
}
