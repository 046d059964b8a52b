package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

func main() {
	sizes := DefaultSizes()
	flag.IntVar(&sizes.Messages, "messages", sizes.Messages, "messages first tried in the measured period")
	flag.IntVar(&sizes.Mailboxes, "mailboxes", sizes.Mailboxes, "the site's mailboxes")
	flag.DurationVar(&sizes.Period, "period", sizes.Period, "the measured period")
	flag.DurationVar(&sizes.Warmup, "warmup", sizes.Warmup, "history simulated before the measured period, not counted")
	flag.Uint64Var(&sizes.Seed, "seed", sizes.Seed, "random seed: the same seed gives the same table")
	passes := flag.Int("domain-trust", greylist.DefaultDomainTrust, "passes that make a proven domain trusted in the +trust policies (domain_trust)")
	parallel := flag.Int("parallel", runtime.GOMAXPROCS(0), "policies replayed at once")
	flag.Parse()
	if *passes < 1 {
		fmt.Fprintf(os.Stderr, "bench-deliverability: -domain-trust %d: want 1 or more\n", *passes)
		os.Exit(2)
	}
	if err := run(context.Background(), os.Stdout, sizes, policies(*passes), *parallel); err != nil {
		fmt.Fprintf(os.Stderr, "bench-deliverability: %v\n", err)
		os.Exit(1)
	}
}

// run generates the scenario, replays it under each policy and writes the
// report; the first policy is the baseline the targets compare with.
func run(ctx context.Context, w io.Writer, sizes Sizes, ps []policy, parallel int) error {
	if err := sizes.validate(); err != nil {
		return err
	}
	began := time.Now()
	sc := generate(sizes)
	results := make([]*result, len(ps))
	errs := make([]error, len(ps))
	sem := make(chan struct{}, max(parallel, 1))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i], errs[i] = runPolicy(ctx, sc, p)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}

	fmt.Fprintf(w, "## Deliverability: %d messages to %d mailboxes over %s (after %s of history), seed %d\n\n",
		countMeasured(sc), sizes.Mailboxes, days(sizes.Period), days(sizes.Warmup), sizes.Seed)
	fmt.Fprintln(w, `delayed: refused with 451 at least once; delays: from the first attempt to the acceptance of
the last recipient (spam: of the first) of the delayed messages; accepted: legitimate mail, by
every recipient, spam by at least one. Every policy keys triplets by the SPF-proven domain
(key_by_spf_domain) and auto-whitelists a client network after 5 passes. "everyone" greylists
every new triplet, as before selective greylisting and domain trust: the targets compare with it.
"suspicious" greylists a new triplet only when a trigger holds. +trust: learned domain trust
(domain_trust); (default): the shipped configuration; +DNSBL: a DNS blocklist (dnsbl_zones);
without spf-unproven: greylist_triggers without it; +domain keys: a proven sender's key drops
its local part (spf_key_drops_local_part).`)
	passes := greylist.DefaultDomainTrust
	if i := slices.IndexFunc(ps, func(p policy) bool { return p.trust }); i >= 0 {
		passes = cmp.Or(ps[i].passes, passes)
	}
	fmt.Fprintf(w, "+trust: domain_trust = %d", passes)
	if passes != greylist.DefaultDomainTrust {
		fmt.Fprintf(w, " (not the default, %d: the row marked default differs from the shipped configuration in that)", greylist.DefaultDomainTrust)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	for _, r := range results {
		writeTable(w, r)
	}
	writeSummary(w, results)
	writeTargets(w, results)
	writeTrust(w, results)
	writeSnowshoe(w, results)
	fmt.Fprintf(w, "(%d policies replayed in %s)\n", len(ps), time.Since(began).Round(100*time.Millisecond))
	return nil
}

// runPolicy replays sc under p.
func runPolicy(ctx context.Context, sc *scenario, p policy) (*result, error) {
	outs, err := replay(ctx, sc, p)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", p.name, err)
	}
	return tally(sc, p, outs), nil
}

// validate rejects sizes the generator cannot build from.
func (s Sizes) validate() error {
	switch {
	case s.Messages < 100:
		return fmt.Errorf("-messages %d: want at least 100", s.Messages)
	case s.Mailboxes < 10:
		return fmt.Errorf("-mailboxes %d: want at least 10", s.Mailboxes)
	case s.Period < day:
		return fmt.Errorf("-period %s: want at least a day", s.Period)
	case s.Warmup < 0:
		return fmt.Errorf("-warmup %s: want 0 or more", s.Warmup)
	}
	return nil
}

// countMeasured is the number of messages in the measured period.
func countMeasured(sc *scenario) int {
	n := 0
	for i := range sc.msgs {
		if !sc.msgs[i].at.Before(sc.from) && sc.msgs[i].at.Before(sc.to) {
			n++
		}
	}
	return n
}

func days(d time.Duration) string { return fmt.Sprintf("%g days", d.Hours()/24) }
