package main

import (
	"strings"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/config"
	"github.com/milter-grey/milter-grey/greylist"
)

// TestShippedPolicyIsTheDefault: the row marked as the default is the
// configuration of an empty file.
func TestShippedPolicyIsTheDefault(t *testing.T) {
	var shipped []policy
	for _, p := range policies(0) {
		if p.shipped {
			shipped = append(shipped, p)
		}
	}
	if len(shipped) != 1 {
		t.Fatalf("%d policies marked as the default, want 1", len(shipped))
	}
	p := shipped[0]
	if !strings.Contains(p.name, "(default)") {
		t.Errorf("the default's name %q does not say so", p.name)
	}
	d := config.Default()
	scope, err := greylist.ParseScope(d.Greylist)
	if err != nil {
		t.Fatal(err)
	}
	triggers, err := greylist.ParseTriggers(d.GreylistTriggers)
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.config(&world{}, nil)
	if cfg.Triggers == 0 {
		cfg.Triggers = greylist.AllTriggers
	}
	if cfg.Scope != scope || cfg.Triggers != triggers {
		t.Errorf("scope %s, triggers %b; the default: %s, %b", cfg.Scope, cfg.Triggers, scope, triggers)
	}
	if cfg.DomainTrust != d.DomainTrust || cfg.AutoWhitelist != d.AutoWhitelist ||
		cfg.KeyBySPFDomain != d.KeyBySPFDomain || cfg.SPFKeyDropsLocalPart != d.SPFKeyDropsLocalPart {
		t.Errorf("domain trust %d, auto-whitelist %d, key by SPF domain %v, drop local part %v; the default: %d, %d, %v, %v",
			cfg.DomainTrust, cfg.AutoWhitelist, cfg.KeyBySPFDomain, cfg.SPFKeyDropsLocalPart,
			d.DomainTrust, d.AutoWhitelist, d.KeyBySPFDomain, d.SPFKeyDropsLocalPart)
	}
	if (cfg.DNSBL != nil) != (len(d.DNSBLZones) > 0) {
		t.Errorf("DNSBL %v, the default's zones %q", cfg.DNSBL, d.DNSBLZones)
	}
}

// figures makes a result of p with the given legitimate, one-time code,
// bot and DKIM replay figures: each a pair of (delayed or accepted, of).
func figures(p policy, legitDelayed, otpDelayed, botsAccepted, replayAccepted [2]int) *result {
	r := &result{policy: p}
	r.legit.delayed, r.legit.messages = legitDelayed[0], legitDelayed[1]
	otp := &r.classes[OneTimeCode]
	otp.delayed, otp.messages = otpDelayed[0], otpDelayed[1]
	r.bots.accepted, r.bots.messages = botsAccepted[0], botsAccepted[1]
	dr := &r.classes[DKIMReplay]
	dr.accepted, dr.messages = replayAccepted[0], replayAccepted[1]
	return r
}

func TestWriteTargets(t *testing.T) {
	rs := []*result{
		figures(policy{name: "everyone"}, [2]int{20, 100}, [2]int{3, 10}, [2]int{1, 50}, [2]int{0, 10}),
		figures(policy{name: "other"}, [2]int{1, 100}, [2]int{0, 10}, [2]int{0, 50}, [2]int{0, 10}),
		// 5 % is within the target; 10 % of codes and 2 bots of 50 are not.
		figures(policy{name: "dflt", shipped: true}, [2]int{5, 100}, [2]int{1, 10}, [2]int{2, 50}, [2]int{0, 10}),
	}
	var out strings.Builder
	writeTargets(&out, rs)
	for _, want := range []string{
		"### Targets of the default (dflt)\n",
		"| legitimate messages delayed ≤ 5 % | 5.0 % | 20.0 % | met |\n",
		"| one-time codes delayed ≤ 2 % | 10.0 % | 30.0 % | **missed** |\n",
		"| bot messages accepted ≤ everyone | 4.0 % | 2.0 % | **missed** |\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in\n%s", want, out.String())
		}
	}
}

func TestWriteTrust(t *testing.T) {
	sus := greylist.Suspicious
	withTrust := figures(policy{name: "everyone +trust", trust: true}, [2]int{10, 100}, [2]int{1, 10}, [2]int{1, 50}, [2]int{1, 10})
	withTrust.classes[DKIMReplay].trustedDomain = 8
	withTrust.legit.unprovenDelayed = 5
	// 3 of the 4 delayed without trust are senders SPF did not prove: no
	// trust could bring the 4 down to 2.
	suspicious := figures(policy{name: "suspicious", scope: sus}, [2]int{4, 100}, [2]int{0, 10}, [2]int{2, 50}, [2]int{0, 10})
	suspicious.legit.unprovenDelayed = 3
	rs := []*result{
		figures(policy{name: "everyone"}, [2]int{20, 100}, [2]int{3, 10}, [2]int{1, 50}, [2]int{0, 10}),
		withTrust,
		suspicious,
		figures(policy{name: "suspicious +trust", scope: sus, trust: true}, [2]int{3, 100}, [2]int{0, 10}, [2]int{1, 50}, [2]int{0, 10}),
		// No row without trust to compare with: left out.
		figures(policy{name: "suspicious +trust +DNSBL", scope: sus, trust: true, dnsbl: true}, [2]int{1, 100}, [2]int{0, 10}, [2]int{0, 50}, [2]int{0, 10}),
	}
	var out strings.Builder
	writeTrust(&out, rs)
	for _, want := range []string{
		"| everyone | 20.0 % | 0.0 % | 30.0 % | 2.0 % | 0.0 % | 0.0 % | 0.0 % |\n",
		// Halved exactly: met; as many bots: met; one replay more: missed.
		"| everyone +trust | 10.0 % met | 5.0 % | 10.0 % | 2.0 % met | 10.0 % **missed** | 80.0 % | 0.0 % |\n",
		"| suspicious | 4.0 % | 3.0 % | 0.0 % | 4.0 % | 0.0 % | 0.0 % | 0.0 % |\n",
		"| suspicious +trust | 3.0 % **missed**, out of reach | 0.0 % | 0.0 % | 2.0 % met | 0.0 % met | 0.0 % | 0.0 % |\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "+DNSBL") {
		t.Errorf("a row for a policy without its counterpart:\n%s", out.String())
	}
}

// TestStatsAdd: a legitimate message counts as accepted when every
// recipient is, spam when one is; the delay runs to the last recipient's
// acceptance for legitimate mail, to the first's for spam; accepted spam
// counts by the reason of its first pass.
func TestStatsAdd(t *testing.T) {
	at := t0
	partly := outcome{accepted: 1, greylisted: true, first: at.Add(time.Minute), last: at.Add(9 * time.Minute),
		passReason: greylist.ReasonAutoWhitelist, trustedDomain: true}
	var legit, spam stats
	legit.add(partly, 2, true, at)
	spam.add(partly, 2, false, at)
	spam.add(outcome{greylisted: true, trigger: greylist.TriggerSPFFail, unproven: true}, 1, false, at)
	spam.add(outcome{unproven: true}, 1, false, at) // not delayed: not counted as unproven delayed
	spam.add(outcome{accepted: 1, first: at, last: at, passReason: greylist.ReasonNotSuspicious}, 1, false, at)

	if legit.accepted != 0 || legit.delayed != 1 || len(legit.delays) != 0 || legit.passReasons != nil {
		t.Errorf("legitimate, one of two recipients accepted: %+v, want delayed, not accepted, no delay, no reasons", legit)
	}
	if spam.messages != 4 || spam.accepted != 2 || spam.delayed != 2 || spam.trustedDomain != 1 || spam.unprovenDelayed != 1 {
		t.Errorf("spam: %d messages, %d accepted, %d delayed, %d of a trusted domain, %d unproven delayed; want 4, 2, 2, 1, 1",
			spam.messages, spam.accepted, spam.delayed, spam.trustedDomain, spam.unprovenDelayed)
	}
	if len(spam.delays) != 1 || spam.delays[0] != time.Minute {
		t.Errorf("spam delays %v, want [1m0s]: to the first acceptance", spam.delays)
	}
	if got, want := passReasons("spam", &spam), "spam: auto-whitelist 1, not-suspicious 1"; got != want {
		t.Errorf("passReasons = %q, want %q", got, want)
	}
	if got, want := triggers(&spam), "no trigger (new triplet, or retried too early) 1, spf-fail 1"; got != want {
		t.Errorf("triggers = %q, want %q", got, want)
	}
}
