package greylist

import (
	"sync"
	"time"

	"github.com/milter-grey/milter-grey/internal/ttlcache"
)

// awlCacheTTL is how long the auto-whitelist status of a client network is
// taken from memory instead of the store: a client sends many recipients
// and messages in a row, and its status changes at most once an hour (a
// change made by another MX host shows within this time).
const awlCacheTTL = time.Minute

// awlCacheMax bounds the cache (see ttlcache.Cache.Put for what goes
// when it is full).
const awlCacheMax = 100_000

// awlCache remembers which client networks are auto-whitelisted, so that
// the auto-whitelist costs one store read per client and minute rather
// than one per recipient. Its zero value is ready to use.
type awlCache struct {
	once  sync.Once
	cache *ttlcache.Cache[bool]
}

// entries makes the cache on first use.
func (c *awlCache) entries() *ttlcache.Cache[bool] {
	c.once.Do(func() { c.cache = ttlcache.New[bool](awlCacheTTL, awlCacheMax) })
	return c.cache
}

func (c *awlCache) get(client string, now time.Time) (whitelisted, ok bool) {
	return c.entries().Get(client, now)
}

func (c *awlCache) put(client string, whitelisted bool, now time.Time) {
	c.entries().Put(client, whitelisted, now)
}

// forget drops a client whose status may just have changed.
func (c *awlCache) forget(client string) { c.entries().Delete(client) }

// reset forgets everything.
func (c *awlCache) reset() { c.entries().Clear() }
