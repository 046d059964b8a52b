// Command load (bench/load) loads a milter as Postfix would, to measure it:
// concurrent SMTP sessions over the milter protocol (one connection each:
// option negotiation, connect, HELO, MAIL, RCPTs, then abort when every
// recipient was greylisted, or the message's headers, body and end of
// message), with a chosen share of new greylisting triplets, and reports
// RCPT decisions per second, the latency of each RCPT round trip and the
// count of each reply. It only talks to loopback addresses and unix
// sockets.
//
// Known triplets. A greylister lets a triplet through only once it has
// been retried after its delay. The generator therefore makes its pool of
// known envelopes (-known of them, -known-rcpts recipients each, drawn
// from -known-seed) known before it measures: a warm-up sends each
// envelope once (every recipient gets 451), waits -warmup-wait (longer
// than the milter's delay: the bench configuration uses delay = "1s"),
// then sends it again, when every recipient must pass; the run fails if
// one does not. Later runs with the same -known-seed and -warmup=false
// reuse them. With -known-file (written by bench/preload, whose triplets
// are already in the store as passed) there is no warm-up; -touch (or
// -warmup-only) sends each of its envelopes once and checks that every
// triplet passes, which also leaves them just used, as the warm-up does.
//
// Usage:
//
//	go run ./bench/load -addr inet:127.0.0.1:10091 -c 16 -d 10s -rcpts 1 -new 0.5
//	go run ./bench/load -addr inet:127.0.0.1:10091 -warmup-only
//	go run ./bench/load -addr inet:127.0.0.1:10091 -wait-ready
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/milter-grey/milter-grey/bench/internal/loadgen"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		addr       = fs.String("addr", "inet:127.0.0.1:10091", "milter `socket`: inet:HOST:PORT (loopback only) or unix:/path")
		conc       = fs.Int("c", 16, "concurrent SMTP sessions (milter connections)")
		dur        = fs.Duration("d", 10*time.Second, "measured duration (ignored with -n)")
		ramp       = fs.Duration("ramp", time.Second, "load before the measured window, not counted (ignored with -n)")
		sessions   = fs.Int("n", 0, "run this many sessions instead of a duration")
		rcpts      = fs.Int("rcpts", 1, "recipients per session")
		newFrac    = fs.Float64("new", 0.5, "fraction of recipients whose triplet is new (0..1)")
		ipv6       = fs.Float64("ipv6", 0.2, "fraction of IPv6 clients (0..1), for new clients and the generated known pool")
		v4         = fs.String("ipv4-prefixes", "198.18.0.0/15", "IPv4 client `prefixes`, comma-separated")
		v6         = fs.String("ipv6-prefixes", "2001:db8::/32", "IPv6 client `prefixes`, comma-separated")
		seed       = fs.Uint64("seed", 1, "random seed of the sessions")
		known      = fs.Int("known", 2000, "known envelopes to generate (and warm up)")
		knownRcpts = fs.Int("known-rcpts", 10, "recipients per generated known envelope")
		knownSeed  = fs.Uint64("known-seed", 42, "random seed of the generated known pool")
		knownFile  = fs.String("known-file", "", "read the known triplets from `file` (bench/preload output) instead of generating them; no warm-up")
		warmup     = fs.Bool("warmup", true, "make the generated known triplets known first (see the package doc)")
		warmupOnly = fs.Bool("warmup-only", false, "only warm up (or touch, with -known-file), then exit")
		touch      = fs.Bool("touch", false, "with -known-file: first send every known envelope once, checking that all pass")
		warmupWait = fs.Duration("warmup-wait", 1500*time.Millisecond, "wait between the two warm-up rounds: longer than the milter's delay")
		jsonOut    = fs.Bool("json", false, "print the report as JSON")
		outFile    = fs.String("o", "", "also write the JSON report to `file`")
		label      = fs.String("label", "", "label stored in the report")
		serverPID  = fs.Int("server-pid", 0, "`pid` of the milter, to report its CPU time per decision and its memory")
		timeout    = fs.Duration("timeout", 10*time.Second, "dial and per-packet read/write timeout")
		maxErrors  = fs.Int("max-errors", 100, "stop after this many failed sessions")
		waitReady  = fs.Bool("wait-ready", false, "wait until the milter answers option negotiation, print the milliseconds waited, exit")
		waitFor    = fs.Duration("wait-timeout", 10*time.Second, "longest wait of -wait-ready")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "load: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "load: %v\n", err)
		return 1
	}
	if *waitReady {
		d, err := loadgen.WaitReady(*addr, *waitFor)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "%.1f\n", float64(d.Microseconds())/1000)
		return 0
	}

	pools := loadgen.Pools{IPv6Fraction: *ipv6}
	var err error
	if pools.IPv4, err = loadgen.ParsePrefixes(*v4, false); err != nil {
		return fail(fmt.Errorf("-ipv4-prefixes: %w", err))
	}
	if pools.IPv6, err = loadgen.ParsePrefixes(*v6, true); err != nil {
		return fail(fmt.Errorf("-ipv6-prefixes: %w", err))
	}
	cfg := loadgen.Config{
		Addr: *addr, Concurrency: *conc, Rcpts: *rcpts, NewFraction: *newFrac, Pools: pools,
		Seed: *seed, Timeout: *timeout, MaxErrors: *maxErrors, ServerPID: *serverPID, Label: *label,
	}
	if *sessions > 0 {
		cfg.Sessions = *sessions
	} else {
		cfg.Duration, cfg.Ramp = *dur, *ramp
	}
	if err := cfg.Validate(); err != nil {
		return fail(err)
	}
	if *known < 0 || *known > loadgen.MaxKnownTriplets || *knownRcpts < 1 || *knownRcpts > loadgen.MaxRcpts ||
		*known**knownRcpts > loadgen.MaxKnownTriplets {
		return fail(fmt.Errorf("-known × -known-rcpts must stay within %d triplets", loadgen.MaxKnownTriplets))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var envs []loadgen.Envelope
	if *knownFile != "" {
		f, err := os.Open(*knownFile)
		if err != nil {
			return fail(err)
		}
		envs, err = loadgen.ReadKnown(f)
		f.Close()
		if err != nil {
			return fail(fmt.Errorf("%s: %w", *knownFile, err))
		}
		if *touch || *warmupOnly {
			w, err := loadgen.Touch(ctx, *addr, *conc, *timeout, envs)
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(stderr, "touch: %d envelopes, %d known triplets passed in %.2fs\n", w.Envelopes, w.Triplets, w.Seconds)
		}
	} else if *known > 0 {
		envs = loadgen.NewKnownPool(*knownSeed, *known, *knownRcpts, pools)
		if *warmup || *warmupOnly {
			w, err := loadgen.Warmup(ctx, *addr, *conc, *timeout, *warmupWait, envs)
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(stderr, "warm-up: %d envelopes, %d triplets known in %.2fs (first %v, retry %v)\n",
				w.Envelopes, w.Triplets, w.Seconds, pairs(w.FirstReplies), pairs(w.SecondReplies))
		}
	}
	if *warmupOnly {
		return 0
	}
	if len(envs) == 0 && cfg.NewFraction < 1 {
		fmt.Fprintln(stderr, "load: no known triplets: every triplet is new")
	}

	rep, err := loadgen.Run(ctx, cfg, envs)
	if err != nil {
		return fail(err)
	}
	if *outFile != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*outFile, append(b, '\n'), 0o644); err != nil {
			return fail(err)
		}
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		printReport(stdout, rep)
	}
	if rep.Stopped != "" || ctx.Err() != nil {
		return 1
	}
	return 0
}

func pairs(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

func printReport(w io.Writer, r *loadgen.Report) {
	if r.Label != "" {
		fmt.Fprintf(w, "label:             %s\n", r.Label)
	}
	fmt.Fprintf(w, "load:              %s, %d sessions in flight, %d rcpt/session, %.0f%% new, %.0f%% IPv6, %d known triplets\n",
		r.Addr, r.Concurrency, r.Rcpts, 100*r.NewFraction, 100*r.IPv6Fraction, r.KnownTriplets)
	fmt.Fprintf(w, "window:            %.2fs\n", r.WindowSeconds)
	fmt.Fprintf(w, "sessions:          %d (%.1f/s)\n", r.Sessions, r.SessionsPerS)
	fmt.Fprintf(w, "RCPT decisions:    %d (%.1f/s)\n", r.Decisions, r.DecisionsPerS)
	l := r.Latency
	fmt.Fprintf(w, "RCPT latency (µs): p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f  mean %.0f\n",
		l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	fmt.Fprintf(w, "RCPT replies:      %s\n", pairs(r.RcptReplies))
	fmt.Fprintf(w, "message replies:   %s\n", pairs(r.EndReplies))
	fmt.Fprintf(w, "known greylisted:  %d   new passed: %d\n", r.KnownGreylisted, r.NewPassed)
	fmt.Fprintf(w, "errors:            %d %s\n", r.Errors, pairs(r.ErrorsBy))
	for _, s := range r.ErrorSamples {
		fmt.Fprintf(w, "  %s\n", s)
	}
	if r.Stopped != "" {
		fmt.Fprintf(w, "stopped early:     %s\n", r.Stopped)
	}
	if s := r.Server; s != nil {
		fmt.Fprintf(w, "server (pid %d):  %.2f cores, %.1f µs CPU/decision, RSS %.1f MiB (anon %.1f, file %.1f; peak %.1f MiB)%s\n",
			s.PID, s.CPUUtilisation, s.CPUPerDecisionUS, mib(s.RSSKiB), mib(s.RSSAnonKiB), mib(s.RSSFileKiB), mib(s.PeakRSSKiB),
			errSuffix(s.ErrorReadingStats))
	}
	fmt.Fprintf(w, "load generator:    %.2f cores, %.1f µs CPU/decision\n", r.Loadgen.CPUUtilisation, r.Loadgen.CPUPerDecisionUS)
}

func errSuffix(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

func mib(kib uint64) float64 { return float64(kib) / 1024 }
