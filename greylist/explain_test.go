package greylist_test

import (
	"context"
	"testing"
	"time"

	. "github.com/milter-grey/milter-grey/greylist"
)

// Explain tells what Decide would answer, step after step of a triplet's
// life, and never changes the store.
func TestExplainAgreesWithDecideAndWritesNothing(t *testing.T) {
	e, clock, store := newTestEngine(t, Config{AutoWhitelist: 1})
	ctx := context.Background()
	for i, after := range []time.Duration{0, time.Minute, 5 * time.Minute, time.Hour} {
		clock.Advance(after)
		before := snapshot(t, store)
		explained := explain(e, ctx, req())
		if got := snapshot(t, store); len(got) != len(before) {
			t.Fatalf("step %d: Explain changed the store: %d records, was %d", i, len(got), len(before))
		}
		for k, v := range before {
			if snapshot(t, store)[k] != v {
				t.Fatalf("step %d: Explain changed %q", i, k)
			}
		}
		decided := decide(e, ctx, req())
		if explained.Action != decided.Action || explained.Reason != decided.Reason || explained.Key != decided.Key {
			t.Errorf("step %d: Explain = %v/%v %q, Decide = %v/%v %q", i,
				explained.Action, explained.Reason, explained.Key, decided.Action, decided.Reason, decided.Key)
		}
	}
}

// snapshot copies the store's live records and their expiry, to compare
// before and after.
func snapshot(t *testing.T, s Store) map[string]entry {
	t.Helper()
	c := make(map[string]entry)
	err := s.Scan(context.Background(), "", func(k string, rec *Record, expires time.Time) error {
		c[k] = entry{*rec, expires}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type entry struct {
	rec     Record
	expires time.Time
}
