package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/milter-grey/milter-grey/greylist"
)

const (
	// maxUpdateAttempts bounds the retries of an Update that keeps losing
	// to concurrent commits to its key. With keyLocks only Put and Delete
	// can cause those; without them, 32 goroutines × 50 updates of one key
	// needed up to 15 attempts (39 under -race).
	maxUpdateAttempts = 100
	// maxBackoff caps the randomised pause between attempts.
	maxBackoff = 5 * time.Millisecond
)

// Put writes rec under key, replacing any record and expiry; ttl 0 means
// no expiry.
func (s *Store) Put(ctx context.Context, key string, rec *greylist.Record, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("badgerstore: put %q: %w", key, err)
	}
	e, err := newEntry([]byte(key), rec, ttl, time.Now())
	if err != nil {
		return fmt.Errorf("badgerstore: put %q: %w", key, err)
	}
	if err := s.writable(); err != nil {
		return fmt.Errorf("badgerstore: put %q: %w", key, err)
	}
	// A transaction that reads nothing never conflicts.
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.SetEntry(e) }); err != nil {
		return fmt.Errorf("badgerstore: put %q: %w", key, err)
	}
	return nil
}

// Delete removes key; an absent key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("badgerstore: delete %q: %w", key, err)
	}
	if err := s.writable(); err != nil {
		return fmt.Errorf("badgerstore: delete %q: %w", key, err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(key)) }); err != nil {
		return fmt.Errorf("badgerstore: delete %q: %w", key, err)
	}
	return nil
}

// Update reads key, calls fn and writes its result in one transaction.
// Badger fails the commit with ErrConflict if another commit to the key
// came in since the read; Update then calls fn again on the new record,
// up to maxUpdateAttempts times. Concurrent Updates of one key in this
// process wait for each other on a lock instead (see keyLocks), so
// conflicts come only from Put and Delete. fn must not call Update.
//
// An error from fn is returned as fn returned it; a record that does not
// decode is an error naming the key, and fn is not called.
func (s *Store) Update(ctx context.Context, key string, fn greylist.UpdateFunc) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("badgerstore: update %q: %w", key, err)
	}
	unlock := s.locks.lock(key)
	defer unlock()
	k := []byte(key)
	// Most decisions write nothing (a known triplet seen within the
	// minute): a read-only transaction answers them without the cost of a
	// read-write one. The lock above keeps writers of this key in this
	// process out, and Badger allows one process per directory, so the
	// record cannot change between this read and the answer.
	var viewErr error
	var wants bool
	err := s.db.View(func(txn *badger.Txn) error {
		cur, err := current(txn, k)
		if err != nil {
			return err
		}
		next, _, err := fn(cur)
		if err != nil {
			viewErr = err
			return err
		}
		wants = next != nil
		return nil
	})
	switch {
	case viewErr != nil:
		return viewErr
	case err != nil:
		return fmt.Errorf("badgerstore: update %q: %w", key, err)
	case !wants:
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("badgerstore: update %q: %w", key, err)
	}
	for attempt := 1; ; attempt++ {
		var fnErr error
		err := s.db.Update(func(txn *badger.Txn) error {
			cur, err := current(txn, k)
			if err != nil {
				return err
			}
			next, ttl, err := fn(cur)
			if err != nil {
				fnErr = err
				return err
			}
			if next == nil {
				return nil // Commit of a txn without writes is a no-op.
			}
			e, err := newEntry(k, next, ttl, time.Now())
			if err != nil {
				return err
			}
			if err := s.writable(); err != nil {
				return err
			}
			return txn.SetEntry(e)
		})
		switch {
		case fnErr != nil:
			return fnErr
		case err == nil:
			return nil
		case !errors.Is(err, badger.ErrConflict):
			return fmt.Errorf("badgerstore: update %q: %w", key, err)
		case attempt == maxUpdateAttempts:
			return fmt.Errorf("badgerstore: update %q: gave up after %d attempts: %w", key, attempt, err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("badgerstore: update %q: %w", key, err)
		}
		time.Sleep(backoff(attempt))
	}
}

// backoff is a random pause that doubles with each attempt (full jitter),
// so the losers of a conflict do not all come back at the same instant:
// a linear 20 µs step let 32 writers of one key run out of 100 attempts.
func backoff(attempt int) time.Duration {
	return rand.N(min(50*time.Microsecond<<min(attempt, 10), maxBackoff)) + 1
}

// current returns the live record at key, nil if there is none.
func current(txn *badger.Txn, key []byte) (*greylist.Record, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decode(item)
}

// newEntry encodes rec for key with an expiry ttl after now (none for 0).
func newEntry(key []byte, rec *greylist.Record, ttl time.Duration, now time.Time) (*badger.Entry, error) {
	if rec == nil {
		return nil, errors.New("nil record")
	}
	if ttl < 0 {
		return nil, fmt.Errorf("negative ttl %v", ttl)
	}
	v, err := rec.MarshalBinary()
	if err != nil {
		return nil, err
	}
	e := badger.NewEntry(key, v)
	if ttl > 0 {
		e.ExpiresAt = expiryUnix(now, ttl)
	}
	return e, nil
}

// expiryUnix is now+ttl in Unix seconds, rounded up. Entry.WithTTL rounds
// down, and Badger treats a key as expired once the current second reaches
// ExpiresAt, so a 1 s TTL set at hh:mm:ss.999 would last 1 ms. Rounding up
// makes a record live at least ttl and at most ttl + 1 s.
func expiryUnix(now time.Time, ttl time.Duration) uint64 {
	t := now.Add(ttl)
	sec := t.Unix()
	if t.Nanosecond() != 0 {
		sec++
	}
	return uint64(sec)
}
