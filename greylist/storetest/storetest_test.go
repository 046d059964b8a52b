package storetest

import (
	"context"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// TestMapStore runs the suite on a minimal map-backed store, to show the
// suite assumes nothing beyond the greylist.Store contract.
func TestMapStore(t *testing.T) {
	Run(t, func(t *testing.T) greylist.Store { return &mapStore{m: make(map[string]mapEntry)} })
}

type mapEntry struct {
	rec greylist.Record
	exp time.Time // zero: never
}

func (e mapEntry) live(now time.Time) bool { return e.exp.IsZero() || now.Before(e.exp) }

// mapStore keeps copies of records, truncated to milliseconds as the
// binary encoding does, and expires them by the wall clock.
type mapStore struct {
	mu sync.Mutex
	m  map[string]mapEntry
}

func (s *mapStore) get(key string) (*greylist.Record, time.Time, bool) {
	e, ok := s.m[key]
	if !ok || !e.live(time.Now()) {
		return nil, time.Time{}, false
	}
	r := e.rec
	return &r, e.exp, true
}

func (s *mapStore) put(key string, rec *greylist.Record, ttl time.Duration) {
	r := *rec
	r.First, r.Last = r.First.Truncate(time.Millisecond), r.Last.Truncate(time.Millisecond)
	var exp time.Time
	if ttl > 0 {
		exp = time.Now().Add(ttl)
	}
	s.m[key] = mapEntry{r, exp}
}

func (s *mapStore) Update(ctx context.Context, key string, fn greylist.UpdateFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, _, _ := s.get(key)
	next, ttl, err := fn(cur)
	if err != nil || next == nil {
		return err
	}
	s.put(key, next, ttl)
	return nil
}

func (s *mapStore) Get(ctx context.Context, key string) (*greylist.Record, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return nil, time.Time{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, exp, ok := s.get(key)
	if !ok {
		return nil, time.Time{}, greylist.ErrNotFound
	}
	return r, exp, nil
}

func (s *mapStore) Put(ctx context.Context, key string, rec *greylist.Record, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(key, rec, ttl)
	return nil
}

func (s *mapStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

func (s *mapStore) Scan(ctx context.Context, prefix string, fn func(string, *greylist.Record, time.Time) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	snap := maps.Clone(s.m)
	s.mu.Unlock()
	now := time.Now()
	for k, e := range snap {
		if !strings.HasPrefix(k, prefix) || !e.live(now) {
			continue
		}
		r := e.rec
		if err := fn(k, &r, e.exp); err != nil {
			return err
		}
	}
	return nil
}

func (s *mapStore) Close() error { return nil }
