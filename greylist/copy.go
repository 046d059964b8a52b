package greylist

import (
	"context"
	"fmt"
	"time"
)

// Copy writes every live record of src into dst with the lifetime it has
// left, so a site can move from one store to another (Badger to Redis when
// it adds MX hosts, and back) without greylisting its correspondents
// again. Records that expire while the copy runs are skipped. It returns
// the number of records copied.
func Copy(ctx context.Context, dst, src Store, now func() time.Time) (int, error) {
	n := 0
	err := src.Scan(ctx, "", func(key string, rec *Record, expires time.Time) error {
		var ttl time.Duration
		if !expires.IsZero() {
			ttl = expires.Sub(now())
			if ttl <= 0 {
				return nil
			}
		}
		if err := dst.Put(ctx, key, rec, ttl); err != nil {
			return fmt.Errorf("copy %q: %w", key, err)
		}
		n++
		return nil
	})
	return n, err
}
