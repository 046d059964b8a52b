package greylist

import "time"

// Policy holds the timings of the triplet state machine.
type Policy struct {
	// Delay is how long a new triplet must wait before a retry passes.
	Delay time.Duration
	// RetryWindow is how long after the first attempt a retry is still
	// accepted; a pending triplet not retried in time is forgotten.
	RetryWindow time.Duration
	// MaxAge is how long a passed triplet (and an auto-whitelisted client)
	// is remembered after its last use.
	MaxAge time.Duration
}

// DefaultPolicy: 5 minutes delay, 2 days retry window, 35 days max age.
var DefaultPolicy = Policy{Delay: 5 * time.Minute, RetryWindow: 48 * time.Hour, MaxAge: 35 * 24 * time.Hour}

// NeverRetriedGrace keeps a pending triplet this long after its retry
// window closed, only so that admins can list the triplets never retried
// (mostly spam); the state machine treats it as absent meanwhile.
const NeverRetriedGrace = 24 * time.Hour

// NeverRetried reports whether a record is a triplet whose retry window
// closed without a retry.
func (p Policy) NeverRetried(rec *Record, now time.Time) bool {
	return rec.State == Pending && now.Sub(rec.First) > p.RetryWindow
}

// refreshInterval bounds the writes for a known triplet: its expiry is
// pushed back at most once a minute, so busy triplets cost reads only.
const refreshInterval = time.Minute

// Verdict is the outcome of one step of the state machine.
type Verdict struct {
	Pass   bool
	Reason Reason // ReasonNew, ReasonEarly, ReasonRetried or ReasonKnown
	// Waited is, for ReasonRetried, how long the sender was delayed.
	Waited time.Duration
	// RetryIn is, for a greylisted triplet, how long until a retry passes.
	RetryIn time.Duration
}

// Step is the triplet state machine: given the current record (nil when
// absent) and the time, it returns the record to write (nil: no write), its
// time to live, and the verdict. It is pure, so every store shares it.
func (p Policy) Step(cur *Record, now time.Time) (next *Record, ttl time.Duration, v Verdict) {
	switch {
	case cur == nil,
		cur.State == Pending && now.Sub(cur.First) > p.RetryWindow,
		cur.State == Passed && now.Sub(cur.Last) > p.MaxAge:
		// Absent, or present but past its lifetime (a store that has
		// not yet reaped it, or a record from a host whose clock differs).
		return &Record{State: Pending, First: now, Last: now, Count: 1}, p.RetryWindow + NeverRetriedGrace,
			Verdict{Reason: ReasonNew, RetryIn: p.Delay}

	case cur.State == Pending && now.Sub(cur.First) < p.Delay:
		n := *cur
		n.Count++
		n.Last = now
		return &n, remaining(cur.First.Add(p.RetryWindow+NeverRetriedGrace), now),
			Verdict{Reason: ReasonEarly, RetryIn: cur.First.Add(p.Delay).Sub(now)}

	case cur.State == Pending:
		n := Record{State: Passed, First: cur.First, Last: now, Count: 1}
		return &n, p.MaxAge, Verdict{Pass: true, Reason: ReasonRetried, Waited: now.Sub(cur.First)}

	default: // Passed
		v = Verdict{Pass: true, Reason: ReasonKnown}
		if now.Sub(cur.Last) < refreshInterval {
			return nil, 0, v
		}
		n := *cur
		n.Count++
		n.Last = now
		return &n, p.MaxAge, v
	}
}

// Admit is Step for a triplet admitted without a wait (the suspicious
// scope, no trigger): a new triplet is recorded as passed at once, with
// ReasonNotSuspicious; any other is stepped as usual.
func (p Policy) Admit(cur *Record, now time.Time) (next *Record, ttl time.Duration, v Verdict) {
	next, ttl, v = p.Step(cur, now)
	if v.Reason == ReasonNew {
		return &Record{State: Passed, First: now, Last: now, Count: 1}, p.MaxAge,
			Verdict{Pass: true, Reason: ReasonNotSuspicious}
	}
	return next, ttl, v
}

// remaining is the time to live left until deadline, at least a second
// (stores expire at one-second granularity; zero would mean "forever").
func remaining(deadline, now time.Time) time.Duration {
	d := deadline.Sub(now)
	if d < time.Second {
		return time.Second
	}
	return d
}
