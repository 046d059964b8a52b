package greylist

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/milter-grey/milter-grey/auth"
)

// Scope says which new triplets are greylisted.
type Scope uint8

const (
	// Everyone: every new triplet waits, as with Postgrey.
	Everyone Scope = iota
	// Suspicious: a new triplet waits only when a trigger holds (see
	// Trigger); otherwise it passes at once and is recorded as passed, so
	// that its next message is known.
	Suspicious
)

func (s Scope) String() string {
	if s == Suspicious {
		return "suspicious"
	}
	return "everyone"
}

// ParseScope parses the greylist setting: "everyone" or "suspicious".
func ParseScope(s string) (Scope, error) {
	switch s {
	case "everyone":
		return Everyone, nil
	case "suspicious":
		return Suspicious, nil
	}
	return Everyone, fmt.Errorf("greylist %q: want \"everyone\" or \"suspicious\"", s)
}

// Trigger names why a new triplet is greylisted under the suspicious
// scope. Decision lines show it as trigger=…; the DNSBL trigger carries
// its zone (dnsbl:zen.example).
type Trigger string

const (
	// TriggerDNSBL: a configured DNS blocklist lists the client.
	TriggerDNSBL Trigger = "dnsbl"
	// TriggerDNSFailure: a DNS list or SPF could not be asked (timeout,
	// SERVFAIL). Nothing is known, so the client is greylisted as under
	// the everyone scope: never accepted on a guess.
	TriggerDNSFailure Trigger = "dns-failure"
	// TriggerSPFFail: the sender's SPF record says fail or softfail for
	// this client.
	TriggerSPFFail Trigger = "spf-fail"
	// TriggerSPFUnproven: SPF does not prove the sender's domain for this
	// client (no record, neutral, permerror, or a pass from a record so
	// wide open that it proves nothing). Mail servers of real domains
	// publish SPF; the spam scripts of compromised web servers, which
	// have proper host names, mostly send as domains that do not
	// authorise them.
	TriggerSPFUnproven Trigger = "spf-unproven"
	// TriggerDynamicName: the client's host name looks like a
	// residential or dynamic address (Lists.DynamicNames).
	TriggerDynamicName Trigger = "dynamic-name"
	// TriggerNoFCrDNS: the client has no forward-confirmed host name.
	TriggerNoFCrDNS Trigger = "no-fcrdns"
)

// Triggers is a set of trigger kinds; the zero value means all of them.
type Triggers uint8

const (
	UseDNSBL Triggers = 1 << iota
	UseSPFFail
	UseSPFUnproven
	UseDynamicName
	UseNoFCrDNS

	AllTriggers = UseDNSBL | UseSPFFail | UseSPFUnproven | UseDynamicName | UseNoFCrDNS
)

// ParseTriggers parses the names of greylist_triggers. The DNS failure
// trigger is not among them: it always holds.
func ParseTriggers(names []string) (Triggers, error) {
	var t Triggers
	for _, n := range names {
		switch Trigger(n) {
		case TriggerDNSBL:
			t |= UseDNSBL
		case TriggerSPFFail:
			t |= UseSPFFail
		case TriggerSPFUnproven:
			t |= UseSPFUnproven
		case TriggerDynamicName:
			t |= UseDynamicName
		case TriggerNoFCrDNS:
			t |= UseNoFCrDNS
		default:
			return 0, fmt.Errorf("trigger %q: want %s, %s, %s, %s or %s", n,
				TriggerDNSBL, TriggerSPFFail, TriggerSPFUnproven, TriggerDynamicName, TriggerNoFCrDNS)
		}
	}
	return t, nil
}

// DNSList says whether a DNS list (RFC 5782) lists a client: the zone that
// lists it, or err when no list could be asked. *dnslist.Checker is one.
type DNSList interface {
	Listed(ctx context.Context, ip netip.Addr) (zone string, listed bool, err error)
}

// NameMatcher matches a client host name against patterns
// (*NamePatterns is one).
type NameMatcher interface {
	Match(hostname string) (pattern string, ok bool)
}

// listAnswer is a DNS list's answer for a message's client, memoised.
type listAnswer struct {
	zone   string
	listed bool
	err    error
	done   bool
}

func (a *listAnswer) ask(ctx context.Context, l DNSList, ip netip.Addr) *listAnswer {
	if !a.done {
		if l != nil {
			a.zone, a.listed, a.err = l.Listed(ctx, ip)
		}
		a.done = true
	}
	return a
}

// clientSignals is what the triggers look at, gathered by the engine.
type clientSignals struct {
	dnsbl       string // the blocklist zone that lists the client, or ""
	dnsFailure  bool   // a DNS list or SPF could not be asked
	spf         auth.Result
	spfProven   bool   // a pass from a record that is not wide open
	name        string // the forward-confirmed name, or ""
	dynamicName string // the dynamic-name pattern the name matches, or ""
}

// trigger is the rule of the suspicious scope: the first trigger that
// holds among those enabled, in the order DNS blocklist, DNS failure, SPF
// fail, SPF unproven, dynamic name, no FCrDNS; "" when the client looks
// like a mail server of the sender's domain, which would retry anyway. It
// is pure.
func trigger(s clientSignals, enabled Triggers) Trigger {
	if enabled == 0 {
		enabled = AllTriggers
	}
	switch {
	case enabled&UseDNSBL != 0 && s.dnsbl != "":
		return TriggerDNSBL + ":" + Trigger(s.dnsbl)
	case s.dnsFailure:
		return TriggerDNSFailure
	case enabled&UseSPFFail != 0 && (s.spf == auth.ResultFail || s.spf == auth.ResultSoftFail):
		return TriggerSPFFail
	case enabled&UseSPFUnproven != 0 && !s.spfProven:
		return TriggerSPFUnproven
	case enabled&UseDynamicName != 0 && s.dynamicName != "":
		return TriggerDynamicName
	case enabled&UseNoFCrDNS != 0 && s.name == "":
		return TriggerNoFCrDNS
	}
	return ""
}

// isDNSBL reports whether t is a DNS blocklist trigger.
func (t Trigger) isDNSBL() bool { return strings.HasPrefix(string(t), string(TriggerDNSBL)+":") }
