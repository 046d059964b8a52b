package milter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the reads that reach the connection itself.
type countingConn struct {
	net.Conn
	reads atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(b)
}

// readPacketLikeGoMilter reads one packet the way go-milter does: the
// length with binary.Read, then the rest with io.ReadFull.
func readPacketLikeGoMilter(t *testing.T, r io.Reader) []byte {
	t.Helper()
	var n uint32
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		t.Fatalf("read length: %v", err)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		t.Fatalf("read data: %v", err)
	}
	return data
}

func newTestTrackedConn(c net.Conn, idle time.Duration) *trackedConn {
	return newTrackingListener(nil, idle, 0).track(c)
}

// An MTA sends a command's macros and the command together; go-milter's
// four small reads must cost one read of the socket.
func TestTrackedConnBuffersReads(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	cc := &countingConn{Conn: server}
	tc := newTestTrackedConn(cc, time.Minute)
	defer tc.Close()

	macros := packet('D', []byte("R\x00{rcpt_addr}\x00bob@example.org\x00"))
	rcpt := packet('R', []byte("<bob@example.org>\x00"))
	go client.Write(append(append([]byte{}, macros...), rcpt...))

	if got := readPacketLikeGoMilter(t, tc); !bytes.Equal(got, macros[4:]) {
		t.Errorf("first packet = %q, want %q", got, macros[4:])
	}
	if got := readPacketLikeGoMilter(t, tc); !bytes.Equal(got, rcpt[4:]) {
		t.Errorf("second packet = %q, want %q", got, rcpt[4:])
	}
	if n := cc.reads.Load(); n != 1 {
		t.Errorf("socket reads = %d for two packets sent together, want 1", n)
	}
}

// Packets that arrive a byte at a time, and a body chunk larger than the
// buffer, come out whole and in order.
func TestTrackedConnFragmentsAndLargePackets(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	tc := newTestTrackedConn(server, time.Minute)
	defer tc.Close()

	small := packet('H', []byte("Subject\x00hello\x00"))
	large := packet('B', bytes.Repeat([]byte("x"), 3*readBufferSize+17))
	go func() {
		for _, b := range small {
			client.Write([]byte{b})
		}
		client.Write(large)
	}()
	if got := readPacketLikeGoMilter(t, tc); !bytes.Equal(got, small[4:]) {
		t.Errorf("fragmented packet = %q, want %q", got, small[4:])
	}
	if got := readPacketLikeGoMilter(t, tc); !bytes.Equal(got, large[4:]) {
		t.Errorf("large packet: got %d bytes, want %d", len(got), len(large)-4)
	}
}

// The idle deadline still applies through the buffer.
func TestTrackedConnIdleDeadline(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	tc := newTestTrackedConn(server, 50*time.Millisecond)
	defer tc.Close()
	var b [4]byte
	_, err := tc.Read(b[:])
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read from a silent peer: %v, want a timeout", err)
	}
}

// lateListener hands over a connection after Close has been called, as
// the kernel may when a connection completes while the daemon shuts down.
type lateListener struct {
	net.Listener
	entered chan struct{} // Accept is waiting
	conn    chan net.Conn
}

func (l *lateListener) Accept() (net.Conn, error) {
	close(l.entered)
	return <-l.conn, nil
}

func (l *lateListener) Close() error { return nil }

// A connection that arrives as the listener closes is closed, not
// counted: Shutdown waits on the count, and must not see it grow from
// zero.
func TestConnectionAcceptedAfterCloseIsRefused(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	ll := &lateListener{entered: make(chan struct{}), conn: make(chan net.Conn)}
	l := newTrackingListener(ll, time.Minute, 1)
	type accepted struct {
		c   net.Conn
		err error
	}
	res := make(chan accepted)
	go func() {
		c, err := l.Accept()
		res <- accepted{c, err}
	}()
	<-ll.entered
	l.Close()
	ll.conn <- server
	r := <-res
	if !errors.Is(r.err, net.ErrClosed) || r.c != nil {
		t.Fatalf("Accept after Close = %v, %v; want nil, net.ErrClosed", r.c, r.err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("client read = %v, want EOF: the connection should be closed", err)
	}
	if n := l.open(); n != 0 {
		t.Errorf("%d connections counted open", n)
	}
	if n := len(l.slots); n != 0 {
		t.Errorf("%d session slots still taken", n)
	}
	l.wg.Wait() // returns at once: nothing was counted
}
