package redisstore

import (
	"log/slog"
	"os"
	"testing"
)

// TestMain routes go-redis's messages through slog as a daemon would,
// keeping only warnings: the dial failures of the outage tests (DEBUG) and
// the Sentinel's "new master" on every Open (INFO) would drown the output.
func TestMain(m *testing.M) {
	SetLibraryLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(m.Run())
}
