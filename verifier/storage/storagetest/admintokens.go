package storagetest

import (
	"strings"
	"testing"

	"github.com/clearance/clearance/verifier/storage"
)

var adminTokenTests = []test{
	{"CreateListRevoke", testAdminTokens},
	{"Refused", testAdminTokensRefused},
}

func adminTokenAudit(action string) storage.AuditEvent {
	return storage.AuditEvent{At: t0, Actor: "cli", Action: action, Detail: action}
}

func testAdminTokens(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := storage.AdminToken{ID: "a", Name: "alice@example.com", Role: storage.AdminRoleAdmin, Hash: []byte{1, 2, 3}, CreatedAt: at(hour)}
	b := storage.AdminToken{ID: "b", Name: "bob@example.com", Role: storage.AdminRoleRead, Hash: []byte{4, 5, 6},
		CreatedAt: at(0), ExpiresAt: at(48 * hour)}
	for _, tok := range []storage.AdminToken{a, b} {
		must(t, s.CreateAdminToken(ctx, tok, adminTokenAudit("admin_token.create")))
	}
	got, err := s.GetAdminToken(ctx, "b")
	must(t, err)
	equal(t, "GetAdminToken", got, b)
	list, err := s.ListAdminTokens(ctx)
	must(t, err)
	equal(t, "ListAdminTokens", list, []storage.AdminToken{b, a})

	got, err = s.RevokeAdminToken(ctx, "a", at(2*hour), adminTokenAudit("admin_token.revoke"))
	must(t, err)
	a.RevokedAt = at(2 * hour)
	equal(t, "revoked token", got, a)
	// A second revocation keeps the first time.
	got, err = s.RevokeAdminToken(ctx, "a", at(3*hour), adminTokenAudit("admin_token.revoke"))
	must(t, err)
	equal(t, "revoked again", got, a)
	// A revoked token's name is free again: alice's next token.
	next := storage.AdminToken{ID: "c", Name: a.Name, Role: storage.AdminRoleRead, Hash: []byte{7}, CreatedAt: at(4 * hour)}
	must(t, s.CreateAdminToken(ctx, next, adminTokenAudit("admin_token.create")))
	if es := listAudit(t, s, ""); len(es) != 5 {
		t.Errorf("audit has %d events, want 5 (three creations, two revocations)", len(es))
	}
}

func testAdminTokensRefused(t *testing.T, s storage.Store) {
	ctx := t.Context()
	a := storage.AdminToken{ID: "a", Name: "alice", Role: storage.AdminRoleAdmin, Hash: []byte{1}, CreatedAt: at(0)}
	must(t, s.CreateAdminToken(ctx, a, adminTokenAudit("admin_token.create")))
	before := dumpOf(t, s)
	sameID := a
	sameID.Name = "carol"
	wantErr(t, s.CreateAdminToken(ctx, sameID, adminTokenAudit("admin_token.create")), storage.ErrAlreadyExists)
	sameName := a
	sameName.ID = "b"
	wantErr(t, s.CreateAdminToken(ctx, sameName, adminTokenAudit("admin_token.create")), storage.ErrAlreadyExists)
	// Names differing only in the case of their letters would read as one
	// person in the audit log.
	otherCase := a
	otherCase.ID, otherCase.Name = "c", "ALICE"
	wantErr(t, s.CreateAdminToken(ctx, otherCase, adminTokenAudit("admin_token.create")), storage.ErrAlreadyExists)
	for name, bad := range map[string]storage.AdminToken{
		"no id":       {Name: "x", Role: storage.AdminRoleRead, Hash: []byte{1}, CreatedAt: at(0)},
		"no name":     {ID: "x", Role: storage.AdminRoleRead, Hash: []byte{1}, CreatedAt: at(0)},
		"long name":   {ID: "x", Name: strings.Repeat("n", storage.MaxNameLen+1), Role: storage.AdminRoleRead, Hash: []byte{1}, CreatedAt: at(0)},
		"bad utf-8":   {ID: "x", Name: "a\xffb", Role: storage.AdminRoleRead, Hash: []byte{1}, CreatedAt: at(0)},
		"nul":         {ID: "x", Name: "a\x00b", Role: storage.AdminRoleRead, Hash: []byte{1}, CreatedAt: at(0)},
		"no role":     {ID: "x", Name: "x", Hash: []byte{1}, CreatedAt: at(0)},
		"other role":  {ID: "x", Name: "x", Role: "owner", Hash: []byte{1}, CreatedAt: at(0)},
		"no hash":     {ID: "x", Name: "x", Role: storage.AdminRoleRead, CreatedAt: at(0)},
		"role's case": {ID: "x", Name: "x", Role: "Admin", Hash: []byte{1}, CreatedAt: at(0)},
	} {
		if err := s.CreateAdminToken(ctx, bad, adminTokenAudit("admin_token.create")); err == nil {
			t.Errorf("%s: stored", name)
		}
	}
	_, err := s.RevokeAdminToken(ctx, "nope", at(hour), adminTokenAudit("admin_token.revoke"))
	wantErr(t, err, storage.ErrNotFound)
	_, err = s.RevokeAdminToken(ctx, "a\x00", at(hour), adminTokenAudit("admin_token.revoke"))
	wantErr(t, err, storage.ErrNotFound)
	_, err = s.GetAdminToken(ctx, "nope")
	wantErr(t, err, storage.ErrNotFound)
	_, err = s.GetAdminToken(ctx, "\xff")
	wantErr(t, err, storage.ErrNotFound)
	sameDump(t, "refused tokens", before, s)
}
