package greylist

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned by Store.Get for a key that is absent or expired.
var ErrNotFound = errors.New("greylist: record not found")

// UpdateFunc computes the next record from the current one (nil when the key
// is absent or expired). It returns the record to write and its time to live;
// a nil next record means "write nothing". A Store may call it more than once
// (when a concurrent writer gets in first, or speculatively on nil to create
// an absent key in one round trip), so it must have no side effects other
// than capturing its last result. It must not call the Store's write methods
// (a Store may hold a lock shared by several keys while it runs).
type UpdateFunc func(cur *Record) (next *Record, ttl time.Duration, err error)

// Store keeps records under string keys, each with a time to live after which
// it disappears. Implementations must be safe for concurrent use.
type Store interface {
	// Update is an atomic read-modify-write of one key: no other writer can
	// change the key between the read that fn sees and the write of its
	// result. This is what makes two simultaneous deliveries of the same
	// triplet, on one host or several, see "new" only once.
	Update(ctx context.Context, key string, fn UpdateFunc) error

	// Get returns the record at key and when it expires (zero: never).
	Get(ctx context.Context, key string) (*Record, time.Time, error)

	// Put writes a record unconditionally (restore, migration, admin pass).
	Put(ctx context.Context, key string, rec *Record, ttl time.Duration) error

	// Delete removes key; deleting an absent key is not an error.
	Delete(ctx context.Context, key string) error

	// Scan calls fn for every live record whose key starts with prefix, in
	// no particular order, until fn returns an error (which Scan returns).
	Scan(ctx context.Context, prefix string, fn func(key string, rec *Record, expires time.Time) error) error

	// Close flushes and releases the store.
	Close() error
}
