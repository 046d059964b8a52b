package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// expiryTolerance is how far a store's reported expiry may be from
// "when the write happened + ttl": stores expire by the wall clock in whole
// seconds and may round either way.
const expiryTolerance = 2 * time.Second

// base returns a fixed instant with a non-zero millisecond part, so a store
// that keeps only seconds fails the round trip.
func base() time.Time { return time.UnixMilli(1_700_000_000_123) }

// sameRecord reports whether a and b hold the same state, times (to the
// instant, ignoring location) and count.
func sameRecord(a, b *greylist.Record) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.State == b.State && a.First.Equal(b.First) && a.Last.Equal(b.Last) && a.Count == b.Count
}

// fmtRecord formats r for failure messages.
func fmtRecord(r *greylist.Record) string {
	if r == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%v first=%s last=%s count=%d", r.State,
		r.First.UTC().Format(time.RFC3339Nano), r.Last.UTC().Format(time.RFC3339Nano), r.Count)
}

func mustPut(t *testing.T, s greylist.Store, key string, rec *greylist.Record, ttl time.Duration) {
	t.Helper()
	if err := s.Put(t.Context(), key, rec, ttl); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func mustGet(t *testing.T, s greylist.Store, key string) (*greylist.Record, time.Time) {
	t.Helper()
	rec, exp, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if rec == nil {
		t.Fatalf("Get(%q) returned a nil record and no error", key)
	}
	return rec, exp
}

// wantRecord checks that key holds want.
func wantRecord(t *testing.T, s greylist.Store, key string, want *greylist.Record) time.Time {
	t.Helper()
	got, exp := mustGet(t, s, key)
	if !sameRecord(got, want) {
		t.Errorf("Get(%q) = %s, want %s", key, fmtRecord(got), fmtRecord(want))
	}
	return exp
}

// wantAbsent checks that Get of key reports ErrNotFound.
func wantAbsent(t *testing.T, s greylist.Store, key string) {
	t.Helper()
	rec, _, err := s.Get(t.Context(), key)
	if !errors.Is(err, greylist.ErrNotFound) {
		t.Errorf("Get(%q) = %s, %v; want ErrNotFound", key, fmtRecord(rec), err)
	}
}

// wantExpiry checks that exp is about ttl after the write that happened
// between before and after.
func wantExpiry(t *testing.T, key string, exp, before, after time.Time, ttl time.Duration) {
	t.Helper()
	lo, hi := before.Add(ttl-expiryTolerance), after.Add(ttl+expiryTolerance)
	if exp.Before(lo) || exp.After(hi) {
		t.Errorf("expiry of %q = %v, want within %v of write time + %v (%v .. %v)",
			key, exp, expiryTolerance, ttl, lo, hi)
	}
}

// wantNoExpiry checks that exp is the zero time (no TTL).
func wantNoExpiry(t *testing.T, key string, exp time.Time) {
	t.Helper()
	if !exp.IsZero() {
		t.Errorf("expiry of %q = %v, want zero time (no expiry)", key, exp)
	}
}

// scanned is what Scan passed to its callback for one key.
type scanned struct {
	rec *greylist.Record
	exp time.Time
}

// scanAll collects every record under prefix, failing on duplicates.
func scanAll(t *testing.T, s greylist.Store, prefix string) map[string]scanned {
	t.Helper()
	got := make(map[string]scanned)
	err := s.Scan(t.Context(), prefix, func(key string, rec *greylist.Record, exp time.Time) error {
		if _, dup := got[key]; dup {
			t.Errorf("Scan(%q) returned %q twice", prefix, key)
		}
		if rec == nil {
			t.Errorf("Scan(%q) returned %q with a nil record", prefix, key)
		}
		got[key] = scanned{rec, exp}
		return nil
	})
	if err != nil {
		t.Fatalf("Scan(%q): %v", prefix, err)
	}
	return got
}

// wantKeys checks that got holds exactly the keys in want.
func wantKeys(t *testing.T, what string, got map[string]scanned, want ...string) {
	t.Helper()
	seen := make(map[string]bool, len(want))
	for _, k := range want {
		seen[k] = true
		if _, ok := got[k]; !ok {
			t.Errorf("%s: missing key %q", what, k)
		}
	}
	for k := range got {
		if !seen[k] {
			t.Errorf("%s: unexpected key %q", what, k)
		}
	}
}
