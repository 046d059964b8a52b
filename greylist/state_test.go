package greylist

import (
	"fmt"
	"testing"
	"time"
)

// t0 is an arbitrary instant at millisecond precision, as records keep it.
var t0 = time.Date(2025, 3, 14, 9, 26, 53, 589_000_000, time.UTC)

func TestPolicyStep(t *testing.T) {
	p := Policy{Delay: 5 * time.Minute, RetryWindow: 48 * time.Hour, MaxAge: 35 * 24 * time.Hour}
	pending := func(first time.Time, count uint32) *Record {
		return &Record{State: Pending, First: first, Last: first, Count: count}
	}
	passed := func(first, last time.Time, count uint32) *Record {
		return &Record{State: Passed, First: first, Last: last, Count: count}
	}
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	cases := []struct {
		name    string
		cur     *Record
		now     time.Time
		next    *Record // nil: nothing written
		ttl     time.Duration
		verdict Verdict
	}{
		{
			name: "absent: new, pending for the retry window, retry in the delay",
			cur:  nil, now: t0,
			next:    pending(t0, 1),
			ttl:     p.RetryWindow + NeverRetriedGrace,
			verdict: Verdict{Reason: ReasonNew, RetryIn: p.Delay},
		},
		{
			name: "pending before the delay: early, count+1, first kept, ttl is the rest of the window",
			cur:  pending(t0, 1), now: at(time.Minute),
			next:    &Record{State: Pending, First: t0, Last: at(time.Minute), Count: 2},
			ttl:     p.RetryWindow + NeverRetriedGrace - time.Minute,
			verdict: Verdict{Reason: ReasonEarly, RetryIn: 4 * time.Minute},
		},
		{
			name: "pending a moment before the delay: still early",
			cur:  pending(t0, 3), now: at(p.Delay - time.Millisecond),
			next:    &Record{State: Pending, First: t0, Last: at(p.Delay - time.Millisecond), Count: 4},
			ttl:     p.RetryWindow + NeverRetriedGrace - p.Delay + time.Millisecond,
			verdict: Verdict{Reason: ReasonEarly, RetryIn: time.Millisecond},
		},
		{
			name: "pending exactly at the delay: retried, passed for max-age",
			cur:  pending(t0, 2), now: at(p.Delay),
			next:    passed(t0, at(p.Delay), 1),
			ttl:     p.MaxAge,
			verdict: Verdict{Pass: true, Reason: ReasonRetried, Waited: p.Delay},
		},
		{
			name: "pending inside the window: retried, waited since first",
			cur:  pending(t0, 1), now: at(47 * time.Hour),
			next:    passed(t0, at(47*time.Hour), 1),
			ttl:     p.MaxAge,
			verdict: Verdict{Pass: true, Reason: ReasonRetried, Waited: 47 * time.Hour},
		},
		{
			name: "pending exactly at the end of the window: still retried",
			cur:  pending(t0, 1), now: at(p.RetryWindow),
			next:    passed(t0, at(p.RetryWindow), 1),
			ttl:     p.MaxAge,
			verdict: Verdict{Pass: true, Reason: ReasonRetried, Waited: p.RetryWindow},
		},
		{
			name: "pending past the window: new again",
			cur:  pending(t0, 5), now: at(p.RetryWindow + time.Second),
			next:    pending(at(p.RetryWindow+time.Second), 1),
			ttl:     p.RetryWindow + NeverRetriedGrace,
			verdict: Verdict{Reason: ReasonNew, RetryIn: p.Delay},
		},
		{
			name: "passed within a minute: known, nothing written",
			cur:  passed(t0, at(time.Hour), 7), now: at(time.Hour + 59*time.Second),
			next:    nil,
			ttl:     0,
			verdict: Verdict{Pass: true, Reason: ReasonKnown},
		},
		{
			name: "passed a minute later: known, refreshed (count+1, last=now, max-age)",
			cur:  passed(t0, at(time.Hour), 7), now: at(time.Hour + time.Minute),
			next:    passed(t0, at(time.Hour+time.Minute), 8),
			ttl:     p.MaxAge,
			verdict: Verdict{Pass: true, Reason: ReasonKnown},
		},
		{
			name: "passed exactly max-age after its last use: still known",
			cur:  passed(t0, at(time.Hour), 7), now: at(time.Hour + p.MaxAge),
			next:    passed(t0, at(time.Hour+p.MaxAge), 8),
			ttl:     p.MaxAge,
			verdict: Verdict{Pass: true, Reason: ReasonKnown},
		},
		{
			name: "passed past max-age: new again",
			cur:  passed(t0, at(time.Hour), 7), now: at(time.Hour + p.MaxAge + time.Second),
			next:    pending(at(time.Hour+p.MaxAge+time.Second), 1),
			ttl:     p.RetryWindow + NeverRetriedGrace,
			verdict: Verdict{Reason: ReasonNew, RetryIn: p.Delay},
		},
		{
			name: "clock gone backwards before first: early, first kept, no panic",
			cur:  pending(t0, 1), now: at(-time.Hour),
			next:    &Record{State: Pending, First: t0, Last: at(-time.Hour), Count: 2},
			ttl:     p.RetryWindow + NeverRetriedGrace + time.Hour,
			verdict: Verdict{Reason: ReasonEarly, RetryIn: time.Hour + p.Delay},
		},
		{
			name: "clock gone backwards before last pass: known, nothing written",
			cur:  passed(t0, at(time.Hour), 7), now: at(30 * time.Minute),
			next:    nil,
			ttl:     0,
			verdict: Verdict{Pass: true, Reason: ReasonKnown},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before Record
			if c.cur != nil {
				before = *c.cur
			}
			next, ttl, v := p.Step(c.cur, c.now)
			if !sameRecord(next, c.next) {
				t.Errorf("next = %s, want %s", fmtRecord(next), fmtRecord(c.next))
			}
			if ttl != c.ttl {
				t.Errorf("ttl = %v, want %v", ttl, c.ttl)
			}
			if v != c.verdict {
				t.Errorf("verdict = %+v, want %+v", v, c.verdict)
			}
			if c.cur != nil && !sameRecord(c.cur, &before) {
				t.Errorf("Step modified its input: %s, was %s", fmtRecord(c.cur), fmtRecord(&before))
			}
		})
	}
}

func TestRemainingIsAtLeastASecond(t *testing.T) {
	cases := []struct {
		name string
		left time.Duration
		want time.Duration
	}{
		{"hours left", 3 * time.Hour, 3 * time.Hour},
		{"exactly a second left", time.Second, time.Second},
		{"less than a second left", 500 * time.Millisecond, time.Second},
		{"nothing left", 0, time.Second},
		{"deadline passed", -time.Hour, time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := remaining(t0.Add(c.left), t0); got != c.want {
				t.Errorf("remaining = %v, want %v", got, c.want)
			}
		})
	}
}

// sameRecord compares records by instant (not by time.Time representation).
func sameRecord(a, b *Record) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.State == b.State && a.Count == b.Count && a.First.Equal(b.First) && a.Last.Equal(b.Last)
}

func fmtRecord(r *Record) string {
	if r == nil {
		return "<nil>"
	}
	return fmt.Sprintf("{%s first=%s last=%s count=%d}", r.State,
		r.First.UTC().Format(time.RFC3339Nano), r.Last.UTC().Format(time.RFC3339Nano), r.Count)
}
