package storagetest

import (
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
)

var secretTests = []test{
	{"CreateGetList", testSecretCreateGetList},
	{"CreateDuplicate", testSecretCreateDuplicate},
	{"Revoke", testSecretRevoke},
	{"ListEmpty", testSecretListEmpty},
}

func testSecretCreateGetList(t *testing.T, s storage.Store) {
	ctx := t.Context()
	// Neither created nor named in age order: the list is oldest first.
	c := newSecret("c", at(0))
	a := newSecret("a", at(hour))
	b := newSecret("b", at(2*hour))
	b.Description = "" // optional
	for _, sec := range []storage.EnrollSecret{a, c, b} {
		must(t, s.CreateEnrollSecret(ctx, sec, storage.AuditEvent{
			At: sec.CreatedAt, Actor: "cli", Action: "secret.create", Detail: sec.ID,
		}))
	}
	for _, sec := range []storage.EnrollSecret{a, b, c} {
		equal(t, "GetEnrollSecret "+sec.ID, getSecret(t, s, sec.ID), sec)
	}
	list, err := s.ListEnrollSecrets(ctx)
	must(t, err)
	equal(t, "ListEnrollSecrets", list, []storage.EnrollSecret{c, a, b})
	if list[0].Revoked() {
		t.Error("new secret reports Revoked()")
	}

	audit := listAudit(t, s, "")
	if len(audit) != 3 {
		t.Fatalf("audit has %d events, want one per secret", len(audit))
	}
	equal(t, "newest audit event", audit[0], storage.AuditEvent{
		At: b.CreatedAt, Actor: "cli", Action: "secret.create", Detail: "b",
	})
}

func testSecretCreateDuplicate(t *testing.T, s storage.Store) {
	createSecret(t, s, "a")
	before := snapshot(t, s)
	dup := newSecret("a", at(hour))
	dup.Description = "another"
	dup.Hash = []byte("another hash")
	err := s.CreateEnrollSecret(t.Context(), dup, storage.AuditEvent{At: at(hour), Actor: "cli", Action: "secret.create"})
	wantErr(t, err, storage.ErrAlreadyExists)
	before.unchanged(t, s)
}

func testSecretRevoke(t *testing.T, s storage.Store) {
	ctx := t.Context()
	sec := createSecret(t, s, "a")
	other := createSecret(t, s, "b")
	audit := storage.AuditEvent{At: at(hour), Actor: "cli", Action: "secret.revoke", Detail: "a"}

	t.Run("unknown secret", func(t *testing.T) {
		before := snapshot(t, s)
		_, err := s.RevokeEnrollSecret(ctx, "no-such-secret", at(hour), audit)
		wantErr(t, err, storage.ErrNotFound)
		before.unchanged(t, s)
	})
	// Zero RevokedAt means "not revoked": it cannot record a revocation.
	t.Run("zero time", func(t *testing.T) {
		before := snapshot(t, s)
		_, err := s.RevokeEnrollSecret(ctx, "a", time.Time{}, audit)
		wantErr(t, err, nil)
		before.unchanged(t, s)
	})

	want := sec
	want.RevokedAt = at(hour)
	got, err := s.RevokeEnrollSecret(ctx, "a", at(hour), audit)
	must(t, err)
	equal(t, "revoked secret", got, want)
	equal(t, "GetEnrollSecret", getSecret(t, s, "a"), want)
	equal(t, "other secret", getSecret(t, s, "b"), other)
	if !got.Revoked() {
		t.Error("Revoked() = false")
	}
	wantNewestAudit(t, s, "revocation audit after two creations", "", 3, audit)

	// Idempotent: the first revocation time stands; the request is audited.
	got, err = s.RevokeEnrollSecret(ctx, "a", at(2*hour), storage.AuditEvent{At: at(2 * hour), Actor: "cli", Action: "secret.revoke"})
	must(t, err)
	equal(t, "revoked again", got, want)
	equal(t, "GetEnrollSecret after second revoke", getSecret(t, s, "a"), want)
	if a := listAudit(t, s, ""); len(a) != 4 {
		t.Errorf("audit has %d events after the second revoke, want 4", len(a))
	}
}

func testSecretListEmpty(t *testing.T, s storage.Store) {
	list, err := s.ListEnrollSecrets(t.Context())
	must(t, err)
	if len(list) != 0 {
		t.Errorf("ListEnrollSecrets on an empty store = %+v", list)
	}
}
