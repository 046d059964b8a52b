//go:build unix

package logwriter

import (
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
)

// The daemon's decision line, through slog's TextHandler to a real file
// descriptor (the write(2) is the cost in question), directly and through
// a Writer. idle writes each line alone (the Writer's worst case: a
// wake-up and a write per line, and the Flush's wait on top), serial logs
// from one goroutine without pause, parallel from GOMAXPROCS goroutines.
// Run with -cpu 1,2:
//
//	go test -run '^$' -bench . -benchmem -cpu 1,2 ./logwriter/
//
// writes/op is the destination's Write calls per line; cpu-ns/op the
// process's CPU time (user and system, every goroutine: the Writer's and
// the pipe's reader too) per line, where ns/op is wall time.
func BenchmarkTextHandler(b *testing.B) {
	for _, dst := range []struct {
		name string
		open func(b *testing.B) *os.File
	}{
		{"devnull", openDevNull},
		{"pipe", openDrainedPipe},
	} {
		for _, via := range []string{"direct", "logwriter"} {
			for _, load := range []string{"idle", "serial", "parallel"} {
				b.Run(dst.name+"/"+via+"/"+load, func(b *testing.B) {
					cw := &countingWriter{w: dst.open(b)}
					var w io.Writer = cw
					var lw *Writer
					if via == "logwriter" {
						lw = New(cw, 0)
						w = lw
					}
					log := slog.New(slog.NewTextHandler(w, nil))
					line := func() {
						log.Info("decision", "action", "greylist", "reason", "new",
							"client", "192.0.2.1", "from", "alice@example.org", "rcpt", "bob@example.net",
							"delay", "5m0s")
					}
					b.ReportAllocs()
					cpu0 := cpuTime(b)
					b.ResetTimer()
					switch load {
					case "idle":
						for b.Loop() {
							line()
							if lw != nil {
								lw.Flush()
							}
						}
					case "serial":
						for b.Loop() {
							line()
						}
					default:
						b.RunParallel(func(pb *testing.PB) {
							for pb.Next() {
								line()
							}
						})
					}
					if lw != nil {
						if err := lw.Close(); err != nil {
							b.Fatal(err)
						}
					}
					b.StopTimer()
					b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
					b.ReportMetric(float64(cw.n.Load())/float64(b.N), "writes/op")
				})
			}
		}
	}
}

// countingWriter counts the Write calls that reach the file.
type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.w.Write(p)
}

func openDevNull(b *testing.B) *os.File {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

// openDrainedPipe returns a pipe's writing end, its reader draining it as
// journald drains the daemon's stderr.
func openDrainedPipe(b *testing.B) *os.File {
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, r)
		r.Close()
		close(done)
	}()
	b.Cleanup(func() {
		w.Close()
		<-done
	})
	return w
}

// cpuTime is the process's user and system CPU time so far, in ns.
func cpuTime(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
