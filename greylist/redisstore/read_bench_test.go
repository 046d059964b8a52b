package redisstore

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/testutil/testredis"
)

// BenchmarkUpdateNoWrite measures what Decide costs for a known triplet
// used within the last minute: an Update whose fn writes nothing (one
// GET: fn writes nothing on nil either, so there is no SET NX GET), against
// a real redis-server on loopback.
func BenchmarkUpdateNoWrite(b *testing.B) {
	srv := testredis.Start(b)
	s := openTest(b, srv.URL(), Options{Prefix: "bench-nowrite:"})
	const n = 1000
	keys := make([]string, n)
	now := time.Now()
	for i := range keys {
		keys[i] = fmt.Sprintf("t:198.18.%d.0/24 s%07x@m%03d.example.org u%07x@dom%02d.example.net", i%256, i, i%1000, i, i%16)
		rec := &greylist.Record{State: greylist.Passed, First: now.Add(-time.Hour), Last: now, Count: 3}
		if err := s.Put(b.Context(), keys[i], rec, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	var c atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
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
}
