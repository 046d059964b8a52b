// Package ttlcache is a map whose entries expire a fixed time after they
// were put, bounded in size: the in-memory caches in front of slower
// answers (the auto-whitelist status of a client network in greylist, SPF
// results in auth). It is safe for concurrent use. Its methods take the
// time from the caller, so each cache runs on its owner's clock.
package ttlcache

import (
	"sync"
	"time"
)

// Cache maps strings to values of type V for a time to live.
type Cache[V any] struct {
	ttl time.Duration
	max int

	mu sync.Mutex
	m  map[string]entry[V]
}

type entry[V any] struct {
	v       V
	expires time.Time
}

// New returns an empty cache whose entries live for ttl and which holds at
// most size entries (at least one).
func New[V any](ttl time.Duration, size int) *Cache[V] {
	return &Cache[V]{ttl: ttl, max: max(size, 1), m: make(map[string]entry[V])}
}

// Get returns the value at key unless it has expired at now.
func (c *Cache[V]) Get(key string, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Put stores v at key until now plus the time to live. When the cache is
// full, expired entries are dropped first; if that frees less than a
// quarter of it, other entries are dropped, in no particular order, until
// three quarters remain. Freeing a quarter at a time keeps the scan for
// expired entries off most Puts of a full cache.
func (c *Cache[V]) Put(key string, v V, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		keep := c.max * 3 / 4
		for k := range c.m {
			if len(c.m) <= keep {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[key] = entry[V]{v: v, expires: now.Add(c.ttl)}
}

// Delete drops key.
func (c *Cache[V]) Delete(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}

// Clear drops every entry.
func (c *Cache[V]) Clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// Len is the number of entries held, expired ones included.
func (c *Cache[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
