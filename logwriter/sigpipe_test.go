//go:build unix

package logwriter

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// A process whose stderr is a broken pipe dies of SIGPIPE at its next log
// line (Go's rule for fds 1 and 2), as it did with synchronous writes: the
// Writer's goroutine changes nothing to that. The test runs itself as the
// child, with stderr a pipe whose reader is gone.
func TestBrokenStderrPipeKillsAsBefore(t *testing.T) {
	if mode := os.Getenv("LOGWRITER_SIGPIPE_CHILD"); mode != "" {
		var w io.Writer = os.Stderr
		if mode == "logwriter" {
			lw := New(os.Stderr, 0)
			defer lw.Close()
			w = lw
		}
		for range 10 {
			w.Write([]byte("level=INFO msg=decision\n"))
		}
		if lw, ok := w.(*Writer); ok {
			lw.Flush()
		}
		os.Stdout.WriteString("survived\n")
		return
	}
	for _, mode := range []string{"direct", "logwriter"} {
		t.Run(mode, func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			r.Close()
			defer w.Close()
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenStderrPipeKillsAsBefore$")
			cmd.Env = append(os.Environ(), "LOGWRITER_SIGPIPE_CHILD="+mode)
			cmd.Stderr = w
			out, err := cmd.Output()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("child: %v, output %q; want it killed by SIGPIPE", err, out)
			}
			ws, ok := exit.Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGPIPE {
				t.Errorf("child: %v, output %q; want it killed by SIGPIPE", err, out)
			}
		})
	}
}
