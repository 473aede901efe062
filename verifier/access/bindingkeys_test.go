package access_test

import (
	"slices"
	"testing"

	"github.com/clearance/clearance/verifier/access"
	"github.com/clearance/clearance/verifier/storage"
)

// FuzzBindingKeys: the keys that index the binding rule agree with Binds
// for any rule, account and user, so that finding an account's users by
// key finds every user sign-in would bind, and no other.
func FuzzBindingKeys(f *testing.F) {
	for _, seed := range [][4]string{
		{"", "jdoe", "jdoe@example.com", ""},
		{"email-local-part", "JDoe", "john@corp.com", "jdoe@example.com"},
		{"{local}@example.com", "jdoe", "JDOE@example.com", ""},
		{"{local}@example.com", "jdoe", "john@corp.com", "jdoe@EXAMPLE.com"},
		{"{local}.{local}@x", "a", "a.a@x", ""},
		{"", "", "@example.com", ""},
		{"", "jdoe@x", "jdoe@x@y", ""},
		{"", "ǰdoe", "jdoe@example.com", ""},
		{"pre-{local}", "K", "pre-k", "pre-\u212a"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	f.Fuzz(func(t *testing.T, rule, account, userName, email string) {
		u := storage.User{UserName: userName, Email: email}
		key := access.AccountKey(rule, account)
		byKey := key != "" && slices.Contains(access.UserKeys(rule, u), key)
		if got := access.Binds(rule, account, u); got != byKey {
			t.Fatalf("rule %q account %q user %q email %q: Binds %v, by key %v", rule, account, userName, email, got, byKey)
		}
	})
}
