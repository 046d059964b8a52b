package keylock

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// Writers of one key run one at a time: a read-modify-write of a plain
// counter under the lock loses no increment (run with -race to see why
// it matters).
func TestSerialisesOneKey(t *testing.T) {
	l := New()
	ctx := context.Background()
	var n int
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 200 {
				if err := l.Lock(ctx, "t:key"); err != nil {
					t.Error(err)
					return
				}
				v := n
				n = v + 1
				l.Unlock("t:key")
			}
		})
	}
	wg.Wait()
	if n != 16*200 {
		t.Errorf("counter = %d, want %d", n, 16*200)
	}
}

// A caller waiting for a held lock gives up when its context ends, with
// the context's error, and the holder's Unlock still frees the lock.
func TestWaitEndsWithTheContext(t *testing.T) {
	l := New()
	if err := l.Lock(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Lock(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock of a held key = %v, want Canceled", err)
	}
	l.Unlock("k")
	if err := l.Lock(context.Background(), "k"); err != nil {
		t.Fatalf("Lock after Unlock = %v", err)
	}
	l.Unlock("k")
}
