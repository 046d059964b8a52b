package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/greylist/storetest"
)

// openTest opens a store in a fresh directory; the caller closes it.
func openTest(t testing.TB) (*Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "db") // also checks that Open creates it
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, dir
}

func TestConformanceOnDisk(t *testing.T) {
	t.Parallel() // overlap the expiry waits of both runs
	storetest.Run(t, func(t *testing.T) greylist.Store {
		s, _ := openTest(t)
		return s
	})
}

func TestConformanceInMemory(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) greylist.Store {
		s, err := Open("", Options{InMemory: true})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func TestOpenInMemoryRejectsDir(t *testing.T) {
	if s, err := Open(t.TempDir(), Options{InMemory: true}); err == nil {
		s.Close()
		t.Fatal("Open with InMemory and a dir succeeded")
	}
}

func TestReopenKeepsData(t *testing.T) {
	s, dir := openTest(t)
	ctx := t.Context()
	rec := &greylist.Record{State: greylist.Passed, First: time.UnixMilli(1_700_000_000_123),
		Last: time.UnixMilli(1_700_000_360_456), Count: 42}
	if err := s.Put(ctx, "ttl", rec, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "forever", rec, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "deleted", rec, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	_, wantExp, err := s.Get(ctx, "ttl")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	for _, key := range []string{"ttl", "forever"} {
		got, exp, err := s.Get(ctx, key)
		if err != nil {
			t.Fatalf("Get(%q) after reopen: %v", key, err)
		}
		if got.State != rec.State || !got.First.Equal(rec.First) || !got.Last.Equal(rec.Last) || got.Count != rec.Count {
			t.Errorf("Get(%q) after reopen = %+v, want %+v", key, got, rec)
		}
		want := wantExp
		if key == "forever" {
			want = time.Time{}
		}
		if !exp.Equal(want) {
			t.Errorf("expiry of %q after reopen = %v, want %v", key, exp, want)
		}
	}
	if _, _, err := s.Get(ctx, "deleted"); !errors.Is(err, greylist.ErrNotFound) {
		t.Errorf("Get(deleted) after reopen = %v, want ErrNotFound", err)
	}
}

func TestOpenLockedDir(t *testing.T) {
	s, dir := openTest(t)
	defer s.Close()

	s2, err := Open(dir, Options{})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of the same directory succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second Open = %v, want an error wrapping ErrLocked", err)
	}
	for _, want := range []string{dir, "another milter-grey uses it?", "locked"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// The first store is unharmed.
	if err := s.Put(t.Context(), "k", &greylist.Record{State: greylist.Pending}, 0); err != nil {
		t.Errorf("Put on the first store: %v", err)
	}
}

func TestCloseTwice(t *testing.T) {
	s, _ := openTest(t)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	// Calls after Close fail cleanly.
	if _, _, err := s.Get(t.Context(), "k"); err == nil || errors.Is(err, greylist.ErrNotFound) {
		t.Errorf("Get after Close = %v, want an error", err)
	}
	err := s.Update(t.Context(), "k", func(*greylist.Record) (*greylist.Record, time.Duration, error) {
		return &greylist.Record{State: greylist.Pending}, 0, nil
	})
	if err == nil {
		t.Error("Update after Close succeeded")
	}
}

func TestBadRecord(t *testing.T) {
	s, _ := openTest(t)
	defer s.Close()
	ctx := t.Context()
	const key = "bad/record"
	garbage := []byte{0xff, 0x00, 0x13}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(key), garbage) }); err != nil {
		t.Fatal(err)
	}

	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, greylist.ErrBadRecord) {
			t.Errorf("%s = %v, want an error wrapping ErrBadRecord", op, err)
		}
		if err != nil && !strings.Contains(err.Error(), key) {
			t.Errorf("%s error %q does not name the key", op, err)
		}
	}
	_, _, err := s.Get(ctx, key)
	check("Get", err)

	called := false
	err = s.Update(ctx, key, func(*greylist.Record) (*greylist.Record, time.Duration, error) {
		called = true
		return &greylist.Record{State: greylist.Pending}, 0, nil
	})
	check("Update", err)
	if called {
		t.Error("Update called fn on an undecodable record")
	}
	check("Scan", s.Scan(ctx, "bad/", func(string, *greylist.Record, time.Time) error { return nil }))

	// The bad value is left alone for an admin, who can delete it.
	if err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(key))
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err == nil && !bytes.Equal(v, garbage) {
			err = fmt.Errorf("value is now %x", v)
		}
		return err
	}); err != nil {
		t.Errorf("bad record changed: %v", err)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, _, err := s.Get(ctx, key); !errors.Is(err, greylist.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
}

// TestWritersWaitForUpdate: a Put or Delete of a key that an Update is
// between reading and writing waits for it, so the Update's blind write
// cannot undo them (the atomicity Update relies on, without Badger's
// conflict detection). Each writer starts while fn runs; the sleep only
// gives it time to reach the lock, and without the lock it would be
// overwritten by the Update and the test would fail.
func TestWritersWaitForUpdate(t *testing.T) {
	s, err := Open("", Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	rec := func(n uint32) *greylist.Record { return &greylist.Record{State: greylist.Pending, Count: n} }

	for _, tc := range []struct {
		name  string
		write func(key string) error
		want  uint32 // 0: absent
	}{
		{"put", func(key string) error { return s.Put(ctx, key, rec(10), 0) }, 10},
		{"delete", func(key string) error { return s.Delete(ctx, key) }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "wait-" + tc.name
			done := make(chan error, 1)
			err := s.Update(ctx, key, func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
				go func() { done <- tc.write(key) }()
				time.Sleep(20 * time.Millisecond)
				return rec(1), 0, nil
			})
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			if err := <-done; err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			got, _, err := s.Get(ctx, key)
			switch {
			case tc.want == 0 && !errors.Is(err, greylist.ErrNotFound):
				t.Errorf("Get = %+v, %v; want the Delete to have come last", got, err)
			case tc.want != 0 && (err != nil || got.Count != tc.want):
				t.Errorf("Get = %+v, %v; want the Put's count %d", got, err, tc.want)
			}
		})
	}

	t.Run("context cancelled before the write", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		const key = "cancelled"
		err := s.Update(ctx, key, func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
			cancel()
			return rec(1), 0, nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Update = %v, want context.Canceled", err)
		}
		if _, _, err := s.Get(t.Context(), key); !errors.Is(err, greylist.ErrNotFound) {
			t.Errorf("Get after a cancelled Update = %v, want ErrNotFound", err)
		}
	})
}

func TestPutRejects(t *testing.T) {
	s, err := Open("", Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Put(t.Context(), "k", nil, 0); err == nil {
		t.Error("Put of a nil record succeeded")
	}
	if err := s.Put(t.Context(), "k", &greylist.Record{State: greylist.Pending}, -time.Second); err == nil {
		t.Error("Put with a negative ttl succeeded")
	}
}

func TestExpiryUnix(t *testing.T) {
	tests := []struct {
		now  time.Time
		ttl  time.Duration
		want int64
	}{
		{time.Unix(100, 0), time.Second, 101},
		{time.Unix(100, 1), time.Second, 102},
		{time.Unix(100, 999_999_999), time.Second, 102},
		{time.Unix(100, 500_000_000), 500 * time.Millisecond, 101},
		{time.Unix(100, 0), 24 * time.Hour, 100 + 86400},
	}
	for _, tt := range tests {
		if got := expiryUnix(tt.now, tt.ttl); got != uint64(tt.want) {
			t.Errorf("expiryUnix(%v, %v) = %d, want %d", tt.now.UnixNano(), tt.ttl, got, tt.want)
		}
	}
}

// TestGCLoop runs the value log GC loop a few times and checks that Close
// stops it.
func TestGCLoop(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := open(t.TempDir(), Options{Logger: log}, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := s.Put(t.Context(), fmt.Sprint(i), &greylist.Record{State: greylist.Pending}, 0); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if strings.Contains(buf.String(), "GC failed") {
		t.Errorf("GC logged a failure:\n%s", buf.String())
	}
}

func TestLoggerLevels(t *testing.T) {
	var buf bytes.Buffer
	l := newLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Debugf("debug %d", 1)
	l.Infof("info %d", 2)
	l.Warningf("warn %d\n", 3)
	l.Errorf("error %d", 4)
	out := buf.String()
	for _, want := range []string{`level=WARN msg="warn 3" component=badger`, `level=ERROR msg="error 4" component=badger`} {
		if !strings.Contains(out, want) {
			t.Errorf("log output lacks %q:\n%s", want, out)
		}
	}
	for _, not := range []string{"debug 1", "info 2"} {
		if strings.Contains(out, not) {
			t.Errorf("log output has %q:\n%s", not, out)
		}
	}
	if newLogger(nil) != nil {
		t.Error("newLogger(nil) is not nil")
	}
}

// BenchmarkUpdate measures Update on an on-disk store: "new" creates a key
// per call (the first delivery of a triplet), "existing" increments keys
// from a small hot set shared by all goroutines, so it includes conflicts.
func BenchmarkUpdate(b *testing.B) {
	inc := func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
		if cur == nil {
			now := time.Now()
			return &greylist.Record{State: greylist.Pending, First: now, Last: now, Count: 1}, 24 * time.Hour, nil
		}
		next := *cur
		next.Count++
		return &next, 24 * time.Hour, nil
	}
	b.Run("new", func(b *testing.B) {
		s, _ := openTest(b)
		defer s.Close()
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				key := fmt.Sprintf("192.0.2.%d|sender%d@example.org|rcpt@example.net", n.Load()%256, n.Add(1))
				if err := s.Update(b.Context(), key, inc); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("existing", func(b *testing.B) {
		s, _ := openTest(b)
		defer s.Close()
		const hot = 1000
		keys := make([]string, hot)
		for i := range keys {
			keys[i] = fmt.Sprintf("192.0.2.%d|sender%d@example.org|rcpt@example.net", i%256, i)
			if err := s.Update(b.Context(), keys[i], inc); err != nil {
				b.Fatal(err)
			}
		}
		var n atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := s.Update(b.Context(), keys[n.Add(1)%hot], inc); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
