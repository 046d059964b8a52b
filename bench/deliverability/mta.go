package main

import (
	"math"
	"math/rand/v2"
	"time"
)

// retrySchedule is when a sender tries a deferred message again.
type retrySchedule interface {
	// next returns the wait after failed attempt n (1: the first) of a
	// message first tried age ago, or false when the sender gives up.
	next(rng *rand.Rand, n int, age time.Duration) (time.Duration, bool)
}

// postfixRetry is Postfix's queue manager: a deferred message waits its
// age, bounded by minimal_backoff_time (300 s) and maximal_backoff_time
// (4000 s), so the gap doubles; the deferred queue is scanned every
// queue_run_delay (300 s), and a message is returned after
// maximal_queue_lifetime (5 days).
type postfixRetry struct{}

func (postfixRetry) next(rng *rand.Rand, _ int, age time.Duration) (time.Duration, bool) {
	if age >= 5*day {
		return 0, false
	}
	backoff := min(max(age, 300*time.Second), 4000*time.Second)
	return backoff + uniform(rng, 0, 300*time.Second), true
}

// eximRetry is Exim's default retry rule, "F,2h,15m; G,16h,1h,1.5;
// F,4d,6h" (the geometric middle part simplified to hourly), with the
// queue runner Debian starts every 30 minutes: a message due for a retry
// waits for the next queue run.
type eximRetry struct{}

func (eximRetry) next(rng *rand.Rand, _ int, age time.Duration) (time.Duration, bool) {
	var due time.Duration
	switch {
	case age < 2*time.Hour:
		due = 15 * time.Minute
	case age < 16*time.Hour:
		due = time.Hour
	case age < 4*day:
		due = 6 * time.Hour
	default:
		return 0, false
	}
	return due + uniform(rng, 0, 30*time.Minute), true
}

// exchangeRetry is Exchange Server: a message refused with a 4xx reply is
// retried after the message retry interval (15 minutes by default) and
// expires after two days.
type exchangeRetry struct{}

func (exchangeRetry) next(rng *rand.Rand, _ int, age time.Duration) (time.Duration, bool) {
	if age >= 2*day {
		return 0, false
	}
	return 15*time.Minute + uniform(rng, 0, time.Minute), true
}

// poolRetry is a large sender's queue: the first retry after between min
// and max, each later one twice as far, at most an hour apart, for five
// days.
type poolRetry struct{ min, max time.Duration }

func (p poolRetry) next(rng *rand.Rand, n int, age time.Duration) (time.Duration, bool) {
	if age >= 5*day {
		return 0, false
	}
	w := float64(uniform(rng, p.min, p.max)) * math.Pow(2, float64(n-1))
	return min(time.Duration(w), time.Hour), true
}

// quickRetry is spamware that tries once more, between min and max after
// the first attempt, and then gives up.
type quickRetry struct{ min, max time.Duration }

func (q quickRetry) next(rng *rand.Rand, n int, _ time.Duration) (time.Duration, bool) {
	if n > 1 {
		return 0, false
	}
	return uniform(rng, q.min, q.max), true
}

// noRetry is spamware that never retries.
type noRetry struct{}

func (noRetry) next(*rand.Rand, int, time.Duration) (time.Duration, bool) { return 0, false }

// fixedRetry retries after the given waits, then gives up (for scripted
// scenarios).
type fixedRetry []time.Duration

func (f fixedRetry) next(_ *rand.Rand, n int, _ time.Duration) (time.Duration, bool) {
	if n > len(f) {
		return 0, false
	}
	return f[n-1], true
}

const day = 24 * time.Hour

// uniform draws a duration in [lo, hi).
func uniform(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}
