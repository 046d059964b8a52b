package dnslist_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/dnslist"
	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/testutil/testdns"
)

// The client in most tests, and its query label in front of a zone.
const (
	client    = "192.0.2.1"
	clientRev = "1.2.0.192."
)

// short is the Checker timeout in tests where the server fails to answer:
// long enough for a loopback answer, short enough to keep the tests quick.
const short = 300 * time.Millisecond

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func zones(t *testing.T, specs ...string) []dnslist.Zone {
	t.Helper()
	var zs []dnslist.Zone
	for _, s := range specs {
		z, err := dnslist.ParseZone(s)
		if err != nil {
			t.Fatal(err)
		}
		zs = append(zs, z)
	}
	return zs
}

// newChecker starts a test DNS server and a Checker that asks it through
// the resolver the daemon uses.
func newChecker(t *testing.T, timeout time.Duration, specs ...string) (*testdns.Server, *dnslist.Checker) {
	t.Helper()
	srv := testdns.Start(t)
	r := auth.NewResolver(auth.ResolverConfig{Server: srv.Addr(), Timeout: timeout})
	return srv, dnslist.New(r, timeout, zones(t, specs...))
}

func TestLookup(t *testing.T) {
	tests := []struct {
		name    string
		zone    string
		answers []string // A records of the client's name in the zone; none: NXDOMAIN
		listed  bool
		answer  string
		badAns  bool // reported as ErrBadAnswer
	}{
		{name: "listed", zone: "bl.test", answers: []string{"127.0.0.2"}, listed: true, answer: "127.0.0.2"},
		{name: "not listed (NXDOMAIN)", zone: "bl.test"},
		{name: "several answers: the lowest that counts", zone: "bl.test", answers: []string{"127.0.0.10", "127.0.0.4"}, listed: true, answer: "127.0.0.4"},
		{name: "codes filter: counted code", zone: "bl.test=127.0.0.4/30", answers: []string{"127.0.0.10", "127.0.0.5"}, listed: true, answer: "127.0.0.5"},
		{name: "codes filter: other kinds of listing do not count", zone: "bl.test=127.0.0.2", answers: []string{"127.0.0.10", "127.0.0.11"}},
		{name: "answer outside 127/8 (wildcard resolver)", zone: "bl.test", answers: []string{"198.51.100.80"}, badAns: true},
		{name: "Spamhaus: query through an open resolver", zone: "bl.test", answers: []string{"127.255.255.254"}, badAns: true},
		{name: "Spamhaus: too many queries", zone: "bl.test", answers: []string{"127.255.255.255"}, badAns: true},
		{name: "Spamhaus: mistyped zone", zone: "bl.test", answers: []string{"127.255.255.252"}, badAns: true},
		{name: "dnswl.org: queries blocked", zone: "wl.test", answers: []string{"127.0.0.255"}, badAns: true},
		{name: "refused code with explicit codes", zone: "bl.test=127.0.0.2", answers: []string{"127.255.255.254"}, badAns: true},
		{name: "a listing beside an error answer counts", zone: "bl.test", answers: []string{"127.255.255.254", "127.0.0.3"}, listed: true, answer: "127.0.0.3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := newChecker(t, 0, tt.zone)
			zone, _, _ := strings.Cut(tt.zone, "=")
			if len(tt.answers) > 0 {
				srv.SetA(clientRev+zone, tt.answers...)
			}
			l, listed, err := c.Lookup(testCtx(t), netip.MustParseAddr(client))
			if listed != tt.listed {
				t.Fatalf("Lookup = %+v %v (%v), want listed=%v", l, listed, err, tt.listed)
			}
			if listed && (l.Zone != zone || l.Answer != netip.MustParseAddr(tt.answer)) {
				t.Errorf("Listing = %+v, want %s answering %s", l, zone, tt.answer)
			}
			if !listed && l != (dnslist.Listing{}) {
				t.Errorf("not listed, yet Listing = %+v", l)
			}
			if got := errors.Is(err, dnslist.ErrBadAnswer); got != tt.badAns {
				t.Errorf("error %v: ErrBadAnswer = %v, want %v", err, got, tt.badAns)
			}
			if !tt.badAns && err != nil {
				t.Errorf("unexpected error %v", err)
			}
			if tt.badAns {
				le := dnslist.LookupErrors(err)
				if len(le) != 1 || le[0].Zone != zone || le[0].Name != clientRev+zone || le[0].Timeout() {
					t.Errorf("LookupErrors = %+v, want one for %s", le, clientRev+zone)
				}
				if !strings.Contains(err.Error(), tt.answers[0]) {
					t.Errorf("error %q does not name the answer %s", err, tt.answers[0])
				}
			}
		})
	}
}

// The engine asks a Checker through greylist.DNSList.
var _ greylist.DNSList = (*dnslist.Checker)(nil)

// Listed is Lookup's decision, for the engine.
func TestListedIsLookup(t *testing.T) {
	srv, c := newChecker(t, short, "one.test", "two.test")
	srv.SetModeFor(clientRev+"one.test", testdns.ServFail)
	srv.SetA(clientRev+"two.test", "127.0.0.2")
	for _, ip := range []string{client, "192.0.2.2"} {
		l, listed, err := c.Lookup(testCtx(t), netip.MustParseAddr(ip))
		zone, listed2, err2 := c.Listed(testCtx(t), netip.MustParseAddr(ip))
		if zone != l.Zone || listed2 != listed || (err == nil) != (err2 == nil) {
			t.Errorf("%s: Listed = %q %v %v, Lookup = %+v %v %v", ip, zone, listed2, err2, l, listed, err)
		}
	}
	var none *dnslist.Checker
	if zone, listed, err := none.Listed(testCtx(t), netip.MustParseAddr(client)); zone != "" || listed || err != nil {
		t.Errorf("nil Checker: Listed = %q %v %v", zone, listed, err)
	}
}

// Query names: reversed octets for IPv4 (with RFC 5782's test entries,
// 127.0.0.2 listed and 127.0.0.1 not), reversed nibbles for IPv6 (the
// RFC's example address); a client in IPv4-mapped form is asked about as
// IPv4, and a zone index is not part of the address.
func TestQueryNames(t *testing.T) {
	srv, c := newChecker(t, 0, "bl.test")
	srv.SetA("2.0.0.127.bl.test", "127.0.0.2")
	srv.SetA("b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.test", "127.0.0.4")
	for _, tt := range []struct {
		ip     string
		listed bool
	}{
		{"127.0.0.2", true},
		{"127.0.0.1", false},
		{"::ffff:127.0.0.2", true},
		{"::ffff:7f00:2", true},
		{"2001:db8:1:2:3:4:567:89ab", true},
		{"2001:db8:1:2:3:4:567:89ac", false},
		{"2001:db8:1:2:3:4:567:89ab%eth0", true},
	} {
		_, listed, err := c.Lookup(testCtx(t), netip.MustParseAddr(tt.ip))
		if listed != tt.listed || err != nil {
			t.Errorf("Lookup(%s) = %v (%v), want %v", tt.ip, listed, err, tt.listed)
		}
	}
}

func TestNoQueryWithoutZones(t *testing.T) {
	srv := testdns.Start(t)
	r := auth.NewResolver(auth.ResolverConfig{Server: srv.Addr()})
	var none *dnslist.Checker
	for _, tt := range []struct {
		name string
		c    *dnslist.Checker
		ip   netip.Addr
	}{
		{"nil Checker", none, netip.MustParseAddr(client)},
		{"no zones", dnslist.New(r, 0, nil), netip.MustParseAddr(client)},
		{"invalid address", dnslist.New(r, 0, zones(t, "bl.test")), netip.Addr{}},
	} {
		l, listed, err := tt.c.Lookup(testCtx(t), tt.ip)
		if listed || err != nil || l != (dnslist.Listing{}) {
			t.Errorf("%s: Lookup = %+v %v %v", tt.name, l, listed, err)
		}
	}
	if n := srv.Queries(); n != 0 {
		t.Errorf("%d queries sent", n)
	}
}

func TestFailuresAreNotListed(t *testing.T) {
	tests := []struct {
		name    string
		mode    testdns.Mode
		timeout bool
	}{
		{"server never answers", testdns.Drop, true},
		{"server slower than the timeout", testdns.Slow(time.Hour), true},
		{"SERVFAIL", testdns.ServFail, false},
		{"unreadable answer", testdns.Garbage, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := newChecker(t, short, "bl.test")
			srv.SetA(clientRev+"bl.test", "127.0.0.2")
			srv.SetMode(tt.mode)
			start := time.Now()
			l, listed, err := c.Lookup(testCtx(t), netip.MustParseAddr(client))
			t.Logf("returned after %v (timeout %v)", time.Since(start).Round(time.Millisecond), short)
			if listed {
				t.Fatalf("Lookup = %+v, want not listed on a failure", l)
			}
			le := dnslist.LookupErrors(err)
			if len(le) != 1 || le[0].Zone != "bl.test" {
				t.Fatalf("error %v: LookupErrors = %+v, want one for bl.test", err, le)
			}
			if le[0].Timeout() != tt.timeout {
				t.Errorf("Timeout() = %v, want %v (%v)", le[0].Timeout(), tt.timeout, le[0])
			}
			if errors.Is(err, dnslist.ErrBadAnswer) {
				t.Errorf("a failure reported as a bad answer: %v", err)
			}
		})
	}
}

// hangingResolver never answers and ignores its context: only Lookup's own
// deadline can end the wait. release frees the stuck lookups.
func hangingResolver(t *testing.T) *net.Resolver {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			return hangingConn{release: release}, nil
		},
	}
}

type hangingConn struct {
	net.Conn // nil: only the methods below are called
	release  chan struct{}
}

func (c hangingConn) Write(b []byte) (int, error) { return len(b), nil }
func (c hangingConn) Read([]byte) (int, error) {
	<-c.release
	return 0, net.ErrClosed
}
func (c hangingConn) Close() error                     { return nil }
func (c hangingConn) SetDeadline(time.Time) error      { return nil }
func (c hangingConn) SetReadDeadline(time.Time) error  { return nil }
func (c hangingConn) SetWriteDeadline(time.Time) error { return nil }
func (c hangingConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c hangingConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

// Lookup returns by its deadline even when the resolver does not.
func TestDeadlineEvenIfTheResolverHangs(t *testing.T) {
	c := dnslist.New(hangingResolver(t), short, zones(t, "a.test", "b.test"))
	done := make(chan error, 1)
	go func() {
		_, listed, err := c.Lookup(context.Background(), netip.MustParseAddr(client))
		if listed {
			err = errors.New("listed")
		}
		done <- err
	}()
	select {
	case err := <-done:
		le := dnslist.LookupErrors(err)
		if len(le) != 2 || le[0].Zone != "a.test" || le[1].Zone != "b.test" || !le[0].Timeout() || !le[1].Timeout() {
			t.Errorf("error %v: want a timeout for each zone, in order", err)
		}
	case <-testCtx(t).Done():
		t.Fatal("Lookup still waiting for a resolver that never answers")
	}
}

// The caller's context bounds Lookup too.
func TestCallerContext(t *testing.T) {
	srv, c := newChecker(t, time.Hour, "bl.test")
	srv.SetMode(testdns.Drop)
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	_, listed, err := c.Lookup(ctx, netip.MustParseAddr(client))
	le := dnslist.LookupErrors(err)
	if listed || len(le) != 1 || !errors.Is(err, context.Canceled) || le[0].Timeout() {
		t.Errorf("Lookup with a cancelled context = %v, %v", listed, err)
	}
}

func TestZoneOrder(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(*testdns.Server)
		listed string // zone expected in the Listing, "" for none
		failed []string
	}{
		{
			name: "all list: the first configured wins",
			setup: func(s *testdns.Server) {
				s.SetA(clientRev+"one.test", "127.0.0.2")
				s.SetA(clientRev+"two.test", "127.0.0.3")
				s.SetA(clientRev+"three.test", "127.0.0.4")
			},
			listed: "one.test",
		},
		{
			name: "the first that lists, not the first that answers",
			setup: func(s *testdns.Server) {
				s.SetA(clientRev+"two.test", "127.0.0.2")
				s.SetA(clientRev+"three.test", "127.0.0.2")
				s.SetModeFor(clientRev+"two.test", testdns.Slow(50*time.Millisecond))
			},
			listed: "two.test",
		},
		{
			name: "a failed zone before a listing one",
			setup: func(s *testdns.Server) {
				s.SetModeFor(clientRev+"one.test", testdns.ServFail)
				s.SetA(clientRev+"three.test", "127.0.0.2")
			},
			listed: "three.test",
			failed: []string{"one.test"},
		},
		{
			name: "a silent zone before a listing one",
			setup: func(s *testdns.Server) {
				s.SetModeFor(clientRev+"one.test", testdns.Drop)
				s.SetA(clientRev+"two.test", "127.0.0.2")
			},
			listed: "two.test",
			failed: []string{"one.test"},
		},
		{
			// Once the first zone lists the client, a later zone's
			// failure cannot matter and is not waited for.
			name: "a silent zone after the listing one",
			setup: func(s *testdns.Server) {
				s.SetA(clientRev+"one.test", "127.0.0.2")
				s.SetModeFor(clientRev+"two.test", testdns.Drop)
			},
			listed: "one.test",
		},
		{
			name: "none lists, two fail",
			setup: func(s *testdns.Server) {
				s.SetModeFor(clientRev+"one.test", testdns.Drop)
				s.SetA(clientRev+"three.test", "127.255.255.254")
			},
			failed: []string{"one.test", "three.test"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A timeout with room for the slow answer of one case.
			srv, c := newChecker(t, time.Second, "one.test", "two.test", "three.test")
			tt.setup(srv)
			l, listed, err := c.Lookup(testCtx(t), netip.MustParseAddr(client))
			if listed != (tt.listed != "") || l.Zone != tt.listed {
				t.Errorf("Lookup = %+v %v, want zone %q", l, listed, tt.listed)
			}
			var failed []string
			for _, le := range dnslist.LookupErrors(err) {
				failed = append(failed, le.Zone)
			}
			if strings.Join(failed, " ") != strings.Join(tt.failed, " ") {
				t.Errorf("failed zones %v (%v), want %v", failed, err, tt.failed)
			}
		})
	}
}

// The zones are asked at once: no query goes out until every zone's lookup
// has started, which a Checker asking one zone after the other would never
// do.
func TestZonesInParallel(t *testing.T) {
	srv := testdns.Start(t)
	srv.SetA(clientRev+"four.test", "127.0.0.2")
	const n = 4
	var started atomic.Int32
	all := make(chan struct{})
	r := auth.NewResolver(auth.ResolverConfig{Server: srv.Addr()})
	dial := r.Dial
	r.Dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		if started.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return dial(ctx, network, address)
	}
	c := dnslist.New(r, 10*time.Second, zones(t, "one.test", "two.test", "three.test", "four.test"))
	l, listed, err := c.Lookup(testCtx(t), netip.MustParseAddr(client))
	if !listed || l.Zone != "four.test" || err != nil {
		t.Errorf("Lookup = %+v %v %v, want four.test", l, listed, err)
	}
}

// The Checker is safe for concurrent use (run with -race).
func TestConcurrentUse(t *testing.T) {
	srv, c := newChecker(t, 0, "bl.test", "wl.test")
	srv.SetA(clientRev+"wl.test", "127.0.0.2")
	errc := make(chan error, 8)
	for range 8 {
		go func() {
			l, listed, err := c.Lookup(testCtx(t), netip.MustParseAddr(client))
			if err == nil && (!listed || l.Zone != "wl.test") {
				err = errors.New("not listed in wl.test")
			}
			errc <- err
		}()
	}
	for range 8 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}
