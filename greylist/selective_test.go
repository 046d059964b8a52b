package greylist_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/auth"

	. "github.com/milter-grey/milter-grey/greylist"
)

func TestParseScopeAndTriggers(t *testing.T) {
	if s, err := ParseScope("suspicious"); err != nil || s != Suspicious {
		t.Errorf("ParseScope(suspicious) = %v, %v", s, err)
	}
	if s, err := ParseScope("everyone"); err != nil || s != Everyone {
		t.Errorf("ParseScope(everyone) = %v, %v", s, err)
	}
	if _, err := ParseScope("some"); err == nil || !strings.Contains(err.Error(), `"some"`) {
		t.Errorf("ParseScope(some): %v, want an error naming the value", err)
	}
	tr, err := ParseTriggers([]string{"dnsbl", "no-fcrdns"})
	if err != nil || tr != UseDNSBL|UseNoFCrDNS {
		t.Errorf("ParseTriggers = %v, %v", tr, err)
	}
	if _, err := ParseTriggers([]string{"dns-failure"}); err == nil {
		t.Error("ParseTriggers(dns-failure): no error (it always holds, it is not a setting)")
	}
}

// fakeDNSList lists the clients in its map; fail makes every query fail.
type fakeDNSList struct {
	zone    string
	listed  map[netip.Addr]bool
	fail    bool
	queries atomic.Int32
}

func (l *fakeDNSList) Listed(_ context.Context, ip netip.Addr) (string, bool, error) {
	l.queries.Add(1)
	if l.fail {
		return "", false, errors.New("i/o timeout")
	}
	if l.listed[ip] {
		return l.zone, true, nil
	}
	return "", false, nil
}

type fakeNames []string

func (f fakeNames) Match(name string) (string, bool) {
	for _, p := range f {
		if strings.Contains(name, p) {
			return p, true
		}
	}
	return "", false
}

// The suspicious scope through Decide: which new triplets wait, and that
// an admitted one is recorded as passed.
func TestSuspiciousScope(t *testing.T) {
	listedIP := netip.MustParseAddr("192.0.2.66")
	allowedIP := netip.MustParseAddr("198.51.100.77")
	spfPass := &auth.SPFResult{Result: auth.ResultPass, Domain: "example.net"}
	spfSoft := &auth.SPFResult{Result: auth.ResultSoftFail, Domain: "example.net"}
	spfTemp := &auth.SPFResult{Result: auth.ResultTempError, Domain: "example.net"}
	withSPF := func(r *auth.SPFResult) func(*Request) { return func(q *Request) { q.SPF = r } }
	mailServer := func(q *Request) { q.ClientName = "mx.example.net"; q.SPF = spfPass }

	notSuspicious := outcome{Action: Pass, Reason: ReasonNotSuspicious}
	for _, c := range []struct {
		name        string
		failDNSBL   bool
		steps       []step
		wantTrigger Trigger
		stored      int
	}{
		{name: "a mail server passes at once and is known next time", stored: 1, steps: []step{
			{0, req(mailServer), notSuspicious},
			{time.Minute, req(mailServer), known},
		}},
		{name: "no FCrDNS is greylisted", wantTrigger: TriggerNoFCrDNS, stored: 1, steps: []step{
			{0, req(withSPF(spfPass)), greylistNew},
		}},
		{name: "dynamic name is greylisted", wantTrigger: TriggerDynamicName, stored: 1, steps: []step{
			{0, req(mailServer, named("dyn-1-2-3-4.isp.example")), greylistNew},
		}},
		{name: "SPF softfail is greylisted", wantTrigger: TriggerSPFFail, stored: 1, steps: []step{
			{0, req(mailServer, withSPF(spfSoft)), greylistNew},
		}},
		{name: "SPF temperror is greylisted", wantTrigger: TriggerDNSFailure, stored: 1, steps: []step{
			{0, req(mailServer, withSPF(spfTemp)), greylistNew},
		}},
		{name: "blocklisted mail server is greylisted", wantTrigger: "dnsbl:bl.test", stored: 1, steps: []step{
			{0, req(mailServer, from(listedIP)), greylistNew},
		}},
		{name: "a blocklist that cannot be asked: greylisted", failDNSBL: true, wantTrigger: TriggerDNSFailure, stored: 1, steps: []step{
			{0, req(mailServer), greylistNew},
		}},
		{name: "allowlisted without FCrDNS passes, nothing stored", stored: 0, steps: []step{
			{0, req(from(allowedIP)), outcome{Action: Pass, Reason: ReasonDNSWL, Match: "wl.test"}},
		}},
		{name: "a greylisted triplet retried passes as usual", wantTrigger: "", stored: 1, steps: []step{
			{0, req(), greylistNew},
			{5 * time.Minute, req(), retried(5 * time.Minute)},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			bl := &fakeDNSList{zone: "bl.test", listed: map[netip.Addr]bool{listedIP: true}, fail: c.failDNSBL}
			wl := &fakeDNSList{zone: "wl.test", listed: map[netip.Addr]bool{allowedIP: true}}
			e, clock, store := newTestEngine(t, Config{Scope: Suspicious, DNSBL: bl, DNSWL: wl})
			l := *e.Lists()
			l.DynamicNames = fakeNames{"dyn-"}
			e.SetLists(&l)
			var last Decision
			for i, s := range c.steps {
				clock.Advance(s.after)
				last = decide(e, context.Background(), s.req)
				if got := outcomeOf(last); got != s.want {
					t.Errorf("step %d: got %+v, want %+v", i, got, s.want)
				}
			}
			if len(c.steps) == 1 && last.Trigger != c.wantTrigger {
				t.Errorf("trigger = %q, want %q", last.Trigger, c.wantTrigger)
			}
			if n := len(store.Keys()); n != c.stored {
				t.Errorf("store holds %d records, want %d", n, c.stored)
			}
		})
	}
}

// A blocklisted client is never auto-whitelisted, under either scope, and
// its greylisted triplets name the list.
func TestDNSBLSkipsAutoWhitelist(t *testing.T) {
	bl := &fakeDNSList{zone: "bl.test", listed: map[netip.Addr]bool{mx1: true}}
	e, clock, _ := newTestEngine(t, Config{AutoWhitelist: 1, DNSBL: bl})
	ctx := context.Background()
	// Without the listing, one retried triplet whitelists mx1's network.
	bl.listed = nil
	decide(e, ctx, req())
	clock.Advance(10 * time.Minute)
	if d := decide(e, ctx, req()); d.Reason != ReasonRetried {
		t.Fatalf("retry: %+v", d)
	}
	clock.Advance(time.Minute)
	if d := decide(e, ctx, req(rcpt("carol@example.org"))); d.Reason != ReasonAutoWhitelist {
		t.Fatalf("after one pass: %+v, want auto-whitelist", d)
	}
	// Listed now: a new triplet of that network waits, and says why.
	bl.listed = map[netip.Addr]bool{mx1: true}
	e.StoreChanged()
	d := decide(e, ctx, req(rcpt("dave@example.org")))
	if outcomeOf(d) != greylistNew || d.Trigger != "dnsbl:bl.test" {
		t.Errorf("listed client: %+v, want greylisted with trigger dnsbl:bl.test", d)
	}
}

// The blocklist is asked once per message, whatever its recipients.
func TestDNSListAskedOncePerMessage(t *testing.T) {
	bl := &fakeDNSList{zone: "bl.test"}
	wl := &fakeDNSList{zone: "wl.test"}
	e, _, _ := newTestEngine(t, Config{Scope: Suspicious, DNSBL: bl, DNSWL: wl})
	r := req(named("mx.example.net"))
	m, _ := r.message()
	for _, to := range []string{"a@example.org", "b@example.org", "c@example.org"} {
		r.Recipient = to
		_, rcpt := r.message()
		e.Decide(context.Background(), m, rcpt, AtRcpt)
	}
	if bl.queries.Load() != 1 || wl.queries.Load() != 1 {
		t.Errorf("queries: blocklist %d, allowlist %d; want 1 each", bl.queries.Load(), wl.queries.Load())
	}
}

// Explain shows the trigger and admits nothing.
func TestExplainSuspicious(t *testing.T) {
	e, _, store := newTestEngine(t, Config{Scope: Suspicious})
	ctx := context.Background()
	proven := func(r *Request) { r.SPF = &auth.SPFResult{Result: auth.ResultPass, Domain: "example.net"} }
	d := explain(e, ctx, req(proven))
	if outcomeOf(d) != greylistNew || d.Trigger != TriggerNoFCrDNS {
		t.Errorf("explain, no FCrDNS: %+v", d)
	}
	d = explain(e, ctx, req(named("mx.example.net")))
	if outcomeOf(d) != greylistNew || d.Trigger != TriggerSPFUnproven {
		t.Errorf("explain, no SPF: %+v", d)
	}
	d = explain(e, ctx, req(named("mx.example.net"), proven))
	if outcomeOf(d) != (outcome{Action: Pass, Reason: ReasonNotSuspicious}) {
		t.Errorf("explain, a mail server: %+v", d)
	}
	if len(store.Keys()) != 0 {
		t.Errorf("explain wrote %d records", len(store.Keys()))
	}
}

// With SPFKeyDropsLocalPart, a proven domain's per-message bounce
// addresses share one triplet per recipient.
func TestSPFKeyDropsLocalPart(t *testing.T) {
	spf := &auth.SPFResult{Result: auth.ResultPass, Domain: "bounce.esp.example"}
	e, clock, _ := newTestEngine(t, Config{KeyBySPFDomain: true, SPFKeyDropsLocalPart: true})
	ctx := context.Background()
	first := req(sender("a1b2c3d4e5f6-001@bounce.esp.example"), func(r *Request) { r.SPF = spf })
	d := decide(e, ctx, first)
	if d.Key != "t:spf:bounce.esp.example @bounce.esp.example bob@example.org" || d.Reason != ReasonNew {
		t.Fatalf("first: %+v", d)
	}
	clock.Advance(6 * time.Minute)
	retry := req(from(mx2), sender("zz-other-token-77@bounce.esp.example"), func(r *Request) { r.SPF = spf })
	if d := decide(e, ctx, retry); d.Reason != ReasonRetried {
		t.Errorf("another token from another network of the domain: %+v, want retried", d)
	}
	// Not proven: the address is kept.
	notProven := req(sender("alice@bounce.esp.example"), func(r *Request) {
		r.SPF = &auth.SPFResult{Result: auth.ResultFail}
	})
	if d := decide(e, ctx, notProven); !strings.Contains(d.Key, " alice@bounce.esp.example ") {
		t.Errorf("unproven sender's key %q keeps its local part", d.Key)
	}
}
