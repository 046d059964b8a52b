package greylist

import (
	"sync"
	"time"
)

// awlCacheTTL is how long the auto-whitelist status of a client network is
// taken from memory instead of the store: a client sends many recipients
// and messages in a row, and its status changes at most once an hour (a
// change made by another MX host shows within this time).
const awlCacheTTL = time.Minute

// awlCacheMax bounds the cache; past it, expired entries are dropped, and
// if that is not enough, all of them.
const awlCacheMax = 100_000

// awlCache remembers which client networks are auto-whitelisted, so that
// the auto-whitelist costs one store read per client and minute rather
// than one per recipient.
type awlCache struct {
	mu sync.Mutex
	m  map[string]awlEntry
}

type awlEntry struct {
	whitelisted bool
	until       time.Time
}

func (c *awlCache) get(client string, now time.Time) (whitelisted, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[client]
	if !ok || !now.Before(e.until) {
		return false, false
	}
	return e.whitelisted, true
}

func (c *awlCache) put(client string, whitelisted bool, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]awlEntry)
	}
	if len(c.m) >= awlCacheMax {
		for k, e := range c.m {
			if !now.Before(e.until) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= awlCacheMax {
			clear(c.m)
		}
	}
	c.m[client] = awlEntry{whitelisted: whitelisted, until: now.Add(awlCacheTTL)}
}

// forget drops a client whose status may just have changed.
func (c *awlCache) forget(client string) {
	c.mu.Lock()
	delete(c.m, client)
	c.mu.Unlock()
}

// reset forgets everything.
func (c *awlCache) reset() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}
