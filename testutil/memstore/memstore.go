// Package memstore is a greylist.Store in memory, for tests: a map under a
// mutex whose records expire against a clock the test gives it, so that a
// test can move time forward instead of sleeping. It keeps what the
// greylist.Store contract promises and nothing more: Update is atomic (the
// mutex is held across fn), records are copied in and out, times are kept
// to the millisecond as the stores' encoding keeps them, and every call
// fails with the context's error once the context is done.
//
// It lives under testutil/ with the other test helpers; product code never
// imports it. Tests in package greylist itself cannot import it (memstore
// imports greylist), so the engine's tests that use it are in the external
// test package greylist_test.
package memstore

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// Store is a map-backed greylist.Store. Its zero value is not usable; call
// New.
type Store struct {
	now func() time.Time

	mu sync.Mutex
	m  map[string]entry
}

type entry struct {
	rec     greylist.Record
	expires time.Time // zero: never
}

// New returns an empty store whose time to live runs on now (time.Now when
// now is nil).
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{now: now, m: make(map[string]entry)}
}

// live returns the entry at key unless it has expired, in which case it is
// dropped. The caller holds s.mu.
func (s *Store) live(key string, now time.Time) (entry, bool) {
	e, ok := s.m[key]
	if ok && !e.expires.IsZero() && !now.Before(e.expires) {
		delete(s.m, key)
		return entry{}, false
	}
	return e, ok
}

// put stores a copy of rec. The caller holds s.mu.
func (s *Store) put(key string, rec *greylist.Record, ttl time.Duration) {
	e := entry{rec: *rec}
	e.rec.First = e.rec.First.Truncate(time.Millisecond)
	e.rec.Last = e.rec.Last.Truncate(time.Millisecond)
	if ttl > 0 {
		e.expires = s.now().Add(ttl)
	}
	s.m[key] = e
}

// Update implements greylist.Store.
func (s *Store) Update(ctx context.Context, key string, fn greylist.UpdateFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var cur *greylist.Record
	if e, ok := s.live(key, s.now()); ok {
		cur = &e.rec
	}
	next, ttl, err := fn(cur)
	if err != nil || next == nil {
		return err
	}
	s.put(key, next, ttl)
	return nil
}

// Get implements greylist.Store.
func (s *Store) Get(ctx context.Context, key string) (*greylist.Record, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return nil, time.Time{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.live(key, s.now())
	if !ok {
		return nil, time.Time{}, greylist.ErrNotFound
	}
	return &e.rec, e.expires, nil
}

// Put implements greylist.Store.
func (s *Store) Put(ctx context.Context, key string, rec *greylist.Record, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(key, rec, ttl)
	return nil
}

// Delete implements greylist.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

// Scan implements greylist.Store. It calls fn in key order, on a snapshot
// taken before the first call, without holding the lock: fn may use the
// store.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(string, *greylist.Record, time.Time) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	now := s.now()
	var keys []string
	for k := range s.m {
		if _, ok := s.live(k, now); ok && strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	entries := make([]entry, len(keys))
	for i, k := range keys {
		entries[i] = s.m[k]
	}
	s.mu.Unlock()
	for i, k := range keys {
		if err := fn(k, &entries[i].rec, entries[i].expires); err != nil {
			return err
		}
	}
	return nil
}

// Close implements greylist.Store; the records stay readable.
func (s *Store) Close() error { return nil }

// Keys lists the live keys in order.
func (s *Store) Keys() []string {
	var keys []string
	_ = s.Scan(context.Background(), "", func(k string, _ *greylist.Record, _ time.Time) error {
		keys = append(keys, k)
		return nil
	})
	return keys
}
