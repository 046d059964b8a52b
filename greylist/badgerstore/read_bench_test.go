package badgerstore

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// BenchmarkGet measures Get on an on-disk store of 10,000 records: "hit"
// reads a present key (the auto-whitelist lookup of a known client),
// "miss" an absent one (the same lookup for most clients, which have no
// record).
func BenchmarkGet(b *testing.B) {
	s, _ := openTest(b)
	defer s.Close()
	const n = 10_000
	keys := make([]string, n)
	now := time.Now()
	for i := range keys {
		keys[i] = fmt.Sprintf("t:198.18.%d.0/24 s%07x@m%03d.example.org u%07x@dom%02d.example.net", i%256, i, i%1000, i, i%16)
		rec := &greylist.Record{State: greylist.Passed, First: now.Add(-time.Hour), Last: now, Count: 3}
		if err := s.Put(b.Context(), keys[i], rec, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	for _, kind := range []string{"hit", "miss"} {
		b.Run(kind, func(b *testing.B) {
			var c atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					key := keys[c.Add(1)%n]
					if kind == "miss" {
						key = "c:" + key[2:]
					}
					_, _, err := s.Get(b.Context(), key)
					if kind == "hit" && err != nil || kind == "miss" && !errors.Is(err, greylist.ErrNotFound) {
						b.Fatal(err)
					}
				}
			})
		})
	}
	// "update-nowrite" is what Decide costs for a known triplet used
	// within the last minute: Update whose fn writes nothing, a
	// read-write transaction and the key lock for a read.
	b.Run("update-nowrite", func(b *testing.B) {
		var c atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				err := s.Update(b.Context(), keys[c.Add(1)%n], func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
					return nil, 0, nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
