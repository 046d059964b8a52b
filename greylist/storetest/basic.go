package storetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
)

// basicCases are the single-goroutine behaviours of Get, Put, Update,
// Delete and Scan.
func basicCases() []testCase {
	return []testCase{
		{name: "GetAbsent", run: testGetAbsent},
		{name: "PutGetRoundTrip", run: testPutGetRoundTrip},
		{name: "PutOverwrites", run: testPutOverwrites},
		{name: "UpdateAbsentSeesNil", run: testUpdateAbsentSeesNil},
		{name: "UpdateSeesPrevious", run: testUpdateSeesPrevious},
		{name: "UpdateNilWritesNothing", run: testUpdateNilWritesNothing},
		{name: "UpdateErrorWritesNothing", run: testUpdateErrorWritesNothing},
		{name: "Delete", run: testDelete},
		{name: "ScanPrefix", run: testScanPrefix},
		{name: "ScanStopsOnError", run: testScanStopsOnError},
		{name: "OddKeys", run: testOddKeys},
		{name: "CancelledContext", run: testCancelledContext},
	}
}

func testGetAbsent(t *testing.T, s greylist.Store) {
	wantAbsent(t, s, "never/written")
}

func testPutGetRoundTrip(t *testing.T, s greylist.Store) {
	now := time.Now().Truncate(time.Millisecond)
	tests := []struct {
		name string
		rec  greylist.Record
		ttl  time.Duration
	}{
		{"pending", greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: 1}, time.Hour},
		{"passed", greylist.Record{State: greylist.Passed, First: base(),
			Last: base().Add(36*time.Hour + 456*time.Millisecond), Count: 1<<32 - 1}, 36 * 24 * time.Hour},
		{"now", greylist.Record{State: greylist.Pending, First: now.Add(-time.Minute), Last: now}, 4 * time.Hour},
		{"no-ttl", greylist.Record{State: greylist.Passed, First: base(), Last: now, Count: 7}, 0},
	}
	for _, tt := range tests {
		key := "roundtrip/" + tt.name
		before := time.Now()
		mustPut(t, s, key, &tt.rec, tt.ttl)
		after := time.Now()
		exp := wantRecord(t, s, key, &tt.rec)
		if tt.ttl == 0 {
			wantNoExpiry(t, key, exp)
		} else {
			wantExpiry(t, key, exp, before, after, tt.ttl)
		}
	}
}

func testPutOverwrites(t *testing.T, s greylist.Store) {
	const key = "put/overwrite"
	mustPut(t, s, key, &greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: 1}, time.Hour)
	second := &greylist.Record{State: greylist.Passed, First: base(), Last: base().Add(time.Minute), Count: 2}
	mustPut(t, s, key, second, 0)
	wantNoExpiry(t, key, wantRecord(t, s, key, second))
}

func testUpdateAbsentSeesNil(t *testing.T, s greylist.Store) {
	const key = "update/absent"
	want := &greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: 1}
	calls := 0
	var saw *greylist.Record
	before := time.Now()
	err := s.Update(t.Context(), key, func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
		calls++
		saw = cur
		return want, time.Hour, nil
	})
	after := time.Now()
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if calls == 0 {
		t.Fatal("Update did not call fn")
	}
	if saw != nil {
		t.Errorf("fn saw %s for an absent key, want nil", fmtRecord(saw))
	}
	wantExpiry(t, key, wantRecord(t, s, key, want), before, after, time.Hour)
}

func testUpdateSeesPrevious(t *testing.T, s greylist.Store) {
	const key = "update/previous"
	prev := &greylist.Record{State: greylist.Pending, First: base(), Last: base().Add(time.Second), Count: 3}
	mustPut(t, s, key, prev, time.Hour)
	next := &greylist.Record{State: greylist.Passed, First: base(), Last: base().Add(10 * time.Minute), Count: 4}
	var saw *greylist.Record
	err := s.Update(t.Context(), key, func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
		saw = cur
		return next, 2 * time.Hour, nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if !sameRecord(saw, prev) {
		t.Errorf("fn saw %s, want %s", fmtRecord(saw), fmtRecord(prev))
	}
	wantRecord(t, s, key, next)
}

func testUpdateNilWritesNothing(t *testing.T, s greylist.Store) {
	nothing := func(*greylist.Record) (*greylist.Record, time.Duration, error) { return nil, 0, nil }

	// Absent stays absent.
	if err := s.Update(t.Context(), "update/nil/absent", nothing); err != nil {
		t.Fatalf("Update absent: %v", err)
	}
	wantAbsent(t, s, "update/nil/absent")

	// Present keeps its record and its expiry: ttl 0 from fn must not be
	// taken as "remove the expiry" when nothing is written.
	const key = "update/nil/present"
	rec := &greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: 5}
	before := time.Now()
	mustPut(t, s, key, rec, time.Hour)
	after := time.Now()
	if err := s.Update(t.Context(), key, nothing); err != nil {
		t.Fatalf("Update present: %v", err)
	}
	wantExpiry(t, key, wantRecord(t, s, key, rec), before, after, time.Hour)
}

func testUpdateErrorWritesNothing(t *testing.T, s greylist.Store) {
	errBoom := errors.New("storetest: fn failed")
	fail := func(*greylist.Record) (*greylist.Record, time.Duration, error) {
		// The record returned with an error must be ignored.
		return &greylist.Record{State: greylist.Passed, First: base(), Last: base(), Count: 99}, time.Hour, errBoom
	}

	if err := s.Update(t.Context(), "update/err/absent", fail); !errors.Is(err, errBoom) {
		t.Errorf("Update absent = %v, want an error wrapping %v", err, errBoom)
	}
	wantAbsent(t, s, "update/err/absent")

	const key = "update/err/present"
	rec := &greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: 5}
	mustPut(t, s, key, rec, time.Hour)
	if err := s.Update(t.Context(), key, fail); !errors.Is(err, errBoom) {
		t.Errorf("Update present = %v, want an error wrapping %v", err, errBoom)
	}
	wantRecord(t, s, key, rec)
}

func testDelete(t *testing.T, s greylist.Store) {
	if err := s.Delete(t.Context(), "delete/absent"); err != nil {
		t.Errorf("Delete absent = %v, want nil", err)
	}
	const key, other = "delete/present", "delete/other"
	rec := &greylist.Record{State: greylist.Passed, First: base(), Last: base(), Count: 1}
	mustPut(t, s, key, rec, time.Hour)
	mustPut(t, s, other, rec, time.Hour)
	if err := s.Delete(t.Context(), key); err != nil {
		t.Fatalf("Delete present: %v", err)
	}
	wantAbsent(t, s, key)
	wantRecord(t, s, other, rec) // only the named key goes
	wantKeys(t, "Scan after Delete", scanAll(t, s, "delete/"), other)
	// Deleting twice is still not an error.
	if err := s.Delete(t.Context(), key); err != nil {
		t.Errorf("second Delete = %v, want nil", err)
	}
}

func testScanPrefix(t *testing.T, s greylist.Store) {
	type put struct {
		rec *greylist.Record
		ttl time.Duration
	}
	puts := map[string]put{
		"scan/a/1": {&greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: 1}, time.Hour},
		"scan/a/2": {&greylist.Record{State: greylist.Passed, First: base(), Last: base().Add(time.Hour), Count: 2}, 2 * time.Hour},
		"scan/a/3": {&greylist.Record{State: greylist.Passed, First: base(), Last: base(), Count: 3}, 0},
		"scan/ab":  {&greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: 4}, time.Hour},
		"scan/b/1": {&greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: 5}, time.Hour},
		"scam/a/1": {&greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: 6}, time.Hour},
	}
	before := time.Now()
	for k, p := range puts {
		mustPut(t, s, k, p.rec, p.ttl)
	}
	after := time.Now()

	got := scanAll(t, s, "scan/a/")
	wantKeys(t, `Scan("scan/a/")`, got, "scan/a/1", "scan/a/2", "scan/a/3")
	for k, g := range got {
		p, ok := puts[k]
		if !ok {
			continue
		}
		if !sameRecord(g.rec, p.rec) {
			t.Errorf("Scan gave %q = %s, want %s", k, fmtRecord(g.rec), fmtRecord(p.rec))
		}
		if p.ttl == 0 {
			wantNoExpiry(t, k, g.exp)
		} else {
			wantExpiry(t, k, g.exp, before, after, p.ttl)
		}
	}

	wantKeys(t, `Scan("scan/a")`, scanAll(t, s, "scan/a"), "scan/a/1", "scan/a/2", "scan/a/3", "scan/ab")
	wantKeys(t, `Scan("scan/a/2")`, scanAll(t, s, "scan/a/2"), "scan/a/2")
	wantKeys(t, `Scan("nothing/")`, scanAll(t, s, "nothing/"))
	all := make([]string, 0, len(puts))
	for k := range puts {
		all = append(all, k)
	}
	wantKeys(t, `Scan("")`, scanAll(t, s, ""), all...)
}

func testScanStopsOnError(t *testing.T, s greylist.Store) {
	for _, k := range []string{"stop/1", "stop/2", "stop/3"} {
		mustPut(t, s, k, &greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: 1}, time.Hour)
	}
	errStop := errors.New("storetest: stop scanning")
	calls := 0
	err := s.Scan(t.Context(), "stop/", func(string, *greylist.Record, time.Time) error {
		calls++
		return errStop
	})
	if !errors.Is(err, errStop) {
		t.Errorf("Scan = %v, want an error wrapping %v", err, errStop)
	}
	if calls != 1 {
		t.Errorf("Scan called fn %d times after it returned an error, want 1", calls)
	}
}

// testOddKeys checks that keys are opaque bytes: triplets hold addresses,
// IPs with ports, internationalised names and whatever a client sent.
func testOddKeys(t *testing.T, s greylist.Store) {
	keys := []string{
		"with space/and more",
		"slash/a/b/c/",
		"user@example.org",
		"192.0.2.1:25|[2001:db8::1]:587",
		"ünïcødé/пример.испытание/例え",
		"raw\xff\xfe\x80bytes",
		"nul\x00inside",
		"long/" + strings.Repeat("x", 1000),
	}
	for i, k := range keys {
		mustPut(t, s, k, &greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: uint32(i)}, time.Hour)
	}
	wantKeys(t, `Scan("")`, scanAll(t, s, ""), keys...)
	for i, k := range keys {
		wantRecord(t, s, k, &greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: uint32(i)})
		err := s.Update(t.Context(), k, func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
			if cur == nil {
				return nil, 0, errors.New("storetest: record vanished")
			}
			next := *cur
			next.Count += 100
			return &next, time.Hour, nil
		})
		if err != nil {
			t.Errorf("Update(%q): %v", k, err)
		}
		wantRecord(t, s, k, &greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: uint32(i) + 100})
		if err := s.Delete(t.Context(), k); err != nil {
			t.Errorf("Delete(%q): %v", k, err)
		}
		wantAbsent(t, s, k)
	}
}

// testCancelledContext checks that every call honours a context that is
// already done, for embedded and network stores alike, and does nothing.
func testCancelledContext(t *testing.T, s greylist.Store) {
	const key = "ctx/key"
	rec := &greylist.Record{State: greylist.Pending, First: base(), Last: base(), Count: 1}
	mustPut(t, s, key, rec, time.Hour)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	wantCanceled := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v, want an error wrapping context.Canceled", op, err)
		}
	}

	_, _, err := s.Get(ctx, key)
	wantCanceled("Get", err)

	called := false
	err = s.Update(ctx, key, func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
		called = true
		return &greylist.Record{State: greylist.Passed, First: base(), Last: base(), Count: 2}, time.Hour, nil
	})
	wantCanceled("Update", err)
	if called {
		t.Error("Update with a cancelled context called fn")
	}

	wantCanceled("Put", s.Put(ctx, key, &greylist.Record{State: greylist.Passed, First: base(), Last: base(), Count: 3}, time.Hour))
	wantCanceled("Delete", s.Delete(ctx, key))

	called = false
	wantCanceled("Scan", s.Scan(ctx, "", func(string, *greylist.Record, time.Time) error {
		called = true
		return nil
	}))
	if called {
		t.Error("Scan with a cancelled context called fn")
	}

	wantRecord(t, s, key, rec) // nothing was written or deleted
}
