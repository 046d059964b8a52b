// Package ctxconn ties a network connection to a context: the connection
// is closed when the context ends. Go's DNS resolver honours a lookup's
// context only through the socket deadline, so without this a cancelled
// lookup waits for the per-try timeout of /etc/resolv.conf; auth's
// resolver and the test DNS server's resolver (testutil/testdns) dial
// through CloseOnDone.
package ctxconn

import (
	"context"
	"net"
)

// CloseOnDone returns c, closed when ctx is done. Closing the returned
// connection stops watching ctx.
//
// The wrapper of a UDP connection is still a net.PacketConn: Go's resolver
// chooses datagram framing by that type assertion, and would otherwise send
// TCP-style length-prefixed messages over UDP.
func CloseOnDone(ctx context.Context, c net.Conn) net.Conn {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	if uc, ok := c.(*net.UDPConn); ok {
		return &stopPacketConn{UDPConn: uc, stop: stop}
	}
	return &stopConn{Conn: c, stop: stop}
}

// stopConn releases its context watch when closed.
type stopConn struct {
	net.Conn
	stop func() bool
}

func (c *stopConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// stopPacketConn is stopConn for UDP, keeping the net.PacketConn methods.
type stopPacketConn struct {
	*net.UDPConn
	stop func() bool
}

func (c *stopPacketConn) Close() error {
	c.stop()
	return c.UDPConn.Close()
}
