package sqlite

import "context"

// mark is how many batches the writer has committed. Read once a write
// has been answered, it counts that write's commit: an fsync that began
// when the writer had committed at least mark batches covers the write.
func (w *reportWriter) mark() int64 { return w.commits.Load() }

// syncAfter returns once an fsync of the WAL that began when the writer
// had committed at least mark batches has returned nil: every write whose
// commit mark counts is then durable. A caller that finds such an fsync
// already done, by the syncer or another caller, returns at once; one that
// finds an fsync running waits for it, and is answered by it if it began
// late enough: sign-ins whose decisions were committed while the one
// before was signing share an fsync. It returns the writer's sticky fsync
// error when a new fsync is needed and cannot be had, ErrClosed once the
// writer is stopping, and ctx's error if ctx ends first.
func (w *reportWriter) syncAfter(ctx context.Context, mark int64) error {
	select {
	case w.syncLock <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-w.stop:
		return ErrClosed
	}
	defer func() { <-w.syncLock }()
	if w.syncedThrough >= mark {
		return nil
	}
	select {
	case <-w.stop:
		// The WAL file may be closed under the fsync: not a disk failure.
		return ErrClosed
	default:
	}
	return w.syncHeld()
}
