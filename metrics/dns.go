package metrics

import (
	"context"
	"net"
	"sync"
	"time"
)

// InstrumentResolver makes r observe each DNS exchange in
// milter_grey_dns_seconds: Go's resolver opens a connection per query (and
// per retry), so the time from dialling to closing it is the time that
// query took, timeouts included. r is changed in place and returned.
// Lookups that Go hands to the C library (host lookups with the system
// resolver and cgo) do not dial through r and are not observed.
func (m *Metrics) InstrumentResolver(r *net.Resolver) *net.Resolver {
	dial := r.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	r.Dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		start := time.Now()
		c, err := dial(ctx, network, address)
		if err != nil {
			m.dnsSeconds.Observe(time.Since(start).Seconds())
			return nil, err
		}
		done := func() { m.dnsSeconds.Observe(time.Since(start).Seconds()) }
		tc := &timedConn{Conn: c, done: done}
		// Go's resolver frames messages for UDP only when the connection
		// is a net.PacketConn: the wrapper must stay one.
		if pc, ok := c.(net.PacketConn); ok {
			return &timedPacketConn{timedConn: tc, pc: pc}, nil
		}
		return tc, nil
	}
	return r
}

type timedConn struct {
	net.Conn
	once sync.Once
	done func()
}

func (c *timedConn) Close() error {
	c.once.Do(c.done)
	return c.Conn.Close()
}

type timedPacketConn struct {
	*timedConn
	pc net.PacketConn
}

func (c *timedPacketConn) ReadFrom(p []byte) (int, net.Addr, error) { return c.pc.ReadFrom(p) }
func (c *timedPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	return c.pc.WriteTo(p, addr)
}
