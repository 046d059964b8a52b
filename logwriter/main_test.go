package logwriter

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run if a Writer's goroutine outlives the tests: every
// test closes its Writers, and Close stops the goroutine.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if n := runningWriters(); n > 0 {
			fmt.Fprintf(os.Stderr, "%d Writer goroutines still running after the tests\n", n)
			code = 1
		}
	}
	os.Exit(code)
}

// runningWriters counts the goroutines in Writer.run; a goroutine that
// has just closed done may take a moment to end.
func runningWriters() int {
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		n := strings.Count(string(buf), "logwriter.(*Writer).run(")
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}
