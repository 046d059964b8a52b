package milter

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/greylist/badgerstore"
)

// hostileServer serves a milter with short idle timeouts for tests that
// misbehave on purpose; it returns the address and the server.
func hostileServer(t testing.TB, idle time.Duration, maxSessions int) (string, *Server) {
	t.Helper()
	store, err := badgerstore.Open("", badgerstore.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Config{Engine: greylist.New(store, greylist.Config{}), IdleTimeout: idle, MaxSessions: maxSessions})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		store.Close()
	})
	return ln.Addr().String(), srv
}

// packet frames one milter command.
func packet(code byte, data ...[]byte) []byte {
	body := append([]byte{code}, bytes.Join(data, nil)...)
	b := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	return append(b, body...)
}

// optneg is the MTA's option negotiation, as Postfix sends it.
func optneg() []byte {
	var d []byte
	d = binary.BigEndian.AppendUint32(d, 6)
	d = binary.BigEndian.AppendUint32(d, 0x1ff)
	d = binary.BigEndian.AppendUint32(d, 0x1fffff)
	return packet('O', d)
}

// closedWithin reports whether the server closed c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	return err == nil // EOF: closed by the server; a timeout is an error
}

// waitSessions polls until no session is open.
func waitSessions(t *testing.T, srv *Server) {
	t.Helper()
	for i := 0; i < 500 && srv.OpenSessions() > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := srv.OpenSessions(); n != 0 {
		t.Fatalf("%d sessions still open", n)
	}
}

func TestHostileClients(t *testing.T) {
	addr, srv := hostileServer(t, 300*time.Millisecond, 0)
	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	t.Run("a connection that sends nothing is closed after the idle timeout", func(t *testing.T) {
		c := dial(t)
		if !closedWithin(c, 10*time.Second) {
			t.Fatal("silent connection still open")
		}
		waitSessions(t, srv)
	})
	t.Run("half a packet is closed after the idle timeout", func(t *testing.T) {
		c := dial(t)
		c.Write([]byte{0, 0}) // half a length
		if !closedWithin(c, 10*time.Second) {
			t.Fatal("connection with half a packet still open")
		}
		waitSessions(t, srv)
	})
	t.Run("a 1 GiB packet length is refused before any allocation", func(t *testing.T) {
		c := dial(t)
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		c.Write(binary.BigEndian.AppendUint32(nil, 1<<30))
		if !closedWithin(c, 10*time.Second) {
			t.Fatal("connection announcing 1 GiB still open")
		}
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if grew := int64(after.TotalAlloc) - int64(before.TotalAlloc); grew > 64<<20 {
			t.Fatalf("allocated %d MiB for a refused packet", grew>>20)
		}
	})
	t.Run("a message that never ends is closed after the idle timeout", func(t *testing.T) {
		c := dial(t)
		c.Write(optneg())
		c.Write(packet('C', []byte("x\x004"), []byte{0, 25}, []byte("192.0.2.9\x00")))
		c.Write(packet('M', []byte("<a@example.com>\x00")))
		c.Write(packet('R', []byte("<b@example.net>\x00")))
		c.Write(packet('T'))
		c.Write(packet('L', []byte("Subject\x00x\x00")))
		if !closedWithin(c, 10*time.Second) {
			t.Fatal("unfinished message still open")
		}
		waitSessions(t, srv)
	})
	t.Run("endless headers are cut off", func(t *testing.T) {
		c := dial(t)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		go io.Copy(io.Discard, c)
		c.Write(optneg())
		c.Write(packet('C', []byte("x\x004"), []byte{0, 25}, []byte("192.0.2.9\x00")))
		c.Write(packet('M', []byte("<>\x00")))
		c.Write(packet('R', []byte("<b@example.net>\x00")))
		value := strings.Repeat("v", 64<<10)
		var err error
		for i := 0; i < 2*maxHeaderBytes/len(value) && err == nil; i++ {
			_, err = c.Write(packet('L', []byte("X-Junk\x00"+value+"\x00")))
		}
		waitSessions(t, srv)
	})
}

func TestConnectionFloodLeavesNoGoroutines(t *testing.T) {
	addr, srv := hostileServer(t, time.Second, 64)
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return // the backlog may overflow: that is the point
			}
			c.Write(optneg())
			c.Close()
		}()
	}
	wg.Wait()
	waitSessions(t, srv)
	for i := 0; i < 200 && runtime.NumGoroutine() > before+2; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Fatalf("%d goroutines after the flood, %d before", n, before)
	}
}

// FuzzSession feeds arbitrary bytes, after a valid negotiation, to a real
// milter server over a socket: it must never panic (go-milter would
// recover and log it, so the log is watched) and must keep serving.
func FuzzSession(f *testing.F) {
	seed := func(ps ...[]byte) []byte { return bytes.Join(ps, nil) }
	f.Add(seed(packet('C', []byte("x\x004"), []byte{0, 25}, []byte("192.0.2.9\x00")), packet('M', []byte("<a@b>\x00")), packet('R', []byte("<c@d>\x00"))))
	f.Add(seed(packet('C', []byte("x\x006"), []byte{0, 25}, []byte("IPv6:2001:db8::1\x00")), packet('M', []byte("<>\x00")), packet('R', []byte("<c@d>\x00")), packet('L', []byte("From\x00x\x00")), packet('N'), packet('B', []byte("body")), packet('E')))
	f.Add(seed(packet('D', []byte("C"), []byte("{client_addr}\x00IPv6:::1\x00")), packet('C', []byte("x\x00L/tmp/s\x00")), packet('A'), packet('Q')))
	f.Add([]byte{0, 0, 0, 1, 'C'})
	f.Add([]byte{0, 0, 0, 2, 'C', 'x'})
	f.Add(seed(packet('R'), packet('L'), packet('E'), packet('K'), packet('U', []byte("XYZZY\x00"))))

	// go-milter logs nearly every broken session: keep only what
	// matters, a recovered panic, so that the check stays cheap over a
	// run of millions of sessions (a whole log would grow without bound
	// and be scanned again at each one).
	var logged panicLog
	log.SetOutput(&logged)
	f.Cleanup(func() { log.SetOutput(io.Discard) })
	addr, _ := hostileServer(f, 2*time.Second, 0)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(optneg())
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
		if p := logged.String(); p != "" {
			t.Fatalf("the server panicked:\n%s", p)
		}
		// Still serving: a fresh, valid session works.
		s, err := gomilter.NewClientWithOptions("tcp", addr, gomilter.ClientOptions{
			ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
			ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader,
		}).Session()
		if err != nil {
			t.Fatalf("server no longer serves: %v", err)
		}
		s.Close()
	})
}

// panicLog is a log writer that keeps the first line mentioning a panic
// (with what follows it in the same write: go-milter logs the stack
// there) and drops the rest.
type panicLog struct {
	mu    sync.Mutex
	first string
}

func (l *panicLog) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("panic")) {
		l.mu.Lock()
		if l.first == "" {
			l.first = string(p)
		}
		l.mu.Unlock()
	}
	return len(p), nil
}

func (l *panicLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first
}
