package scim

import (
	"testing"
)

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{`userName eq "ada@example.com"`, `displayName eq "a\"b"`, `members[value eq "x"]`, `userName eq "`, ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := ParseFilter(s)
		if err == nil && flt.Attr == "" {
			t.Fatalf("ParseFilter(%q) accepted a filter without an attribute", s)
		}
		_, _ = ParsePath(s)
	})
}

// FuzzPatch runs PATCH bodies through parsing and both appliers: whatever
// the input, no panic, and a user that comes out is a valid one.
func FuzzPatch(f *testing.F) {
	for _, s := range []string{
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[value eq \"a\"]"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"value":"b"}]}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"name.givenName","value":"x"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"name":{"x":1}}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > MaxBody {
			return
		}
		m, err := decodeObject(data)
		if err != nil {
			return
		}
		ops, err := ParsePatch(m)
		if err != nil {
			return
		}
		user := map[string]any{"userName": "ada@example.com", "active": true, "name": map[string]any{"givenName": "Ada"}}
		if applyUserPatch(user, ops) == nil {
			if doc, err := parseUser(user); err == nil && doc.UserName == "" {
				t.Fatal("a patched user without a userName was accepted")
			}
		}
		g := groupDoc{DisplayName: "Eng", Members: []string{"a"}}
		if applyGroupPatch(&g, "g1", ops) == nil && g.DisplayName == "" {
			t.Fatal("a patched group without a displayName")
		}
	})
}
