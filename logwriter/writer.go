// Package logwriter batches log lines on their way to a stream: Write
// copies the line and returns, and one goroutine writes everything that
// accumulated meanwhile in a single Write call (group commit).
//
// It is for streams where a write(2) per line is a cost worth sharing,
// such as stderr under journald. It is not for destinations
// where each Write is a message of its own (syslog datagrams): batching
// would merge them.
package logwriter

import (
	"fmt"
	"io"
	"sync"
)

// DefaultLimit is the bound on the bytes waiting for the destination
// when New is given none: some four thousand decision lines.
const DefaultLimit = 1 << 20

// Writer is an io.Writer that hands its lines to a goroutine, which
// writes them to the destination in batches. When idle, a line is written
// at once; while the destination is busy, lines accumulate and go out
// together. Lines are never split or reordered: each Write reaches the
// destination whole, after those that returned before it started.
//
// Close must be called before the process exits, or the last lines may
// be lost.
type Writer struct {
	dst   io.Writer
	limit int
	wake  chan struct{} // cap 1: there are pending bytes, or Close was called
	done  chan struct{} // closed when the goroutine has returned

	mu      sync.Mutex
	cond    sync.Cond // broadcast when a batch is written and when the goroutine stops
	pending []byte    // lines waiting for the goroutine
	spare   []byte    // the previous batch's buffer, for the next pending
	// accepted counts the bytes Write queued, written those the
	// goroutine handed to dst (with or without an error): Flush waits for
	// written to reach accepted.
	accepted, written uint64
	waiting           int  // Writes blocked at the limit
	closing           bool // Close was called
	stopped           bool // the goroutine has returned: Write is synchronous

	failures int    // failed Write calls to dst
	lost     uint64 // bytes not written because of them
	firstErr error
}

// New returns a Writer on dst and starts its goroutine. limit bounds the
// bytes waiting for dst: a Write that would exceed it blocks until dst
// has taken the earlier lines, as a synchronous write would when dst is
// slow. A line longer than limit is taken alone. limit <= 0 means
// DefaultLimit.
//
// dst is only ever written by one goroutine at a time.
func New(dst io.Writer, limit int) *Writer {
	if limit <= 0 {
		limit = DefaultLimit
	}
	w := &Writer{
		dst:   dst,
		limit: limit,
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	w.cond.L = &w.mu
	go w.run()
	return w
}

// Write queues a copy of p and returns len(p), nil: the destination's
// errors come later, from Flush and Close. After Close, Write writes to
// the destination itself and returns its result.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// The length test lets a line longer than limit through alone,
	// rather than block forever.
	for !w.stopped && len(w.pending) > 0 && len(w.pending)+len(p) > w.limit {
		w.waiting++
		w.cond.Wait()
		w.waiting--
	}
	if w.stopped {
		// Under the lock: writes after Close stay one at a time.
		n, err := w.dst.Write(p)
		if err == nil && n < len(p) {
			err = io.ErrShortWrite
		}
		if err != nil {
			w.fail(err, len(p)-n)
		}
		return n, err
	}
	w.pending = append(w.pending, p...)
	w.accepted += uint64(len(p))
	select {
	case w.wake <- struct{}{}:
	default: // a wake-up is already due
	}
	return len(p), nil
}

// run writes the pending lines until Close.
func (w *Writer) run() {
	defer close(w.done)
	for {
		<-w.wake
		w.mu.Lock()
		for len(w.pending) > 0 {
			batch, end := w.pending, w.accepted
			w.pending, w.spare = w.spare[:0], nil
			w.mu.Unlock()
			n, err := w.dst.Write(batch)
			if err == nil && n < len(batch) {
				err = io.ErrShortWrite
			}
			w.mu.Lock()
			if err != nil {
				// Not retried: the destination's errors (EPIPE, EIO,
				// ENOSPC) do not go away by asking again, and retrying
				// would block the daemon on its log.
				w.fail(err, len(batch)-n)
			}
			// A buffer grown by one huge line is not kept.
			if cap(batch) <= 2*w.limit {
				w.spare = batch[:0]
			}
			w.written = end
			w.cond.Broadcast()
		}
		// pending is empty and checked under the same lock: a Write that
		// queued before this point was written, any later one sees stopped.
		if w.closing {
			w.stopped = true
			w.cond.Broadcast()
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
	}
}

// fail records a failed write of the destination; w.mu is held.
func (w *Writer) fail(err error, lost int) {
	if w.failures == 0 {
		w.firstErr = err
	}
	w.failures++
	w.lost += uint64(lost)
}

// errLocked reports the destination's failures so far; w.mu is held.
func (w *Writer) errLocked() error {
	if w.failures == 0 {
		return nil
	}
	return fmt.Errorf("logwriter: %d writes failed, %d bytes lost; first error: %w", w.failures, w.lost, w.firstErr)
}

// Flush waits until every line written before it was handed to the
// destination. It returns an error if any write of the destination has
// failed so far (the first one, wrapped, with a count), and nil otherwise.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	// Once stopped, everything queued was written.
	for target := w.accepted; w.written < target && !w.stopped; {
		w.cond.Wait()
	}
	return w.errLocked()
}

// Close flushes and stops the goroutine; it does not close the
// destination. Writes after Close go straight to the destination. Close
// returns what Flush would, and may be called more than once.
func (w *Writer) Close() error {
	w.mu.Lock()
	if !w.closing {
		w.closing = true
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	w.mu.Unlock()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.errLocked()
}
