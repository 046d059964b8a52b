package greylist_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/envelope"

	. "github.com/milter-grey/milter-grey/greylist"
)

// Rule 1, alone: which recipients pass without a look at the store, in
// which order the exemptions are tried.
func TestExemption(t *testing.T) {
	l := testLists(t)
	msg := func(ip, name, user string) *Message {
		m := &Message{ClientName: name, AuthUser: user, Sender: envelope.Parse("alice@example.net")}
		if ip != "" {
			m.Client = netip.MustParseAddr(ip)
		}
		return m
	}
	for _, c := range []struct {
		name    string
		m       *Message
		rcptKey string
		want    outcome
		exempt  bool
	}{
		{"no client address", msg("", "", ""), "bob@example.org", exempt(ReasonNoClientAddr, ""), true},
		{"trusted network", msg("10.1.2.3", "", ""), "bob@example.org", exempt(ReasonTrusted, "10.0.0.0/8"), true},
		{"trusted before SASL", msg("10.1.2.3", "", "alice"), "bob@example.org", exempt(ReasonTrusted, "10.0.0.0/8"), true},
		{"SASL", msg("192.0.2.1", "", "alice"), "bob@example.org", exempt(ReasonSASL, "alice"), true},
		{"SASL before the client whitelist", msg("203.0.113.5", "", "alice"), "", exempt(ReasonSASL, "alice"), true},
		{"client whitelist by address", msg("203.0.113.5", "", ""), "bob@example.org", exempt(ReasonClientWhitelist, "203.0.113.0/28"), true},
		{"client whitelist by confirmed name", msg("192.0.2.1", "mx.partner.example", ""), "bob@example.org",
			exempt(ReasonClientWhitelist, "partner.example"), true},
		{"recipient whitelist", msg("192.0.2.1", "", ""), "postmaster@example.org", exempt(ReasonRcptWhitelist, "postmaster@example.org"), true},
		{"client only: no recipient", msg("192.0.2.1", "", ""), "", outcome{}, false},
		{"nothing matches", msg("192.0.2.1", "", ""), "bob@example.org", outcome{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, ok := Exemption(l, c.m, c.rcptKey)
			if ok != c.exempt || outcomeOf(d) != c.want {
				t.Errorf("exemption = %+v, %v; want %+v, %v", outcomeOf(d), ok, c.want, c.exempt)
			}
		})
	}
}

// The DKIM half of rule 4, alone.
func TestDKIMProof(t *testing.T) {
	pass := func(d string) auth.DKIMResult {
		return auth.DKIMResult{Domain: d, Selector: "s", Result: auth.ResultPass}
	}
	fail := auth.DKIMResult{Domain: "example.com", Selector: "s", Result: auth.ResultFail, Err: errors.New("bad body hash")}
	for _, c := range []struct {
		name   string
		ev     *DKIMEvidence
		sender string
		strict bool
		proven bool
		note   string
	}{
		{"not verified: no proof, nothing to log", nil, "alice@example.com", false, false, ""},
		{"no signature", &DKIMEvidence{FromFields: 1}, "alice@example.com", false, false, "none"},
		{"aligned signature, one From", &DKIMEvidence{Results: []auth.DKIMResult{pass("example.com")}, FromFields: 1},
			"alice@example.com", false, true, "pass d=example.com aligned=relaxed"},
		{"relaxed: a subdomain signs", &DKIMEvidence{Results: []auth.DKIMResult{pass("mail.example.com")}, FromFields: 1},
			"alice@example.com", false, true, "pass d=mail.example.com aligned=relaxed"},
		{"strict: a subdomain does not", &DKIMEvidence{Results: []auth.DKIMResult{pass("mail.example.com")}, FromFields: 1},
			"alice@example.com", true, false, "pass d=mail.example.com aligned=no"},
		{"another domain signs", &DKIMEvidence{Results: []auth.DKIMResult{pass("attacker.test")}, FromFields: 1},
			"alice@example.com", false, false, "pass d=attacker.test aligned=no"},
		{"two From fields prove nothing", &DKIMEvidence{Results: []auth.DKIMResult{pass("example.com")}, FromFields: 2},
			"alice@example.com", false, false, "pass d=example.com aligned=relaxed (not a proof: 2 From fields)"},
		{"a failed signature", &DKIMEvidence{Results: []auth.DKIMResult{fail}, FromFields: 1},
			"alice@example.com", false, false, "fail d=example.com"},
		{"an aligned pass among failures", &DKIMEvidence{Results: []auth.DKIMResult{fail, pass("example.com")}, FromFields: 1},
			"alice@example.com", false, true, "pass d=example.com aligned=relaxed"},
		{"null sender has no domain to align", &DKIMEvidence{Results: []auth.DKIMResult{pass("example.com")}, FromFields: 1},
			"", false, false, "pass d=example.com aligned=no"},
	} {
		t.Run(c.name, func(t *testing.T) {
			proven, note := DKIMProof(c.ev, envelope.Parse(c.sender), c.strict)
			if proven != c.proven || note != c.note {
				t.Errorf("dkimProof = %v, %q; want %v, %q", proven, note, c.proven, c.note)
			}
		})
	}
}

func TestRefusal(t *testing.T) {
	g := func(r time.Duration) Decision { return Decision{Action: Greylist, Reason: ReasonNew, RetryIn: r} }
	p := Decision{Action: Pass, Reason: ReasonKnown}
	for _, c := range []struct {
		name string
		ds   []Decision
		want Decision
		ok   bool
	}{
		{"none", nil, Decision{}, false},
		{"all pass", []Decision{p, p}, Decision{}, false},
		{"one greylisted", []Decision{p, g(time.Minute)}, g(time.Minute), true},
		{"the longest wait", []Decision{g(time.Minute), p, g(5 * time.Minute), g(2 * time.Minute)}, g(5 * time.Minute), true},
		{"deferred is not refused", []Decision{{Action: Defer}, p}, Decision{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got, ok := Refusal(c.ds); ok != c.ok || got != c.want {
				t.Errorf("Refusal = %+v, %v; want %+v, %v", got, ok, c.want, c.ok)
			}
		})
	}
}

// What admin listings show of a record comes from the engine.
func TestStatus(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	e := New(nil, Config{AutoWhitelist: 3})
	off := New(nil, Config{})
	rec := func(st State, first time.Time, count uint32) *Record {
		return &Record{State: st, First: first, Last: first, Count: count}
	}
	triplet := "t:192.0.2.0/24 a@example.com b@example.org"
	client := "c:192.0.2.0/24"
	for _, c := range []struct {
		name string
		e    *Engine
		key  string
		rec  *Record
		want Status
	}{
		{"pending triplet", e, triplet, rec(Pending, now.Add(-time.Hour), 1), StatusPending},
		{"never retried", e, triplet, rec(Pending, now.Add(-DefaultPolicy.RetryWindow-time.Minute), 1), StatusNeverRetried},
		{"passed triplet", e, triplet, rec(Passed, now.Add(-time.Hour), 1), StatusPassed},
		{"client counting", e, client, rec(Passed, now, 2), StatusCounting},
		{"client auto-whitelisted", e, client, rec(Passed, now, 3), StatusAutoWhitelisted},
		{"auto-whitelist off: counting", off, client, rec(Passed, now, 100), StatusCounting},
		{"another kind keeps its state", e, "x:other", rec(Passed, now, 1), StatusPassed},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.e.Status(c.key, c.rec, now); got != c.want {
				t.Errorf("Status = %q, want %q", got, c.want)
			}
		})
	}
}

func TestClientPart(t *testing.T) {
	e := New(nil, Config{})
	for in, want := range map[string]string{
		"192.0.2.77":          "192.0.2.0/24",
		" [192.0.2.77] ":      "192.0.2.0/24",
		"2001:db8:1:2::9":     "2001:db8:1:2::/64",
		"198.51.100.0/22":     "198.51.100.0/22",
		"198.51.100.7/32":     "198.51.100.7",
		"SPF:Sender.Example.": "spf:sender.example",
	} {
		if got, err := e.ClientPart(in); err != nil || got != want {
			t.Errorf("ClientPart(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "spf:", "spf:a b", "mx.example.com", "alice@example.com"} {
		if got, err := e.ClientPart(bad); err == nil {
			t.Errorf("ClientPart(%q) = %q, want an error", bad, got)
		}
	}
}
