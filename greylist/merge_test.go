package greylist

import (
	"testing"
	"time"
)

func TestMerge(t *testing.T) {
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	pending := func(first, last time.Duration, count uint32) *Record {
		return &Record{State: Pending, First: at(first), Last: at(last), Count: count}
	}
	passed := func(first, last time.Duration, count uint32) *Record {
		return &Record{State: Passed, First: at(first), Last: at(last), Count: count}
	}
	cases := []struct {
		name string
		a, b *Record
		want *Record
	}{
		{"both absent", nil, nil, nil},
		{"only a", pending(0, 0, 1), nil, pending(0, 0, 1)},
		{"only b", nil, passed(0, time.Hour, 3), passed(0, time.Hour, 3)},
		{"passed wins over pending, whatever the times", pending(-time.Hour, time.Hour, 9), passed(0, time.Minute, 1), passed(0, time.Minute, 1)},
		{"passed wins over pending in either order", passed(0, time.Minute, 1), pending(-time.Hour, time.Hour, 9), passed(0, time.Minute, 1)},
		{"two pending: the earliest attempt, the latest, the larger count", pending(time.Minute, time.Minute, 1), pending(0, 30*time.Second, 2), pending(0, time.Minute, 2)},
		{"two passed: first seen earliest, used latest", passed(time.Hour, 2*time.Hour, 4), passed(0, time.Hour, 7), passed(0, 2*time.Hour, 7)},
		{"two equal records: the same record", passed(0, time.Hour, 5), passed(0, time.Hour, 5), passed(0, time.Hour, 5)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Merge(c.a, c.b)
			if !sameRecord(got, c.want) {
				t.Errorf("Merge = %s, want %s", fmtRecord(got), fmtRecord(c.want))
			}
			if got != nil && (got == c.a || got == c.b) {
				t.Error("Merge returned one of its arguments, not a copy")
			}
		})
	}
}

func TestSame(t *testing.T) {
	r := Record{State: Passed, First: t0, Last: t0.Add(time.Hour), Count: 2}
	other := func(f func(*Record)) *Record { c := r; f(&c); return &c }
	if !Same(&r, other(func(c *Record) { c.First = c.First.In(time.FixedZone("X", 3600)) })) {
		t.Error("the same instants in another zone are not the same")
	}
	for name, o := range map[string]*Record{
		"state": other(func(c *Record) { c.State = Pending }),
		"first": other(func(c *Record) { c.First = c.First.Add(time.Millisecond) }),
		"last":  other(func(c *Record) { c.Last = c.Last.Add(time.Millisecond) }),
		"count": other(func(c *Record) { c.Count++ }),
	} {
		if Same(&r, o) {
			t.Errorf("records differing in %s are the same", name)
		}
	}
}

func TestExpiredAgreesWithStep(t *testing.T) {
	p := Policy{Delay: 5 * time.Minute, RetryWindow: 48 * time.Hour, MaxAge: 35 * 24 * time.Hour}
	cases := []struct {
		name    string
		rec     Record
		now     time.Time
		expired bool
	}{
		{"pending at the end of the window", Record{State: Pending, First: t0, Last: t0}, t0.Add(p.RetryWindow), false},
		{"pending past the window", Record{State: Pending, First: t0, Last: t0}, t0.Add(p.RetryWindow + time.Millisecond), true},
		{"passed at max-age", Record{State: Passed, First: t0, Last: t0}, t0.Add(p.MaxAge), false},
		{"passed past max-age", Record{State: Passed, First: t0.Add(-time.Hour), Last: t0}, t0.Add(p.MaxAge + time.Millisecond), true},
		{"passed long ago, used lately", Record{State: Passed, First: t0, Last: t0.Add(p.MaxAge)}, t0.Add(p.MaxAge + time.Hour), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := p.Expired(&c.rec, c.now); got != c.expired {
				t.Errorf("Expired = %v, want %v", got, c.expired)
			}
			// Step starts an expired key afresh, and only an expired one.
			_, _, v := p.Step(&c.rec, c.now)
			if fresh := v.Reason == ReasonNew; fresh != c.expired {
				t.Errorf("Step's verdict %s, but Expired = %v", v.Reason, c.expired)
			}
		})
	}
}

// Lifetime must give a record the time to live Step gave it when it wrote
// it, whenever it is asked afterwards.
func TestLifetimeAgreesWithStep(t *testing.T) {
	p := Policy{Delay: 5 * time.Minute, RetryWindow: 48 * time.Hour, MaxAge: 35 * 24 * time.Hour}
	steps := []struct {
		name string
		cur  *Record
		now  time.Time
	}{
		{"new", nil, t0},
		{"early retry", &Record{State: Pending, First: t0, Last: t0, Count: 1}, t0.Add(time.Minute)},
		{"retried", &Record{State: Pending, First: t0, Last: t0, Count: 1}, t0.Add(time.Hour)},
		{"known", &Record{State: Passed, First: t0, Last: t0, Count: 1}, t0.Add(24 * time.Hour)},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			next, ttl, _ := p.Step(s.cur, s.now)
			if next == nil {
				t.Fatal("Step wrote nothing")
			}
			for _, later := range []time.Duration{0, time.Second, 10 * time.Hour} {
				if got, want := p.Lifetime(next, s.now.Add(later)), ttl-later; got != want {
					t.Errorf("%v after the write: Lifetime = %v, want %v", later, got, want)
				}
			}
		})
	}
	gone := &Record{State: Passed, First: t0, Last: t0}
	if l := p.Lifetime(gone, t0.Add(p.MaxAge+time.Second)); l > 0 {
		t.Errorf("Lifetime of a record past max-age = %v, want <= 0", l)
	}
}
