// Package metrics holds milter-grey's Prometheus metrics: decisions, SPF
// and DKIM results, store and DNS latency, sessions, list reloads and the
// never-retried count. Each Metrics has its own registry (there is no
// global one), so tests and several daemons in one process stay apart.
//
// It only counts and serves; what to count is the caller's business: the
// daemon wires ObserveDecision to the milter, wraps its store with
// InstrumentStore and its DNS resolver with InstrumentResolver.
package metrics

import (
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/milter-grey/milter-grey/greylist"
)

const namespace = "milter_grey"

// Store operations, the values of the op label.
const (
	OpUpdate = "update"
	OpGet    = "get"
	OpPut    = "put"
	OpDelete = "delete"
	OpScan   = "scan"
)

// Results of a store operation, the values of the result label.
const (
	ResultOK    = "ok"
	ResultMiss  = "miss" // Get of an absent key: not an error
	ResultError = "error"
)

// Metrics is the set of milter-grey's metrics and the registry that serves
// them. It is safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	decisions    *prometheus.CounterVec
	spf          *prometheus.CounterVec
	dkim         *prometheus.CounterVec
	triggers     *prometheus.CounterVec
	storeOps     *prometheus.CounterVec
	storeSeconds *prometheus.HistogramVec
	dnsSeconds   prometheus.Histogram
	reloads      *prometheus.CounterVec
	neverRetried prometheus.Counter

	sessions atomic.Pointer[func() int]
	storeUp  atomic.Pointer[func() bool]
}

// New returns the metrics of a daemon of the given version, with the Go
// runtime and process collectors registered next to them.
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	f := promauto.With(reg)
	m := &Metrics{reg: reg}
	m.decisions = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "decisions_total",
		Help: "Recipients decided, by action (pass, greylist, defer) and reason; in dry-run mode, what would have been done.",
	}, []string{"action", "reason"})
	m.spf = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "spf_results_total",
		Help: "SPF results of the decisions that needed one (one per recipient decided).",
	}, []string{"result"})
	m.triggers = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "triggers_total",
		Help: "Recipients decided with a trigger (why a new triplet was greylisted under greylist = \"suspicious\", or the DNS blocklist listing the client), by trigger and action.",
	}, []string{"trigger", "action"})
	m.dkim = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "dkim_results_total",
		Help: "DKIM verdicts of the recipients decided at end of message.",
	}, []string{"result"})
	m.storeOps = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "store_operations_total",
		Help: "Store operations by op and result (ok, miss: a get of an absent key, error).",
	}, []string{"op", "result"})
	m.storeSeconds = f.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "store_operation_seconds",
		Help:    "Time spent in the store per operation (for scan, without the caller's work per record).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9), // 100µs … 6.5s
	}, []string{"op"})
	m.dnsSeconds = f.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "dns_seconds",
		Help:    "Duration of each DNS exchange made for SPF and DKIM (connection opened to closed).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 9), // 1ms … 1.5s, then +Inf
	})
	m.reloads = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "list_reloads_total",
		Help: "Reloads of the configuration's lists (SIGHUP or a changed file), by result (ok, error).",
	}, []string{"result"})
	m.neverRetried = f.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "never_retried_total",
		Help: "Greylisted triplets whose retry window closed without a retry (mostly spam).",
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "sessions_open",
		Help: "Milter connections open now.",
	}, func() float64 {
		if fn := m.sessions.Load(); fn != nil {
			return float64((*fn)())
		}
		return 0
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "store_up",
		Help: "1 when the last store operation of a decision succeeded, 0 during a store outage.",
	}, func() float64 {
		if fn := m.storeUp.Load(); fn != nil && !(*fn)() {
			return 0
		}
		return 1
	})
	f.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the labels say which milter-grey runs.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	}).Set(1)

	// Counters that exist from the start, so that rate() and absent()
	// work before the first event.
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")
	for _, op := range []string{OpUpdate, OpGet, OpPut, OpDelete, OpScan} {
		m.storeOps.WithLabelValues(op, ResultOK)
		m.storeOps.WithLabelValues(op, ResultError)
	}
	return m
}

// Registry is the registry the metrics are in, for tests and for callers
// that add their own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// WatchSessions sets the source of milter_grey_sessions_open (the milter
// server's OpenSessions).
func (m *Metrics) WatchSessions(open func() int) { m.sessions.Store(&open) }

// WatchStore sets the source of milter_grey_store_up (the engine's
// StoreHealthy).
func (m *Metrics) WatchStore(healthy func() bool) { m.storeUp.Store(&healthy) }

// ObserveDecision counts one decision; it has the signature of
// milter.Config.OnDecision. d.DKIM is the DKIM verdict of a recipient
// decided at end of message ("pass d=example.com aligned=relaxed"), or "".
func (m *Metrics) ObserveDecision(d greylist.Decision) {
	m.decisions.WithLabelValues(d.Action.String(), string(d.Reason)).Inc()
	if d.SPF != "" {
		m.spf.WithLabelValues(resultLabel(d.SPF, spfResults)).Inc()
	}
	if d.Trigger != "" {
		// Trigger values are few: the kinds, and dnsbl:ZONE for the
		// zones the admin configured.
		m.triggers.WithLabelValues(string(d.Trigger), d.Action.String()).Inc()
	}
	if d.DKIM != "" {
		m.dkim.WithLabelValues(resultLabel(d.DKIM, dkimResults)).Inc()
	}
}

// ListReload counts a reload of the lists, good or failed.
func (m *Metrics) ListReload(err error) {
	if err != nil {
		m.reloads.WithLabelValues("error").Inc()
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
}

// NeverRetried counts n triplets whose retry window closed unretried.
func (m *Metrics) NeverRetried(n int) { m.neverRetried.Add(float64(n)) }

var (
	spfResults = map[string]bool{"pass": true, "pass(wide-open)": true, "fail": true, "softfail": true,
		"neutral": true, "none": true, "temperror": true, "permerror": true}
	dkimResults = map[string]bool{"pass": true, "fail": true, "none": true, "temperror": true, "permerror": true}
)

// resultLabel reduces a result as logged ("pass d=example.com
// aligned=relaxed") to its first word, and anything unexpected to "other",
// so that the label's values stay few whatever the message says.
func resultLabel(s string, known map[string]bool) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), " ")
	s = strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(s, "spf="), "dkim="))
	if known[s] {
		return s
	}
	return "other"
}
