package auth

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"blitiri.com.ar/go/spf"

	"github.com/milter-grey/milter-grey/testutil/testdns"
)

func TestClassifyDNSError(t *testing.T) {
	notFound := &net.DNSError{Err: "no such host", Name: "x.test", IsNotFound: true}
	tests := []struct {
		name      string
		err       error
		notFound  bool
		temporary bool
		timeout   bool
	}{
		{"NXDOMAIN stays not found", notFound, true, false, false},
		{"plain context deadline is a temporary timeout", context.DeadlineExceeded, false, true, true},
		{"plain context cancel is temporary", context.Canceled, false, true, false},
		{"unparsable answer is temporary", &net.DNSError{Err: "cannot unmarshal DNS message", Name: "x.test"}, false, true, false},
		{"lame referral is temporary", &net.DNSError{Err: "lame referral", Name: "x.test"}, false, true, false},
		{"any other error is temporary", errors.New("boom"), false, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classifyDNSError("x.test", tt.err)
			// The libraries use type assertions: the error itself must be
			// a *net.DNSError, not wrap one.
			de, ok := got.(*net.DNSError)
			if !ok {
				t.Fatalf("classifyDNSError = %T, want *net.DNSError", got)
			}
			if de.IsNotFound != tt.notFound || de.Temporary() != tt.temporary || de.Timeout() != tt.timeout {
				t.Errorf("notFound=%v temporary=%v timeout=%v, want %v %v %v", de.IsNotFound, de.Temporary(), de.Timeout(), tt.notFound, tt.temporary, tt.timeout)
			}
			if !tt.notFound && !errors.Is(got, tt.err) {
				t.Errorf("errors.Is(%v, original) = false", got)
			}
		})
	}
	if classifyDNSError("x.test", nil) != nil {
		t.Error("nil error classified as non-nil")
	}
}

// The trap classifyDNSError exists for: with a plain *net.Resolver, an
// unparsable answer (or any non-temporary, non-NXDOMAIN error) on the
// top-level TXT lookup makes the spf package return permerror, a
// permanent verdict from a transient fault. Through spfResolver it is
// temperror.
func TestSPFResolverErrorTrap(t *testing.T) {
	srv := testdns.Start(t)
	srv.SetTXT("pass.test", "v=spf1 ip4:203.0.113.0/24 -all")
	srv.SetMode(testdns.Garbage)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ip := net.ParseIP("203.0.113.5")

	raw, _ := spf.CheckHostWithSender(ip, "h.test", "a@pass.test", spf.WithResolver(srv.Resolver()), spf.WithContext(ctx))
	if raw != spf.PermError {
		t.Logf("plain resolver now gives %s: the trap may be gone upstream", raw)
	}
	ours := &spfResolver{r: NewResolver(ResolverConfig{Server: srv.Addr()}), memo: make(map[string]memoAnswer)}
	res, err := spf.CheckHostWithSender(ip, "h.test", "a@pass.test", spf.WithResolver(ours), spf.WithContext(ctx))
	if res != spf.TempError {
		t.Errorf("through spfResolver: %s (%v), want temperror", res, err)
	}
}

func TestServerAddr(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.53":         "192.0.2.53:53",
		"192.0.2.53:5353":    "192.0.2.53:5353",
		"ns.example.com":     "ns.example.com:53",
		"2001:db8::53":       "[2001:db8::53]:53",
		"[2001:db8::53]":     "[2001:db8::53]:53",
		"[2001:db8::53]:553": "[2001:db8::53]:553",
	} {
		if got := serverAddr(in); got != want {
			t.Errorf("serverAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRooted(t *testing.T) {
	for in, want := range map[string]string{"example.com": "example.com.", "example.com.": "example.com.", "": ""} {
		if got := rooted(in); got != want {
			t.Errorf("rooted(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestProbeAddr(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.5":  "192.0.2.1",
		"192.0.2.77":   "198.51.100.1",
		"2600::1":      "2001:db8::1",
		"2001:db8::77": "3fff::1",
	} {
		if got := probeAddr(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("probeAddr(%s) = %s, want %s", in, got, want)
		}
	}
}

// NewResolver with a server sends queries there, and a cancelled lookup
// returns at once even when the server never answers.
func TestNewResolver(t *testing.T) {
	srv := testdns.Start(t)
	srv.SetTXT("example.com", "hello")
	r := NewResolver(ResolverConfig{Server: srv.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	txts, err := r.LookupTXT(ctx, "example.com.")
	if err != nil || len(txts) != 1 || txts[0] != "hello" {
		t.Fatalf("LookupTXT = %q, %v", txts, err)
	}

	srv.SetMode(testdns.Drop)
	lctx, lcancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := r.LookupTXT(lctx, "example.com.")
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the query go out (not asserted)
	lcancel()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("cancelled lookup succeeded")
		}
	case <-ctx.Done():
		t.Fatal("cancelled lookup did not return")
	}

	if NewResolver(ResolverConfig{}) == nil {
		t.Error("system resolver is nil")
	}
}
