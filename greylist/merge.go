package greylist

import (
	"context"
	"time"
)

// Merge returns the record that holds the history of both a and b, two
// records of the same key from different sources (the store and an import,
// or two hosts of a network that an import folds into one key). A passed
// record wins over a pending one: the triplet was retried in time in one of
// them. Two records in the same state combine: the earliest first time (a
// pending triplet's delay counts from its earliest attempt), the latest
// last time (a passed one lives max-age from its latest use) and the
// larger count (for a client, the most counted passes). Either may be nil.
func Merge(a, b *Record) *Record {
	switch {
	case a == nil && b == nil:
		return nil
	case a == nil:
		m := *b
		return &m
	case b == nil:
		m := *a
		return &m
	case a.State != b.State:
		if a.State == Passed {
			m := *a
			return &m
		}
		m := *b
		return &m
	}
	m := *a
	if b.First.Before(m.First) {
		m.First = b.First
	}
	if b.Last.After(m.Last) {
		m.Last = b.Last
	}
	m.Count = max(m.Count, b.Count)
	return &m
}

// Same reports whether a and b hold the same state, times and count.
func Same(a, b *Record) bool {
	return a.State == b.State && a.First.Equal(b.First) && a.Last.Equal(b.Last) && a.Count == b.Count
}

// Expired reports whether the policy treats rec as gone at now: a pending
// triplet not retried within the retry window, or a passed triplet or a
// client unused for longer than max-age. Step starts such a key afresh.
func (p Policy) Expired(rec *Record, now time.Time) bool {
	if rec.State == Pending {
		return now.Sub(rec.First) > p.RetryWindow
	}
	return now.Sub(rec.Last) > p.MaxAge
}

// Lifetime is the time to live rec has left at now, as Step and the
// auto-whitelist set it when they write: a pending record lives until the
// retry window and the never-retried grace have passed since its first
// attempt, a passed one (triplet or client) max-age after its last use. It
// is at most zero when that time has passed.
func (p Policy) Lifetime(rec *Record, now time.Time) time.Duration {
	if rec.State == Pending {
		return rec.First.Add(p.RetryWindow + NeverRetriedGrace).Sub(now)
	}
	return rec.Last.Add(p.MaxAge).Sub(now)
}

// MergeRecord merges rec into the record the store holds at key (see
// Merge), in one atomic update; the result lives as the policy says from
// its times. It reports whether it wrote: not when the store's record
// already held as much, nor when the merged record's lifetime has run out.
// An import from another greylisting daemon goes through it, so that it
// adds what the store lacks and never undoes what the daemon learned.
func (e *Engine) MergeRecord(ctx context.Context, key string, rec *Record) (bool, error) {
	now := e.cfg.Now()
	wrote := false
	err := e.store.Update(ctx, key, func(cur *Record) (*Record, time.Duration, error) {
		wrote = false
		m := Merge(cur, rec)
		if cur != nil && Same(m, cur) {
			return nil, 0, nil
		}
		ttl := e.cfg.Policy.Lifetime(m, now)
		if ttl < time.Second {
			return nil, 0, nil // gone, or too nearly to be worth a write
		}
		wrote = true
		return m, ttl, nil
	})
	if err != nil {
		return false, err
	}
	if wrote {
		e.StoreChanged()
	}
	return wrote, nil
}
