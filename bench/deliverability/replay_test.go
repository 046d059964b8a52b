package main

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/greylist"
)

// The scripted scenarios below have figures worked out by hand from the
// README's rules (delay 5 minutes, keys by SPF-proven domain) and the
// senders' fixed retry waits.

var t0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

// twoSenders: a provider pool whose retry comes from its other server, in
// another /16, and a bot without FCrDNS that retries once after a minute.
func twoSenders() *scenario {
	w := newWorld()
	w.spf["provider.test"] = &spfRecord{
		pass:  []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.2.0.0/16")},
		other: auth.ResultFail,
	}
	pool := &sender{
		hosts: []host{
			{ip: netip.MustParseAddr("10.1.0.5"), name: "mx1.provider.test"},
			{ip: netip.MustParseAddr("10.2.0.5"), name: "mx2.provider.test"},
		},
		rotate: true,
		retry:  fixedRetry{2 * time.Minute, 6 * time.Minute},
	}
	bot := &sender{hosts: []host{{ip: netip.MustParseAddr("100.64.0.9")}}, retry: fixedRetry{time.Minute}}
	return &scenario{
		world: w,
		msgs: []message{
			{class: BigProvider, at: t0, from: "alice@provider.test", rcpts: []string{"bob@dest.test"}, sender: pool},
			{class: ResidentialBot, at: t0.Add(30 * time.Minute), from: "x@forged.test", rcpts: []string{"bob@dest.test"}, sender: bot},
			{class: BigProvider, at: t0.Add(time.Hour), from: "alice@provider.test", rcpts: []string{"bob@dest.test"}, sender: pool},
		},
		from: t0, to: t0.Add(day), seed: 1,
	}
}

func TestReplayTwoSenders(t *testing.T) {
	sc := twoSenders()
	t.Run("everyone", func(t *testing.T) {
		r := replayed(t, sc, policy{name: "everyone"})
		// The first message: 451 at 0 (new), 451 at 2m from the other
		// server (early: same spf:provider.test key), pass at 8m. The
		// second: known.
		checkRow(t, "provider", &r.classes[BigProvider], row{messages: 2, delayed: 1, accepted: 2, median: 8 * time.Minute})
		// The bot: 451, and 451 again a minute later; then it gives up.
		checkRow(t, "bot", &r.classes[ResidentialBot], row{messages: 1, delayed: 1, accepted: 0})
		if got := r.legit.delayedShare(); got != 0.5 {
			t.Errorf("legitimate delayed = %v, want 0.5", got)
		}
	})
	t.Run("suspicious", func(t *testing.T) {
		r := replayed(t, sc, policy{name: "suspicious", scope: greylist.Suspicious})
		// FCrDNS, SPF pass, not listed: no trigger, passed at once.
		checkRow(t, "provider", &r.classes[BigProvider], row{messages: 2, delayed: 0, accepted: 2})
		checkRow(t, "bot", &r.classes[ResidentialBot], row{messages: 1, delayed: 1, accepted: 0})
		// forged.test publishes no SPF record: spf-unproven comes before
		// no-fcrdns.
		if n := r.bots.triggers[greylist.TriggerSPFUnproven]; n != 1 {
			t.Errorf("bot messages delayed by spf-unproven = %d, want 1 (triggers %v)", n, r.bots.triggers)
		}
	})
	t.Run("suspicious without spf-unproven", func(t *testing.T) {
		r := replayed(t, sc, policy{name: "suspicious", scope: greylist.Suspicious,
			triggers: greylist.AllTriggers &^ greylist.UseSPFUnproven})
		checkRow(t, "provider", &r.classes[BigProvider], row{messages: 2, delayed: 0, accepted: 2})
		checkRow(t, "bot", &r.classes[ResidentialBot], row{messages: 1, delayed: 1, accepted: 0})
		// The next trigger in line: the bot's address has no name.
		if n := r.bots.triggers[greylist.TriggerNoFCrDNS]; n != 1 {
			t.Errorf("bot messages delayed by no-fcrdns = %d, want 1 (triggers %v)", n, r.bots.triggers)
		}
	})
}

// TestReplayDomainTrust: one pass of a proven domain (domain_trust's
// default) makes it trusted: its mail to new recipients then passes at
// once.
func TestReplayDomainTrust(t *testing.T) {
	sc := twoSenders()
	pool := sc.msgs[0].sender
	msg := func(at time.Duration, rcpt string) message {
		return message{class: BigProvider, at: t0.Add(at), from: "alice@provider.test", rcpts: []string{rcpt}, sender: pool}
	}
	sc.msgs = []message{
		msg(0, "bob@dest.test"),
		msg(3*time.Hour, "carol@dest.test"),
		msg(25*time.Hour, "dave@dest.test"),
	}
	sc.to = t0.Add(2 * day)
	// Each new recipient waits 8 minutes (451, 451 at 2m, pass at 8m)...
	r := replayed(t, sc, policy{name: "everyone"})
	checkRow(t, "without trust", &r.classes[BigProvider], row{messages: 3, delayed: 3, accepted: 3, median: 8 * time.Minute})
	// ...but with trust, the pass at 0h08 trusts the domain, and carol's
	// and dave's messages pass at once.
	r = replayed(t, sc, policy{name: "everyone +trust", trust: true})
	checkRow(t, "with trust", &r.classes[BigProvider], row{messages: 3, delayed: 1, accepted: 3, median: 8 * time.Minute})
}

// TestReplayDKIMReplay: a small organisation's server without FCrDNS (a
// trigger of the suspicious scope too) earns its domain's trust; a bot
// then re-sends a message of that domain, with its envelope, from an
// address the domain's SPF does not authorise. SPF fails, so the trust
// does not apply: the replay is greylisted and, never retried, not
// accepted, with trust as without. The domain's next message from its
// own server passes at once, so it was trusted.
func TestReplayDKIMReplay(t *testing.T) {
	w := newWorld()
	w.spf["org.test"] = &spfRecord{pass: []netip.Prefix{netip.MustParsePrefix("10.4.1.1/32")}, other: auth.ResultFail}
	server := &sender{hosts: []host{{ip: netip.MustParseAddr("10.4.1.1")}}, retry: fixedRetry{6 * time.Minute}}
	bot := &sender{hosts: []host{{ip: netip.MustParseAddr("100.64.0.9")}}, retry: noRetry{}}
	msg := func(c Class, at time.Duration, s *sender, rcpt string) message {
		return message{class: c, at: t0.Add(at), from: "ann@org.test", rcpts: []string{rcpt}, sender: s}
	}
	sc := &scenario{
		world: w,
		msgs: []message{
			msg(SelfHosted, 0, server, "bob@dest.test"),
			msg(DKIMReplay, 2*time.Hour, bot, "erin@dest.test"),
			msg(SelfHosted, 3*time.Hour, server, "frank@dest.test"),
		},
		from: t0, to: t0.Add(2 * day), seed: 1,
	}
	for _, scope := range []greylist.Scope{greylist.Everyone, greylist.Suspicious} {
		t.Run(scope.String(), func(t *testing.T) {
			// Without trust, each new recipient waits for the retry at 6m.
			r := replayed(t, sc, policy{name: scope.String(), scope: scope})
			checkRow(t, "server, without trust", &r.classes[SelfHosted], row{messages: 2, delayed: 2, accepted: 2, median: 6 * time.Minute})
			checkRow(t, "replay, without trust", &r.classes[DKIMReplay], row{messages: 1, delayed: 1, accepted: 0})
			// With trust, the pass at 0h06 trusts org.test: frank's
			// message passes at once, erin's replay does not.
			r = replayed(t, sc, policy{name: scope.String() + " +trust", scope: scope, trust: true})
			checkRow(t, "server, with trust", &r.classes[SelfHosted], row{messages: 2, delayed: 1, accepted: 2, median: 6 * time.Minute})
			replay := &r.classes[DKIMReplay]
			checkRow(t, "replay, with trust", replay, row{messages: 1, delayed: 1, accepted: 0})
			if replay.trustedDomain != 1 {
				t.Errorf("replays of a trusted domain = %d, want 1", replay.trustedDomain)
			}
			// SPF failed for the replay, and passed for the server.
			if replay.unprovenDelayed != 1 || r.classes[SelfHosted].unprovenDelayed != 0 {
				t.Errorf("delayed with SPF not proving the sender: replay %d, server %d; want 1, 0",
					replay.unprovenDelayed, r.classes[SelfHosted].unprovenDelayed)
			}
			if scope == greylist.Suspicious && replay.triggers[greylist.TriggerSPFFail] != 1 {
				t.Errorf("replay triggers = %v, want spf-fail", replay.triggers)
			}
		})
	}
}

// TestReplayTokenSender: a proven sender whose local part is a fresh token
// the rules cannot mask waits once per message, unless the key drops the
// local part.
func TestReplayTokenSender(t *testing.T) {
	w := newWorld()
	w.spf["gaia.bounces.example"] = &spfRecord{pass: []netip.Prefix{netip.MustParsePrefix("10.3.0.0/16")}, other: auth.ResultSoftFail}
	s := &sender{hosts: []host{{ip: netip.MustParseAddr("10.3.1.1"), name: "mail-1.example"}}, retry: fixedRetry{6 * time.Minute}}
	sc := &scenario{
		world: w,
		msgs: []message{
			{class: OneTimeCode, at: t0, from: "3xKqPzWvTnRmLs@gaia.bounces.example", rcpts: []string{"bob@dest.test"}, sender: s},
			{class: OneTimeCode, at: t0.Add(time.Hour), from: "3JdYhGuBcVoEfA@gaia.bounces.example", rcpts: []string{"bob@dest.test"}, sender: s},
		},
		from: t0, to: t0.Add(day), seed: 1,
	}
	r := replayed(t, sc, policy{name: "everyone"})
	checkRow(t, "everyone", &r.classes[OneTimeCode], row{messages: 2, delayed: 2, accepted: 2, median: 6 * time.Minute})
	r = replayed(t, sc, policy{name: "everyone + domain keys", domainKeys: true})
	checkRow(t, "domain keys", &r.classes[OneTimeCode], row{messages: 2, delayed: 1, accepted: 2, median: 6 * time.Minute})
}

// TestReplayRetriesOnlyDeferred: the MTA delivers the accepted recipients
// and retries only the deferred one; the delay runs to the last.
func TestReplayRetriesOnlyDeferred(t *testing.T) {
	w := newWorld()
	s := &sender{hosts: []host{{ip: netip.MustParseAddr("10.4.1.1"), name: "mail.org.test"}}, retry: fixedRetry{7 * time.Minute}}
	sc := &scenario{
		world: w,
		msgs: []message{
			{class: SelfHosted, at: t0, from: "ann@org.test", rcpts: []string{"bob@dest.test"}, sender: s},
			{class: SelfHosted, at: t0.Add(time.Hour), from: "ann@org.test", rcpts: []string{"bob@dest.test", "carol@dest.test"}, sender: s},
		},
		from: t0.Add(30 * time.Minute), to: t0.Add(day), seed: 1,
	}
	outs := replayOutcomes(t, sc, policy{name: "everyone"})
	o := outs[1]
	// bob is known at 1h; carol waits for the retry at 1h07m. Had the
	// retry carried bob again, he would count twice.
	if o.accepted != 2 || !o.greylisted || o.first != t0.Add(time.Hour) || o.last != t0.Add(time.Hour+7*time.Minute) {
		t.Errorf("outcome = %+v, want 2 accepted, greylisted, first at 1h, last at 1h07m", o)
	}
	// Only the second message is in the measured period.
	r := tally(sc, policy{name: "everyone"}, outs)
	checkRow(t, "self-hosted", &r.classes[SelfHosted], row{messages: 1, delayed: 1, accepted: 1, median: 7 * time.Minute})
}

// TestReplayGeneratedKeepsLegitimateMail: under every policy, every
// legitimate message of a small generated scenario reaches every
// recipient, and no class is empty.
func TestReplayGeneratedKeepsLegitimateMail(t *testing.T) {
	sizes := Sizes{Messages: 2000, Mailboxes: 50, Period: 7 * day, Warmup: 7 * day, Seed: 7}
	sc := generate(sizes)
	for _, p := range policies(0) {
		r := replayed(t, sc, p)
		for c := range numClasses {
			s := &r.classes[c]
			if s.messages == 0 {
				t.Errorf("%s: no %s messages", p.name, c)
			}
			if c.Legitimate() && s.accepted != s.messages {
				t.Errorf("%s: %s: %d of %d accepted", p.name, c, s.accepted, s.messages)
			}
		}
	}
}

func TestGenerateIsReproducible(t *testing.T) {
	sizes := Sizes{Messages: 500, Mailboxes: 20, Period: 3 * day, Warmup: day, Seed: 3}
	a, b := generate(sizes), generate(sizes)
	if len(a.msgs) != len(b.msgs) {
		t.Fatalf("%d messages, then %d", len(a.msgs), len(b.msgs))
	}
	for i := range a.msgs {
		x, y := a.msgs[i], b.msgs[i]
		if x.class != y.class || !x.at.Equal(y.at) || x.from != y.from || x.sender.hosts[0] != y.sender.hosts[0] {
			t.Fatalf("message %d differs: %+v, then %+v", i, x, y)
		}
	}
	sizes.Seed = 4
	if c := generate(sizes); c.msgs[0].from == a.msgs[0].from && c.msgs[1].from == a.msgs[1].from {
		t.Errorf("another seed gave the same first senders %q, %q", c.msgs[0].from, c.msgs[1].from)
	}
}

type row struct {
	messages, delayed, accepted int
	median                      time.Duration
}

func checkRow(t *testing.T, name string, s *stats, want row) {
	t.Helper()
	got := row{messages: s.messages, delayed: s.delayed, accepted: s.accepted, median: s.quantile(0.5)}
	if got != want {
		t.Errorf("%s: got %+v, want %+v", name, got, want)
	}
}

func replayed(t *testing.T, sc *scenario, p policy) *result {
	t.Helper()
	return tally(sc, p, replayOutcomes(t, sc, p))
}

func replayOutcomes(t *testing.T, sc *scenario, p policy) []outcome {
	t.Helper()
	outs, err := replay(context.Background(), sc, p)
	if err != nil {
		t.Fatal(err)
	}
	return outs
}

// TestRunWritesEveryPolicy: the report has a table and a summary row for
// each policy replayed, the default's targets and the trust comparison,
// and refuses sizes it cannot build from.
func TestRunWritesEveryPolicy(t *testing.T) {
	sizes := Sizes{Messages: 1000, Mailboxes: 30, Period: 3 * day, Warmup: day, Seed: 2}
	ps := policies(0)
	var out strings.Builder
	if err := run(context.Background(), &out, sizes, ps, 2); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if !strings.Contains(out.String(), "### "+p.name+"\n") {
			t.Errorf("no table for %s", p.name)
		}
		if !strings.Contains(out.String(), "| "+p.name+" | ") {
			t.Errorf("no summary row for %s", p.name)
		}
	}
	for _, want := range []string{"### Summary\n", "### Targets of the default (suspicious +trust (default))\n",
		"### Learned domain trust: each scope with and without it\n", "### Snowshoe trade-off\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q", want)
		}
	}
	sizes.Mailboxes = 3
	if err := run(context.Background(), &out, sizes, ps, 2); err == nil || !strings.Contains(err.Error(), "-mailboxes 3") {
		t.Errorf("3 mailboxes: err = %v, want one naming -mailboxes 3", err)
	}
}
