package greylist

import (
	"context"
	"testing"
	"time"
)

// Explain tells what Decide would answer, step after step of a triplet's
// life, and never changes the store.
func TestExplainAgreesWithDecideAndWritesNothing(t *testing.T) {
	e, clock, store := newTestEngine(t, Config{AutoWhitelist: 1})
	ctx := context.Background()
	for i, after := range []time.Duration{0, time.Minute, 5 * time.Minute, time.Hour} {
		clock.Advance(after)
		before := store.snapshot()
		explained := explain(e, ctx, req())
		if got := store.snapshot(); len(got) != len(before) {
			t.Fatalf("step %d: Explain changed the store: %d records, was %d", i, len(got), len(before))
		}
		for k, v := range before {
			if store.snapshot()[k] != v {
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

// snapshot copies the store's entries, to compare before and after.
func (s *memStore) snapshot() map[string]memEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(map[string]memEntry, len(s.m))
	for k, v := range s.m {
		c[k] = v
	}
	return c
}
