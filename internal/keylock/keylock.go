// Package keylock serialises, within one process, the writers of one key
// of a store: the greylist stores take a key's lock around a
// read-modify-write, so that two deliveries of one triplet in the same
// process queue instead of conflicting (each store says why it needs that).
//
// Keys share a fixed set of locks by hash: two distinct keys on the same
// stripe wait for each other for one transaction, which at 256 stripes and
// a milter's concurrency is rare and short. Unlike a mutex a lock is given
// up when the caller's context ends, so callers queued behind a holder
// stuck on a hung backend fail at their own deadline.
package keylock

import (
	"context"
	"hash/maphash"
)

// Locks is a set of key locks. Its zero value is not usable; call New.
type Locks struct {
	seed    maphash.Seed
	stripes [256]chan struct{}
}

// New returns a set of key locks, all free.
func New() *Locks {
	l := &Locks{seed: maphash.MakeSeed()}
	for i := range l.stripes {
		l.stripes[i] = make(chan struct{}, 1)
	}
	return l
}

func (l *Locks) stripe(key string) chan struct{} {
	return l.stripes[maphash.String(l.seed, key)%uint64(len(l.stripes))]
}

// Lock takes key's lock, or returns ctx's error once ctx is done. A
// successful Lock must be followed by Unlock of the same key.
func (l *Locks) Lock(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case l.stripe(key) <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Unlock gives key's lock back.
func (l *Locks) Unlock(key string) { <-l.stripe(key) }
