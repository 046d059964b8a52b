package ttlcache

import (
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)

func TestEntriesLiveForTheirTTL(t *testing.T) {
	c := New[string](time.Minute, 10)
	c.Put("a", "first", t0)
	tests := []struct {
		name string
		at   time.Time
		ok   bool
	}{
		{"at once", t0, true},
		{"just before the TTL", t0.Add(time.Minute - time.Nanosecond), true},
		{"at the TTL", t0.Add(time.Minute), false},
		{"later", t0.Add(time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := c.Get("a", tt.at)
			if ok != tt.ok || (ok && v != "first") {
				t.Errorf("Get = %q, %v; want found %v", v, ok, tt.ok)
			}
		})
	}
	if _, ok := c.Get("b", t0); ok {
		t.Error("Get of a key never put found it")
	}
}

func TestPutReplacesAndRestartsTheTTL(t *testing.T) {
	c := New[int](time.Minute, 10)
	c.Put("a", 1, t0)
	c.Put("a", 2, t0.Add(30*time.Second))
	if v, ok := c.Get("a", t0.Add(80*time.Second)); !ok || v != 2 {
		t.Errorf("Get after the second Put = %d, %v; want 2, true", v, ok)
	}
}

func TestDeleteAndClear(t *testing.T) {
	c := New[bool](time.Minute, 10)
	c.Put("a", true, t0)
	c.Put("b", true, t0)
	c.Delete("a")
	if _, ok := c.Get("a", t0); ok {
		t.Error("a deleted key is still there")
	}
	if _, ok := c.Get("b", t0); !ok {
		t.Error("Delete dropped another key")
	}
	c.Clear()
	if n := c.Len(); n != 0 {
		t.Errorf("Len after Clear = %d", n)
	}
}

func TestBounded(t *testing.T) {
	for _, size := range []int{1, 3, 4, 100} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c := New[int](time.Minute, size)
			for i := range 10 * size {
				key := fmt.Sprint(i)
				c.Put(key, i, t0)
				if n := c.Len(); n > size {
					t.Fatalf("after %d Puts: %d entries, bound %d", i+1, n, size)
				}
				if v, ok := c.Get(key, t0); !ok || v != i {
					t.Fatalf("the entry just put is gone: %d, %v", v, ok)
				}
			}
		})
	}
}

// A full cache drops its expired entries before live ones.
func TestFullCacheDropsExpiredFirst(t *testing.T) {
	c := New[int](time.Minute, 8)
	for i := range 4 {
		c.Put(fmt.Sprint("old", i), i, t0)
	}
	later := t0.Add(2 * time.Minute)
	for i := range 4 {
		c.Put(fmt.Sprint("new", i), i, later)
	}
	c.Put("one more", 0, later)
	for i := range 4 {
		if _, ok := c.Get(fmt.Sprint("new", i), later); !ok {
			t.Errorf("live entry new%d dropped while expired ones were there", i)
		}
	}
	if n := c.Len(); n != 5 {
		t.Errorf("Len = %d, want 5 (the four live entries and the new one)", n)
	}
}

// A zero or negative bound still holds the latest entry.
func TestSizeAtLeastOne(t *testing.T) {
	c := New[int](time.Minute, 0)
	c.Put("a", 1, t0)
	c.Put("b", 2, t0)
	if v, ok := c.Get("b", t0); !ok || v != 2 || c.Len() != 1 {
		t.Errorf("Get(b) = %d, %v with %d entries; want 2, true with 1", v, ok, c.Len())
	}
}
