package oktaapi_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/clearance/clearance/internal/oktaorg"
	"github.com/clearance/clearance/verifier/oktaapi"
)

// orgWithPeople fills org with n users and groups g00..g19, user i in
// group i%20.
func orgWithPeople(org *oktaorg.Org, n int) {
	addUsers(org, n)
	for g := range 20 {
		org.PutGroup(fmt.Sprintf("00g%02d", g), fmt.Sprintf("group %d", g))
	}
	for i := range n {
		org.SetMember(fmt.Sprintf("00g%02d", i%20), fmt.Sprintf("00u%06d", i), true)
	}
}

func TestSyncOneFullCycle(t *testing.T) {
	t.Parallel()
	org, c, _ := newOrg(t)
	orgWithPeople(org, 300)
	store := openStore(t, t.TempDir())
	defer store.Close()
	s := &oktaapi.Syncer{Client: c, Dir: &oktaapi.StoreDirectory{Store: store}, State: store}
	ctx := context.Background()
	if _, err := s.Full(ctx); err != nil {
		t.Fatal(err)
	}
	org.SetUserStatus("00u000010", "DEPROVISIONED")
	org.SetMember("00g00", "00u000020", false)
	org.SetUserStatus("00u000030", "DEPROVISIONED")
	org.DeleteUser("00u000030")
	r, err := s.Full(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Deactivated != 1 || r.Deleted != 1 || r.Memberships != 1 {
		t.Errorf("one full cycle: %+v, want the deactivation, the deletion and the membership change", r)
	}
	if userByName(t, store, "user10@example.com").Active {
		t.Error("user10 is still active")
	}
	if g := groupNames(t, store, "00u000020"); len(g) != 0 {
		t.Errorf("00u000020 is still in %v", g)
	}
}
