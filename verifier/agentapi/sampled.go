package agentapi

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/clearance/clearance/pkg/logsample"
)

// sampledLog logs a line that any client can cause as often as it likes
// (a Connect without a certificate) at warn at most once per
// refusedLogEvery, saying how many were left out, and each at debug (logAt:
// at another level than warn). The zero value is ready.
type sampledLog struct {
	once   sync.Once
	sample logsample.Sample
}

func (sl *sampledLog) log(l *slog.Logger, now time.Time, msg string, attrs ...any) {
	sl.logAt(l, slog.LevelWarn, now, msg, attrs...)
}

// logAt is log at level rather than warn.
func (sl *sampledLog) logAt(l *slog.Logger, level slog.Level, now time.Time, msg string, attrs ...any) {
	sl.once.Do(func() { sl.sample.Every = refusedLogEvery })
	if ok, skipped := sl.sample.Take(now); ok {
		l.Log(context.Background(), level, msg, append(attrs, "others_not_logged", skipped)...)
		return
	}
	l.Debug(msg, attrs...)
}
