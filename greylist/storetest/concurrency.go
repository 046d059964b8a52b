package storetest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// concurrencyCases check that Update is an atomic read-modify-write.
func concurrencyCases() []testCase {
	return []testCase{
		{name: "ConcurrentIncrementsOneKey", run: testConcurrentIncrements},
		{name: "ConcurrentExactlyOneNew", run: testExactlyOneNew},
		{name: "ConcurrentDistinctKeys", run: testConcurrentDistinctKeys},
	}
}

// increment is an UpdateFunc that creates a record with Count 1 or adds
// one to the current count.
func increment(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
	if cur == nil {
		return &greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: 1}, time.Hour, nil
	}
	next := *cur
	next.Count++
	return &next, time.Hour, nil
}

// testConcurrentIncrements: no increment may be lost when many goroutines
// update one key at once.
func testConcurrentIncrements(t *testing.T, s greylist.Store) {
	const key, goroutines, perGoroutine = "conc/counter", 32, 50
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			<-start
			for range perGoroutine {
				if err := s.Update(t.Context(), key, increment); err != nil {
					t.Errorf("Update: %v", err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	wantRecord(t, s, key, &greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: goroutines * perGoroutine})
}

// testExactlyOneNew: of many simultaneous first deliveries of one triplet,
// exactly one sees it as new. Each goroutine keeps only what its fn saw on
// the last call, since a store may call fn again after a conflict.
func testExactlyOneNew(t *testing.T, s greylist.Store) {
	const rounds, goroutines = 5, 64
	for round := range rounds {
		key := fmt.Sprintf("conc/new/%d", round)
		start := make(chan struct{})
		var news atomic.Int32
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				<-start
				var sawNew bool
				err := s.Update(t.Context(), key, func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
					sawNew = cur == nil
					return increment(cur)
				})
				if err != nil {
					t.Errorf("Update: %v", err)
					return
				}
				if sawNew {
					news.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if n := news.Load(); n != 1 {
			t.Errorf("round %d: %d goroutines saw the key as new, want exactly 1", round, n)
		}
		wantRecord(t, s, key, &greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: goroutines})
	}
}

// testConcurrentDistinctKeys: many goroutines each writing their own keys,
// reading them back in between, lose nothing.
func testConcurrentDistinctKeys(t *testing.T, s greylist.Store) {
	const goroutines, keysEach = 16, 100
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range keysEach {
				key := fmt.Sprintf("conc/many/%02d/%03d", g, i)
				for range 2 {
					if err := s.Update(t.Context(), key, increment); err != nil {
						t.Errorf("Update(%q): %v", key, err)
						return
					}
				}
				if _, _, err := s.Get(t.Context(), key); err != nil {
					t.Errorf("Get(%q): %v", key, err)
					return
				}
			}
		})
	}
	wg.Wait()

	got := scanAll(t, s, "conc/many/")
	if len(got) != goroutines*keysEach {
		t.Errorf("Scan found %d keys, want %d", len(got), goroutines*keysEach)
	}
	for k, g := range got {
		if g.rec != nil && g.rec.Count != 2 {
			t.Errorf("%q: Count = %d, want 2", k, g.rec.Count)
		}
	}
}
