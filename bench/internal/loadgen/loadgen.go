// Package loadgen drives a milter the way Postfix's smtpd does, to measure
// it: one milter connection per SMTP session, concurrent sessions, a
// chosen mix of new and known greylisting triplets, and a report of the
// decisions per second, the latency of each RCPT round trip and the count
// of each reply. It speaks through go-milter's client and only to
// loopback addresses or unix sockets. It is a tool for benchmarks
// (bench/load, bench/milterbench, bench/run.sh), not part of the daemon.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	gomilter "github.com/emersion/go-milter"
)

// Bounds on a Config.
const (
	MaxConcurrency = 1024
	MaxRcpts       = 100
	MaxDuration    = time.Hour
	MaxSessions    = 100_000_000
	maxErrSamples  = 5
)

// Config describes one load run.
type Config struct {
	Addr        string        // milter socket: inet:127.0.0.1:PORT or unix:/path
	Concurrency int           // sessions in flight
	Duration    time.Duration // measured time (with Sessions 0)
	Ramp        time.Duration // load before the measured window, not counted
	Sessions    int           // stop after this many sessions instead (Duration 0)
	Rcpts       int           // recipients per session
	NewFraction float64       // probability that a recipient's triplet is new
	Pools       Pools
	Seed        uint64
	Timeout     time.Duration // dial and each read/write
	// MaxErrors stops the run early once this many sessions failed.
	MaxErrors int
	// ServerPID, when set, is the milter's process: its CPU time and
	// memory are reported.
	ServerPID int
	Label     string
}

// Validate checks the bounds.
func (c *Config) Validate() error {
	switch {
	case c.Concurrency < 1 || c.Concurrency > MaxConcurrency:
		return fmt.Errorf("concurrency %d out of range 1–%d", c.Concurrency, MaxConcurrency)
	case c.Rcpts < 1 || c.Rcpts > MaxRcpts:
		return fmt.Errorf("rcpts %d out of range 1–%d", c.Rcpts, MaxRcpts)
	case c.NewFraction < 0 || c.NewFraction > 1 || math.IsNaN(c.NewFraction):
		return fmt.Errorf("new fraction %v out of range 0–1", c.NewFraction)
	case c.Pools.IPv6Fraction < 0 || c.Pools.IPv6Fraction > 1 || math.IsNaN(c.Pools.IPv6Fraction):
		return fmt.Errorf("ipv6 fraction %v out of range 0–1", c.Pools.IPv6Fraction)
	case (c.Duration > 0) == (c.Sessions > 0):
		return errors.New("give exactly one of a duration and a number of sessions")
	case c.Duration < 0 || c.Duration > MaxDuration || c.Ramp < 0 || c.Ramp > MaxDuration:
		return fmt.Errorf("duration out of range 0–%v", MaxDuration)
	case c.Sessions < 0 || c.Sessions > MaxSessions:
		return fmt.Errorf("sessions out of range 1–%d", MaxSessions)
	case c.Timeout <= 0:
		return errors.New("timeout must be positive")
	}
	if _, _, err := ParseAddr(c.Addr); err != nil {
		return err
	}
	return nil
}

// Latency is a latency summary in microseconds.
type Latency struct {
	P50  float64 `json:"p50_us"`
	P90  float64 `json:"p90_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p999_us"`
	Max  float64 `json:"max_us"`
	Mean float64 `json:"mean_us"`
}

func latencyOf(h *Histogram) Latency {
	us := func(d time.Duration) float64 { return math.Round(float64(d)/1e1) / 1e2 }
	return Latency{P50: us(h.Quantile(0.5)), P90: us(h.Quantile(0.9)), P99: us(h.Quantile(0.99)),
		P999: us(h.Quantile(0.999)), Max: us(h.Max()), Mean: us(h.Mean())}
}

// ProcStats are a process's costs over the measured window.
type ProcStats struct {
	PID               int     `json:"pid,omitempty"`
	CPUSeconds        float64 `json:"cpu_s"`
	CPUPerDecisionUS  float64 `json:"cpu_per_decision_us"`
	CPUUtilisation    float64 `json:"cpu_cores"` // CPU seconds per second
	RSSKiB            uint64  `json:"rss_kib,omitempty"`
	PeakRSSKiB        uint64  `json:"peak_rss_kib,omitempty"`
	RSSAnonKiB        uint64  `json:"rss_anon_kib,omitempty"`
	RSSFileKiB        uint64  `json:"rss_file_kib,omitempty"`
	ErrorReadingStats string  `json:"stats_error,omitempty"`
}

// Report is the outcome of a run.
type Report struct {
	Label         string  `json:"label,omitempty"`
	Addr          string  `json:"addr"`
	Concurrency   int     `json:"concurrency"`
	Rcpts         int     `json:"rcpts_per_session"`
	NewFraction   float64 `json:"new_fraction"`
	IPv6Fraction  float64 `json:"ipv6_fraction"`
	Seed          uint64  `json:"seed"`
	KnownTriplets int     `json:"known_triplets"`

	WindowSeconds float64 `json:"window_s"`
	Sessions      uint64  `json:"sessions"`
	Decisions     uint64  `json:"rcpt_decisions"`
	SessionsPerS  float64 `json:"sessions_per_s"`
	DecisionsPerS float64 `json:"decisions_per_s"`
	Latency       Latency `json:"rcpt_latency"`

	// RcptReplies counts the replies to RCPT: continue, replycode-451,
	// tempfail, accept, reject, other.
	RcptReplies map[string]uint64 `json:"rcpt_replies"`
	// EndReplies counts how messages that reached DATA ended:
	// header-accept (accepted at the first header), eom-accept+modified
	// (a header added at end of message), …
	EndReplies map[string]uint64 `json:"message_replies"`
	// KnownGreylisted: known triplets that were refused; NewPassed: new
	// ones that were let through. Both should be 0 against a greylister.
	KnownGreylisted uint64 `json:"known_greylisted"`
	NewPassed       uint64 `json:"new_passed"`

	Errors       uint64            `json:"errors"`
	ErrorsBy     map[string]uint64 `json:"errors_by_stage,omitempty"`
	ErrorSamples []string          `json:"error_samples,omitempty"`
	Stopped      string            `json:"stopped_early,omitempty"`

	Server  *ProcStats `json:"server,omitempty"`
	Loadgen ProcStats  `json:"loadgen"`
}

// collector gathers the workers' results: the sum of their shares.
type collector struct {
	mu sync.Mutex
	local
}

func newCollector() *collector { return &collector{local: *newLocal()} }

// local is one worker's share, merged once at the end.
type local struct {
	hist        Histogram
	sessions    uint64
	rcptReplies map[string]uint64
	endReplies  map[string]uint64
	knownGrey   uint64
	newPassed   uint64
	errors      uint64
	errorsBy    map[string]uint64
	errSamples  []string
}

func newLocal() *local {
	return &local{rcptReplies: map[string]uint64{}, endReplies: map[string]uint64{}, errorsBy: map[string]uint64{}}
}

func (l *local) add(res *sessionResult, winStart, winEnd time.Time) {
	for i, d := range res.rcptLatency {
		start := res.rcptStart[i]
		if start.Before(winStart) || start.Add(d).After(winEnd) {
			continue
		}
		l.hist.Record(d)
		l.rcptReplies[res.rcptReply[i]]++
	}
	if res.end.Before(winStart) || res.end.After(winEnd) {
		return
	}
	if res.err != nil {
		l.errors++
		l.errorsBy[res.errStage]++
		if len(l.errSamples) < maxErrSamples {
			l.errSamples = append(l.errSamples, res.errStage+": "+res.err.Error())
		}
		return
	}
	l.sessions++
	l.knownGrey += uint64(res.knownGrey)
	l.newPassed += uint64(res.newPassed)
	if res.dataReply != "" {
		l.endReplies[res.dataReply]++
	}
}

func (c *collector) merge(l *local) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hist.Merge(&l.hist)
	c.sessions += l.sessions
	for k, v := range l.rcptReplies {
		c.rcptReplies[k] += v
	}
	for k, v := range l.endReplies {
		c.endReplies[k] += v
	}
	for k, v := range l.errorsBy {
		c.errorsBy[k] += v
	}
	c.knownGrey += l.knownGrey
	c.newPassed += l.newPassed
	c.errors += l.errors
	for _, s := range l.errSamples {
		if len(c.errSamples) < maxErrSamples {
			c.errSamples = append(c.errSamples, s)
		}
	}
}

// Run loads the milter with cfg and reports. known are the envelopes
// whose triplets the milter already passed (see Warmup); without them
// every triplet is new.
func Run(ctx context.Context, cfg Config, known []Envelope) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	network, address, _ := ParseAddr(cfg.Addr)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var remaining atomic.Int64
	remaining.Store(int64(cfg.Sessions))
	var failed atomic.Int64
	stopReason := atomic.Pointer[string]{}

	start := time.Now()
	winStart, winEnd := start.Add(cfg.Ramp), start.Add(cfg.Ramp+cfg.Duration)
	if cfg.Sessions > 0 {
		winStart, winEnd = start, start.Add(100*365*24*time.Hour)
	}
	var serverCPU0, selfCPU0 time.Duration
	var statsErr error
	measured := make(chan struct{})
	go func() {
		// Sample the CPU counters at the edges of the window.
		select {
		case <-time.After(time.Until(winStart)):
		case <-ctx.Done():
		}
		selfCPU0 = selfCPU()
		if cfg.ServerPID > 0 {
			serverCPU0, statsErr = ProcCPU(cfg.ServerPID)
		}
		close(measured)
	}()

	col := newCollector()
	var wg sync.WaitGroup
	lastEnd := make([]time.Time, cfg.Concurrency)
	for id := range cfg.Concurrency {
		wg.Go(func() {
			w := newWorker(&cfg, network, address, cfg.Seed, id)
			l := newLocal()
			defer col.merge(l)
			for ctx.Err() == nil {
				if cfg.Sessions > 0 {
					if remaining.Add(-1) < 0 {
						return
					}
				} else if !time.Now().Before(winEnd) {
					return
				}
				res := w.run(w.newPlan(known, cfg.Rcpts, cfg.NewFraction))
				l.add(res, winStart, winEnd)
				lastEnd[id] = res.end
				if res.err != nil {
					if cfg.MaxErrors > 0 && failed.Add(1) >= int64(cfg.MaxErrors) {
						msg := fmt.Sprintf("%d sessions failed", cfg.MaxErrors)
						stopReason.CompareAndSwap(nil, &msg)
						cancel()
						return
					}
					// Do not spin on a milter that refuses connections.
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	end := time.Now()
	<-measured
	if cfg.Sessions == 0 && end.After(winEnd) {
		end = winEnd
	}
	if cfg.Sessions > 0 {
		end = winStart
		for _, t := range lastEnd {
			if t.After(end) {
				end = t
			}
		}
	}
	window := end.Sub(winStart).Seconds()
	rep := &Report{
		Label: cfg.Label, Addr: cfg.Addr, Concurrency: cfg.Concurrency, Rcpts: cfg.Rcpts,
		NewFraction: cfg.NewFraction, IPv6Fraction: cfg.Pools.IPv6Fraction, Seed: cfg.Seed,
		KnownTriplets: Triplets(known), WindowSeconds: round(window, 3),
		Sessions: col.sessions, Decisions: col.hist.Count(),
		Latency:     latencyOf(&col.hist),
		RcptReplies: col.rcptReplies, EndReplies: col.endReplies,
		KnownGreylisted: col.knownGrey, NewPassed: col.newPassed,
		Errors: col.errors, ErrorSamples: col.errSamples,
	}
	if len(col.errorsBy) > 0 {
		rep.ErrorsBy = col.errorsBy
	}
	if r := stopReason.Load(); r != nil {
		rep.Stopped = *r
	}
	if window > 0 {
		rep.SessionsPerS = round(float64(col.sessions)/window, 1)
		rep.DecisionsPerS = round(float64(col.hist.Count())/window, 1)
	}
	rep.Loadgen = procStats(selfCPU()-selfCPU0, window, rep.Decisions)
	if cfg.ServerPID > 0 {
		cpu1, err := ProcCPU(cfg.ServerPID)
		st := procStats(cpu1-serverCPU0, window, rep.Decisions)
		st.PID = cfg.ServerPID
		if err == nil {
			err = statsErr
		}
		if err == nil {
			var m Mem
			m, err = ProcMem(cfg.ServerPID)
			st.RSSKiB, st.PeakRSSKiB, st.RSSAnonKiB, st.RSSFileKiB = m.RSS, m.PeakRSS, m.Anon, m.File
		}
		if err != nil {
			st.ErrorReadingStats = err.Error()
		}
		rep.Server = &st
	}
	return rep, nil
}

func procStats(cpu time.Duration, window float64, decisions uint64) ProcStats {
	st := ProcStats{CPUSeconds: round(cpu.Seconds(), 3)}
	if window > 0 {
		st.CPUUtilisation = round(cpu.Seconds()/window, 3)
	}
	if decisions > 0 {
		st.CPUPerDecisionUS = round(float64(cpu.Microseconds())/float64(decisions), 2)
	}
	return st
}

func round(v float64, digits int) float64 {
	p := math.Pow10(digits)
	return math.Round(v*p) / p
}

// WarmupReport says how the known triplets were made known.
type WarmupReport struct {
	Envelopes     int               `json:"envelopes"`
	Triplets      int               `json:"triplets"`
	FirstReplies  map[string]uint64 `json:"first_replies"`  // expected: replycode-451
	SecondReplies map[string]uint64 `json:"second_replies"` // expected: continue
	Errors        uint64            `json:"errors"`
	ErrorSamples  []string          `json:"error_samples,omitempty"`
	Seconds       float64           `json:"seconds"`
}

// Warmup makes the known envelopes' triplets pass, as a real sender does:
// each envelope is sent once (the milter greylists every recipient), then,
// after wait (longer than the milter's delay), once more, when the
// retries pass. Both rounds run conc sessions at a time. Afterwards a
// greylister answers continue to those triplets until they expire.
func Warmup(ctx context.Context, addr string, conc int, timeout, wait time.Duration, envs []Envelope) (*WarmupReport, error) {
	rep := &WarmupReport{Envelopes: len(envs), Triplets: Triplets(envs),
		FirstReplies: map[string]uint64{}, SecondReplies: map[string]uint64{}}
	start := time.Now()
	if err := sendAll(ctx, addr, conc, timeout, envs, rep, rep.FirstReplies); err != nil {
		return rep, err
	}
	select {
	case <-time.After(wait):
	case <-ctx.Done():
		return rep, ctx.Err()
	}
	if err := sendAll(ctx, addr, conc, timeout, envs, rep, rep.SecondReplies); err != nil {
		return rep, err
	}
	rep.Seconds = round2(time.Since(start).Seconds())
	return rep, rep.check("is -warmup-wait longer than the milter's delay?")
}

// Touch sends every known envelope once and checks that each triplet
// passes: for triplets a preload wrote, it checks the keys agree with the
// daemon's and leaves them in the state the warm-up leaves its own (just
// used), so runs on a preloaded and on an empty store compare.
func Touch(ctx context.Context, addr string, conc int, timeout time.Duration, envs []Envelope) (*WarmupReport, error) {
	rep := &WarmupReport{Envelopes: len(envs), Triplets: Triplets(envs), SecondReplies: map[string]uint64{}}
	start := time.Now()
	if err := sendAll(ctx, addr, conc, timeout, envs, rep, rep.SecondReplies); err != nil {
		return rep, err
	}
	rep.Seconds = round2(time.Since(start).Seconds())
	return rep, rep.check("do the preload's masks and delimiter match the daemon's?")
}

func (rep *WarmupReport) check(hint string) error {
	if rep.Errors > 0 {
		return fmt.Errorf("warm-up: %d sessions failed: %v", rep.Errors, rep.ErrorSamples)
	}
	if n := rep.SecondReplies["continue"]; n != uint64(rep.Triplets) {
		return fmt.Errorf("warm-up: %d of %d known triplets passed (replies %v); %s",
			n, rep.Triplets, sortedKeys(rep.SecondReplies), hint)
	}
	return nil
}

// sendAll sends each envelope in one session, conc at a time, counting
// the RCPT replies.
func sendAll(ctx context.Context, addr string, conc int, timeout time.Duration, envs []Envelope, rep *WarmupReport, replies map[string]uint64) error {
	network, address, err := ParseAddr(addr)
	if err != nil {
		return err
	}
	if conc < 1 || conc > MaxConcurrency {
		return fmt.Errorf("concurrency %d out of range 1–%d", conc, MaxConcurrency)
	}
	cfg := &Config{Timeout: timeout}
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	for id := range conc {
		wg.Go(func() {
			w := newWorker(cfg, network, address, 1, id)
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(envs) {
					return
				}
				e := envs[i]
				p := plan{client: e.Client, sender: e.Sender, rcpts: e.Rcpts, isNew: make([]bool, len(e.Rcpts))}
				p.hostname = "mail." + e.Sender[lastAt(e.Sender)+1:]
				p.helo = p.hostname
				res := w.run(p)
				mu.Lock()
				for _, r := range res.rcptReply {
					replies[r]++
				}
				if res.err != nil {
					rep.Errors++
					if len(rep.ErrorSamples) < maxErrSamples {
						rep.ErrorSamples = append(rep.ErrorSamples, res.errStage+": "+res.err.Error())
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}

func round2(v float64) float64 { return round(v, 2) }

func lastAt(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '@' {
			return i
		}
	}
	return -1
}

func sortedKeys(m map[string]uint64) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(out)
	return out
}

// WaitReady waits until a milter answers option negotiation at addr, for
// at most timeout, polling every millisecond; it returns how long it
// waited.
func WaitReady(addr string, timeout time.Duration) (time.Duration, error) {
	network, address, err := ParseAddr(addr)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	deadline := start.Add(timeout)
	c := gomilter.NewClientWithOptions(network, address, gomilter.ClientOptions{
		Dialer:       &net.Dialer{Timeout: time.Second},
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		ActionMask:   gomilter.OptAddHeader,
	})
	for {
		s, err := c.Session()
		if err == nil {
			s.Close()
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return time.Since(start), fmt.Errorf("%s not ready after %v: %w", addr, timeout, err)
		}
		time.Sleep(time.Millisecond)
	}
}
