package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/milter-grey/milter-grey/greylist"
)

// Put writes rec under key, replacing any record and expiry; ttl 0 means
// no expiry.
func (s *Store) Put(ctx context.Context, key string, rec *greylist.Record, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("badgerstore: put %q: %w", key, err)
	}
	e, err := newEntry([]byte(key), rec, ttl, time.Now())
	if err != nil {
		return fmt.Errorf("badgerstore: put %q: %w", key, err)
	}
	if err := s.locks.Lock(ctx, key); err != nil {
		return fmt.Errorf("badgerstore: put %q: %w", key, err)
	}
	defer s.locks.Unlock(key)
	if err := s.write(func(txn *badger.Txn) error { return txn.SetEntry(e) }); err != nil {
		return fmt.Errorf("badgerstore: put %q: %w", key, err)
	}
	return nil
}

// Delete removes key; an absent key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("badgerstore: delete %q: %w", key, err)
	}
	if err := s.locks.Lock(ctx, key); err != nil {
		return fmt.Errorf("badgerstore: delete %q: %w", key, err)
	}
	defer s.locks.Unlock(key)
	if err := s.write(func(txn *badger.Txn) error { return txn.Delete([]byte(key)) }); err != nil {
		return fmt.Errorf("badgerstore: delete %q: %w", key, err)
	}
	return nil
}

// Update reads key in a read-only transaction, calls fn, and writes its
// result, if any, in a write-only one. Every writer of a key (Update, Put,
// Delete) holds the key's lock (Store.locks) and Badger allows one process
// per directory, so nothing can change the key between the read and the
// write: no read-write transaction, no conflict detection and no retry are
// needed. Most decisions write nothing (a known triplet seen within the
// minute) and cost the read alone. fn must not call the Store's write
// methods.
//
// An error from fn is returned as fn returned it; a record that does not
// decode is an error naming the key, and fn is not called.
func (s *Store) Update(ctx context.Context, key string, fn greylist.UpdateFunc) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("badgerstore: update %q: %w", key, err)
	}
	if err := s.locks.Lock(ctx, key); err != nil {
		return fmt.Errorf("badgerstore: update %q: %w", key, err)
	}
	defer s.locks.Unlock(key)
	k := []byte(key)
	var next *greylist.Record
	var ttl time.Duration
	var fnErr error
	err := s.db.View(func(txn *badger.Txn) error {
		cur, err := current(txn, k)
		if err != nil {
			return err
		}
		next, ttl, fnErr = fn(cur)
		return fnErr
	})
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil:
		return fmt.Errorf("badgerstore: update %q: %w", key, err)
	case next == nil:
		return nil
	}
	e, err := newEntry(k, next, ttl, time.Now())
	if err == nil {
		err = ctx.Err() // a decision that timed out must not write late
	}
	if err == nil {
		err = s.write(func(txn *badger.Txn) error { return txn.SetEntry(e) })
	}
	if err != nil {
		return fmt.Errorf("badgerstore: update %q: %w", key, err)
	}
	return nil
}

// write commits what fn sets in a write-only transaction, unless the disk
// cannot take it (see writable). The caller holds the key's lock.
func (s *Store) write(fn func(txn *badger.Txn) error) error {
	if err := s.writable(); err != nil {
		return err
	}
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	if err := fn(txn); err != nil {
		return err
	}
	return txn.Commit()
}

// current returns the live record at key, nil if there is none.
func current(txn *badger.Txn, key []byte) (*greylist.Record, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decode(item)
}

// newEntry encodes rec for key with an expiry ttl after now (none for 0).
func newEntry(key []byte, rec *greylist.Record, ttl time.Duration, now time.Time) (*badger.Entry, error) {
	if rec == nil {
		return nil, errors.New("nil record")
	}
	if ttl < 0 {
		return nil, fmt.Errorf("negative ttl %v", ttl)
	}
	v, err := rec.MarshalBinary()
	if err != nil {
		return nil, err
	}
	e := badger.NewEntry(key, v)
	if ttl > 0 {
		e.ExpiresAt = expiryUnix(now, ttl)
	}
	return e, nil
}

// expiryUnix is now+ttl in Unix seconds, rounded up. Entry.WithTTL rounds
// down, and Badger treats a key as expired once the current second reaches
// ExpiresAt, so a 1 s TTL set at hh:mm:ss.999 would last 1 ms. Rounding up
// makes a record live at least ttl and at most ttl + 1 s.
func expiryUnix(now time.Time, ttl time.Duration) uint64 {
	t := now.Add(ttl)
	sec := t.Unix()
	if t.Nanosecond() != 0 {
		sec++
	}
	return uint64(sec)
}
