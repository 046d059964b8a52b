package redisstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// SetLibraryLogger sends go-redis's own messages to l (nil discards them)
// instead of the standard error, where go-redis writes them by default:
// one line per failed dial, so a Redis outage would flood the daemon's
// output. Dial failures go at DEBUG (every call that fails returns its
// error to the engine, which reports outages itself); everything else
// (the master a Sentinel named, Cluster reconfiguration) at INFO.
//
// The go-redis logger is process-wide, so this is for main to call once,
// before opening stores; Open does not call it.
func SetLibraryLogger(l *slog.Logger) {
	redis.SetLogger(libraryLogger{l})
}

// libraryLogger adapts go-redis's Printf logger to slog.
type libraryLogger struct {
	l *slog.Logger
}

func (g libraryLogger) Printf(ctx context.Context, format string, args ...any) {
	if g.l == nil {
		return
	}
	level := slog.LevelInfo
	if strings.Contains(format, "failed to dial") {
		level = slog.LevelDebug
	}
	if !g.l.Enabled(ctx, level) {
		return
	}
	g.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "go-redis")
}
