package auth_test

import (
	"context"
	"fmt"
	"github.com/milter-grey/milter-grey/envelope"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/testutil/testdns"
)

// client is the address the test mails come from.
var client = netip.MustParseAddr("203.0.113.5")

func newSPF(t *testing.T, opts auth.SPFOptions) (*testdns.Server, *auth.SPF) {
	t.Helper()
	srv := testdns.Start(t)
	r := auth.NewResolver(auth.ResolverConfig{Server: srv.Addr()})
	return srv, auth.NewSPF(r, opts)
}

// testCtx is the test's own generous deadline: deadline tests assert the
// result, not how fast it came.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSPFResults(t *testing.T) {
	srv, checker := newSPF(t, auth.SPFOptions{CacheTTL: -1})
	srv.SetTXT("pass.test", "v=spf1 ip4:203.0.113.0/24 -all")
	srv.SetTXT("fail.test", "v=spf1 ip4:198.51.100.0/24 -all")
	srv.SetTXT("softfail.test", "v=spf1 ip4:198.51.100.0/24 ~all")
	srv.SetTXT("neutral.test", "v=spf1 ip4:198.51.100.0/24 ?all")
	srv.SetTXT("no-spf.test", "google-site-verification=abc")
	srv.SetTXT("two-records.test", "v=spf1 ip4:203.0.113.5 -all", "v=spf1 -all")
	srv.SetTXT("syntax.test", "v=spf1 ip4:203.0.113.5/99 -all")
	srv.SetTXT("unknown-mech.test", "v=spf1 frobnicate -all")
	srv.SetTXT("plus-all.test", "v=spf1 +all")
	srv.SetTXT("all-v4.test", "v=spf1 ip4:0.0.0.0/0 -all")
	srv.SetTXT("half-v4.test", "v=spf1 ip4:0.0.0.0/1 ip4:128.0.0.0/1 -all")
	srv.SetTXT("v6-wide.test", "v=spf1 ip6:::/0 ip4:203.0.113.5 -all")
	// include chain: example.test -> _spf -> _netblocks
	srv.SetTXT("chain.test", "v=spf1 include:_spf.chain.test -all")
	srv.SetTXT("_spf.chain.test", "v=spf1 include:_netblocks.chain.test ~all")
	srv.SetTXT("_netblocks.chain.test", "v=spf1 ip4:198.51.100.0/24 ip4:203.0.113.0/24 -all")
	srv.SetTXT("include-missing.test", "v=spf1 include:nothing.test -all")
	// a and mx mechanisms
	srv.SetTXT("a.test", "v=spf1 a:out.a.test -all")
	srv.SetA("out.a.test", "203.0.113.5")
	srv.SetTXT("mx.test", "v=spf1 mx -all")
	srv.SetMX("mx.test", 10, "mx1.mx.test")
	srv.SetA("mx1.mx.test", "203.0.113.5")
	// macros: exists with the local part
	srv.SetTXT("macro.test", "v=spf1 exists:%{i}.%{l}.users.macro.test -all")
	srv.SetA("203.0.113.5.alice.users.macro.test", "127.0.0.2")
	srv.SetTXT("l-macro.test", "v=spf1 exists:%{l}.users.l-macro.test -all")
	srv.SetA("alice.users.l-macro.test", "127.0.0.2")
	// redirect
	srv.SetTXT("redirect.test", "v=spf1 redirect=pass.test")
	// more than 10 DNS-querying mechanisms
	var incs []string
	for i := range 11 {
		name := fmt.Sprintf("i%d.limit.test", i)
		srv.SetTXT(name, "v=spf1 -all")
		incs = append(incs, "include:"+name)
	}
	srv.SetTXT("limit.test", "v=spf1 "+strings.Join(incs, " ")+" ip4:203.0.113.5 -all")
	// a chain of 12 includes
	for i := range 12 {
		srv.SetTXT(fmt.Sprintf("d%d.deep.test", i), fmt.Sprintf("v=spf1 include:d%d.deep.test -all", i+1))
	}
	srv.SetTXT("d12.deep.test", "v=spf1 ip4:203.0.113.5 -all")
	// void lookups: 3 names that do not exist
	srv.SetTXT("void.test", "v=spf1 a:n1.void.test a:n2.void.test a:n3.void.test ip4:203.0.113.5 -all")

	tests := []struct {
		name     string
		sender   string
		want     auth.Result
		wideOpen bool
	}{
		{"ip4 mechanism passes", "alice@pass.test", auth.ResultPass, false},
		{"domain is case-insensitive", "Alice@PASS.Test.", auth.ResultPass, false},
		{"quoted local part with @", `"a@fail.test"@pass.test`, auth.ResultPass, false},
		{"angle brackets", "<alice@pass.test>", auth.ResultPass, false},
		{"-all fails", "alice@fail.test", auth.ResultFail, false},
		{"~all softfails", "alice@softfail.test", auth.ResultSoftFail, false},
		{"?all is neutral", "alice@neutral.test", auth.ResultNeutral, false},
		{"no TXT record is none", "alice@nxdomain.test", auth.ResultNone, false},
		{"TXT without v=spf1 is none", "alice@no-spf.test", auth.ResultNone, false},
		{"two records are a permerror", "alice@two-records.test", auth.ResultPermError, false},
		{"bad mask is a permerror", "alice@syntax.test", auth.ResultPermError, false},
		{"unknown mechanism is a permerror", "alice@unknown-mech.test", auth.ResultPermError, false},
		{"+all is wide open", "alice@plus-all.test", auth.ResultPass, true},
		{"ip4:0.0.0.0/0 is wide open", "alice@all-v4.test", auth.ResultPass, true},
		{"two /1 are wide open", "alice@half-v4.test", auth.ResultPass, true},
		{"ip6:::/0 does not open IPv4", "alice@v6-wide.test", auth.ResultPass, false},
		{"include chain passes", "alice@chain.test", auth.ResultPass, false},
		{"include of a missing record is a permerror", "alice@include-missing.test", auth.ResultPermError, false},
		{"a mechanism passes", "alice@a.test", auth.ResultPass, false},
		{"mx mechanism passes", "alice@mx.test", auth.ResultPass, false},
		{"exists macro with local part passes", "alice@macro.test", auth.ResultPass, false},
		{"exists macro for another local part fails", "bob@macro.test", auth.ResultFail, false},
		{"exists on the local part alone is wide open", "alice@l-macro.test", auth.ResultPass, true},
		{"redirect passes", "alice@redirect.test", auth.ResultPass, false},
		{"11 includes exceed the lookup limit", "alice@limit.test", auth.ResultPermError, false},
		{"12 nested includes exceed the lookup limit", "alice@d0.deep.test", auth.ResultPermError, false},
		{"3 void lookups exceed the void limit", "alice@void.test", auth.ResultPermError, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := checker.Check(testCtx(t), client, "mx.sender.test", envelope.Parse(tt.sender))
			if res.Result != tt.want || res.WideOpen != tt.wideOpen {
				t.Fatalf("Check(%s) = %s wideOpen=%v (%v), want %s wideOpen=%v", tt.sender, res.Result, res.WideOpen, res.Err, tt.want, tt.wideOpen)
			}
			if want := tt.want == auth.ResultPass && !tt.wideOpen; res.Proven() != want {
				t.Errorf("Proven() = %v, want %v", res.Proven(), want)
			}
			if want := envelope.Parse(tt.sender).LowerDomain(); res.Domain != want {
				t.Errorf("Domain = %q, want %q", res.Domain, want)
			}
		})
	}
}

func TestSPFNullSenderChecksHELO(t *testing.T) {
	srv, checker := newSPF(t, auth.SPFOptions{})
	srv.SetTXT("mx.helo.test", "v=spf1 ip4:203.0.113.5 -all")
	srv.SetTXT("other.helo.test", "v=spf1 -all")

	for _, sender := range []string{"", "<>"} {
		res := checker.Check(testCtx(t), client, "MX.helo.test", envelope.Parse(sender))
		if res.Result != auth.ResultPass || res.Domain != "mx.helo.test" || !res.Proven() {
			t.Errorf("null sender %q with HELO mx.helo.test: %+v", sender, res)
		}
	}
	if res := checker.Check(testCtx(t), client, "other.helo.test", envelope.Parse("")); res.Result != auth.ResultFail || res.Domain != "other.helo.test" {
		t.Errorf("null sender with HELO other.helo.test: %+v", res)
	}
	before := srv.Queries()
	for _, helo := range []string{"[203.0.113.5]", "203.0.113.5", "localhost", ""} {
		if res := checker.Check(testCtx(t), client, helo, envelope.Parse("")); res.Result != auth.ResultNone || res.Proven() {
			t.Errorf("null sender with HELO %q: %+v, want none", helo, res)
		}
	}
	if n := srv.Queries() - before; n != 0 {
		t.Errorf("HELO that is not a domain made %d queries", n)
	}
}

func TestSPFIPv6(t *testing.T) {
	srv, checker := newSPF(t, auth.SPFOptions{CacheTTL: -1})
	srv.SetTXT("v6.test", "v=spf1 ip6:2001:db8:1::/48 -all")
	srv.SetTXT("v6-open.test", "v=spf1 ip6:::/0 -all")
	srv.SetTXT("v6-aaaa.test", "v=spf1 a -all")
	srv.SetAAAA("v6-aaaa.test", "2600:1f18::25")
	srv.SetTXT("v4.test", "v=spf1 ip4:203.0.113.5 -all")

	tests := []struct {
		name     string
		ip       string
		sender   string
		want     auth.Result
		wideOpen bool
	}{
		{"ip6 mechanism passes", "2001:db8:1::25", "a@v6.test", auth.ResultPass, false},
		{"ip6 outside the range fails", "2001:db8:2::25", "a@v6.test", auth.ResultFail, false},
		{"ip6:::/0 is wide open", "2600:1f18::25", "a@v6-open.test", auth.ResultPass, true},
		{"a mechanism with AAAA passes", "2600:1f18::25", "a@v6-aaaa.test", auth.ResultPass, false},
		{"IPv4-mapped client is IPv4", "::ffff:203.0.113.5", "a@v4.test", auth.ResultPass, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := checker.Check(testCtx(t), netip.MustParseAddr(tt.ip), "mx.sender.test", envelope.Parse(tt.sender))
			if res.Result != tt.want || res.WideOpen != tt.wideOpen {
				t.Errorf("%s from %s = %s wideOpen=%v (%v), want %s wideOpen=%v", tt.sender, tt.ip, res.Result, res.WideOpen, res.Err, tt.want, tt.wideOpen)
			}
		})
	}
}

func TestSPFDNSFailureIsTempError(t *testing.T) {
	tests := []struct {
		name string
		mode testdns.Mode
	}{
		{"server never answers", testdns.Drop},
		{"server fails", testdns.ServFail},
		{"server sends garbage", testdns.Garbage},
		{"server slower than the deadline", testdns.Slow(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, checker := newSPF(t, auth.SPFOptions{Timeout: 300 * time.Millisecond})
			srv.SetTXT("pass.test", "v=spf1 ip4:203.0.113.0/24 -all")
			srv.SetMode(tt.mode)
			res := checker.Check(testCtx(t), client, "mx.sender.test", envelope.Parse("alice@pass.test"))
			if res.Result != auth.ResultTempError || res.Proven() {
				t.Fatalf("Check = %s (%v), want temperror", res.Result, res.Err)
			}
		})
	}
}

// A DNS failure below the top level (an include's record, an a: target)
// is a temperror too, not a permerror or a silent non-match.
func TestSPFDNSFailureInsideTheRecord(t *testing.T) {
	srv, checker := newSPF(t, auth.SPFOptions{Timeout: 300 * time.Millisecond, CacheTTL: -1})
	srv.SetTXT("inc.test", "v=spf1 include:slow.test -all")
	srv.SetTXT("slow.test", "v=spf1 ip4:203.0.113.5 -all")
	srv.SetTXT("a.test", "v=spf1 a:slow.test ip4:203.0.113.5 -all")
	srv.SetA("slow.test", "203.0.113.5")

	srv.SetModeFor("slow.test", testdns.Drop)
	for _, sender := range []string{"x@inc.test", "x@a.test"} {
		if res := checker.Check(testCtx(t), client, "h.test", envelope.Parse(sender)); res.Result != auth.ResultTempError {
			t.Errorf("%s with slow.test not answering: %s (%v), want temperror", sender, res.Result, res.Err)
		}
	}
	srv.SetModeFor("slow.test", testdns.Garbage)
	for _, sender := range []string{"x@inc.test", "x@a.test"} {
		if res := checker.Check(testCtx(t), client, "h.test", envelope.Parse(sender)); res.Result != auth.ResultTempError {
			t.Errorf("%s with garbage for slow.test: %s (%v), want temperror", sender, res.Result, res.Err)
		}
	}
}

func TestSPFCache(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	srv, checker := newSPF(t, auth.SPFOptions{Timeout: 300 * time.Millisecond, CacheTTL: 5 * time.Minute, Now: clock})
	srv.SetTXT("pass.test", "v=spf1 include:_spf.pass.test -all")
	srv.SetTXT("_spf.pass.test", "v=spf1 ip4:203.0.113.0/24 -all")

	first := checker.Check(testCtx(t), client, "mx.sender.test", envelope.Parse("alice@pass.test"))
	if !first.Proven() {
		t.Fatalf("first Check = %+v", first)
	}
	// Two TXT lookups; the wide-open check repeats none of them.
	if n := srv.Queries(); n != 2 {
		t.Errorf("first Check made %d queries, want 2", n)
	}

	t.Run("second identical check is cached", func(t *testing.T) {
		before := srv.Queries()
		res := checker.Check(testCtx(t), client, "mx.sender.test", envelope.Parse("alice@pass.test"))
		if res != first {
			t.Errorf("cached result %+v, want %+v", res, first)
		}
		if n := srv.Queries() - before; n != 0 {
			t.Errorf("cached Check made %d queries", n)
		}
	})

	t.Run("another sender is not the cached one", func(t *testing.T) {
		before := srv.Queries()
		checker.Check(testCtx(t), client, "mx.sender.test", envelope.Parse("bob@pass.test"))
		if srv.Queries() == before {
			t.Error("a different sender was answered from the cache")
		}
	})

	t.Run("entries expire", func(t *testing.T) {
		now = now.Add(5 * time.Minute)
		before := srv.Queries()
		if res := checker.Check(testCtx(t), client, "mx.sender.test", envelope.Parse("alice@pass.test")); !res.Proven() {
			t.Errorf("Check after expiry = %+v", res)
		}
		if srv.Queries() == before {
			t.Error("expired entry was used")
		}
	})

	t.Run("temperror is not cached", func(t *testing.T) {
		srv.SetMode(testdns.Drop)
		res := checker.Check(testCtx(t), client, "mx.sender.test", envelope.Parse("carol@pass.test"))
		if res.Result != auth.ResultTempError {
			t.Fatalf("Check with a dead server = %s (%v)", res.Result, res.Err)
		}
		srv.SetMode(testdns.Normal)
		before := srv.Queries()
		if res := checker.Check(testCtx(t), client, "mx.sender.test", envelope.Parse("carol@pass.test")); !res.Proven() {
			t.Errorf("Check once the server is back = %+v", res)
		}
		if srv.Queries() == before {
			t.Error("the temperror was cached")
		}
	})
}

func TestSPFCacheIsBounded(t *testing.T) {
	srv, checker := newSPF(t, auth.SPFOptions{CacheSize: 3})
	srv.SetTXT("pass.test", "v=spf1 ip4:203.0.113.0/24 -all")
	for i := range 10 {
		ip := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		if res := checker.Check(testCtx(t), ip, "h.test", envelope.Parse("a@pass.test")); !res.Proven() {
			t.Fatalf("Check from %v = %+v", ip, res)
		}
	}
	// Not observable beyond "it still works": the last one is cached.
	before := srv.Queries()
	checker.Check(testCtx(t), netip.AddrFrom4([4]byte{203, 0, 113, 9}), "h.test", envelope.Parse("a@pass.test"))
	if srv.Queries() != before {
		t.Error("most recent entry was evicted")
	}
}

func TestSPFOddInput(t *testing.T) {
	_, checker := newSPF(t, auth.SPFOptions{})
	tests := []struct {
		name   string
		ip     netip.Addr
		sender string
		want   auth.Result
	}{
		{"invalid IP", netip.Addr{}, "a@pass.test", auth.ResultPermError},
		{"sender without domain", client, "alice", auth.ResultNone},
		{"sender with empty domain", client, "alice@", auth.ResultNone},
		{"sender with a literal domain", client, "alice@[203.0.113.5]", auth.ResultNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if res := checker.Check(testCtx(t), tt.ip, "h.test", envelope.Parse(tt.sender)); res.Result != tt.want || res.Proven() {
				t.Errorf("Check = %+v, want %s", res, tt.want)
			}
		})
	}
}

func TestSPFCancelledContext(t *testing.T) {
	srv, checker := newSPF(t, auth.SPFOptions{})
	srv.SetTXT("pass.test", "v=spf1 ip4:203.0.113.0/24 -all")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if res := checker.Check(ctx, client, "h.test", envelope.Parse("a@pass.test")); res.Result != auth.ResultTempError {
		t.Errorf("Check with a cancelled context = %s (%v), want temperror", res.Result, res.Err)
	}
}

func TestSPFInternationalDomain(t *testing.T) {
	srv, checker := newSPF(t, auth.SPFOptions{})
	srv.SetTXT("xn--bcher-kva.test", "v=spf1 ip4:203.0.113.5 -all")
	res := checker.Check(testCtx(t), client, "h.test", envelope.Parse("kunde@Bücher.test"))
	if !res.Proven() || res.Domain != "xn--bcher-kva.test" {
		t.Errorf("Check = %+v, want pass for xn--bcher-kva.test", res)
	}
}
