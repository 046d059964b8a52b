package redisstore

import (
	"context"
	"hash/maphash"
)

// keyLocks serialises Updates of one key within the process. The
// compare-and-set is optimistic: of N concurrent read-modify-writes of a
// key one write succeeds and N-1 start over, so a burst of deliveries of
// one triplet (a message to many recipients of one domain, say) would
// cost N²/2 round trips. With the lock the process sends one update at a
// time per key, and conflicts come only from other hosts (and Put).
//
// Unlike a mutex the lock is given up when ctx ends, so callers queued
// behind a transaction stuck on a hung Redis fail at their own deadline.
// Keys share a fixed set of locks by hash: two distinct keys on the same
// stripe wait for each other for one transaction, which at 256 stripes
// and a milter's concurrency is rare and short.
type keyLocks struct {
	seed    maphash.Seed
	stripes [256]chan struct{}
}

func newKeyLocks() *keyLocks {
	l := &keyLocks{seed: maphash.MakeSeed()}
	for i := range l.stripes {
		l.stripes[i] = make(chan struct{}, 1)
	}
	return l
}

// lock takes key's stripe, or returns ctx's error once ctx is done.
func (l *keyLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	ch := l.stripes[maphash.String(l.seed, key)%uint64(len(l.stripes))]
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
