package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/milter-grey/milter-grey/greylist"
)

const (
	// maxUpdateAttempts bounds the retries of an Update whose EXEC keeps
	// failing because other hosts (or Puts) write the key first.
	maxUpdateAttempts = 100
	// maxBackoff caps the randomised pause between attempts.
	maxBackoff = 5 * time.Millisecond
)

// Put writes rec under key, replacing any record and expiry; ttl 0 means
// no expiry.
func (s *Store) Put(ctx context.Context, key string, rec *greylist.Record, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: put %q: %w", key, err)
	}
	v, err := encode(rec, ttl)
	if err != nil {
		return fmt.Errorf("redisstore: put %q: %w", key, err)
	}
	if err := s.rdb.Set(ctx, s.prefix+key, v, ttl).Err(); err != nil {
		return fmt.Errorf("redisstore: put %q: %w", key, err)
	}
	return nil
}

// Delete removes key; an absent key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: delete %q: %w", key, err)
	}
	if err := s.rdb.Del(ctx, s.prefix+key).Err(); err != nil {
		return fmt.Errorf("redisstore: delete %q: %w", key, err)
	}
	return nil
}

// Update reads key, calls fn and writes its result atomically, across all
// the hosts sharing the Redis: WATCH key, GET key, fn, then MULTI, SET,
// EXEC. EXEC fails (redis.TxFailedErr) if anyone wrote the key after the
// WATCH; Update then calls fn again on the new record, up to
// maxUpdateAttempts times, pausing a random few milliseconds at most in
// between. When fn writes nothing, Update only releases the WATCH.
//
// Concurrent Updates of one key in this process wait for each other (as
// long as ctx allows) instead of conflicting. fn must not call Update.
//
// An error from fn is returned as fn returned it; a record that does not
// decode is an error naming the key, and fn is not called.
func (s *Store) Update(ctx context.Context, key string, fn greylist.UpdateFunc) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: update %q: %w", key, err)
	}
	if s.locks != nil {
		unlock, err := s.locks.lock(ctx, key)
		if err != nil {
			return fmt.Errorf("redisstore: update %q: %w", key, err)
		}
		defer unlock()
	}
	k := s.prefix + key
	for attempt := 1; ; attempt++ {
		var fnErr error
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			cur, err := current(ctx, tx, k)
			if err != nil {
				return err
			}
			next, ttl, err := fn(cur)
			if err != nil {
				fnErr = err
				return err
			}
			if next == nil {
				return nil // Watch's Close sends UNWATCH
			}
			v, err := encode(next, ttl)
			if err != nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, k, v, ttl)
				return nil
			})
			return err
		}, k)
		switch {
		case fnErr != nil:
			return fnErr
		case err == nil:
			return nil
		case !errors.Is(err, redis.TxFailedErr):
			return fmt.Errorf("redisstore: update %q: %w", key, err)
		case attempt == maxUpdateAttempts:
			return fmt.Errorf("redisstore: update %q: gave up after %d attempts: %w", key, attempt, err)
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return fmt.Errorf("redisstore: update %q: %w", key, err)
		}
	}
}

// current returns the record at key inside a WATCH, nil if there is none.
func current(ctx context.Context, tx *redis.Tx, key string) (*greylist.Record, error) {
	v, err := tx.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decode(v)
}

// encode checks and encodes a record to write with ttl.
func encode(rec *greylist.Record, ttl time.Duration) ([]byte, error) {
	if rec == nil {
		return nil, errors.New("nil record")
	}
	// go-redis reads a ttl of -1 as KEEPTTL: refuse them all.
	if ttl < 0 {
		return nil, fmt.Errorf("negative ttl %v", ttl)
	}
	return rec.MarshalBinary()
}

// backoff is a random pause that doubles with each attempt (full jitter),
// so the losers of a conflict do not all come back at the same instant.
func backoff(attempt int) time.Duration {
	return rand.N(min(50*time.Microsecond<<min(attempt, 10), maxBackoff)) + 1
}

// sleep pauses for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
