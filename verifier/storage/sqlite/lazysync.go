package sqlite

import (
	"context"
	"time"
)

// syncAfter returns once an fsync of the WAL that began after the instant
// after has returned: every write whose commit returned before after is
// then durable. A caller that finds one running waits for it, and if it
// began after after, is answered by it: sign-ins whose decisions were
// committed while the one before was signing share an fsync. It returns
// the writer's sticky fsync error when a new fsync is needed and cannot be
// had, and ctx's error if ctx ends first.
//
// These fsyncs are the writer's own (sync): a failure stops the store's
// writes as the syncer's would. They run beside the syncer's, which keeps
// answering durable batches.
func (w *reportWriter) syncAfter(ctx context.Context, after time.Time) error {
	select {
	case w.lazySync <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-w.lazySync }()
	if w.lazySyncedFrom.After(after) {
		return nil
	}
	began := time.Now()
	if err := w.sync(); err != nil {
		return err
	}
	w.lazySyncedFrom = began
	return nil
}
