package milter

import (
	"context"
	"net"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/greylist/badgerstore"
)

// A bound on sessions keeps a flood of connections from exhausting
// descriptors and memory: beyond it, connections wait to be accepted.
func TestMaxSessionsQueuesExtraConnections(t *testing.T) {
	store, err := badgerstore.Open("", badgerstore.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	srv, err := NewServer(Config{Engine: greylist.New(store, greylist.Config{}), MaxSessions: 2})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	// Registered before the sessions' own cleanups, so it runs after them.
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	f := &fixture{addr: ln.Addr().String()}

	first := f.connect(t, gomilter.FamilyInet, "[192.0.2.1]", "192.0.2.1")
	f.connect(t, gomilter.FamilyInet, "[192.0.2.2]", "192.0.2.2")

	third := make(chan error, 1)
	go func() {
		c := gomilter.NewClientWithOptions("tcp", f.addr, gomilter.ClientOptions{
			ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
			ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader,
		})
		s, err := c.Session()
		if err == nil {
			s.Close()
		}
		third <- err
	}()
	// The third connection is not served while two are open.
	for i := 0; i < 10; i++ {
		if n := srv.OpenSessions(); n > 2 {
			t.Fatalf("OpenSessions = %d with MaxSessions 2", n)
		}
		select {
		case err := <-third:
			t.Fatalf("third session served while two were open (err %v)", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	first.s.Close()
	select {
	case err := <-third:
		if err != nil {
			t.Fatalf("third session after one closed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("third session never served after one closed")
	}
}
