package badgerstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// slogLogger adapts badger.Logger to slog, keeping WARNING and above:
// Badger logs every table open and compaction at INFO.
type slogLogger struct {
	l *slog.Logger
}

// newLogger returns the badger.Logger for l; nil l gives nil, which Badger
// takes as "log nothing".
func newLogger(l *slog.Logger) badger.Logger {
	if l == nil {
		return nil
	}
	return slogLogger{l.With("component", "badger")}
}

func (s slogLogger) Errorf(format string, args ...any) {
	s.log(slog.LevelError, format, args)
}

func (s slogLogger) Warningf(format string, args ...any) {
	s.log(slog.LevelWarn, format, args)
}

func (slogLogger) Infof(string, ...any)  {}
func (slogLogger) Debugf(string, ...any) {}

func (s slogLogger) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !s.l.Enabled(ctx, level) {
		return
	}
	// Badger's messages often end in a newline.
	s.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(format, args...)))
}
