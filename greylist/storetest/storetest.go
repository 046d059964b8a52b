// Package storetest is a conformance suite every greylist.Store must pass.
//
// A store's own tests call Run with a function that opens a fresh, empty
// store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) greylist.Store {
//			s, err := mystore.Open(t.TempDir())
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// Ownership: the suite closes every store it opens, exactly once, in a
// t.Cleanup registered right after open returns, and fails the subtest if
// Close returns an error. open must therefore not close the store itself; it
// may register cleanups for what it created (t.TempDir, a test server):
// cleanups run last-in first-out, so those run after Close.
//
// Expiry is checked against the wall clock with one-second granularity, so
// the one case that waits for a TTL to pass sleeps about two seconds; it
// calls t.Parallel, so it overlaps with the other parallel tests of the
// package (make the test that calls Run parallel too). Everything else
// takes well under a second on an embedded store.
package storetest

import (
	"testing"

	"github.com/milter-grey/milter-grey/greylist"
)

// testCase is one named behaviour of a Store.
type testCase struct {
	name string
	// parallel cases call t.Parallel: they wait on the wall clock.
	parallel bool
	run      func(t *testing.T, s greylist.Store)
}

// Run runs the conformance suite as subtests of t, each on a fresh store
// returned by open. See the package documentation for who closes it.
func Run(t *testing.T, open func(t *testing.T) greylist.Store) {
	t.Helper()
	var cases []testCase
	cases = append(cases, basicCases()...)
	cases = append(cases, expiryCases()...)
	cases = append(cases, concurrencyCases()...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.parallel {
				t.Parallel()
			}
			c.run(t, openStore(t, open))
		})
	}
}

// openStore opens a store and arranges for it to be closed once.
func openStore(t *testing.T, open func(t *testing.T) greylist.Store) greylist.Store {
	t.Helper()
	s := open(t)
	if s == nil {
		t.Fatal("open returned a nil Store")
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}
