package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// stats are the figures of one row: a class, or a group of classes.
type stats struct {
	messages int
	delayed  int             // refused with 451 at least once
	delays   []time.Duration // of the delayed ones that were accepted
	accepted int
	triggers map[greylist.Trigger]int // of the delayed ones, the first 451's trigger
	// trustedDomain: messages whose envelope sender's domain was trusted
	// at their first attempt.
	trustedDomain int
	// unprovenDelayed: delayed messages whose sender SPF did not prove
	// at their first attempt.
	unprovenDelayed int
	// passReasons: of the accepted spam, the reason of the first pass.
	passReasons map[greylist.Reason]int
}

func (s *stats) add(o outcome, rcpts int, legitimate bool, at time.Time) {
	s.messages++
	// A legitimate message counts as accepted when every recipient is; a
	// spam message when one is.
	ok := o.accepted > 0
	if legitimate {
		ok = o.accepted == rcpts
	}
	if ok {
		s.accepted++
		if !legitimate {
			if s.passReasons == nil {
				s.passReasons = make(map[greylist.Reason]int)
			}
			s.passReasons[o.passReason]++
		}
	}
	if o.trustedDomain {
		s.trustedDomain++
	}
	if !o.greylisted {
		return
	}
	s.delayed++
	if o.unproven {
		s.unprovenDelayed++
	}
	if s.triggers == nil {
		s.triggers = make(map[greylist.Trigger]int)
	}
	s.triggers[o.trigger]++
	switch {
	case legitimate && ok:
		s.delays = append(s.delays, o.last.Sub(at))
	case !legitimate && ok:
		s.delays = append(s.delays, o.first.Sub(at))
	}
}

func (s *stats) delayedShare() float64  { return share(s.delayed, s.messages) }
func (s *stats) acceptedShare() float64 { return share(s.accepted, s.messages) }

// quantile is the q-quantile of the delays (nearest rank), 0 without any.
func (s *stats) quantile(q float64) time.Duration {
	if len(s.delays) == 0 {
		return 0
	}
	d := slices.Clone(s.delays)
	slices.Sort(d)
	i := int(q*float64(len(d))+0.999999) - 1
	return d[min(max(i, 0), len(d)-1)]
}

func share(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return float64(n) / float64(of)
}

// result is one policy's figures.
type result struct {
	policy  policy
	classes [numClasses]stats
	legit   stats // every legitimate class
	bots    stats // both bot classes
}

// tally sums the outcomes of the messages first tried in the measured
// period.
func tally(sc *scenario, p policy, outs []outcome) *result {
	r := &result{policy: p}
	for i, o := range outs {
		m := &sc.msgs[i]
		if m.at.Before(sc.from) || !m.at.Before(sc.to) {
			continue
		}
		legit := m.class.Legitimate()
		r.classes[m.class].add(o, len(m.rcpts), legit, m.at)
		switch {
		case legit:
			r.legit.add(o, len(m.rcpts), true, m.at)
		case m.class.Bot():
			r.bots.add(o, len(m.rcpts), false, m.at)
		}
	}
	return r
}

// writeTable writes one policy's table, in Markdown.
func writeTable(w io.Writer, r *result) {
	fmt.Fprintf(w, "### %s\n\n", r.policy.name)
	fmt.Fprintln(w, "| class | messages | delayed | median delay | p95 delay | accepted |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|")
	row := func(name string, s *stats) {
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s |\n", name, s.messages, percent(s.delayedShare()),
			duration(s.quantile(0.5)), duration(s.quantile(0.95)), percent(s.acceptedShare()))
	}
	for c := range numClasses {
		row(c.String(), &r.classes[c])
	}
	row("**all legitimate**", &r.legit)
	row("**all bots**", &r.bots)
	fmt.Fprintf(w, "\nLegitimate messages delayed, by the trigger of their first 451: %s.\n", triggers(&r.legit))
	fmt.Fprintf(w, "Spam accepted, by the reason of its first pass: %s; %s; %s.\n\n",
		passReasons("bots", &r.bots), passReasons(DKIMReplay.String(), &r.classes[DKIMReplay]),
		passReasons(Snowshoe.String(), &r.classes[Snowshoe]))
}

// passReasons lists, after name, the reasons the accepted messages of a
// row first passed, most first.
func passReasons(name string, s *stats) string {
	if s.accepted == 0 {
		return name + ": none"
	}
	return name + ": " + counts(s.passReasons, func(r greylist.Reason) string { return string(r) })
}

// counts lists the keys of m with their counts, most first, each named by
// name.
func counts[K ~string](m map[K]int, name func(K) string) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b K) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b))
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", name(k), m[k]))
	}
	return strings.Join(parts, ", ")
}

// triggers lists the triggers of a row's delayed messages, most first.
func triggers(s *stats) string {
	if s.delayed == 0 {
		return "none delayed"
	}
	return counts(s.triggers, func(t greylist.Trigger) string {
		if t == "" {
			return "no trigger (new triplet, or retried too early)"
		}
		return string(t)
	})
}

// writeSummary writes the headline figures of every policy, one row
// each.
func writeSummary(w io.Writer, rs []*result) {
	fmt.Fprintln(w, "### Summary")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| policy | legitimate delayed | one-time codes delayed | legitimate p95 delay | bots accepted | DKIM replay accepted | snowshoe accepted |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|")
	for _, r := range rs {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", r.policy.name,
			percent(r.legit.delayedShare()), percent(r.classes[OneTimeCode].delayedShare()),
			duration(r.legit.quantile(0.95)), percent(r.bots.acceptedShare()),
			percent(r.classes[DKIMReplay].acceptedShare()), percent(r.classes[Snowshoe].acceptedShare()))
	}
	fmt.Fprintln(w)
}

// Targets of the shipped default.
const (
	maxLegitDelayed = 0.05
	maxOTPDelayed   = 0.02
)

// writeTargets writes the shipped default against its targets, with the
// baseline's (the first result's) figures beside.
func writeTargets(w io.Writer, rs []*result) {
	base := rs[0]
	i := slices.IndexFunc(rs, func(r *result) bool { return r.policy.shipped })
	if i < 0 {
		return
	}
	def := rs[i]
	fmt.Fprintf(w, "### Targets of the default (%s)\n\n", def.policy.name)
	fmt.Fprintf(w, "| target | %s | %s | |\n", def.policy.name, base.policy.name)
	fmt.Fprintln(w, "|---|--:|--:|---|")
	fmt.Fprintf(w, "| legitimate messages delayed ≤ 5 %% | %s | %s | %s |\n",
		percent(def.legit.delayedShare()), percent(base.legit.delayedShare()),
		met(def.legit.delayedShare() <= maxLegitDelayed))
	otp, baseOTP := &def.classes[OneTimeCode], &base.classes[OneTimeCode]
	fmt.Fprintf(w, "| one-time codes delayed ≤ 2 %% | %s | %s | %s |\n",
		percent(otp.delayedShare()), percent(baseOTP.delayedShare()), met(otp.delayedShare() <= maxOTPDelayed))
	fmt.Fprintf(w, "| bot messages accepted ≤ %s | %s | %s | %s |\n", base.policy.name,
		percent(def.bots.acceptedShare()), percent(base.bots.acceptedShare()),
		met(def.bots.accepted <= base.bots.accepted))
	fmt.Fprintln(w)
}

// writeTrust writes each policy with domain trust against the same policy
// without it (the result that differs only in trust), to the targets of
// learned trust: legitimate mail delayed at least halved, and no more bot
// or DKIM replay mail accepted.
func writeTrust(w io.Writer, rs []*result) {
	fmt.Fprintln(w, "### Learned domain trust: each scope with and without it")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| policy | legitimate delayed (with trust: ≤ half) | of which SPF did not prove the sender | one-time codes delayed | bots accepted (with trust: ≤) | DKIM replay accepted (with trust: ≤) | DKIM replay of a trusted domain | snowshoe accepted |")
	fmt.Fprintln(w, "|---|---|--:|--:|---|---|--:|--:|")
	row := func(r *result, legit, bots, replay string) {
		dr := &r.classes[DKIMReplay]
		fmt.Fprintf(w, "| %s | %s%s | %s | %s | %s%s | %s%s | %s | %s |\n", r.policy.name,
			percent(r.legit.delayedShare()), legit, percent(share(r.legit.unprovenDelayed, r.legit.messages)),
			percent(r.classes[OneTimeCode].delayedShare()),
			percent(r.bots.acceptedShare()), bots, percent(dr.acceptedShare()), replay,
			percent(share(dr.trustedDomain, dr.messages)), percent(r.classes[Snowshoe].acceptedShare()))
	}
	for _, r := range rs {
		if !r.policy.trust {
			continue
		}
		without := slices.IndexFunc(rs, func(o *result) bool { return !o.policy.trust && o.policy.sameButTrust(r.policy) })
		if without < 0 {
			continue
		}
		o := rs[without]
		halved := met(2*r.legit.delayed <= o.legit.delayed)
		if 2*r.legit.delayed > o.legit.delayed && 2*o.legit.unprovenDelayed > o.legit.delayed {
			halved += ", out of reach"
		}
		row(o, "", "", "")
		row(r, " "+halved, " "+met(r.bots.accepted <= o.bots.accepted),
			" "+met(r.classes[DKIMReplay].accepted <= o.classes[DKIMReplay].accepted))
	}
	fmt.Fprintln(w, `
Of which SPF did not prove the sender: the legitimate messages delayed
whose sender SPF did not prove for the client of their first attempt (no
record, fail, softfail, a DNS failure). Trust is used only when SPF proves
the domain for the client, so no setting of domain_trust can spare them;
"out of reach" marks a scope where they are more than half of the delays
without trust, so that no trust keyed by SPF could halve them. DKIM replay
of a trusted domain: the share of replayed messages whose envelope domain
was trusted when they came; DKIM never earns or uses trust. Under
"suspicious", a sender SPF proves is greylisted only when a trigger catches
its client (no FCrDNS, a dynamic name, a failed blocklist lookup), and only
such senders can earn trust and be spared by it.`)
	fmt.Fprintln(w)
}

// writeSnowshoe states the snowshoe trade-off with the run's figures.
func writeSnowshoe(w io.Writer, rs []*result) {
	fmt.Fprintln(w, "### Snowshoe trade-off")
	fmt.Fprintln(w)
	for _, r := range rs {
		s := &r.classes[Snowshoe]
		fmt.Fprintf(w, "- %s: %s delayed (median %s), %s accepted\n", r.policy.name,
			percent(s.delayedShare()), duration(s.quantile(0.5)), percent(s.acceptedShare()))
	}
	fmt.Fprintln(w, `
Snowshoe spam retries like a good MTA, so greylisting never kept it out; it
only delayed it, and under "everyone" not for long: a range's retried
triplets soon auto-whitelist its /24. "suspicious" gives up even that delay,
since a snowshoe sender shows what a good sender shows (a forward-confirmed
name, SPF pass); only a blocklist that lists it brings the delay back, and
keeps the range off the auto-whitelist. The delay was worth something only
where a later filter learns of a campaign in those minutes.`)
	fmt.Fprintln(w)
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// percent prints a share, with two decimals below 1 % so that a small
// share does not print as nothing.
func percent(f float64) string {
	if f > 0 && f < 0.01 {
		return fmt.Sprintf("%.2f %%", 100*f)
	}
	return fmt.Sprintf("%.1f %%", 100*f)
}

// duration prints a delay rounded to what matters: seconds under ten
// minutes, minutes under ten hours, else hours.
func duration(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < 10*time.Minute:
		return d.Round(time.Second).String()
	case d < 10*time.Hour:
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Hour).String()
}
