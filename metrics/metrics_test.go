package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/milter-grey/milter-grey/greylist"
)

func TestObserveDecisionCountsByActionAndReason(t *testing.T) {
	m := New("v1.2.3")
	for _, d := range []struct {
		d    greylist.Decision
		dkim string
	}{
		{greylist.Decision{Action: greylist.Greylist, Reason: greylist.ReasonNew}, ""},
		{greylist.Decision{Action: greylist.Greylist, Reason: greylist.ReasonNew, SPF: "softfail"}, ""},
		{greylist.Decision{Action: greylist.Greylist, Reason: greylist.ReasonEarly}, ""},
		{greylist.Decision{Action: greylist.Pass, Reason: greylist.ReasonRetried}, ""},
		{greylist.Decision{Action: greylist.Pass, Reason: greylist.ReasonBypassSPF, SPF: "pass"}, ""},
		{greylist.Decision{Action: greylist.Defer, Reason: greylist.ReasonPending, SPF: "pass(wide-open)"}, ""},
		{greylist.Decision{Action: greylist.Pass, Reason: greylist.ReasonBypassDKIM}, "pass d=example.com aligned=relaxed"},
		{greylist.Decision{Action: greylist.Greylist, Reason: greylist.ReasonNew}, "fail d=attacker.test"},
		{greylist.Decision{Action: greylist.Greylist, Reason: greylist.ReasonNew}, "gibberish from=somewhere"},
	} {
		d.d.DKIM = d.dkim
		m.ObserveDecision(d.d)
	}
	for _, tc := range []struct {
		name string
		got  float64
		want float64
	}{
		{"greylist/new", testutil.ToFloat64(m.decisions.WithLabelValues("greylist", "new")), 4},
		{"greylist/early", testutil.ToFloat64(m.decisions.WithLabelValues("greylist", "early")), 1},
		{"pass/retried", testutil.ToFloat64(m.decisions.WithLabelValues("pass", "retried")), 1},
		{"defer/pending-dkim", testutil.ToFloat64(m.decisions.WithLabelValues("defer", "pending-dkim")), 1},
		{"spf softfail", testutil.ToFloat64(m.spf.WithLabelValues("softfail")), 1},
		{"spf pass", testutil.ToFloat64(m.spf.WithLabelValues("pass")), 1},
		{"spf wide-open pass keeps its name", testutil.ToFloat64(m.spf.WithLabelValues("pass(wide-open)")), 1},
		{"dkim keeps only the first word", testutil.ToFloat64(m.dkim.WithLabelValues("pass")), 1},
		{"dkim fail", testutil.ToFloat64(m.dkim.WithLabelValues("fail")), 1},
		{"an unknown dkim verdict is other", testutil.ToFloat64(m.dkim.WithLabelValues("other")), 1},
		{"decisions without SPF count no SPF result", float64(testutil.CollectAndCount(m.spf)), 3},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

// failStore fails where it is told to; otherwise it is an empty store.
type failStore struct{ err error }

func (s failStore) Update(ctx context.Context, key string, fn greylist.UpdateFunc) error {
	if s.err != nil {
		return s.err
	}
	_, _, err := fn(nil)
	return err
}
func (s failStore) Get(context.Context, string) (*greylist.Record, time.Time, error) {
	if s.err != nil {
		return nil, time.Time{}, s.err
	}
	return nil, time.Time{}, greylist.ErrNotFound
}
func (s failStore) Put(context.Context, string, *greylist.Record, time.Duration) error { return s.err }
func (s failStore) Delete(context.Context, string) error                               { return s.err }
func (s failStore) Scan(ctx context.Context, prefix string, fn func(string, *greylist.Record, time.Time) error) error {
	if s.err != nil {
		return s.err
	}
	return fn("t:x a b", &greylist.Record{State: greylist.Pending}, time.Time{})
}
func (s failStore) Close() error { return nil }

func TestInstrumentStoreCountsOperationsMissesAndErrors(t *testing.T) {
	ctx := context.Background()
	m := New("test")
	ok := m.InstrumentStore(failStore{})
	broken := m.InstrumentStore(failStore{err: errors.New("disk on fire")})
	stop := errors.New("enough")

	ok.Get(ctx, "t:absent")                               // miss
	broken.Get(ctx, "t:any")                              // error
	ok.Put(ctx, "k", &greylist.Record{}, time.Minute)     // ok
	broken.Put(ctx, "k", &greylist.Record{}, time.Minute) // error
	ok.Delete(ctx, "k")                                   // ok
	broken.Delete(ctx, "k")                               // error
	ok.Update(ctx, "k", func(*greylist.Record) (*greylist.Record, time.Duration, error) { return nil, 0, nil })
	ok.Update(ctx, "k", func(*greylist.Record) (*greylist.Record, time.Duration, error) { return nil, 0, stop }) // the caller's error
	broken.Update(ctx, "k", func(*greylist.Record) (*greylist.Record, time.Duration, error) { return nil, 0, nil })
	if err := ok.Scan(ctx, "t:", func(string, *greylist.Record, time.Time) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Scan returned %v, want the callback's error", err)
	}
	broken.Scan(ctx, "t:", func(string, *greylist.Record, time.Time) error { return nil })

	for _, tc := range []struct {
		op, result string
		want       float64
	}{
		{OpGet, ResultMiss, 1}, {OpGet, ResultError, 1}, {OpGet, ResultOK, 0},
		{OpPut, ResultOK, 1}, {OpPut, ResultError, 1},
		{OpDelete, ResultOK, 1}, {OpDelete, ResultError, 1},
		{OpUpdate, ResultOK, 2}, {OpUpdate, ResultError, 1},
		{OpScan, ResultOK, 1}, {OpScan, ResultError, 1},
	} {
		if got := testutil.ToFloat64(m.storeOps.WithLabelValues(tc.op, tc.result)); got != tc.want {
			t.Errorf("store_operations_total{op=%s,result=%s} = %v, want %v", tc.op, tc.result, got, tc.want)
		}
	}
	// Every operation is timed.
	if n := testutil.CollectAndCount(m.storeSeconds); n != 5 {
		t.Errorf("%d histogram series, want one per op (5)", n)
	}
	if err := ok.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestHandlerServesEveryMetric(t *testing.T) {
	m := New("v9.9.9")
	m.WatchSessions(func() int { return 3 })
	m.WatchStore(func() bool { return false })
	m.ListReload(nil)
	m.ListReload(errors.New("bad file"))
	m.NeverRetried(2)
	m.ObserveDecision(greylist.Decision{Action: greylist.Pass, Reason: greylist.ReasonKnown, SPF: "pass", DKIM: "none"})

	text := scrape(t, m)
	for _, want := range []string{
		`milter_grey_decisions_total{action="pass",reason="known"} 1`,
		`milter_grey_spf_results_total{result="pass"} 1`,
		`milter_grey_dkim_results_total{result="none"} 1`,
		`milter_grey_sessions_open 3`,
		`milter_grey_store_up 0`,
		`milter_grey_list_reloads_total{result="ok"} 1`,
		`milter_grey_list_reloads_total{result="error"} 1`,
		`milter_grey_never_retried_total 2`,
		`milter_grey_build_info{goversion="go`,
		`version="v9.9.9"} 1`,
		`milter_grey_store_operations_total{op="get",result="ok"} 0`,
		"milter_grey_dns_seconds_count 0",
		"go_goroutines ",
		"process_start_time_seconds ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if problems, err := testutil.GatherAndLint(m.Registry()); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// The instrumented resolver times each exchange and keeps UDP framing: a
// query through it reaches a DNS server on loopback and gets its answer.
func TestInstrumentResolverTimesExchanges(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go answerNXDOMAIN(pc)

	m := New("test")
	var d net.Dialer
	r := m.InstrumentResolver(&net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "udp", pc.LocalAddr().String())
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = r.LookupTXT(ctx, "absent.example.")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Fatalf("LookupTXT: %v, want NXDOMAIN from the test server", err)
	}
	if n := testutil.CollectAndCount(m.dnsSeconds); n != 1 {
		t.Fatalf("dns_seconds series: %d", n)
	}
	if text := scrape(t, m); !strings.Contains(text, "milter_grey_dns_seconds_count 1") {
		t.Errorf("want one exchange observed:\n%s", text)
	}
}

// scrape returns what a Prometheus server would read from m.Handler().
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// answerNXDOMAIN answers every query on pc with NXDOMAIN (a reply header
// echoing the question).
func answerNXDOMAIN(pc net.PacketConn) {
	buf := make([]byte, 512)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if n < 12 {
			continue
		}
		resp := append([]byte(nil), buf[:n]...)
		resp[2] = 0x81 | (buf[2] & 0x01) // QR, opcode 0, RD copied
		resp[3] = 0x83                   // RA, RCODE 3 (NXDOMAIN)
		// ANCOUNT, NSCOUNT, ARCOUNT = 0; drop any EDNS record.
		for i := 6; i < 12; i++ {
			resp[i] = 0
		}
		// Keep only the question: header + QNAME + QTYPE + QCLASS.
		q := 12
		for q < n && resp[q] != 0 {
			q += int(resp[q]) + 1
		}
		q += 5
		if q > n {
			continue
		}
		pc.WriteTo(resp[:q], addr)
	}
}
