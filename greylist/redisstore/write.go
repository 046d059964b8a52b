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
		old, err := s.rdb.Get(ctx, k).Bytes()
		had := true
		if errors.Is(err, redis.Nil) {
			old, had, err = nil, false, nil
		}
		if err != nil {
			return fmt.Errorf("redisstore: update %q: %w", key, err)
		}
		var cur *greylist.Record
		if had {
			if cur, err = decode(old); err != nil {
				return fmt.Errorf("redisstore: update %q: %w", key, err)
			}
		}
		next, ttl, err := fn(cur)
		if err != nil {
			return err
		}
		if next == nil {
			return nil // nothing to write: the read was the whole operation
		}
		v, err := encode(next, ttl)
		if err != nil {
			return fmt.Errorf("redisstore: update %q: %w", key, err)
		}
		ok, err := s.compareAndSet(ctx, k, had, old, v, ttl)
		switch {
		case err != nil:
			return fmt.Errorf("redisstore: update %q: %w", key, err)
		case ok:
			return nil
		case attempt == maxUpdateAttempts:
			return fmt.Errorf("redisstore: update %q: gave up after %d attempts: %w", key, attempt, ErrConflict)
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return fmt.Errorf("redisstore: update %q: %w", key, err)
		}
	}
}

// ErrConflict is wrapped by Update when another writer kept changing the
// key between its read and its write.
var ErrConflict = errors.New("concurrent updates kept changing the key")

// casScript writes ARGV[3] (with a time to live of ARGV[4] ms, 0 for
// none) only if the key still holds what the caller read: ARGV[2] when
// ARGV[1] is "1", nothing when it is "0". A script runs atomically on the
// server, so this is the whole of the read-modify-write's atomicity; the
// state machine itself stays in Go.
var casScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return 0 end
elseif cur then
  return 0
end
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[3])
end
return 1
`)

// compareAndSet runs casScript: an update costs a GET, then one script call
// when it writes (two round trips), instead of WATCH, GET and MULTI/EXEC.
func (s *Store) compareAndSet(ctx context.Context, key string, had bool, old, v []byte, ttl time.Duration) (bool, error) {
	flag := "0"
	if had {
		flag = "1"
	}
	ms := ttl.Milliseconds()
	if ttl > 0 && ms == 0 {
		ms = 1
	}
	n, err := casScript.Run(ctx, s.rdb, []string{key}, flag, old, v, ms).Int()
	return n == 1, err
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
