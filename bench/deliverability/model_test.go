package main

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/envelope"
	"github.com/milter-grey/milter-grey/greylist"
)

func TestRetrySchedules(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name     string
		s        retrySchedule
		n        int
		age      time.Duration
		min, max time.Duration // the wait is in [min, max)
		gives    bool          // gives up
	}{
		{name: "postfix first retry: minimal_backoff_time, then the next queue scan", s: postfixRetry{}, n: 1, age: 0, min: 300 * time.Second, max: 600 * time.Second},
		{name: "postfix backoff doubles: the age", s: postfixRetry{}, n: 2, age: 1000 * time.Second, min: 1000 * time.Second, max: 1300 * time.Second},
		{name: "postfix maximal_backoff_time", s: postfixRetry{}, n: 5, age: 5 * time.Hour, min: 4000 * time.Second, max: 4300 * time.Second},
		{name: "postfix maximal_queue_lifetime", s: postfixRetry{}, n: 50, age: 5 * day, gives: true},
		{name: "exim F,2h,15m at the next queue run", s: eximRetry{}, n: 1, age: 0, min: 15 * time.Minute, max: 45 * time.Minute},
		{name: "exim hourly after 2h", s: eximRetry{}, n: 9, age: 3 * time.Hour, min: time.Hour, max: 90 * time.Minute},
		{name: "exchange message retry interval", s: exchangeRetry{}, n: 1, age: 0, min: 15 * time.Minute, max: 16 * time.Minute},
		{name: "pool first retry", s: poolRetry{min: time.Minute, max: 15 * time.Minute}, n: 1, min: time.Minute, max: 15 * time.Minute},
		{name: "pool third retry: four times", s: poolRetry{min: time.Minute, max: 15 * time.Minute}, n: 3, min: 4 * time.Minute, max: time.Hour + 1},
		{name: "bot retries once", s: quickRetry{min: 30 * time.Second, max: 2 * time.Minute}, n: 1, min: 30 * time.Second, max: 2 * time.Minute},
		{name: "bot gives up after one retry", s: quickRetry{min: 30 * time.Second, max: 2 * time.Minute}, n: 2, gives: true},
		{name: "bot never retries", s: noRetry{}, n: 1, gives: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 100 {
				w, ok := tt.s.next(rng, tt.n, tt.age)
				if ok == tt.gives {
					t.Fatalf("next(%d, %s) = %s, %v; want gives up = %v", tt.n, tt.age, w, ok, tt.gives)
				}
				if ok && (w < tt.min || w >= tt.max) {
					t.Fatalf("next(%d, %s) = %s, want in [%s, %s)", tt.n, tt.age, w, tt.min, tt.max)
				}
			}
		})
	}
}

func TestSPFChecker(t *testing.T) {
	w := newWorld()
	w.spf["org.test"] = &spfRecord{pass: []netip.Prefix{netip.MustParsePrefix("10.9.9.9/32")}, other: auth.ResultSoftFail}
	c := spfChecker{w: &w, now: func() time.Time { return t0 }}
	tests := []struct {
		ip, from string
		want     auth.Result
	}{
		{"10.9.9.9", "ann@org.test", auth.ResultPass},
		{"10.9.9.10", "ann@ORG.test", auth.ResultSoftFail},
		{"10.9.9.9", "ann@other.test", auth.ResultNone},
	}
	for _, tt := range tests {
		got := c.Check(context.Background(), netip.MustParseAddr(tt.ip), "helo.test", envelope.Parse(tt.from))
		if got.Result != tt.want {
			t.Errorf("Check(%s, %s) = %s, want %s", tt.ip, tt.from, got.Result, tt.want)
		}
	}
}

// TestDynamicNames checks the model against the shipped dynamic-name
// patterns: the names it gives residential clients look dynamic; those of
// the big senders' and small organisations' servers do not.
func TestDynamicNames(t *testing.T) {
	m := greylist.DefaultNamePatterns()
	rng := rand.New(rand.NewPCG(5, 6))
	for range 200 {
		ip := netip.AddrFrom4([4]byte{100, byte(64 + rng.IntN(64)), byte(rng.IntN(256)), byte(1 + rng.IntN(254))})
		if name := dynamicName(rng, ip); !matches(m, name) {
			t.Errorf("%s does not look dynamic", name)
		}
	}
	for _, name := range []string{"mail-sor-f41.google.com", "mail-am6eur05on2071.outbound.protection.outlook.com",
		"sonic310-21.consmr.mail.gq1.yahoo.com", "a8-30.smtp-out.amazonses.com", "o1.sg12.sendgrid.net",
		"mail12.atl1.mcdlv.net", "mta3.mtasv.net", "mail.kato12.example", "lists.bira3.example"} {
		if matches(m, name) {
			t.Errorf("%s looks dynamic", name)
		}
	}
}

func matches(m greylist.NameMatcher, name string) bool {
	_, ok := m.Match(name)
	return ok
}

func TestQuantile(t *testing.T) {
	s := &stats{delays: []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5}, {0.95, 10}, {0.1, 1}, {1, 10}} {
		if got := s.quantile(tt.q); got != tt.want {
			t.Errorf("quantile(%v) = %d, want %d", tt.q, got, tt.want)
		}
	}
	if got := (&stats{}).quantile(0.5); got != 0 {
		t.Errorf("quantile of nothing = %d, want 0", got)
	}
}
