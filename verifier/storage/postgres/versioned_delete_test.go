package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/clearance/clearance/internal/testkit/testpg"
	"github.com/clearance/clearance/verifier/storage"
)

// A delete at a version on PostgreSQL checks it with a row lock held to
// the commit: a SCIM takeover committing in between (here: holding the
// row when the delete arrives) makes it ErrStale, and the record stays.
func TestVersionedDeleteWaitsForUpdate(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	s := open(t, dsn)
	ctx := context.Background()
	u, err := s.CreateUser(ctx, storage.User{ID: "00uA", UserName: "carol@example.com", ExternalID: "00uA", Active: true,
		Source: storage.SourceOktaAPI, Resource: []byte(`{}`), CreatedAt: time.Now(), UpdatedAt: time.Now()}, storage.AuditEvent{Actor: "okta-api-sync"})
	if err != nil {
		t.Fatal(err)
	}
	// A SCIM takeover in flight: row updated and locked, not yet committed.
	c := connect(t, ctx, dsn)
	defer c.Close(ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE directory_users SET source = 'scim', version = version + 1 WHERE id = '00uA'`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- s.DeleteUser(ctx, "00uA", u.Version, storage.AuditEvent{Actor: "okta-api-sync", Action: "user.delete"})
	}()
	time.Sleep(500 * time.Millisecond) // the delete has read the old version and waits on the row lock
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	err = <-done
	if _, gerr := s.GetUser(ctx, "00uA"); errors.Is(gerr, storage.ErrNotFound) {
		t.Errorf("a delete at version %d removed the record SCIM took over at version %d (delete returned %v)", u.Version, u.Version+1, err)
	}
	if !errors.Is(err, storage.ErrStale) {
		t.Errorf("the delete returned %v, want ErrStale", err)
	}
}
