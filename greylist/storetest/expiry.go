package storetest

import (
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// expiryCases are the behaviours of time to live.
func expiryCases() []testCase {
	return []testCase{
		{name: "TTLExpires", parallel: true, run: testTTLExpires},
		{name: "TTLZeroNeverExpires", run: testTTLZero},
		{name: "UpdateReplacesTTL", run: testUpdateReplacesTTL},
	}
}

// testTTLExpires waits for a one-second TTL to pass. Stores expire by the
// wall clock at one-second granularity, so 2.1 s is past any rounding.
func testTTLExpires(t *testing.T, s greylist.Store) {
	rec := &greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: 1}
	mustPut(t, s, "exp/short", rec, time.Second)
	mustPut(t, s, "exp/long", rec, time.Hour)
	mustPut(t, s, "exp/forever", rec, 0)
	err := s.Update(t.Context(), "exp/updated", func(*greylist.Record) (*greylist.Record, time.Duration, error) {
		return rec, time.Second, nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	// A record lives at least about its TTL: not gone straight away.
	wantRecord(t, s, "exp/short", rec)
	wantRecord(t, s, "exp/updated", rec)

	time.Sleep(2100 * time.Millisecond)

	wantAbsent(t, s, "exp/short")
	wantAbsent(t, s, "exp/updated")
	wantRecord(t, s, "exp/long", rec)
	wantRecord(t, s, "exp/forever", rec)
	wantKeys(t, "Scan after expiry", scanAll(t, s, "exp/"), "exp/long", "exp/forever")

	var saw *greylist.Record
	calls := 0
	err = s.Update(t.Context(), "exp/short", func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
		calls++
		saw = cur
		return &greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: 2}, time.Hour, nil
	})
	if err != nil {
		t.Fatalf("Update after expiry: %v", err)
	}
	if calls == 0 || saw != nil {
		t.Errorf("Update after expiry: fn called %d times, saw %s; want nil", calls, fmtRecord(saw))
	}
	wantRecord(t, s, "exp/short", &greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: 2})
}

func testTTLZero(t *testing.T, s greylist.Store) {
	rec := &greylist.Record{State: greylist.Passed, First: base(), Last: base(), Count: 1}
	mustPut(t, s, "ttl0/put", rec, 0)
	wantNoExpiry(t, "ttl0/put", wantRecord(t, s, "ttl0/put", rec))

	err := s.Update(t.Context(), "ttl0/update", func(*greylist.Record) (*greylist.Record, time.Duration, error) {
		return rec, 0, nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	wantNoExpiry(t, "ttl0/update", wantRecord(t, s, "ttl0/update", rec))
	got := scanAll(t, s, "ttl0/")
	wantKeys(t, `Scan("ttl0/")`, got, "ttl0/put", "ttl0/update")
	for k, g := range got {
		wantNoExpiry(t, k, g.exp)
	}
}

// testUpdateReplacesTTL checks that the ttl an Update returns replaces the
// old expiry, including 0 (no expiry) and back.
func testUpdateReplacesTTL(t *testing.T, s greylist.Store) {
	const key = "ttl/replace"
	rec := &greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: 1}
	mustPut(t, s, key, rec, time.Hour)

	for _, ttl := range []time.Duration{36 * 24 * time.Hour, 0, 30 * time.Minute, 5 * time.Minute} {
		before := time.Now()
		err := s.Update(t.Context(), key, func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
			return cur, ttl, nil
		})
		after := time.Now()
		if err != nil {
			t.Fatalf("Update ttl %v: %v", ttl, err)
		}
		exp := wantRecord(t, s, key, rec)
		if ttl == 0 {
			wantNoExpiry(t, key, exp)
		} else {
			wantExpiry(t, key, exp, before, after, ttl)
		}
	}
}
