package redisstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/milter-grey/milter-grey/greylist"
)

// scanCount is the COUNT hint of SCAN: keys examined per round trip, and
// about the number of records fetched per pipeline.
const scanCount = 500

// Get returns the record at key and when it expires (zero: no expiry),
// read with GET and PTTL in one round trip. An absent or expired key gives
// greylist.ErrNotFound itself, unwrapped.
func (s *Store) Get(ctx context.Context, key string) (*greylist.Record, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return nil, time.Time{}, fmt.Errorf("redisstore: get %q: %w", key, err)
	}
	k := s.prefix + key
	var (
		get  *redis.StringCmd
		pttl *redis.DurationCmd
	)
	// Exec's error is the first command's error, redis.Nil for an absent
	// key: look at each command instead.
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, k)
		pttl = p.PTTL(ctx, k)
		return nil
	})
	rec, exp, err := record(get, pttl)
	switch {
	case errors.Is(err, errAbsent):
		return nil, time.Time{}, greylist.ErrNotFound
	case err != nil:
		return nil, time.Time{}, fmt.Errorf("redisstore: get %q: %w", key, err)
	}
	return rec, exp, nil
}

// errAbsent is record's answer for a key that is not there.
var errAbsent = errors.New("absent")

// record decodes the replies of a pipelined GET and PTTL of one key. The
// two are not atomic: a key that expired or was deleted in between (PTTL
// -2) counts as absent.
func record(get *redis.StringCmd, pttl *redis.DurationCmd) (*greylist.Record, time.Time, error) {
	v, err := get.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, time.Time{}, errAbsent
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	ttl, err := pttl.Result()
	if err != nil {
		return nil, time.Time{}, err
	}
	var exp time.Time
	switch {
	case ttl == -2:
		return nil, time.Time{}, errAbsent
	case ttl >= 0:
		exp = time.Now().Add(ttl)
	} // -1: no expiry
	rec, err := decode(v)
	if err != nil {
		return nil, time.Time{}, err
	}
	return rec, exp, nil
}

// decode decodes a stored value. A value that does not decode is an error
// (callers add the key) wrapping greylist.ErrBadRecord; it stays in Redis
// for an admin to look at or delete.
func decode(v []byte) (*greylist.Record, error) {
	rec := new(greylist.Record)
	if err := rec.UnmarshalBinary(v); err != nil {
		return nil, fmt.Errorf("decode record: %w", err)
	}
	return rec, nil
}

// Scan calls fn for every live record whose key starts with prefix, in no
// particular order, with SCAN MATCH over the store's keys (on every master
// of a Cluster) and the records fetched by pipelines of GET and PTTL. It
// is not a snapshot: a record written during the Scan may or may not be
// seen, one that expires is skipped. fn is never called concurrently and
// may itself use the store.
//
// SCAN may return a key twice (while Redis resizes its hash table); Scan
// drops repeats by a 128-bit hash of the key, about 40 bytes of memory per
// key visited.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(key string, rec *greylist.Record, expires time.Time) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: scan %q: %w", prefix, err)
	}
	sc := &scanner{
		prefix: s.prefix,
		match:  globEscape(s.prefix+prefix) + "*",
		fn:     fn,
		seeds:  [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		seen:   make(map[[2]uint64]struct{}),
	}
	var err error
	if s.cluster != nil {
		// ForEachMaster scans the masters concurrently; the first error
		// (fn's included) stops the others.
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		err = s.cluster.ForEachMaster(cctx, func(ctx context.Context, node *redis.Client) error {
			err := sc.scanNode(ctx, node)
			if err != nil {
				cancel()
			}
			return err
		})
	} else {
		err = sc.scanNode(ctx, s.rdb)
	}
	if sc.fnErr != nil {
		return sc.fnErr // fn's own error, as it returned it
	}
	if err != nil {
		return fmt.Errorf("redisstore: scan %q: %w", prefix, err)
	}
	return nil
}

// scanner is the state of one Scan, shared by the nodes of a Cluster.
type scanner struct {
	prefix string // the store's prefix, stripped from keys
	match  string // SCAN MATCH pattern
	fn     func(key string, rec *greylist.Record, expires time.Time) error

	mu    sync.Mutex // serialises fn and guards the fields below
	seeds [2]maphash.Seed
	seen  map[[2]uint64]struct{}
	fnErr error // fn's error: stop
}

// errStopped ends the scan of a node once fn has failed on any node.
var errStopped = errors.New("scan stopped")

// scanNode walks one node's keyspace with SCAN.
func (sc *scanner) scanNode(ctx context.Context, c redis.Cmdable) error {
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, sc.match, scanCount).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := sc.batch(ctx, c, keys); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// batch fetches the records of keys in one pipeline and hands them to fn.
func (sc *scanner) batch(ctx context.Context, c redis.Cmdable, keys []string) error {
	gets := make([]*redis.StringCmd, len(keys))
	pttls := make([]*redis.DurationCmd, len(keys))
	_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			gets[i] = p.Get(ctx, k)
			pttls[i] = p.PTTL(ctx, k)
		}
		return nil
	})
	for i, k := range keys {
		rec, exp, err := record(gets[i], pttls[i])
		switch {
		case errors.Is(err, errAbsent):
			continue // expired or deleted since SCAN saw it
		case err != nil:
			return fmt.Errorf("key %q: %w", strings.TrimPrefix(k, sc.prefix), err)
		}
		if err := sc.emit(strings.TrimPrefix(k, sc.prefix), rec, exp); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// emit calls fn once per key, never concurrently, and never after fn
// failed.
func (sc *scanner) emit(key string, rec *greylist.Record, exp time.Time) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.fnErr != nil {
		return errStopped
	}
	h := [2]uint64{maphash.String(sc.seeds[0], key), maphash.String(sc.seeds[1], key)}
	if _, dup := sc.seen[h]; dup {
		return nil
	}
	sc.seen[h] = struct{}{}
	if err := sc.fn(key, rec, exp); err != nil {
		sc.fnErr = err
		return errStopped
	}
	return nil
}

// globEscape escapes the characters special to Redis glob patterns (as
// MATCH uses them), so a prefix matches only itself.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
