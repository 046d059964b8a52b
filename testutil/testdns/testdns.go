// Package testdns is an authoritative DNS server on loopback for tests, so
// that SPF and DKIM run through the real resolver path (Go's own stub
// resolver, UDP with TCP fallback) instead of a fake LookupTXT function.
//
// A Server answers from the records set on it (TXT, A, AAAA, MX), NXDOMAIN
// for names it does not know and NODATA for known names without records of
// the queried type. Its Mode injects faults: no answer at all (timeouts),
// SERVFAIL, slow answers and malformed packets.
//
// It is a test helper (testutil/): only tests import it.
package testdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/milter-grey/milter-grey/internal/ctxconn"
)

// Mode selects how the server answers. The zero value is Normal.
type Mode int64

// Fault modes; see also Slow.
const (
	// Normal answers every query from the records set on the server.
	Normal Mode = 0
	// Drop never answers, so clients time out.
	Drop Mode = -1
	// ServFail answers every query with RCODE SERVFAIL.
	ServFail Mode = -2
	// Garbage answers with a packet that has a valid header and question
	// (so the client accepts it as the reply to its query) but a truncated
	// answer section, so it cannot be parsed.
	Garbage Mode = -3
)

// Slow returns the mode that answers normally after waiting d. Slow(0) is
// Normal.
func Slow(d time.Duration) Mode {
	if d <= 0 {
		return Normal
	}
	return Mode(d)
}

func (m Mode) String() string {
	switch {
	case m == Normal:
		return "normal"
	case m == Drop:
		return "drop"
	case m == ServFail:
		return "servfail"
	case m == Garbage:
		return "garbage"
	case m > 0:
		return "slow(" + time.Duration(m).String() + ")"
	}
	return fmt.Sprintf("Mode(%d)", int64(m))
}

// defaultTTL is the TTL of every answer. The Go resolver does not cache, so
// it only matters to other clients.
const defaultTTL = 60

type mxRecord struct {
	pref uint16
	host string
}

// node holds the records of one name.
type node struct {
	txt  [][]string // one entry per TXT record, each split in <= 255-byte strings
	a    []netip.Addr
	aaaa []netip.Addr
	mx   []mxRecord
}

// Server is a running test DNS server. Its methods are safe for concurrent
// use.
type Server struct {
	t    testing.TB
	addr string
	udp  *dns.Server
	tcp  *dns.Server
	done chan struct{} // closed at stop: releases Slow handlers

	mode    atomic.Int64
	queries atomic.Int64

	mu        sync.Mutex
	names     map[string]*node // canonical (lower-case, rooted) name -> records
	nameModes map[string]Mode  // per-name overrides of mode
}

// Start starts a server on UDP and TCP 127.0.0.1 (the same free port) and
// stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		t:         t,
		done:      make(chan struct{}),
		names:     make(map[string]*node),
		nameModes: make(map[string]Mode),
	}
	pc, ln, err := listenPair()
	if err != nil {
		t.Fatalf("testdns: listen: %v", err)
	}
	s.addr = pc.LocalAddr().String()
	handler := dns.HandlerFunc(s.serveDNS)
	s.udp = &dns.Server{PacketConn: pc, Handler: handler}
	s.tcp = &dns.Server{Listener: ln, Handler: handler}

	var wg sync.WaitGroup
	wg.Add(2)
	s.udp.NotifyStartedFunc = wg.Done
	s.tcp.NotifyStartedFunc = wg.Done
	errc := make(chan error, 2)
	go func() { errc <- s.udp.ActivateAndServe() }()
	go func() { errc <- s.tcp.ActivateAndServe() }()
	wg.Wait()

	t.Cleanup(func() {
		close(s.done)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.udp.ShutdownContext(ctx); err != nil {
			t.Errorf("testdns: udp shutdown: %v", err)
		}
		if err := s.tcp.ShutdownContext(ctx); err != nil {
			t.Errorf("testdns: tcp shutdown: %v", err)
		}
		for range 2 {
			if err := <-errc; err != nil {
				t.Errorf("testdns: serve: %v", err)
			}
		}
	})
	return s
}

// listenPair opens UDP and TCP listeners on the same free loopback port.
func listenPair() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("no free port for both UDP and TCP: %w", lastErr)
}

// Addr returns the server's "127.0.0.1:port", the same for UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// Resolver returns a Go resolver (PreferGo) that sends every query to this
// server, whatever /etc/resolv.conf says; /etc/resolv.conf still sets the
// per-try timeout and the number of attempts. A lookup's context cancels
// its in-flight exchange at once.
func (s *Server) Resolver() *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, s.addr)
			if err != nil {
				return nil, err
			}
			return ctxconn.CloseOnDone(ctx, c), nil
		},
	}
}

// Queries returns the number of DNS messages received so far (answered or
// not).
func (s *Server) Queries() int { return int(s.queries.Load()) }

// SetMode changes how the server answers from now on.
func (s *Server) SetMode(m Mode) { s.mode.Store(int64(m)) }

// SetModeFor changes how the server answers queries for name only (any
// type), overriding SetMode; Normal removes the override. It makes a
// failure deep inside an evaluation, such as an SPF include whose record
// times out while the top-level record is served.
func (s *Server) SetModeFor(name string, m Mode) {
	key := dns.CanonicalName(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if m == Normal {
		delete(s.nameModes, key)
		return
	}
	s.nameModes[key] = m
}

func (s *Server) modeFor(req *dns.Msg) Mode {
	if len(req.Question) == 1 {
		s.mu.Lock()
		m, ok := s.nameModes[dns.CanonicalName(req.Question[0].Name)]
		s.mu.Unlock()
		if ok {
			return m
		}
	}
	return Mode(s.mode.Load())
}

// SetTXT replaces the TXT records of name: one record per argument. A text
// longer than 255 bytes is split into 255-byte strings, which resolvers
// concatenate again. With no argument the name exists without TXT records.
func (s *Server) SetTXT(name string, txts ...string) {
	recs := make([][]string, 0, len(txts))
	for _, txt := range txts {
		recs = append(recs, splitTXT(txt))
	}
	s.update(name, func(n *node) { n.txt = recs })
}

// SetA replaces the A records of name.
func (s *Server) SetA(name string, ips ...string) {
	s.t.Helper()
	addrs := s.parseAddrs(name, ips, true)
	s.update(name, func(n *node) { n.a = addrs })
}

// SetAAAA replaces the AAAA records of name.
func (s *Server) SetAAAA(name string, ips ...string) {
	s.t.Helper()
	addrs := s.parseAddrs(name, ips, false)
	s.update(name, func(n *node) { n.aaaa = addrs })
}

// SetMX adds host with preference prio to the MX records of name, or
// changes its preference when host is already there.
func (s *Server) SetMX(name string, prio uint16, host string) {
	host = dns.CanonicalName(host)
	s.update(name, func(n *node) {
		for i := range n.mx {
			if n.mx[i].host == host {
				n.mx[i].pref = prio
				return
			}
		}
		n.mx = append(n.mx, mxRecord{pref: prio, host: host})
	})
}

// Remove deletes every record of name: it answers NXDOMAIN again.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.names, dns.CanonicalName(name))
}

func (s *Server) update(name string, fn func(*node)) {
	key := dns.CanonicalName(name)
	if _, ok := dns.IsDomainName(key); !ok {
		s.t.Fatalf("testdns: invalid name %q", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.names[key]
	if n == nil {
		n = &node{}
		s.names[key] = n
	}
	fn(n)
}

func (s *Server) parseAddrs(name string, ips []string, v4 bool) []netip.Addr {
	s.t.Helper()
	addrs := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip)
		if err != nil || a.Is4() != v4 {
			s.t.Fatalf("testdns: %s: bad address %q for this record type", name, ip)
		}
		addrs = append(addrs, a)
	}
	return addrs
}

// splitTXT splits a text into the <= 255-byte character-strings of one TXT
// record. miekg/dns takes them in presentation format, so '"' and '\' are
// escaped (after splitting: the limit is on the wire length).
func splitTXT(txt string) []string {
	var parts []string
	for len(txt) > 255 {
		parts = append(parts, escapeTXT(txt[:255]))
		txt = txt[255:]
	}
	return append(parts, escapeTXT(txt))
}

func escapeTXT(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c < ' ' || c > '~':
			out = append(out, fmt.Sprintf("\\%03d", c)...)
		default:
			out = append(out, c)
		}
	}
	return string(out)
}

func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	mode := s.modeFor(req)
	switch {
	case mode == Drop:
		return
	case mode == ServFail:
		m := new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
		_ = w.WriteMsg(m)
		return
	case mode == Garbage:
		if b, err := garbage(req); err == nil {
			_, _ = w.Write(b)
		}
		return
	case mode > 0:
		t := time.NewTimer(time.Duration(mode))
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.done:
			return
		}
	}
	m := s.answer(req)
	if _, isUDP := w.RemoteAddr().(*net.UDPAddr); isUDP {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
			m.SetEdns0(opt.UDPSize(), false)
		}
		// Sets TC when records had to be left out: the client retries
		// over TCP.
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

// answer builds the authoritative reply to req.
func (s *Server) answer(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg).SetReply(req)
	// Authoritative: Go's resolver takes a NOERROR reply with no answer,
	// no AA and no RA for a lame referral, not for NODATA.
	m.Authoritative = true
	m.RecursionAvailable = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: defaultTTL}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.names[name]
	if !ok {
		m.Rcode = dns.RcodeNameError
		return m
	}
	switch q.Qtype {
	case dns.TypeTXT:
		for _, txt := range n.txt {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: txt})
		}
	case dns.TypeA:
		for _, a := range n.a {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: a.AsSlice()})
		}
	case dns.TypeAAAA:
		for _, a := range n.aaaa {
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: a.AsSlice()})
		}
	case dns.TypeMX:
		for _, mx := range n.mx {
			m.Answer = append(m.Answer, &dns.MX{Hdr: hdr(dns.TypeMX), Preference: mx.pref, Mx: mx.host})
		}
	}
	return m
}

// garbage returns a reply to req whose header and question are valid but
// whose single answer record claims more data than the packet holds.
func garbage(req *dns.Msg) ([]byte, error) {
	if len(req.Question) == 0 {
		return nil, errors.New("no question")
	}
	m := new(dns.Msg).SetReply(req)
	m.Authoritative = true
	q := req.Question[0]
	m.Answer = []dns.RR{&dns.TXT{
		Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: defaultTTL},
		Txt: []string{"this record is cut short on the wire"},
	}}
	b, err := m.Pack()
	if err != nil {
		return nil, err
	}
	return b[:len(b)-10], nil
}
