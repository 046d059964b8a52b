package ctxconn

import (
	"context"
	"errors"
	"net"
	"testing"
)

func TestUDPStaysAPacketConn(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	w := CloseOnDone(context.Background(), c)
	defer w.Close()
	if _, ok := w.(net.PacketConn); !ok {
		t.Errorf("CloseOnDone of a UDP connection is a %T, not a net.PacketConn", w)
	}
}

// A read blocked on the connection ends when the context does.
func TestClosedWhenTheContextEnds(t *testing.T) {
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			var addr string
			switch network {
			case "tcp":
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				addr = ln.Addr().String()
			case "udp":
				pc, err := net.ListenPacket("udp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer pc.Close()
				addr = pc.LocalAddr().String()
			}
			c, err := net.Dial(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			w := CloseOnDone(ctx, c)
			done := make(chan error)
			go func() {
				_, err := w.Read(make([]byte, 1))
				done <- err
			}()
			cancel()
			if err := <-done; !errors.Is(err, net.ErrClosed) {
				t.Errorf("Read after the context ended = %v, want net.ErrClosed", err)
			}
		})
	}
}
