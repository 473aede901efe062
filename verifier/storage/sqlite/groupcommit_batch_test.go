package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/clearance/clearance/verifier/storage"
	"github.com/clearance/clearance/verifier/storage/sqlstore"
)

// A savepoint statement of the group commit can fail when SQLite has rolled
// the whole transaction back under it, as it may on SQLITE_FULL,
// SQLITE_IOERR or SQLITE_NOMEM. The batch then ends; every call in it must
// be answered, those queued behind the failing one included. A sign-in
// left waiting answers only when its browser gives up, and then as
// storage_unavailable.
func TestGroupCommitAnswersEveryCallWhenASavepointFails(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "clearance.db"))
	release := holdWriter(t, s)
	first := make(chan error, 1)
	go func() {
		first <- s.reports.do(t.Context(), false, func(ctx context.Context, tx *sqlstore.Tx) error {
			// What SQLite does itself on some I/O errors.
			if _, err := tx.ExecContext(ctx, "ROLLBACK"); err != nil {
				return err
			}
			return errors.New("disk I/O error")
		})
	}()
	// The writer takes it from the queue and waits for the lock.
	time.Sleep(100 * time.Millisecond)
	const behind = 3
	later := make(chan error, behind)
	for i := range behind {
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			later <- s.StartSignInChallenge(ctx, "https://okta.example", fmt.Sprint("id-", i), t0.Add(time.Hour), storage.SignInChallenge{
				ChallengeHash: bytes.Repeat([]byte{byte(i + 1)}, 32), BrowserHash: bytes.Repeat([]byte{9}, 32),
				Username: "ada@example.com", Request: []byte("<r/>"), CreatedAt: t0, ExpiresAt: t0.Add(2 * time.Minute),
			})
		}()
	}
	// The first has left the queue for the writer, which waits for the lock.
	deadline := time.Now().Add(5 * time.Second)
	for len(s.reports.queue) < behind && len(later) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if len(later) != 0 {
		t.Fatalf("a start was answered before the writer ran: %v", <-later)
	}
	release()
	if err := <-first; err == nil {
		t.Fatal("the failing call succeeded")
	}
	for range behind {
		if err := <-later; errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("a sign-in start queued behind the failed savepoint got no answer in 5 s: %v", err)
		}
	}
}
