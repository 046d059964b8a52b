package milter

import (
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

	mu    sync.Mutex
	conns map[*trackedConn]struct{}
	wg    sync.WaitGroup
}

func newTrackingListener(ln net.Listener, idle time.Duration) *trackingListener {
	return &trackingListener{Listener: ln, idle: idle, conns: make(map[*trackedConn]struct{})}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	return tc, nil
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

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Read(b []byte) (int, error) {
	if c.l.idle > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.l.idle))
	}
	return c.Conn.Read(b)
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		c.l.wg.Done()
	})
	return err
}
