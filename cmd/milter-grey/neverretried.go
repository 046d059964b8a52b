package main

import (
	"context"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// The never-retried count: how often the store is scanned for triplets
// whose retry window closed without a retry.
const (
	neverRetriedFirst = time.Minute // after start, once things settled
	neverRetriedEvery = time.Hour
)

// neverRetriedLoop counts never-retried triplets shortly after start, then
// every hour, until ctx ends.
func (d *daemon) neverRetriedLoop(ctx context.Context, first, every time.Duration) {
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := d.countNeverRetried(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("never-retried count failed; retrying at the next scan", "err", err)
		}
		t.Reset(every)
	}
}

// countNeverRetried scans the triplets and counts, in
// milter_grey_never_retried_total, each one whose retry window closed
// since the last scan without a retry. Such a triplet stays in the store
// for greylist.NeverRetriedGrace after its window, where the admin API
// lists it; the store's expiry deletes it, not this scan. Counting by the
// window's end needs no memory of what was counted: each triplet's window
// closes once. A window that closed while the daemon was down is not
// counted (Prometheus sees a restarted counter anyway); with a store shared
// by several MX hosts, each host counts the same triplets.
func (d *daemon) countNeverRetried(ctx context.Context) (int, error) {
	policy := d.engine.Config().Policy
	since, now := d.neverRetriedUntil, d.engine.Now()
	n := 0
	err := d.store.Scan(ctx, greylist.TripletPrefix, func(_ string, rec *greylist.Record, _ time.Time) error {
		if policy.NeverRetried(rec, now) && !policy.NeverRetried(rec, since) {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, err // counted at the next scan, which starts from the same point
	}
	d.neverRetriedUntil = now
	d.metrics.NeverRetried(n)
	if n > 0 {
		d.log.Info("never-retried triplets", "count", n, "since", since.Format(time.RFC3339))
	}
	return n, nil
}
