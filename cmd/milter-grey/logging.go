package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"os"
	"strings"
	"sync"

	"github.com/milter-grey/milter-grey/config"
)

// newLogger builds the daemon's logger: text or JSON lines, to stderr or to
// syslog with syslog_facility (mail by default: where mail admins look).
// syslogAddr is for tests; "" means the local syslog daemon.
func newLogger(c *config.Config, syslogAddr string) (*slog.Logger, io.Closer, error) {
	level, err := config.ParseLevel(c.LogLevel)
	if err != nil {
		return nil, nil, err
	}
	var w io.Writer = os.Stderr
	var closer io.Closer = io.NopCloser(nil)
	opts := &slog.HandlerOptions{Level: level}
	if c.LogOutput == "syslog" {
		code, err := config.ParseFacility(c.SyslogFacility)
		if err != nil {
			return nil, nil, err
		}
		facility := syslog.Priority(code << 3) // as log/syslog's LOG_MAIL and the like
		network := ""
		if syslogAddr != "" {
			network = "unixgram"
		}
		sw, err := syslog.Dial(network, syslogAddr, facility|syslog.LOG_INFO, "milter-grey")
		if err != nil {
			return nil, nil, fmt.Errorf("syslog: %w", err)
		}
		sl := &syslogWriter{w: sw}
		w, closer = sl, sw
		// syslog stamps its own time; keep lines short.
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	var h slog.Handler
	if strings.EqualFold(c.LogFormat, "json") {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	if sl, ok := w.(*syslogWriter); ok {
		h = &syslogHandler{Handler: h, w: sl}
	}
	return slog.New(h), closer, nil
}

// syslogWriter sends each formatted line with the severity of the record
// being written, so that syslog filters on priority work.
type syslogWriter struct {
	w     *syslog.Writer
	mu    sync.Mutex
	level slog.Level
}

func (s *syslogWriter) Write(b []byte) (int, error) {
	msg := strings.TrimSuffix(string(b), "\n")
	var err error
	switch {
	case s.level >= slog.LevelError:
		err = s.w.Err(msg)
	case s.level >= slog.LevelWarn:
		err = s.w.Warning(msg)
	case s.level >= slog.LevelInfo:
		err = s.w.Info(msg)
	default:
		err = s.w.Debug(msg)
	}
	return len(b), err
}

// syslogHandler tells its syslogWriter the level of each record.
type syslogHandler struct {
	slog.Handler
	w *syslogWriter
}

func (h *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	h.w.level = r.Level
	return h.Handler.Handle(ctx, r)
}

func (h *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &syslogHandler{Handler: h.Handler.WithAttrs(as), w: h.w}
}

func (h *syslogHandler) WithGroup(name string) slog.Handler {
	return &syslogHandler{Handler: h.Handler.WithGroup(name), w: h.w}
}
