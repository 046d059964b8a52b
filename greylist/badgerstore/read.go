package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/milter-grey/milter-grey/greylist"
)

// Get returns the record at key and when it expires. An absent or expired
// key gives greylist.ErrNotFound itself, unwrapped: it is the common case
// for a new triplet and costs no allocation.
func (s *Store) Get(ctx context.Context, key string) (*greylist.Record, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return nil, time.Time{}, fmt.Errorf("badgerstore: get %q: %w", key, err)
	}
	var (
		rec *greylist.Record
		exp time.Time
	)
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(key))
		if err != nil {
			return err
		}
		rec, err = decode(item)
		exp = expiresAt(item)
		return err
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return nil, time.Time{}, greylist.ErrNotFound
	case err != nil:
		return nil, time.Time{}, fmt.Errorf("badgerstore: get %q: %w", key, err)
	}
	return rec, exp, nil
}

// Scan calls fn for every live record whose key starts with prefix, in key
// order, inside one read transaction: fn sees a consistent snapshot and may
// itself write to the store (the writes are not part of the snapshot).
func (s *Store) Scan(ctx context.Context, prefix string, fn func(key string, rec *greylist.Record, expires time.Time) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("badgerstore: scan %q: %w", prefix, err)
	}
	p := []byte(prefix)
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = p // lets Badger skip tables without the prefix
		// Records live in the LSM tree (below the value threshold), so
		// Value reads them in place; prefetching would only copy them.
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(p); it.ValidForPrefix(p); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			// The iterator skips expired keys, but one may expire while
			// fn runs on the previous.
			if item.IsDeletedOrExpired() {
				continue
			}
			key := string(item.Key())
			rec, err := decode(item)
			if err != nil {
				return fmt.Errorf("key %q: %w", key, err)
			}
			if err := fn(key, rec, expiresAt(item)); err != nil {
				return callerError{err}
			}
		}
		return nil
	})
	var ce callerError
	if errors.As(err, &ce) {
		return ce.err // fn's own error, as it returned it
	}
	if err != nil {
		return fmt.Errorf("badgerstore: scan %q: %w", prefix, err)
	}
	return nil
}

// callerError marks an error returned by the caller's callback, passed
// back to the caller unwrapped.
type callerError struct{ err error }

func (e callerError) Error() string { return e.err.Error() }
func (e callerError) Unwrap() error { return e.err }

// decode decodes item's value. A value that does not decode is an error
// naming neither the key (callers add it) nor hiding anything: the record
// stays for an admin to look at or delete.
func decode(item *badger.Item) (*greylist.Record, error) {
	rec := new(greylist.Record)
	var decErr error
	err := item.Value(func(v []byte) error {
		decErr = rec.UnmarshalBinary(v) // copies out of v
		return decErr
	})
	if decErr != nil {
		return nil, fmt.Errorf("decode record: %w", decErr)
	}
	if err != nil {
		return nil, fmt.Errorf("read value: %w", err)
	}
	return rec, nil
}

// expiresAt is item's expiry as a time; zero for no TTL.
func expiresAt(item *badger.Item) time.Time {
	if e := item.ExpiresAt(); e != 0 {
		return time.Unix(int64(e), 0)
	}
	return time.Time{}
}
