package memstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/greylist/storetest"
	"github.com/milter-grey/milter-grey/testutil/memstore"
)

// The conformance suite every store passes, on the wall clock. It also
// shows that the suite assumes nothing beyond the greylist.Store contract.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) greylist.Store { return memstore.New(nil) })
}

// Records expire when the test's clock reaches their time to live, not
// the wall clock's.
func TestExpiresOnTheGivenClock(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := memstore.New(func() time.Time { return now })
	ctx := context.Background()
	rec := &greylist.Record{State: greylist.Pending, First: now, Last: now, Count: 1}
	if err := s.Put(ctx, "short", rec, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "forever", rec, 0); err != nil {
		t.Fatal(err)
	}

	_, exp, err := s.Get(ctx, "short")
	if err != nil || !exp.Equal(now.Add(time.Hour)) {
		t.Fatalf("Get(short) = expiry %v, %v; want %v, nil", exp, err, now.Add(time.Hour))
	}
	now = now.Add(time.Hour - time.Millisecond)
	if got := s.Keys(); !slices.Equal(got, []string{"forever", "short"}) {
		t.Fatalf("a millisecond before its TTL: keys %q, want both", got)
	}
	now = now.Add(time.Millisecond)
	if _, _, err := s.Get(ctx, "short"); !errors.Is(err, greylist.ErrNotFound) {
		t.Errorf("Get(short) at its TTL = %v, want ErrNotFound", err)
	}
	if got := s.Keys(); !slices.Equal(got, []string{"forever"}) {
		t.Errorf("at the TTL: keys %q, want [forever]", got)
	}
}
