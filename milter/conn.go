package milter

import (
	"bufio"
	"net"
	"sync"
	"time"
)

// trackingListener counts the connections it hands out, so that Shutdown
// can wait for sessions to end, and gives each an idle deadline: go-milter
// itself reads without one, and an MTA that vanished must not pin a
// goroutine and a descriptor for ever.
type trackingListener struct {
	net.Listener
	idle time.Duration
	// slots bounds the open connections (nil: no bound). Accept waits for
	// a free slot, so a flood of connections queues in the kernel instead
	// of exhausting descriptors and memory; Close ends that wait.
	//
	// golang.org/x/net/netutil.LimitListener does the same, but its
	// connections free their slot in their own Close, apart from the
	// bookkeeping here. Kept in one place, a slot is freed only after its
	// connection has left the open count, so OpenSessions (a metric) never
	// exceeds max_sessions; and a connection refused because it arrived as
	// the listener closed gives its slot back on the same path, which a
	// test checks (len(slots)) rather than trusting a wrapper's internals.
	slots chan struct{}

	mu        sync.Mutex
	conns     map[*trackedConn]struct{}
	closed    bool // set by Close; no connection is tracked after it
	wg        sync.WaitGroup
	done      chan struct{} // closed by Close
	closeOnce sync.Once

	// accepted is the connection Accept returned last. go-milter asks for
	// the connection's session object right after Accept, in the same
	// goroutine, so the session can claim it (see Server.Serve).
	accepted *trackedConn
}

// Close stops accepting, also a waiting Accept. Once it returns, no new
// connection is counted, so Shutdown may wait on wg: a WaitGroup must
// not grow from zero while someone waits on it.
func (l *trackingListener) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.done)
	})
	return l.Listener.Close()
}

func newTrackingListener(ln net.Listener, idle time.Duration, max int) *trackingListener {
	l := &trackingListener{Listener: ln, idle: idle, conns: make(map[*trackedConn]struct{}), done: make(chan struct{})}
	if max > 0 {
		l.slots = make(chan struct{}, max)
	}
	return l
}

func (l *trackingListener) Accept() (net.Conn, error) {
	if l.slots != nil {
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		if l.slots != nil {
			<-l.slots
		}
		return nil, err
	}
	tc := l.track(c)
	if tc == nil {
		// The kernel handed over a connection as the listener closed:
		// the MTA sees it closed and applies its default action.
		c.Close()
		if l.slots != nil {
			<-l.slots
		}
		return nil, net.ErrClosed
	}
	l.accepted = tc
	return tc, nil
}

// track wraps an accepted connection and counts it open until its Close.
// It returns nil once the listener is closed.
func (l *trackingListener) track(c net.Conn) *trackedConn {
	tc := &trackedConn{Conn: c, l: l}
	tc.r = bufio.NewReaderSize(rawReader{tc}, readBufferSize)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.conns[tc] = struct{}{}
	l.wg.Add(1)
	return tc
}

// closeAll closes every open connection.
func (l *trackingListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.Conn.Close()
	}
}

// open is the number of connections not yet closed.
func (l *trackingListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// readBufferSize holds a few milter packets. go-milter reads each packet
// with two unbuffered reads (length, then data), and an MTA sends a
// command's macros and the command itself back to back: through this
// buffer, an RCPT costs one read(2) instead of four. A body chunk larger
// than the buffer is read straight into go-milter's slice.
const readBufferSize = 2048

type trackedConn struct {
	net.Conn
	l           *trackingListener
	r           *bufio.Reader // over rawReader: go-milter reads through it
	once        sync.Once
	deadlineSet time.Time // when the read deadline was last pushed back
	// onClose runs once when the connection is closed: an MTA that drops
	// the connection mid-message sends no abort, and the session must
	// still release what the message held.
	onClose func()
}

func (c *trackedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// rawReader reads the connection itself, for the buffer, with the idle
// deadline.
type rawReader struct{ c *trackedConn }

func (r rawReader) Read(b []byte) (int, error) {
	c := r.c
	if c.l.idle > 0 {
		// Pushing the deadline back once a second is precise enough for
		// an idle timeout of minutes, and spares a timer update on
		// every read (go-milter reads twice per packet).
		if now := time.Now(); now.Sub(c.deadlineSet) >= time.Second || c.l.idle < 10*time.Second {
			c.Conn.SetReadDeadline(now.Add(c.l.idle))
			c.deadlineSet = now
		}
	}
	return c.Conn.Read(b)
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		if c.l.slots != nil {
			<-c.l.slots
		}
		if c.onClose != nil {
			c.onClose()
		}
		c.l.wg.Done()
	})
	return err
}
