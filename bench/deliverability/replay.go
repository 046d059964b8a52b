package main

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/milter-grey/milter-grey/envelope"
	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/testutil/memstore"
)

// policy is an engine configuration under test. Every policy keys
// triplets by the SPF-proven domain (key_by_spf_domain) and auto-whitelists
// a client network after 5 passes, as the defaults do.
type policy struct {
	name  string
	scope greylist.Scope
	// triggers are the triggers of the suspicious scope (zero: all).
	triggers greylist.Triggers
	// trust: learned domain trust (domain_trust), after passes passes
	// (0: the default, greylist.DefaultDomainTrust).
	trust  bool
	passes int
	// domainKeys: SPFKeyDropsLocalPart.
	domainKeys bool
	// dnsbl: a DNS blocklist is configured (none is by default).
	dnsbl bool
	// shipped: the configuration milter-grey ships (greylist =
	// "suspicious", domain trust on), the one the targets are for.
	shipped bool
}

// policies are the configurations the report compares: greylisting
// everyone as milter-grey did before selective greylisting and domain
// trust came (the baseline the targets compare with), each scope with and
// without trust, then the shipped default with one setting changed. Trust
// takes passes passes (0: the default).
func policies(passes int) []policy {
	sus := greylist.Suspicious
	ps := []policy{
		{name: "everyone"},
		{name: "everyone +trust", trust: true},
		{name: "suspicious", scope: sus},
		{name: "suspicious +trust (default)", scope: sus, trust: true, shipped: true},
		{name: "suspicious +trust +DNSBL", scope: sus, trust: true, dnsbl: true},
		{name: "suspicious +trust, without spf-unproven", scope: sus, trust: true,
			triggers: greylist.AllTriggers &^ greylist.UseSPFUnproven},
		{name: "suspicious +trust +domain keys", scope: sus, trust: true, domainKeys: true},
	}
	for i := range ps {
		ps[i].passes = passes
	}
	return ps
}

// sameButTrust reports whether p and q have the same settings, except perhaps
// domain trust.
func (p policy) sameButTrust(q policy) bool {
	return p.scope == q.scope && p.triggers == q.triggers && p.domainKeys == q.domainKeys && p.dnsbl == q.dnsbl
}

// config is the engine configuration of p in world w, on clock now.
func (p policy) config(w *world, now func() time.Time) greylist.Config {
	trust := 0
	if p.trust {
		trust = cmp.Or(p.passes, greylist.DefaultDomainTrust)
	}
	cfg := greylist.Config{
		KeyBySPFDomain:       true,
		SPFKeyDropsLocalPart: p.domainKeys,
		AutoWhitelist:        greylist.DefaultAutoWhitelist,
		DomainTrust:          trust,
		Scope:                p.scope,
		Triggers:             p.triggers,
		SPF:                  spfChecker{w: w, now: now},
		Now:                  now,
	}
	if p.dnsbl {
		cfg.DNSBL = blocklist{w: w, now: now, failure: dnsblFailure}
	}
	return cfg
}

// dnsblFailure is the share of blocklist lookups that time out.
const dnsblFailure = 0.001

// outcome is what became of one message.
type outcome struct {
	accepted   int       // recipients accepted
	greylisted bool      // some recipient was refused with 451 at least once
	first      time.Time // when the first recipient was accepted
	last       time.Time // when the last accepted recipient was
	// trigger is the trigger of the first 451, "" when none named one
	// (the everyone scope, or a retry that came too early).
	trigger greylist.Trigger
	// trustedDomain: the envelope sender's domain was a trusted domain
	// at the first attempt (whether or not SPF proved it).
	trustedDomain bool
	// unproven: SPF did not prove the sender for the client of the first
	// attempt, so no trust keyed by an SPF proof could spare it the 451.
	unproven bool
	// passReason is the reason of the first recipient's pass, "" when
	// none passed.
	passReason greylist.Reason
}

// replay runs the scenario through a real engine under policy p, on a
// fresh in-memory store whose records expire on the same fake clock, with
// no sockets, and returns each message's outcome.
// It plays the senders' MTAs: each attempt is a transaction deciding its
// recipients at RCPT TO; the recipients refused with 451 stay queued and
// are tried again on the sender's retry schedule, from the server its
// pool picks; accepted ones are delivered.
func replay(ctx context.Context, sc *scenario, p policy) ([]outcome, error) {
	var now time.Time
	clock := func() time.Time { return now }
	store := memstore.New(clock)
	eng := greylist.New(store, p.config(&sc.world, clock))
	spf := spfChecker{w: &sc.world, now: clock}
	eng.SetLists(&greylist.Lists{DynamicNames: greylist.DefaultNamePatterns()})

	type queued struct {
		pending []envelope.Address // recipients not accepted yet
		host    int                // the server of the last attempt
		rng     *rand.Rand
	}
	outs := make([]outcome, len(sc.msgs))
	queue := make(map[int]*queued) // messages with recipients deferred
	var retries retryHeap
	next := 0
	for next < len(sc.msgs) || len(retries) > 0 {
		var a attempt
		if len(retries) > 0 && (next == len(sc.msgs) || retries[0].at.Before(sc.msgs[next].at)) {
			a = heap.Pop(&retries).(attempt)
		} else {
			a = attempt{at: sc.msgs[next].at, msg: next, n: 1}
			next++
		}
		now = a.at
		msg, out := &sc.msgs[a.msg], &outs[a.msg]
		q := queue[a.msg]
		if q == nil {
			q = &queued{rng: rand.New(rand.NewPCG(sc.seed, uint64(a.msg)))}
			q.host = q.rng.IntN(len(msg.sender.hosts))
			for _, r := range msg.rcpts {
				q.pending = append(q.pending, envelope.Parse(r))
			}
			if p.trust {
				trusted, err := domainTrusted(ctx, eng, store, envelope.Parse(msg.from).LowerDomain())
				if err != nil {
					return nil, fmt.Errorf("message %d from %s: %w", a.msg, msg.from, err)
				}
				out.trustedDomain = trusted
			}
		} else if msg.sender.rotate && len(msg.sender.hosts) > 1 {
			// A pool retries from another of its servers.
			q.host = (q.host + 1 + q.rng.IntN(len(msg.sender.hosts)-1)) % len(msg.sender.hosts)
		}
		h := msg.sender.hosts[q.host]
		m := &greylist.Message{Client: h.ip, ClientName: h.name, Helo: msg.helo, Sender: envelope.Parse(msg.from)}
		if a.n == 1 {
			out.unproven = !spf.Check(ctx, m.Client, m.Helo, m.Sender).Proven()
		}
		deferred := q.pending[:0]
		for _, rcpt := range q.pending {
			d := eng.Decide(ctx, m, rcpt, greylist.AtRcpt)
			switch d.Action {
			case greylist.Pass:
				if out.accepted == 0 {
					out.first, out.passReason = now, d.Reason
				}
				out.accepted++
				out.last = now
			case greylist.Greylist:
				if !out.greylisted {
					out.greylisted, out.trigger = true, d.Trigger
				}
				deferred = append(deferred, rcpt)
			default:
				return nil, fmt.Errorf("message %d from %s: unexpected decision %s (%s) at RCPT TO", a.msg, msg.from, d.Action, d.Reason)
			}
		}
		q.pending = deferred
		if len(deferred) == 0 {
			delete(queue, a.msg)
			continue
		}
		wait, ok := msg.sender.retry.next(q.rng, a.n, now.Sub(msg.at))
		if !ok {
			delete(queue, a.msg)
			continue
		}
		queue[a.msg] = q
		heap.Push(&retries, attempt{at: now.Add(wait), msg: a.msg, n: a.n + 1})
	}
	return outs, nil
}

// domainTrusted reports whether domain's trust record in store makes it a
// trusted domain, reading only.
func domainTrusted(ctx context.Context, eng *greylist.Engine, store greylist.Store, domain string) (bool, error) {
	rec, _, err := store.Get(ctx, greylist.DomainKey(domain))
	switch {
	case errors.Is(err, greylist.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("trust record of %s: %w", domain, err)
	}
	return eng.DomainTrusted(rec), nil
}

// attempt is one delivery attempt of a message: n is 1 for the first.
type attempt struct {
	at  time.Time
	msg int
	n   int
}

// retryHeap orders the queued retries by time, then by message, so that
// runs are reproducible.
type retryHeap []attempt

func (h retryHeap) Len() int { return len(h) }
func (h retryHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].msg < h[j].msg
}
func (h retryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)   { *h = append(*h, x.(attempt)) }
func (h *retryHeap) Pop() any {
	old := *h
	a := old[len(old)-1]
	*h = old[:len(old)-1]
	return a
}
