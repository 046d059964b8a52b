package logwriter

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// dest is a destination that keeps each Write it receives. When gated,
// its first Write signals entered and waits for release.
type dest struct {
	mu     sync.Mutex
	writes []string
	err    error // returned by every Write while set

	gate     bool
	entered  chan struct{}
	release  chan struct{}
	released atomic.Bool
	once     sync.Once
}

func newGatedDest() *dest {
	return &dest{gate: true, entered: make(chan struct{}), release: make(chan struct{})}
}

// start returns a Writer on d, closed at the end of the test after
// opening d's gate: a failing test does not hang in Close.
func start(t *testing.T, d *dest, limit int) *Writer {
	w := New(d, limit)
	t.Cleanup(func() {
		if d.release != nil {
			d.open()
		}
		w.Close()
	})
	return w
}

func (d *dest) Write(p []byte) (int, error) {
	d.mu.Lock()
	gate := d.gate
	d.gate = false
	d.mu.Unlock()
	if gate {
		close(d.entered)
		<-d.release
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return 0, d.err
	}
	d.writes = append(d.writes, string(p))
	return len(p), nil
}

// open lets the gated first Write go on.
func (d *dest) open() {
	d.once.Do(func() {
		d.released.Store(true)
		close(d.release)
	})
}

func (d *dest) setErr(err error) {
	d.mu.Lock()
	d.err = err
	d.mu.Unlock()
}

func (d *dest) got() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.writes...)
}

func (d *dest) text() string { return strings.Join(d.got(), "") }

// wait fails the test if ch is not closed soon; the deadline only guards
// against a hang.
func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still waiting after 10s", what)
	}
}

// waitBlocked waits until n Writes are blocked at the limit.
func waitBlocked(t *testing.T, w *Writer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mu.Lock()
		got := w.waiting
		w.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Writes blocked at the limit, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func write(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

// Lines from many goroutines arrive whole, each goroutine's in its order,
// and no batch ends in the middle of a line.
func TestConcurrentWritersKeepLinesWholeAndInOrder(t *testing.T) {
	const writers, lines = 16, 2000
	const format = "writer=%02d line=%05d pad=%s\n"
	d := &dest{}
	w := New(d, 4096) // small: the limit is reached too
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for n := range lines {
				fmt.Fprintf(w, format, i, n, strings.Repeat("x", n%50))
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]int, writers)
	for _, batch := range d.got() {
		if !strings.HasSuffix(batch, "\n") {
			t.Fatalf("a batch ends mid-line: %q", batch[max(0, len(batch)-40):])
		}
		for _, line := range strings.SplitAfter(strings.TrimSuffix(batch, "\n"), "\n") {
			line = strings.TrimSuffix(line, "\n")
			var i int
			if _, err := fmt.Sscanf(line, "writer=%d ", &i); err != nil || i < 0 || i >= writers {
				t.Fatalf("line %q: no writer", line)
			}
			if want := fmt.Sprintf(format, i, next[i], strings.Repeat("x", next[i]%50)); line+"\n" != want {
				t.Fatalf("line %q, want %q", line, want)
			}
			next[i]++
		}
	}
	for i, n := range next {
		if n != lines {
			t.Errorf("writer %d: %d lines arrived, want %d", i, n, lines)
		}
	}
	t.Logf("%d lines in %d writes", writers*lines, len(d.got()))
}

// An idle Writer writes a line at once, with no Flush and no timer.
func TestIdleLineIsWrittenAtOnce(t *testing.T) {
	d := newGatedDest()
	w := start(t, d, 0)
	write(t, w, "alone\n")
	wait(t, d.entered, "the line reaching the destination without Flush")
	d.open()
}

// Lines that arrive while the destination is busy go out in one Write.
func TestBatchesLinesWhileDestinationBusy(t *testing.T) {
	d := newGatedDest()
	w := start(t, d, 0)
	write(t, w, "first\n")
	wait(t, d.entered, "the first line")
	// The goroutine is inside the first Write: these accumulate.
	for _, s := range []string{"second\n", "third\n", "fourth\n"} {
		write(t, w, s)
	}
	d.open()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := []string{"first\n", "second\nthird\nfourth\n"}
	if got := d.got(); !slices.Equal(got, want) {
		t.Errorf("destination writes %q, want %q", got, want)
	}
}

// Write copies the line: slog reuses its buffer as soon as Write returns.
func TestWriteCopiesTheLine(t *testing.T) {
	d := newGatedDest()
	w := start(t, d, 0)
	write(t, w, "first\n")
	wait(t, d.entered, "the first line")
	buf := []byte("second\n")
	write(t, w, string(buf))
	if _, err := w.Write(buf); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXXX\n")
	d.open()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := d.text(), "first\nsecond\nsecond\n"; got != want {
		t.Errorf("destination got %q, want %q", got, want)
	}
}

// At the limit, Write blocks until the destination takes the lines, and
// then goes on: nothing is dropped.
func TestBackpressureAtTheLimit(t *testing.T) {
	d := newGatedDest()
	w := start(t, d, 10)
	write(t, w, "aaaa\n")
	wait(t, d.entered, "the first line")
	write(t, w, "bbbb\n")
	write(t, w, "cccc\n") // 10 bytes pending: at the limit, not over
	returned := make(chan bool)
	go func() {
		w.Write([]byte("dddd\n"))
		returned <- d.released.Load()
	}()
	waitBlocked(t, w, 1)
	d.open()
	select {
	case released := <-returned:
		if !released {
			t.Error("Write over the limit returned while the destination was stuck")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Write over the limit still blocked after the destination resumed")
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := d.text(), "aaaa\nbbbb\ncccc\ndddd\n"; got != want {
		t.Errorf("destination got %q, want %q", got, want)
	}
}

// A line longer than the limit does not block forever.
func TestLineLongerThanTheLimit(t *testing.T) {
	d := &dest{}
	w := start(t, d, 8)
	long := strings.Repeat("z", 100) + "\n"
	write(t, w, "short\n")
	write(t, w, long)
	write(t, w, "short\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := d.text(), "short\n"+long+"short\n"; got != want {
		t.Errorf("destination got %q, want %q", got, want)
	}
}

// Flush returns once the lines written before it reached the destination.
func TestFlushWaitsForTheDestination(t *testing.T) {
	d := newGatedDest()
	w := start(t, d, 0)
	write(t, w, "one\n")
	wait(t, d.entered, "the first line")
	write(t, w, "two\n")
	flushed := make(chan string)
	go func() {
		w.Flush()
		flushed <- d.text()
	}()
	d.open()
	if got, want := <-flushed, "one\ntwo\n"; got != want {
		t.Errorf("at Flush's return the destination had %q, want %q", got, want)
	}
	if err := w.Flush(); err != nil {
		t.Errorf("Flush with nothing pending: %v", err)
	}
}

// Close writes what is pending and stops the goroutine; lines written
// after Close reach the destination before Write returns.
func TestCloseFlushesThenWritesGoThrough(t *testing.T) {
	d := newGatedDest()
	w := start(t, d, 0)
	write(t, w, "before\n")
	wait(t, d.entered, "the first line")
	write(t, w, "pending\n")
	closed := make(chan error)
	go func() { closed <- w.Close() }()
	d.open()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	wait(t, w.done, "the goroutine stopping")
	if got, want := d.text(), "before\npending\n"; got != want {
		t.Errorf("at Close's return the destination had %q, want %q", got, want)
	}
	write(t, w, "after\n")
	if got, want := d.got(), []string{"before\n", "pending\n", "after\n"}; !slices.Equal(got, want) {
		t.Errorf("after a Write following Close the destination had %q, want %q", got, want)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := w.Flush(); err != nil {
		t.Errorf("Flush after Close: %v", err)
	}
}

// A Write blocked at the limit when Close is called still reaches the
// destination.
func TestCloseWithWritesBlockedAtTheLimit(t *testing.T) {
	d := newGatedDest()
	w := start(t, d, 5)
	write(t, w, "aaaa\n")
	wait(t, d.entered, "the first line")
	write(t, w, "bbbb\n")
	var wg sync.WaitGroup
	wg.Go(func() { w.Write([]byte("cccc\n")) })
	waitBlocked(t, w, 1)
	closed := make(chan error)
	go func() { closed <- w.Close() }()
	d.open()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if got, want := d.text(), "aaaa\nbbbb\ncccc\n"; got != want {
		t.Errorf("destination got %q, want %q", got, want)
	}
}

// The destination's errors do not stop the Writer and are reported by
// Flush and Close: the first one, with a count.
func TestDestinationErrorsAreReported(t *testing.T) {
	for _, tc := range []struct {
		name string
		dst  func(*dest) io.Writer
		want error
	}{
		{"an error", func(d *dest) io.Writer { return d }, syscall.EIO},
		{"a short write", func(d *dest) io.Writer { return shortWriter{d} }, io.ErrShortWrite},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &dest{}
			d.setErr(tc.want)
			w := New(tc.dst(d), 0)
			defer w.Close()
			write(t, w, "lost\n") // queued: the error comes later
			err := w.Flush()
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "1 writes failed, 5 bytes lost") {
				t.Fatalf("Flush: %v, want %v with a count", err, tc.want)
			}
			d.setErr(nil)
			write(t, w, "kept\n")
			if err := w.Close(); !errors.Is(err, tc.want) {
				t.Errorf("Close: %v, want the first error again", err)
			}
			if got := d.text(); !strings.HasSuffix(got, "kept\n") {
				t.Errorf("after the destination recovered it got %q, want kept", got)
			}
		})
	}
}

func TestWriteAfterCloseReturnsTheDestinationError(t *testing.T) {
	d := &dest{}
	w := start(t, d, 0)
	w.Close()
	d.setErr(syscall.EPIPE)
	if _, err := w.Write([]byte("x\n")); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("Write after Close: %v, want EPIPE", err)
	}
	if err := w.Close(); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("Close: %v, want EPIPE recorded", err)
	}
}

// shortWriter writes nothing while its dest fails, without saying so.
type shortWriter struct{ d *dest }

func (s shortWriter) Write(p []byte) (int, error) {
	s.d.mu.Lock()
	failing := s.d.err != nil
	s.d.mu.Unlock()
	if failing {
		return 0, nil
	}
	return s.d.Write(p)
}
