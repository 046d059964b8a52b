package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/config"
	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/testutil/testredis"
)

// A site moving from one host (Badger) to several (Redis), and back, keeps
// every triplet and what is left of its lifetime.
func TestCopyStoreBadgerRedisBadgerKeepsEntriesAndExpiry(t *testing.T) {
	rs := testredis.Start(t)
	c := config.Default()
	c.RedisPrefix = "copytest:"
	log := slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))
	dir1 := filepath.Join(t.TempDir(), "one")
	dir2 := filepath.Join(t.TempDir(), "two")
	ctx := context.Background()

	// Entries with several lifetimes, one without expiry.
	src, err := openStore(dir1, c, log)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	want := map[string]*greylist.Record{}
	ttls := map[string]time.Duration{}
	for i := 0; i < 200; i++ {
		key := greylist.TripletKey(fmt.Sprintf("192.0.2.%d", i%250), fmt.Sprintf("s%c@example.com", 'a'+i%26), fmt.Sprintf("r%d@example.net", i))
		rec := &greylist.Record{State: greylist.Pending, First: now.Add(-time.Duration(i) * time.Second).Truncate(time.Millisecond), Count: uint32(i%3 + 1)}
		rec.Last = rec.First
		ttl := time.Duration(i+1) * time.Hour
		if i%50 == 0 {
			rec.State, ttl = greylist.Passed, 0
		}
		if err := src.Put(ctx, key, rec, ttl); err != nil {
			t.Fatal(err)
		}
		want[key], ttls[key] = rec, ttl
	}
	src.Close()

	copyOK := func(from, to string) {
		t.Helper()
		n, err := copyStore(c, from, to, log)
		if err != nil || n != len(want) {
			t.Fatalf("copy %s -> %s: %d records, %v; want %d", from, to, n, err, len(want))
		}
	}
	copyOK(dir1, rs.URL())
	copyOK(rs.URL(), dir2)

	dst, err := openStore(dir2, c, log)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	got := 0
	err = dst.Scan(ctx, "", func(key string, rec *greylist.Record, expires time.Time) error {
		got++
		w, ok := want[key]
		if !ok {
			t.Errorf("unexpected key %q", key)
			return nil
		}
		if rec.State != w.State || !rec.First.Equal(w.First) || !rec.Last.Equal(w.Last) || rec.Count != w.Count {
			t.Errorf("%q: got %+v, want %+v", key, rec, w)
		}
		if ttls[key] == 0 {
			if !expires.IsZero() {
				t.Errorf("%q: expires %v, want never", key, expires)
			}
			return nil
		}
		// To a few seconds: a record is written three times with the time
		// it has left (Badger, Redis, Badger), and each Badger write keeps
		// whole seconds, rounded up; the copies' own time adds to that.
		if d := expires.Sub(now.Add(ttls[key])); d < -time.Second || d > 3*time.Second {
			t.Errorf("%q: expires %v, want %v (off by %v)", key, expires, now.Add(ttls[key]), d)
		}
		return nil
	})
	if err != nil || got != len(want) {
		t.Fatalf("scan: %d records, %v; want %d", got, err, len(want))
	}
}

func TestCopyStoreCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"copy-store", "-from", t.TempDir(), "-to", "http://nowhere"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "want a directory") {
		t.Errorf("bad -to: exit %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"copy-store", "-from", t.TempDir()}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "-to") {
		t.Errorf("missing -to: exit %d, stderr %q", code, errOut.String())
	}
	out.Reset()
	from, to := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	if code := run([]string{"copy-store", "-from", from, "-to", to}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "copied 0 records") {
		t.Errorf("empty copy: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}
