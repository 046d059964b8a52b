package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/milter-grey/milter-grey/greylist"
)

const (
	// maxUpdateAttempts bounds the retries of an Update whose
	// compare-and-set keeps failing because other hosts (or Puts) write
	// the key first.
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
// the hosts sharing the Redis.
//
// The first round trip assumes the key is absent, as it is for a new
// triplet: Update calls fn(nil) and, if that returns a record, sends it
// with SET key value NX GET [PX ttl] (Redis 7.0 or later), which writes
// only if the key is absent and returns the value it had otherwise. If the
// key was absent the record is written and Update is done in one round
// trip; if not, Update calls fn again with the value the SET returned
// (instead of a GET) and goes on as below. When fn(nil) writes nothing or
// fails, or the server refuses SET NX GET, Update starts with a GET.
//
// After the read (the GET, or the SET that found the key), Update calls fn
// on what it read and, if fn writes, writes with casScript, which succeeds
// only if the key still holds what was read. If another writer got in
// between, Update reads again and calls fn on the new record, up to
// maxUpdateAttempts times, pausing a random few milliseconds at most in
// between. So a new key costs one round trip, an Update of an existing key
// that writes nothing one, and one that writes two.
//
// A server that answers SET NX GET with a syntax error (Redis before 7.0,
// some Redis-compatible servers) is remembered: the Store logs a warning
// once and starts every later Update with a GET.
//
// fn is therefore called speculatively with nil even for a key that
// exists; as greylist.UpdateFunc requires, only its last call counts.
// Concurrent Updates of one key in this process wait for each other (as
// long as ctx allows) instead of conflicting. fn must not call Update.
//
// An error from fn is returned as fn returned it; a record that does not
// decode is an error naming the key, and fn is not called with it.
func (s *Store) Update(ctx context.Context, key string, fn greylist.UpdateFunc) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: update %q: %w", key, err)
	}
	if s.locks != nil {
		if err := s.locks.Lock(ctx, key); err != nil {
			return fmt.Errorf("redisstore: update %q: %w", key, err)
		}
		defer s.locks.Unlock(key)
	}
	k := s.prefix + key
	// read is true when old and had already hold the key's value, read by
	// the SET NX GET: the first attempt skips its GET.
	old, had, read, err := s.createIfAbsent(ctx, k, fn)
	switch {
	case err != nil:
		return fmt.Errorf("redisstore: update %q: %w", key, err)
	case read && !had:
		return nil // written: the key was absent
	}
	for attempt := 1; ; attempt++ {
		if !read {
			old, err = s.rdb.Get(ctx, k).Bytes()
			had = true
			if errors.Is(err, redis.Nil) {
				old, had, err = nil, false, nil
			}
			if err != nil {
				return fmt.Errorf("redisstore: update %q: %w", key, err)
			}
		}
		read = false
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

// createIfAbsent is Update's first round trip: it calls fn(nil) and writes
// the result with SET key value NX GET [PX ttl]. read reports whether it
// learnt the key's state: had false means the key was absent and is now
// written; had true, that it held old and was left alone. It reads nothing
// (read false, err nil) when SET NX GET is known to be unsupported, when
// fn(nil) writes nothing or returns an error or a record encode refuses
// (the GET path calls fn again and deals with it), and when the server
// answers the SET with an error reply: a syntax error marks SET NX GET
// unsupported; any other (OOM or MISCONF refusing writes, WRONGTYPE) is
// left to the GET path, so that such errors behave as they did before.
// Network errors and timeouts are returned.
func (s *Store) createIfAbsent(ctx context.Context, k string, fn greylist.UpdateFunc) (old []byte, had, read bool, err error) {
	if s.noSetNXGet.Load() {
		return nil, false, false, nil
	}
	next, ttl, err := fn(nil)
	if err != nil || next == nil {
		return nil, false, false, nil
	}
	v, err := encode(next, ttl)
	if err != nil {
		return nil, false, false, nil
	}
	// Rounded here as compareAndSet rounds, so go-redis never truncates
	// (it logs when it does); it sends whole seconds as EX, the same
	// expiry.
	args := redis.SetArgs{Mode: "NX", Get: true, TTL: time.Duration(pxMillis(ttl)) * time.Millisecond}
	old, err = s.rdb.SetArgs(ctx, k, v, args).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, true, nil // was absent: written
	case err == nil:
		return old, true, true, nil // present: not written
	case setNXGetUnsupported(err):
		s.markSetNXGetUnsupported(err)
		return nil, false, false, nil
	case isErrorReply(err):
		return nil, false, false, nil
	}
	return nil, false, false, err
}

// isErrorReply reports whether err is an error reply from the server, as
// opposed to a network error, a timeout or a cancelled context.
func isErrorReply(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && !errors.Is(err, redis.Nil)
}

// setNXGetUnsupported reports whether err is a server's refusal of the
// SET … NX GET syntax: "ERR syntax error" from Redis before 7.0 (which
// knows no GET option before 6.2, and refuses NX with GET in 6.2), or an
// unknown-option reply from a Redis-compatible server. Network errors and
// timeouts are not error replies, so they never match.
func setNXGetUnsupported(err error) bool {
	if !isErrorReply(err) {
		return false
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"syntax error", "unknown option", "unsupported option", "invalid option"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// markSetNXGetUnsupported switches the Store to the GET path for good,
// logging the first time.
func (s *Store) markSetNXGetUnsupported(err error) {
	if s.noSetNXGet.CompareAndSwap(false, true) && s.log != nil {
		s.log.Warn("redisstore: the server refuses SET NX GET (Redis before 7.0?); "+
			"every update now starts with a GET, so a new triplet costs two round trips instead of one",
			"url", s.url, "error", err)
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

// compareAndSet runs casScript: one round trip after the read, instead of
// WATCH before it and MULTI/EXEC after.
func (s *Store) compareAndSet(ctx context.Context, key string, had bool, old, v []byte, ttl time.Duration) (bool, error) {
	flag := "0"
	if had {
		flag = "1"
	}
	n, err := casScript.Run(ctx, s.rdb, []string{key}, flag, old, v, pxMillis(ttl)).Int()
	return n == 1, err
}

// pxMillis is ttl in whole milliseconds for PX: truncated, but at least 1
// for a positive ttl (0 means no expiry).
func pxMillis(ttl time.Duration) int64 {
	ms := ttl.Milliseconds()
	if ttl > 0 && ms == 0 {
		ms = 1
	}
	return ms
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
