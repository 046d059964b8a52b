package greylist_test

import (
	"cmp"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/auth"

	. "github.com/milter-grey/milter-grey/greylist"
)

// earnTrust makes example.net's triplets pass after the delay n times,
// apart (after a 10-minute retry), from mx1 (changed by opts) with SPF proving example.net; each pass
// is a new recipient.
func earnTrust(t *testing.T, e *Engine, clock *fakeClock, n int, apart time.Duration, opts ...func(*Request)) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		r := req(append([]func(*Request){spfProves("example.net"), rcpt("earn" + string(rune('a'+i)) + "@example.org")}, opts...)...)
		if d := decide(e, ctx, r); d.Reason != ReasonNew {
			t.Fatalf("pass %d, first attempt: %+v", i, d)
		}
		clock.Advance(10 * time.Minute)
		if d := decide(e, ctx, r); d.Reason != ReasonRetried {
			t.Fatalf("pass %d, retry: %+v", i, d)
		}
		clock.Advance(apart)
	}
}

func spfProves(domain string) func(*Request) {
	return func(r *Request) { r.SPF = &auth.SPFResult{Result: auth.ResultPass, Domain: domain} }
}

func spfSays(res auth.Result, domain string) func(*Request) {
	return func(r *Request) { r.SPF = &auth.SPFResult{Result: res, Domain: domain} }
}

func TestDomainTrust(t *testing.T) {
	otherNet := from(netip.MustParseAddr("203.0.114.9")) // another /24, not whitelisted
	newRcpt := rcpt("new@example.org")
	trusted := outcome{Action: Pass, Reason: ReasonTrustedDomain, Match: "example.net"}
	for _, c := range []struct {
		name  string
		trust int // domain_trust; 0: the default
		n     int // passes earned, apart
		apart time.Duration
		earn  []func(*Request) // how the passes are made, beyond the defaults
		setup func(*Engine)
		next  Request
		want  outcome
	}{
		{name: "earned by one pass: another network passes when SPF proves it", n: 1,
			next: req(otherNet, newRcpt, spfProves("example.net")), want: trusted},
		{name: "a forged sender (SPF fail) gets nothing", n: 1,
			next: req(otherNet, newRcpt, spfSays(auth.ResultFail, "example.net")), want: greylistNew},
		{name: "softfail gets nothing", n: 1,
			next: req(otherNet, newRcpt, spfSays(auth.ResultSoftFail, "example.net")), want: greylistNew},
		{name: "no SPF record gets nothing", n: 1,
			next: req(otherNet, newRcpt, spfSays(auth.ResultNone, "example.net")), want: greylistNew},
		{name: "temperror gets nothing", n: 1,
			next: req(otherNet, newRcpt, spfSays(auth.ResultTempError, "example.net")), want: greylistNew},
		{name: "a wide-open record gets nothing", n: 1,
			next: req(otherNet, newRcpt, func(r *Request) {
				r.SPF = &auth.SPFResult{Result: auth.ResultPass, Domain: "example.net", WideOpen: true}
			}), want: greylistNew},
		{name: "per exact domain: a subdomain has its own", n: 1,
			next: req(otherNet, newRcpt, sender("alice@bounce.example.net"), spfProves("bounce.example.net")), want: greylistNew},
		{name: "per exact domain: the parent has its own", n: 1,
			next: req(otherNet, newRcpt, sender("alice@net"), spfProves("net")), want: greylistNew},
		{name: "a signed message replayed from an unauthorised host gets nothing", n: 1,
			next: req(otherNet, newRcpt, spfSays(auth.ResultFail, "example.net"), at(AtEndOfMessage), func(r *Request) {
				r.DKIM = &DKIMEvidence{Results: []auth.DKIMResult{{Domain: "example.net", Result: auth.ResultPass}}, FromFields: 1}
			}), want: greylistNew},
		{name: "domain_trust 3: two passes are not enough", trust: 3, n: 2, apart: 2 * time.Hour,
			next: req(otherNet, newRcpt, spfProves("example.net")), want: greylistNew},
		{name: "domain_trust 3: three passes an hour apart", trust: 3, n: 3, apart: time.Hour,
			next: req(otherNet, newRcpt, spfProves("example.net")), want: trusted},
		{name: "domain_trust 3: a burst counts once an hour", trust: 3, n: 3, apart: 10 * time.Minute,
			next: req(otherNet, newRcpt, spfProves("example.net")), want: greylistNew},
		{name: "never_trust_domains", n: 1,
			setup: func(e *Engine) {
				l := *e.Lists()
				l.NeverTrustDomains = &DomainList{}
				l.NeverTrustDomains.Add("example.net")
				e.SetLists(&l)
			},
			next: req(otherNet, newRcpt, spfProves("example.net")), want: greylistNew},
		{name: "a client with a dynamic name does not use it", n: 1, setup: dynamicNames,
			next: req(otherNet, newRcpt, named("pool-203-0-114-9.isp.example"), spfProves("example.net")), want: greylistNew},
		{name: "a client with a dynamic name does not earn it", n: 1, setup: dynamicNames,
			earn: []func(*Request){named("pool-192-0-2-1.isp.example")},
			next: req(otherNet, newRcpt, spfProves("example.net")), want: greylistNew},
		{name: "a client with a plain name uses it", n: 1, setup: dynamicNames,
			next: req(otherNet, newRcpt, named("mx3.example.net"), spfProves("example.net")), want: trusted},
		{name: "the null sender does not use it", n: 1,
			next: req(otherNet, newRcpt, sender(""), at(AfterEnvelope), spfProves("example.net")), want: greylistNew},
	} {
		t.Run(c.name, func(t *testing.T) {
			trust := cmp.Or(c.trust, DefaultDomainTrust)
			e, clock, _ := newTestEngine(t, Config{DomainTrust: trust})
			if c.setup != nil {
				c.setup(e)
			}
			earnTrust(t, e, clock, c.n, c.apart, c.earn...)
			if got := outcomeOf(decide(e, context.Background(), c.next)); got != c.want {
				t.Errorf("next message: %+v, want %+v", got, c.want)
			}
		})
	}
}

// dynamicNames sets the shipped dynamic-name patterns.
func dynamicNames(e *Engine) {
	l := *e.Lists()
	l.DynamicNames = DefaultNamePatterns()
	e.SetLists(&l)
}

// A blocklisted client neither uses nor earns trust; deleting the record
// ends it at once; explain shows it and writes nothing.
func TestDomainTrustBlocklistDeleteExplain(t *testing.T) {
	bl := &fakeDNSList{zone: "bl.test"}
	e, clock, store := newTestEngine(t, Config{DomainTrust: DefaultDomainTrust, DNSBL: bl})
	earnTrust(t, e, clock, 1, 0)
	ctx := context.Background()
	next := req(from(mx2), rcpt("new@example.org"), spfProves("example.net"))
	if d := explain(e, ctx, next); d.Reason != ReasonTrustedDomain {
		t.Fatalf("explain: %+v", d)
	}
	n := len(store.Keys())
	bl.listed = map[netip.Addr]bool{mx2: true}
	if d := decide(e, ctx, next); d.Reason != ReasonNew || d.Trigger != "dnsbl:bl.test" {
		t.Errorf("blocklisted client of a trusted domain: %+v", d)
	}
	bl.listed = nil
	if d := decide(e, ctx, req(from(mx2), rcpt("other@example.org"), spfProves("example.net"))); d.Reason != ReasonTrustedDomain {
		t.Errorf("not listed: %+v, want trusted-domain", d)
	}
	if len(store.Keys()) < n {
		t.Errorf("store shrank from %d to %d", n, len(store.Keys()))
	}
	rec, _, err := store.Get(ctx, DomainKey("example.net"))
	if err != nil || e.Status(DomainKey("example.net"), rec, clock.Now()) != StatusTrusted {
		t.Fatalf("domain record: %+v, %v", rec, err)
	}
	if err := store.Delete(ctx, DomainKey("example.net")); err != nil {
		t.Fatal(err)
	}
	e.StoreChanged()
	if d := decide(e, ctx, req(from(mx2), rcpt("third@example.org"), spfProves("example.net"))); d.Reason != ReasonNew {
		t.Errorf("after delete: %+v, want new", d)
	}
}

func TestTrustDomainByAdmin(t *testing.T) {
	e, _, _ := newTestEngine(t, Config{DomainTrust: 3})
	ctx := context.Background()
	if _, err := e.TrustDomain(ctx, "Partner.Example."); err != nil {
		t.Fatal(err)
	}
	d := decide(e, ctx, req(sender("x@partner.example"), spfProves("partner.example")))
	if d.Reason != ReasonTrustedDomain {
		t.Errorf("after pass: %+v", d)
	}
	if _, err := e.TrustDomain(ctx, "a b"); err == nil {
		t.Error("TrustDomain(a b): no error")
	}
	off, _, _ := newTestEngine(t, Config{})
	if _, err := off.TrustDomain(ctx, "partner.example"); err == nil {
		t.Error("TrustDomain with domain trust off: no error")
	}
}

func TestDomainList(t *testing.T) {
	var l DomainList
	for _, d := range []string{"example.com", ".Other.Example."} {
		if err := l.Add(d); err != nil {
			t.Fatal(err)
		}
	}
	for d, want := range map[string]bool{"example.com": true, "mail.example.com": true, "other.example": true,
		"a.b.other.example": true, "notexample.com": false, "com": false} {
		if _, got := l.Match(d); got != want {
			t.Errorf("Match(%q) = %v, want %v", d, got, want)
		}
	}
	if err := l.Add("a@b"); err == nil {
		t.Error("Add(a@b): no error")
	}
}
