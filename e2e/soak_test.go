package e2e

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-milter"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/milter-grey/milter-grey/testutil/testdns"
)

// The soak: the daemon under a steady mix of the load a real MX gives it,
// for as long as MILTER_GREY_SOAK says ("30m"), with its memory,
// goroutines and file descriptors sampled from /metrics every 10 s. After
// a warm-up (the first 20 % of the run) they must be flat: a leak of a
// goroutine, a descriptor or a buffer per session shows up as a trend over
// hundreds of thousands of sessions. (Memory is judged in runs of 20
// minutes or more: Badger's caches take about ten to fill.)
//
//	MILTER_GREY_SOAK=30m go test -run TestSoak -timeout 40m -v \
//	    -artifacts -outputdir /tmp/soak ./e2e/
//
// MILTER_GREY_SOAK_RATE sets the sessions per second during a burst (400
// by default). The samples go to soak.csv in the test's artifact
// directory (kept with -artifacts).

const (
	soakPeriod  = 10 * time.Second // one burst of load and one sample of the idle daemon
	soakBurst   = 7 * time.Second  // of each period; the rest lets the sessions end
	soakWorkers = 16               // concurrent MTA connections at most
	soakRate    = 400              // sessions per second during a burst, by default
	// soakMemoryVerdict is the shortest soak whose memory figures are
	// judged (see soakVerdict).
	soakMemoryVerdict = 20 * time.Minute
)

// The kinds of session the soak mixes, with their share of the load (%).
type soakKind int

const (
	soakNew          soakKind = iota // a triplet never seen: 451 at RCPT
	soakRetry                        // a pending triplet retried after the delay: passes
	soakKnown                        // a passed triplet: passes at once
	soakBypassSPF                    // a listed sender SPF proves: passes, accepted at its first header
	soakDKIMSigned                   // a listed sender from a forger's address, DKIM-signed: decided at EOM, passes
	soakDKIMUnsigned                 // the same unsigned: 451 at EOM
	soakAbortBody                    // DKIM-pending, the MTA aborts in the middle of the body
	soakDropBody                     // DKIM-pending, the MTA's connection drops in the middle of the body
	soakKinds
)

var soakMix = [soakKinds]int{
	soakNew: 30, soakRetry: 10, soakKnown: 30, soakBypassSPF: 10,
	soakDKIMSigned: 7, soakDKIMUnsigned: 7, soakAbortBody: 3, soakDropBody: 3,
}

func (k soakKind) String() string {
	return [...]string{"new", "retry", "known", "bypass-spf", "dkim-signed", "dkim-unsigned", "abort-body", "drop-body"}[k]
}

// soakSample is one reading of the daemon's /metrics.
type soakSample struct {
	at        time.Duration // since the start of the load
	phase     string        // "burst" (under load) or "idle" (every session ended)
	rss, heap float64       // bytes
	// From /proc/PID/status (the daemon is a child of the test): the
	// anonymous part of RSS (Go heap, Badger's own allocations) and the
	// file-backed part (Badger's mmapped tables and logs), and the space
	// the store's files take on disk: file-backed RSS grows with the
	// database, which only grows during a soak shorter than retry_window.
	rssAnon, rssFile float64
	storeBytes       float64
	storeFiles       float64 // files in the store directory: Badger keeps each open
	goroutines       float64
	fds              float64
	sessions         float64 // milter_grey_sessions_open
	decisions        float64 // milter_grey_decisions_total, every label
	sent             int64   // sessions the soak has run so far
}

func TestSoak(t *testing.T) {
	spec := os.Getenv("MILTER_GREY_SOAK")
	if spec == "" {
		t.Skip("the soak runs only when MILTER_GREY_SOAK is set to a duration, e.g. MILTER_GREY_SOAK=30m")
	}
	dur, err := time.ParseDuration(spec)
	if err != nil || dur < 2*time.Minute {
		t.Fatalf("MILTER_GREY_SOAK=%q: want a duration of at least 2m (%v)", spec, err)
	}
	rate := soakRate
	if s := os.Getenv("MILTER_GREY_SOAK_RATE"); s != "" {
		if rate, err = strconv.Atoi(s); err != nil || rate < 1 {
			t.Fatalf("MILTER_GREY_SOAK_RATE=%q: want a positive number of sessions per second", s)
		}
	}
	if dl, ok := t.Deadline(); ok && time.Until(dl) < dur+3*time.Minute {
		t.Fatalf("go test -timeout leaves %v, the soak needs %v plus a few minutes: raise -timeout",
			time.Until(dl).Round(time.Second), dur)
	}

	// The site of the bypass tests: example.com's SPF authorises
	// 203.0.113.0/24 and it publishes a DKIM key; its senders are listed.
	dns := testdns.Start(t)
	dns.SetTXT("example.com", "v=spf1 ip4:203.0.113.0/24 -all")
	pub, err := x509.MarshalPKIXPublicKey(&bypassDKIMKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	dns.SetTXT("sel._domainkey.example.com", "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(pub))
	list := filepath.Join(t.TempDir(), "nogreylist-senders")
	must(t, os.WriteFile(list, []byte("example.com OK\n"), 0o644))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, greyConfig(map[string]string{
		"dns_server":          strconv.Quote(dns.Addr()),
		"dns_timeout":         `"2s"`,
		"bypass_sender_files": "[" + strconv.Quote(list) + "]",
		"admin_listen":        strconv.Quote("inet:" + adminAddr),
	}))
	m := newMetricsReader(adminAddr)
	signed, unsigned := soakMessages(t)

	l := &soakLoad{addr: d.Addr, signed: signed, unsigned: unsigned}
	tokens := make(chan struct{})
	done := make(chan struct{})
	var workers sync.WaitGroup
	for range soakWorkers {
		workers.Go(func() {
			for {
				select {
				case <-done:
					return
				case <-tokens:
				}
				l.inflight.Add(1)
				l.session()
				l.inflight.Add(-1)
			}
		})
	}
	defer func() { close(done); workers.Wait() }()

	var samples []soakSample
	sample := func(start time.Time, phase string) {
		t.Helper()
		v, err := m.read()
		if err != nil {
			t.Fatalf("GET /metrics at %v: %v", time.Since(start).Round(time.Second), err)
		}
		anon, file := procRSS(d)
		samples = append(samples, soakSample{
			at: time.Since(start), phase: phase, rssAnon: anon, rssFile: file,
			storeBytes: diskUsage(d.Store), storeFiles: fileCount(d.Store),
			rss: v["process_resident_memory_bytes"], heap: v["go_memstats_heap_inuse_bytes"],
			goroutines: v["go_goroutines"], fds: v["process_open_fds"],
			sessions: v["milter_grey_sessions_open"], decisions: v["milter_grey_decisions_total"],
			sent: l.sent.Load(),
		})
	}

	t.Logf("soak: %v at %d sessions/s in bursts of %v every %v, %d connections at most; daemon %s, admin %s",
		dur, rate, soakBurst, soakPeriod, soakWorkers, d.Addr, adminAddr)
	start := time.Now()
	sample(start, "idle") // before any load
	for period := start; time.Since(start) < dur; period = period.Add(soakPeriod) {
		// The burst: a session every 1/rate, as long as a worker is free.
		tick := time.NewTicker(time.Second / time.Duration(rate))
		burstEnd := period.Add(soakBurst)
		midDone := false
		for now := range tick.C {
			if !now.Before(burstEnd) {
				break
			}
			if !midDone && now.After(period.Add(soakBurst/2)) {
				sample(start, "burst")
				midDone = true
			}
			select {
			case tokens <- struct{}{}:
			default: // every worker busy: the daemon sets the pace
			}
		}
		tick.Stop()
		// Between bursts: every session ended, on both sides.
		if !waitFor(10*time.Second, func() bool { return l.inflight.Load() == 0 }) {
			t.Fatalf("%d sessions still under way 10s after the burst", l.inflight.Load())
		}
		var open float64
		if !waitFor(10*time.Second, func() bool {
			v, err := m.read()
			open = v["milter_grey_sessions_open"]
			return err == nil && open == 0
		}) {
			t.Errorf("at %v: milter_grey_sessions_open = %v 10s after the last session ended, want 0",
				time.Since(start).Round(time.Second), open)
		}
		sample(start, "idle")
		running(t, d)
		time.Sleep(time.Until(period.Add(soakPeriod)))
	}
	elapsed := time.Since(start)

	csv := filepath.Join(t.ArtifactDir(), "soak.csv")
	writeSoakCSV(t, csv, samples)
	t.Logf("samples: %s", csv)

	// Every answer was the designed one.
	l.mu.Lock()
	problems := l.problems
	l.mu.Unlock()
	for i, p := range problems {
		if i == 20 {
			t.Errorf("… %d problems in all", len(problems))
			break
		}
		t.Error(p)
	}
	var mix []string
	for k := range soakKinds {
		mix = append(mix, fmt.Sprintf("%s=%d", k, l.byKind[k].Load()))
	}
	t.Logf("sessions: %d in %v (%s)", l.sent.Load(), elapsed.Round(time.Second), strings.Join(mix, " "))

	soakVerdict(t, samples, dur, elapsed)
	soakLogCheck(t, d)
}

// soakVerdict checks that the idle samples after the warm-up are flat, and
// logs the figures.
func soakVerdict(t *testing.T, samples []soakSample, dur, elapsed time.Duration) {
	var idle, q2, q4 []soakSample
	warm := dur / 5
	for _, s := range samples {
		if s.phase != "idle" {
			continue
		}
		switch {
		case s.at < warm:
		case s.at < dur/2:
			idle = append(idle, s)
			if s.at >= dur/4 {
				q2 = append(q2, s)
			}
		default:
			idle = append(idle, s)
			if s.at >= dur*3/4 {
				q4 = append(q4, s)
			}
		}
	}
	if len(q2) < 2 || len(q4) < 2 {
		t.Fatalf("too few idle samples after the warm-up (%d in the second quarter, %d in the last): run longer", len(q2), len(q4))
	}
	first, warmEnd, last := samples[0], idle[0], idle[len(idle)-1]
	var peak soakSample
	for _, s := range samples {
		if s.phase == "burst" && s.goroutines > peak.goroutines {
			peak = s
		}
	}
	mib := func(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
	t.Logf("%-28s %12s %12s %12s", "", "start", "after warm-up", "end")
	t.Logf("%-28s %12s %12s %12s", "RSS", mib(first.rss), mib(warmEnd.rss), mib(last.rss))
	t.Logf("%-28s %12s %12s %12s", "  anonymous", mib(first.rssAnon), mib(warmEnd.rssAnon), mib(last.rssAnon))
	t.Logf("%-28s %12s %12s %12s", "  file-backed (mmap)", mib(first.rssFile), mib(warmEnd.rssFile), mib(last.rssFile))
	t.Logf("%-28s %12s %12s %12s", "store on disk", mib(first.storeBytes), mib(warmEnd.storeBytes), mib(last.storeBytes))
	t.Logf("%-28s %12s %12s %12s", "heap in use", mib(first.heap), mib(warmEnd.heap), mib(last.heap))
	t.Logf("%-28s %12.0f %12.0f %12.0f", "goroutines (idle)", first.goroutines, warmEnd.goroutines, last.goroutines)
	t.Logf("%-28s %12.0f %12.0f %12.0f", "open fds (idle)", first.fds, warmEnd.fds, last.fds)
	t.Logf("%-28s %12.0f %12.0f %12.0f", "  of them store files", first.storeFiles, warmEnd.storeFiles, last.storeFiles)
	t.Logf("peak under load: %.0f goroutines, %.0f fds, %.0f sessions open (at %v)",
		peak.goroutines, peak.fds, peak.sessions, peak.at.Round(time.Second))
	decided := last.decisions - first.decisions
	t.Logf("decisions: %.0f in %v, %.1f/s (%.1f/s during bursts)", decided, elapsed.Round(time.Second),
		decided/elapsed.Seconds(), decided/elapsed.Seconds()*float64(soakPeriod)/float64(soakBurst))

	med := func(ss []soakSample, f func(soakSample) float64) float64 {
		v := make([]float64, len(ss))
		for i, s := range ss {
			v[i] = f(s)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	rss := func(s soakSample) float64 { return s.rss }
	heap := func(s soakSample) float64 { return s.heap }
	anon := func(s soakSample) float64 { return s.rssAnon }
	// Descriptors other than the store's files (whose number grows with
	// the database): sockets, the log, the listeners.
	otherFDs := func(s soakSample) float64 { return s.fds - s.storeFiles }
	store := func(s soakSample) float64 { return s.storeBytes }
	gor := func(s soakSample) float64 { return s.goroutines }
	fds := func(s soakSample) float64 { return s.fds }
	t.Logf("medians, second quarter → last quarter: RSS %s → %s (anonymous %s → %s), heap %s → %s, store %s → %s, goroutines %.0f → %.0f, fds %.0f → %.0f",
		mib(med(q2, rss)), mib(med(q4, rss)), mib(med(q2, anon)), mib(med(q4, anon)), mib(med(q2, heap)), mib(med(q4, heap)),
		mib(med(q2, store)), mib(med(q4, store)), med(q2, gor), med(q4, gor), med(q2, fds), med(q4, fds))

	// Badger's block and index caches (8 + 4 MiB), its memtables and the
	// Go heap's GC target take about ten minutes of this load to fill (a
	// 30-minute run: RSS and heap rise until 10 min, then stay level): a
	// shorter soak ends while they still grow, so it reports memory but
	// does not judge it.
	if dur < soakMemoryVerdict {
		t.Logf("a soak shorter than %v: memory reported, not judged (the caches are still filling)", soakMemoryVerdict)
	} else {
		for _, c := range []struct {
			what string
			f    func(soakSample) float64
		}{{"anonymous RSS", anon}, {"heap in use", heap}} {
			if a, b := med(q2, c.f), med(q4, c.f); b > 1.2*a {
				t.Errorf("%s grows: median %s in the last quarter, more than 1.2 × %s in the second", c.what, mib(b), mib(a))
			}
		}
		// The whole RSS may also grow by what the database grew on
		// disk: Badger maps its files, and the pages it reads count as
		// resident.
		if a, b, grown := med(q2, rss), med(q4, rss), max(0, med(q4, store)-med(q2, store)); b > 1.2*a+grown {
			t.Errorf("RSS grows: median %s in the last quarter, more than 1.2 × %s in the second plus the %s the store grew",
				mib(b), mib(a), mib(grown))
		}
	}
	// Between bursts the daemon is back to its baseline: no goroutine or
	// descriptor stays behind a session. The margin covers background work
	// that may be running at the moment of a sample (a compaction, a GC of
	// the value log, a list reload check).
	const margin = 10
	baseG, baseF := med(q2, gor), med(q2, otherFDs)
	for _, s := range idle {
		if s.goroutines > baseG+margin {
			t.Errorf("at %v, between bursts: %.0f goroutines, baseline %.0f (+%d allowed)", s.at.Round(time.Second), s.goroutines, baseG, margin)
		}
		if otherFDs(s) > baseF+margin {
			t.Errorf("at %v, between bursts: %.0f open fds besides the store's %.0f files, baseline %.0f (+%d allowed)",
				s.at.Round(time.Second), otherFDs(s), s.storeFiles, baseF, margin)
		}
	}
}

// soakLogCheck reads the daemon's log once, at the end: no panic, no error,
// no store outage.
func soakLogCheck(t *testing.T, d *daemon) {
	t.Helper()
	running(t, d)
	f, err := os.Open(d.logPath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	lines, bad := 0, 0
	for sc.Scan() {
		lines++
		line := sc.Text()
		if strings.Contains(line, "panic") || strings.Contains(line, "level=ERROR") || strings.Contains(line, "store failing") {
			if bad++; bad <= 10 {
				t.Errorf("daemon log: %s", line)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Errorf("read the daemon log: %v", err)
	}
	t.Logf("daemon log: %d lines, %d bad", lines, bad)
}

// procRSS returns RssAnon and RssFile+RssShmem of the daemon's process, in
// bytes (0 if they cannot be read).
func procRSS(d *daemon) (anon, file float64) {
	r := d.current()
	if r == nil {
		return 0, 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, _ := strconv.ParseFloat(f[0], 64)
		switch k {
		case "RssAnon":
			anon = n * 1024
		case "RssFile", "RssShmem":
			file += n * 1024
		}
	}
	return anon, file
}

// diskUsage is the space the files under dir take (allocated blocks, so
// sparse files count for what they hold), in bytes.
func diskUsage(dir string) float64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		if fi, err := e.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return float64(n)
}

// fileCount is the number of files in dir.
func fileCount(dir string) float64 {
	entries, _ := os.ReadDir(dir)
	return float64(len(entries))
}

func writeSoakCSV(t *testing.T, path string, samples []soakSample) {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("elapsed_s,phase,rss_bytes,rss_anon_bytes,rss_file_bytes,heap_inuse_bytes,store_bytes,store_files,goroutines,open_fds,sessions_open,decisions_total,sessions_sent\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "%.1f,%s,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f,%d\n", s.at.Seconds(), s.phase,
			s.rss, s.rssAnon, s.rssFile, s.heap, s.storeBytes, s.storeFiles, s.goroutines, s.fds, s.sessions, s.decisions, s.sent)
	}
	must(t, os.WriteFile(path, b.Bytes(), 0o644))
}

// soakMessages returns the message content of the DKIM-pending sessions: one
// signed by d=example.com (aligned with the envelope senders
// alice-…@example.com) and the same unsigned, as header fields the way
// Postfix passes them (value with its leading space) and a body.
func soakMessages(t *testing.T) (signed, unsigned soakMessage) {
	t.Helper()
	msg := "From: Alice <alice@example.com>\r\n" +
		"To: <user@dest.test>\r\n" +
		"Subject: soak\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"Message-ID: <soak-" + uniqueName() + "@example.com>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=us-ascii\r\n" +
		"\r\n" +
		strings.Repeat("A line of the body of a soak message, long enough to stream.\r\n", 40)
	var b bytes.Buffer
	if err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{
		Domain: "example.com", Selector: "sel", Signer: bypassDKIMKey(),
		HeaderCanonicalization: dkim.CanonicalizationSimple,
		BodyCanonicalization:   dkim.CanonicalizationSimple,
	}); err != nil {
		t.Fatalf("dkim.Sign: %v", err)
	}
	return splitMessage(t, b.String()), splitMessage(t, msg)
}

// soakMessage is a message as a milter receives it.
type soakMessage struct {
	fields [][2]string
	body   string
}

func splitMessage(t *testing.T, raw string) soakMessage {
	t.Helper()
	hdr, body, ok := strings.Cut(raw, "\r\n\r\n")
	if !ok {
		t.Fatal("message without header/body separator")
	}
	var m soakMessage
	for _, line := range strings.Split(hdr, "\r\n") {
		if line[0] == ' ' || line[0] == '\t' {
			m.fields[len(m.fields)-1][1] += "\n" + line
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("bad header line %q", line)
		}
		m.fields = append(m.fields, [2]string{name, value})
	}
	m.body = body
	return m
}

// soakLoad plays the MTAs: each session is one connection, as Postfix's
// smtpd opens one per SMTP session.
type soakLoad struct {
	addr             string
	signed, unsigned soakMessage

	sent     atomic.Int64
	byKind   [soakKinds]atomic.Int64
	inflight atomic.Int64

	mu       sync.Mutex
	pending  []pendingTriplet // greylisted as new, oldest first
	known    []envelope       // passed, a ring
	knownAt  int
	problems []string
}

type pendingTriplet struct {
	env envelope
	at  time.Time // when its 451 came back
}

const (
	soakMaxPending = 20000
	soakMaxKnown   = 5000
)

func (l *soakLoad) problem(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.problems) < 1000 {
		l.problems = append(l.problems, fmt.Sprintf(format, args...))
	}
}

func (l *soakLoad) pickKind() soakKind {
	n := rand.IntN(100)
	for k := range soakKinds {
		if n < soakMix[k] {
			return k
		}
		n -= soakMix[k]
	}
	return soakNew
}

// soakClientIP is a client address in one of 256 networks of 198.18.0.0/15.
func soakClientIP() string { return fmt.Sprintf("198.18.%d.%d", rand.IntN(256), 1+rand.IntN(254)) }

func (l *soakLoad) session() {
	k := l.pickKind()
	var env envelope
	switch k {
	case soakRetry:
		l.mu.Lock()
		if len(l.pending) > 0 && time.Since(l.pending[0].at) > afterDelay {
			env = l.pending[0].env
			l.pending = l.pending[1:]
		} else {
			k = soakNew
		}
		l.mu.Unlock()
	case soakKnown:
		l.mu.Lock()
		if len(l.known) > 0 {
			env = l.known[rand.IntN(len(l.known))]
		} else {
			k = soakNew
		}
		l.mu.Unlock()
	}
	switch k {
	case soakNew:
		env = envelope{ClientIP: soakClientIP(), Helo: "mail.sender.test", From: newSender("soak"), Rcpt: "user@dest.test"}
	case soakBypassSPF:
		env = envelope{ClientIP: authorisedIP, Helo: "mail.example.com", From: listedFrom(), Rcpt: "user@dest.test"}
	case soakDKIMSigned, soakDKIMUnsigned, soakAbortBody, soakDropBody:
		env = envelope{ClientIP: forgerIP, Helo: "mail.example.com", From: listedFrom(), Rcpt: "user@dest.test"}
	}
	l.sent.Add(1)
	l.byKind[k].Add(1)

	switch k {
	case soakNew, soakRetry, soakKnown:
		act, err := milterRcpt(l.addr, env)
		if err != nil {
			l.problem("%s %s: %v", k, env.From, err)
			return
		}
		got := actionText(act)
		switch {
		case k == soakNew && greylistReply.MatchString(got):
			l.mu.Lock()
			if len(l.pending) >= soakMaxPending {
				l.pending = l.pending[1:] // never retried, as spam is
			}
			l.pending = append(l.pending, pendingTriplet{env, time.Now()})
			l.mu.Unlock()
		case k != soakNew && got == "continue":
			if k == soakRetry {
				l.mu.Lock()
				if len(l.known) < soakMaxKnown {
					l.known = append(l.known, env)
				} else {
					l.known[l.knownAt] = env
					l.knownAt = (l.knownAt + 1) % soakMaxKnown
				}
				l.mu.Unlock()
			}
		default:
			l.problem("%s %s from %s: answered %q at RCPT", k, env.From, env.ClientIP, got)
		}
	case soakBypassSPF:
		rcpt, end, stage, err := milterMessage(l.addr, env, l.unsigned, "")
		switch {
		case err != nil:
			l.problem("%s %s: %v", k, env.From, err)
		case actionText(rcpt) != "continue" || end == nil || end.Code != milter.ActAccept:
			l.problem("%s %s: RCPT %q, then %s at %s; want continue, then accept", k, env.From, actionText(rcpt), describe(end), stage)
		}
	case soakDKIMSigned, soakDKIMUnsigned:
		msg := l.signed
		if k == soakDKIMUnsigned {
			msg = l.unsigned
		}
		rcpt, end, stage, err := milterMessage(l.addr, env, msg, "")
		switch {
		case err != nil:
			l.problem("%s %s: %v", k, env.From, err)
		case actionText(rcpt) != "continue" || stage != "eom":
			l.problem("%s %s: RCPT %q, then %s at %s; want continue, decided at eom", k, env.From, actionText(rcpt), describe(end), stage)
		case k == soakDKIMSigned && end.Code != milter.ActAccept && end.Code != milter.ActContinue:
			l.problem("%s %s: %s at eom, want accept", k, env.From, describe(end))
		case k == soakDKIMUnsigned && (end.Code != milter.ActReplyCode || !greylistReply.MatchString(actionText(end))):
			l.problem("%s %s: %s at eom, want %s", k, env.From, describe(end), greylistReply)
		}
	case soakAbortBody, soakDropBody:
		how := "abort"
		if k == soakDropBody {
			how = "drop"
		}
		rcpt, _, stage, err := milterMessage(l.addr, env, l.unsigned, how)
		switch {
		case err != nil:
			l.problem("%s %s: %v", k, env.From, err)
		case actionText(rcpt) != "continue" || stage != how:
			l.problem("%s %s: RCPT %q, ended at %s; want continue, then the %s mid-body", k, env.From, actionText(rcpt), stage, how)
		}
	}
}

func describe(a *milter.Action) string {
	if a == nil {
		return "no answer"
	}
	return strconv.Quote(actionText(a))
}

// connDialer keeps the connection it dials, so that a session can drop it
// as a crashed MTA would, without the QUIT of Close.
type connDialer struct {
	net.Dialer
	conn net.Conn
}

func (d *connDialer) Dial(network, addr string) (net.Conn, error) {
	c, err := d.Dialer.Dial(network, addr)
	d.conn = c
	return c, err
}

// milterMessage is milterRcpt followed by the message: header fields, end of
// header, the body in two chunks and end of message. It returns the answer
// at RCPT, the final answer (nil if there is none) and the stage that gave
// it: "rcpt", "header N", "eoh", "body", "eom", or, when stop is "abort" or
// "drop", that word once the session was aborted (SMFIC_ABORT, then QUIT)
// or its connection closed in the middle of the body.
func milterMessage(addr string, env envelope, msg soakMessage, stop string) (rcpt, final *milter.Action, stage string, err error) {
	dialer := &connDialer{Dialer: net.Dialer{Timeout: 5 * time.Second}}
	c := milter.NewClientWithOptions("tcp", addr, milter.ClientOptions{
		Dialer:       dialer,
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
		ActionMask:   milter.OptAddHeader | milter.OptChangeHeader,
	})
	s, err := c.Session()
	if err != nil {
		return nil, nil, "", err
	}
	dropped := false
	defer func() {
		if !dropped {
			s.Close()
		}
	}()
	family := milter.FamilyInet
	if err := s.Macros(milter.CodeConn, "j", "mx.e2e.test", "{daemon_name}", "mx.e2e.test",
		"{client_addr}", env.ClientIP, "{client_name}", "unknown"); err != nil {
		return nil, nil, "", err
	}
	if err := wantContinue("connect")(s.Conn("unknown", family, 25, env.ClientIP)); err != nil {
		return nil, nil, "", err
	}
	if err := wantContinue("helo")(s.Helo(env.Helo)); err != nil {
		return nil, nil, "", err
	}
	if err := s.Macros(milter.CodeMail, "{mail_addr}", env.From); err != nil {
		return nil, nil, "", err
	}
	if err := wantContinue("mail")(s.Mail(env.From, nil)); err != nil {
		return nil, nil, "", err
	}
	if err := s.Macros(milter.CodeRcpt, "{rcpt_addr}", env.Rcpt); err != nil {
		return nil, nil, "", err
	}
	if rcpt, err = s.Rcpt(env.Rcpt, nil); err != nil {
		return nil, nil, "rcpt", fmt.Errorf("rcpt: %w", err)
	}
	if rcpt.Code != milter.ActContinue {
		return rcpt, rcpt, "rcpt", nil
	}
	for i, f := range msg.fields {
		a, err := s.HeaderField(f[0], f[1])
		stage = fmt.Sprintf("header %d", i+1)
		if err != nil {
			return rcpt, nil, stage, fmt.Errorf("%s: %w", stage, err)
		}
		if a.Code != milter.ActContinue {
			return rcpt, a, stage, nil
		}
	}
	a, err := s.HeaderEnd()
	if err != nil {
		return rcpt, nil, "eoh", fmt.Errorf("eoh: %w", err)
	}
	if a.Code != milter.ActContinue {
		return rcpt, a, "eoh", nil
	}
	half := len(msg.body) / 2
	for i, chunk := range []string{msg.body[:half], msg.body[half:]} {
		if i == 1 {
			switch stop {
			case "abort":
				if err := s.Abort(); err != nil {
					return rcpt, nil, "body", fmt.Errorf("abort: %w", err)
				}
				return rcpt, nil, "abort", nil
			case "drop":
				dropped = true
				dialer.conn.Close()
				return rcpt, nil, "drop", nil
			}
		}
		a, err := s.BodyChunk([]byte(chunk))
		if err != nil {
			return rcpt, nil, "body", fmt.Errorf("body: %w", err)
		}
		if a.Code != milter.ActContinue {
			return rcpt, a, "body", nil
		}
	}
	_, final, err = s.End()
	if err != nil {
		return rcpt, nil, "eom", fmt.Errorf("eom: %w", err)
	}
	return rcpt, final, "eom", nil
}

// metricsReader reads a daemon's /metrics over one kept-alive connection
// (so that the reading itself adds no goroutine or descriptor per sample).
type metricsReader struct {
	url    string
	client *http.Client
}

func newMetricsReader(adminAddr string) *metricsReader {
	return &metricsReader{
		url:    "http://" + adminAddr + "/metrics",
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}},
	}
}

// read returns every metric of the Prometheus text format by name, summed
// over its label sets (a counter's total; a gauge without labels as is).
func (m *metricsReader) read() (map[string]float64, error) {
	resp, err := m.client.Get(m.url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", m.url, resp.Status)
	}
	return parseMetrics(string(body)), nil
}

func parseMetrics(text string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		var name, rest string
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			name, rest = line[:i], line[j+1:]
		} else {
			name, rest, _ = strings.Cut(line, " ")
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out
}
