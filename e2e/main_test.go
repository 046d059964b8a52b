package e2e

import (
	"fmt"
	"os"
	"testing"
)

// TestMain gives the run a work directory (the daemon is built there once,
// see buildDaemon) and removes it at the end.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "milter-grey-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	workDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
