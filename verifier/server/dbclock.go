package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/clearance/clearance/pkg/logsample"
	"github.com/clearance/clearance/verifier/storage"
)

// MaxDatabaseSkew is how far a verifier's clock may be from the database
// server's before it says so. What replicas share expires by each one's
// clock (a request ID is remembered a minute past the last moment any
// replica could accept it, a challenge and a grace period end by the clock
// of the replica that reads them), so two replicas must agree within a
// minute: each within half of it of the database.
const MaxDatabaseSkew = 30 * time.Second

// databaseSkewLogEvery spaces the error line while the clocks disagree.
const databaseSkewLogEvery = time.Hour

// databaseSkew measures how far the local clock is ahead of the
// database's, taking the local reading halfway through the round trip.
func databaseSkew(ctx context.Context, db storage.DatabaseClock, now func() time.Time) (time.Duration, error) {
	before := now()
	at, err := db.DatabaseTime(ctx)
	if err != nil {
		return 0, err
	}
	after := now()
	return before.Add(after.Sub(before) / 2).Sub(at), nil
}

// checkDatabaseClock measures the skew, sets its gauge and logs an error
// (at most once per databaseSkewLogEvery) while it is over
// MaxDatabaseSkew. A store without a database server of its own (SQLite)
// is not measured.
func (s *Server) checkDatabaseClock(ctx context.Context, log *slog.Logger, sample *logsample.Sample) {
	db, ok := s.Store.(storage.DatabaseClock)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	skew, err := databaseSkew(ctx, db, time.Now)
	if err != nil {
		log.Warn("reading the database's clock failed", "err", err)
		return
	}
	s.Metrics.DatabaseClockSkew(skew)
	if skew.Abs() <= MaxDatabaseSkew {
		return
	}
	if ok, skipped := sample.Take(time.Now()); ok {
		log.Error("this verifier's clock is not the database's: replicas must agree within a minute on what has expired (request IDs, challenges, grace periods); synchronise every replica's and the database server's clock (NTP)",
			"skew", skew.Round(time.Millisecond).String(), "max", MaxDatabaseSkew.String(), "others_not_logged", skipped)
	}
}
