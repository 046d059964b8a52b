// Command report prints the table of a bench/run.sh run: for each phase,
// configuration and number of recipients per session, the RCPT decisions
// per second (median and range over the rounds), p99 latency, CPU per
// decision and peak RSS; then the targets milter-grey holds itself to
// (decisions/s at least 95 % of the bare baseline's and p99 at most 1.2×
// it; with 1 M triplets, within 10 % of an empty store, started within a
// second, peak RSS at most 128 MiB; Redis at least 80 % of Badger), each
// computed from runs of one phase (whose configurations were loaded
// alternately) as the median of the per-round ratios.
//
//	go run ./bench/report DIR     # DIR holds runs/*.json and meta.txt
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/milter-grey/milter-grey/bench/internal/loadgen"
)

// run is one load run: runs/PHASE__CONFIG__rN__ROUND.json.
type run struct {
	phase, config string
	rcpts, round  int
	rep           loadgen.Report
}

type key struct {
	phase, config string
	rcpts         int
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: report DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	files, _ := filepath.Glob(filepath.Join(dir, "runs", "*.json"))
	groups := map[key][]run{}
	var order []key
	for _, f := range files {
		parts := strings.Split(strings.TrimSuffix(filepath.Base(f), ".json"), "__")
		if len(parts) != 4 {
			continue
		}
		var r run
		r.phase, r.config = parts[0], parts[1]
		r.rcpts, _ = strconv.Atoi(strings.TrimPrefix(parts[2], "r"))
		r.round, _ = strconv.Atoi(parts[3])
		b, err := os.ReadFile(f)
		if err == nil {
			err = json.Unmarshal(b, &r.rep)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "report: %s: %v\n", f, err)
			continue
		}
		k := key{r.phase, r.config, r.rcpts}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	sort.Slice(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if a.phase != b.phase {
			return a.phase < b.phase
		}
		if a.rcpts != b.rcpts {
			return a.rcpts < b.rcpts
		}
		return a.config < b.config
	})
	meta := readMeta(filepath.Join(dir, "meta.txt"))

	fmt.Println("## Load runs (16 sessions in flight, half new / half known triplets, 20 % IPv6 clients)")
	fmt.Println()
	for _, m := range []string{"machine", "go", "load", "loadavg start", "loadavg end"} {
		if v, ok := meta[m]; ok {
			fmt.Printf("%-14s %s\n", m+":", v)
		}
	}
	fmt.Println()
	fmt.Printf("%-8s %-13s %5s %3s  %-26s %-20s %9s %12s %12s %7s\n",
		"phase", "config", "rcpts", "n", "decisions/s median [range]", "p99 µs median [range]", "p50 µs",
		"srv CPU µs/d", "gen CPU µs/d", "peak MiB")
	for _, k := range order {
		rs := groups[k]
		dps := collect(rs, func(r run) float64 { return r.rep.DecisionsPerS })
		p99 := collect(rs, func(r run) float64 { return r.rep.Latency.P99 })
		p50 := collect(rs, func(r run) float64 { return r.rep.Latency.P50 })
		cpu := collect(rs, func(r run) float64 { return srv(r).CPUPerDecisionUS })
		gen := collect(rs, func(r run) float64 { return r.rep.Loadgen.CPUPerDecisionUS })
		peak := slices.Max(collect(rs, func(r run) float64 { return float64(srv(r).PeakRSSKiB) / 1024 }))
		errs := 0.0
		for _, r := range rs {
			errs += float64(r.rep.Errors + r.rep.KnownGreylisted + r.rep.NewPassed)
		}
		note := ""
		if errs > 0 {
			note = fmt.Sprintf("  (%.0f errors/unexpected replies: see the JSON)", errs)
		}
		fmt.Printf("%-8s %-13s %5d %3d  %-26s %-20s %9.0f %12.1f %12.1f %7.1f%s\n",
			k.phase, k.config, k.rcpts, len(rs),
			fmt.Sprintf("%.0f [%.0f–%.0f]", median(dps), slices.Min(dps), slices.Max(dps)),
			fmt.Sprintf("%.0f [%.0f–%.0f]", median(p99), slices.Min(p99), slices.Max(p99)),
			median(p50), median(cpu), median(gen), peak, note)
	}
	fmt.Println()

	fmt.Println("## Targets")
	fmt.Println()
	check := func(ok bool) string {
		if ok {
			return "MET   "
		}
		return "MISSED"
	}
	ratio := func(phase, a, b string, rc int, f func(run) float64) (med, lo, hi float64, ok bool) {
		ra, rb := groups[key{phase, a, rc}], groups[key{phase, b, rc}]
		var rs []float64
		for _, x := range ra {
			for _, y := range rb {
				if x.round == y.round && f(y) > 0 {
					rs = append(rs, f(x)/f(y))
				}
			}
		}
		if len(rs) == 0 {
			return 0, 0, 0, false
		}
		return median(rs), slices.Min(rs), slices.Max(rs), true
	}
	dps := func(r run) float64 { return r.rep.DecisionsPerS }
	p99 := func(r run) float64 { return r.rep.Latency.P99 }
	line := func(what string, ok bool, format string, a ...any) {
		fmt.Printf("[%s] %-58s %s\n", check(ok), what, fmt.Sprintf(format, a...))
	}
	for _, rc := range []int{1, 10} {
		if m, lo, hi, ok := ratio("1-empty", "badger", "baseline", rc, dps); ok {
			line(fmt.Sprintf("decisions/s ≥ 95 %% of baseline, %d RCPT/session", rc), m >= 0.95,
				"%.1f %% [%.1f–%.1f] (paired rounds, phase 1-empty)", 100*m, 100*lo, 100*hi)
		}
	}
	for _, rc := range []int{1, 10} {
		if m, lo, hi, ok := ratio("1-empty", "badger", "baseline", rc, p99); ok {
			line(fmt.Sprintf("p99 ≤ 1.2× baseline's, %d RCPT/session", rc), m <= 1.2,
				"%.2f× [%.2f–%.2f]", m, lo, hi)
		}
	}
	for _, rc := range []int{1, 10} {
		if m, lo, hi, ok := ratio("2-1m", "badger-1m", "badger", rc, dps); ok {
			line(fmt.Sprintf("1 M triplets: decisions/s within 10 %% of empty, %d RCPT", rc), m >= 0.9,
				"%.1f %% [%.1f–%.1f] of the empty store's (phase 2-1m)", 100*m, 100*lo, 100*hi)
		}
		if m, lo, hi, ok := ratio("2-1m", "badger-1m", "badger", rc, p99); ok {
			line(fmt.Sprintf("1 M triplets: p99 within 10 %% of empty, %d RCPT", rc), m <= 1.1,
				"%.2f× [%.2f–%.2f]", m, lo, hi)
		}
	}
	if v, ok := meta["start_ms badger-1m"]; ok {
		ms, _ := strconv.ParseFloat(v, 64)
		line("daemon start with 1 M triplets ≤ 1 s (exec → optneg answered)", ms <= 1000, "%.0f ms (empty store: %s ms)", ms, meta["start_ms badger"])
	}
	if peak, anon, file, ok := rss(phaseRuns(groups, "2-1m", "badger-1m")); ok {
		line("RSS with 1 M triplets ≤ 128 MiB (peak VmHWM, "+meta["gomemlimit"]+")", peak <= 128,
			"%.1f MiB (largest at run ends: anon %.1f, file-backed %.1f)", peak, anon, file)
	}
	if peak, anon, file, ok := rss(phaseRuns(groups, "2-1m-low", "badger-1m-low")); ok {
		fmt.Printf("[info  ] %-58s %.1f MiB (anon %.1f, file-backed %.1f)\n",
			"RSS with 1 M triplets, "+meta["new_low"]+" new triplets", peak, anon, file)
	}
	for _, rc := range []int{1, 10} {
		if m, lo, hi, ok := ratio("3-redis", "redis", "badger", rc, dps); ok {
			line(fmt.Sprintf("Redis store ≥ 80 %% of Badger, %d RCPT/session", rc), m >= 0.8,
				"%.1f %% [%.1f–%.1f] (phase 3-redis)", 100*m, 100*lo, 100*hi)
		}
	}
	// Not a target: CPU per decision does not depend on what else the
	// machine runs, unlike decisions/s when load shares the CPUs.
	cpu := func(r run) float64 { return srv(r).CPUPerDecisionUS }
	for _, rc := range []int{1, 10} {
		if m, lo, hi, ok := ratio("1-empty", "badger", "baseline", rc, cpu); ok {
			fmt.Printf("[info  ] %-58s %.2f× [%.2f–%.2f]\n",
				fmt.Sprintf("server CPU per decision vs baseline, %d RCPT/session", rc), m, lo, hi)
		}
	}
	inProcess(filepath.Join(dir, "gobench.txt"))
	for _, k := range []string{"preload", "store"} {
		if v, ok := meta[k]; ok {
			fmt.Printf("\n%s: %s", k, v)
		}
	}
	fmt.Println()
}

// inProcess prints, from the Go benchmarks' output, milter-grey's
// decisions/s against the baseline's when both run in the benchmark's
// process with the load generator (BenchmarkSession): the same code
// without the cost of crossing between two processes on two CPUs.
func inProcess(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return // GOBENCH=0
	}
	rates := map[string][]float64{} // "impl/rcpts=N" → decisions/s per run
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || !strings.HasPrefix(f[0], "BenchmarkSession/") {
			continue
		}
		name := strings.TrimPrefix(f[0], "BenchmarkSession/")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i] // the -GOMAXPROCS suffix
		}
		for i := 3; i < len(f); i++ {
			if f[i] == "decisions/s" {
				if v, err := strconv.ParseFloat(f[i-1], 64); err == nil {
					rates[name] = append(rates[name], v)
				}
			}
		}
	}
	for _, rc := range []int{1, 10} {
		grey, base := rates[fmt.Sprintf("milter-grey/rcpts=%d", rc)], rates[fmt.Sprintf("baseline/rcpts=%d", rc)]
		if len(grey) == 0 || len(base) == 0 {
			continue
		}
		fmt.Printf("[info  ] %-58s %.1f %% (medians, %d and %d runs)\n",
			fmt.Sprintf("in one process (BenchmarkSession), %d RCPT/session", rc),
			100*median(grey)/median(base), len(grey), len(base))
	}
}

func srv(r run) loadgen.ProcStats {
	if r.rep.Server == nil {
		return loadgen.ProcStats{}
	}
	return *r.rep.Server
}

// rss is the server's peak RSS (VmHWM) over runs, and the largest
// anonymous and file-backed RSS at their ends, in MiB.
func rss(rs []run) (peak, anon, file float64, ok bool) {
	for _, r := range rs {
		s := srv(r)
		peak = max(peak, float64(s.PeakRSSKiB)/1024)
		anon = max(anon, float64(s.RSSAnonKiB)/1024)
		file = max(file, float64(s.RSSFileKiB)/1024)
	}
	return peak, anon, file, len(rs) > 0
}

func phaseRuns(groups map[key][]run, phase, config string) []run {
	var out []run
	for k, rs := range groups {
		if k.phase == phase && k.config == config {
			out = append(out, rs...)
		}
	}
	return out
}

func collect(rs []run, f func(run) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// readMeta reads "KEY<TAB>VALUE" lines.
func readMeta(path string) map[string]string {
	m := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "\t"); ok {
			m[k] = v
		}
	}
	return m
}
