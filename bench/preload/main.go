// Command preload fills a milter-grey store with passed triplets, for the
// "1 M triplets" figures of bench/run.sh: it writes -n records directly
// with the store's Put (Badger directory or Redis URL, in parallel), under
// the keys the daemon builds (greylist.TripletKey of the masked client
// network and the normalised sender and recipient, with the daemon's
// default masks and recipient delimiter unless told otherwise), and
// writes an evenly spread sample of them to -known-out, the known-triplets
// file that bench/load -known-file reads.
//
// Triplets come in envelopes of -rcpts recipients (one client and sender);
// the same -seed gives the same triplets. Each record is a passed triplet
// first seen up to 30 days ago and last used up to a day ago, with the
// rest of max_age to live, as a running daemon would have left it.
//
//	go run ./bench/preload -store /tmp/db -n 1000000 -known-out known.txt
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/milter-grey/milter-grey/bench/internal/loadgen"
	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/greylist/badgerstore"
	"github.com/milter-grey/milter-grey/greylist/redisstore"
)

const maxTriplets = 100_000_000

func main() {
	var (
		store      = flag.String("store", "", "Badger `directory` or redis:// URL (loopback) to fill")
		prefix     = flag.String("redis-prefix", redisstore.DefaultPrefix, "Redis key prefix (the daemon's redis_prefix)")
		n          = flag.Int("n", 1_000_000, "triplets to write")
		rcpts      = flag.Int("rcpts", 10, "recipients per envelope (client and sender)")
		workers    = flag.Int("workers", 16, "parallel writers")
		sample     = flag.Int("sample", 50_000, "triplets to write to -known-out")
		knownOut   = flag.String("known-out", "", "write a sample of the triplets to `file` (bench/load -known-file)")
		seed       = flag.Uint64("seed", 7, "random seed")
		ipv6       = flag.Float64("ipv6", 0.2, "fraction of IPv6 clients")
		v4         = flag.String("ipv4-prefixes", "198.18.0.0/15", "IPv4 client prefixes")
		v6         = flag.String("ipv6-prefixes", "2001:db8::/32", "IPv6 client prefixes")
		mask4      = flag.Int("ipv4-mask", greylist.DefaultClientMask.IPv4, "the daemon's ipv4_mask")
		mask6      = flag.Int("ipv6-mask", greylist.DefaultClientMask.IPv6, "the daemon's ipv6_mask")
		delimiters = flag.String("recipient-delimiter", "+", "the daemon's recipient_delimiter")
		maxAge     = flag.Duration("max-age", greylist.DefaultPolicy.MaxAge, "the daemon's max_age")
	)
	flag.Parse()
	die := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "preload: "+format+"\n", a...)
		os.Exit(1)
	}
	if *store == "" || *n < 1 || *n > maxTriplets || *rcpts < 1 || *rcpts > loadgen.MaxRcpts ||
		*workers < 1 || *workers > 256 || *sample < 0 || *sample > loadgen.MaxKnownTriplets {
		die("need -store, 1 ≤ -n ≤ %d, 1 ≤ -rcpts ≤ %d, 1 ≤ -workers ≤ 256, -sample ≤ %d",
			maxTriplets, loadgen.MaxRcpts, loadgen.MaxKnownTriplets)
	}
	pools := loadgen.Pools{IPv6Fraction: *ipv6}
	var err error
	if pools.IPv4, err = loadgen.ParsePrefixes(*v4, false); err != nil {
		die("-ipv4-prefixes: %v", err)
	}
	if pools.IPv6, err = loadgen.ParsePrefixes(*v6, true); err != nil {
		die("-ipv6-prefixes: %v", err)
	}
	mask := greylist.ClientMask{IPv4: *mask4, IPv6: *mask6}
	if err := mask.Validate(); err != nil {
		die("%v", err)
	}

	ctx := context.Background()
	var st greylist.Store
	if isRedis(*store) {
		if err := checkLoopback(*store); err != nil {
			die("%v", err)
		}
		st, err = redisstore.Open(ctx, *store, redisstore.Options{Prefix: *prefix, PoolSize: *workers})
	} else {
		st, err = badgerstore.Open(*store, badgerstore.Options{})
	}
	if err != nil {
		die("%v", err)
	}

	envelopes := (*n + *rcpts - 1) / *rcpts
	// Sample every step-th envelope, whole.
	step := envelopes + 1
	if *sample > 0 {
		step = max(1, envelopes/max(1, *sample / *rcpts))
	}
	now := time.Now()
	start := now
	var written atomic.Int64
	var mu sync.Mutex
	var sampled []loadgen.Envelope
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for w := range *workers {
		wg.Go(func() {
			for i := w; i < envelopes && firstErr.Load() == nil; i += *workers {
				r := rand.New(rand.NewPCG(*seed, uint64(i)))
				env := loadgen.Envelope{Client: pools.RandomClient(r), Sender: loadgen.RandomSender(r)}
				count := min(*rcpts, *n-i**rcpts)
				client := mask.Key(env.Client)
				sender := greylist.NormalizeSender(env.Sender, *delimiters)
				for range count {
					rcpt := loadgen.RandomRcpt(r)
					env.Rcpts = append(env.Rcpts, rcpt)
					first := now.Add(-time.Hour - time.Duration(r.Int64N(int64(29*24*time.Hour))))
					last := now.Add(-time.Duration(r.Int64N(int64(24 * time.Hour))))
					rec := &greylist.Record{State: greylist.Passed, First: first, Last: last, Count: 1 + uint32(r.IntN(50))}
					key := greylist.TripletKey(client, sender, greylist.NormalizeRecipient(rcpt, *delimiters))
					if err := st.Put(ctx, key, rec, *maxAge-now.Sub(last)); err != nil {
						firstErr.CompareAndSwap(nil, &err)
						return
					}
				}
				if i%step == 0 && *knownOut != "" {
					mu.Lock()
					sampled = append(sampled, env)
					mu.Unlock()
				}
				if v := written.Add(int64(count)); v%100_000 < int64(count) {
					fmt.Fprintf(os.Stderr, "preload: %d triplets, %.0f/s\n", v, float64(v)/time.Since(start).Seconds())
				}
			}
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		st.Close()
		die("%v", *p)
	}
	writeTime := time.Since(start)
	if err := st.Close(); err != nil {
		die("%v", err)
	}
	fmt.Fprintf(os.Stderr, "preload: %d triplets in %.1fs (%.0f/s), closed in %.1fs\n",
		written.Load(), writeTime.Seconds(), float64(written.Load())/writeTime.Seconds(), (time.Since(start) - writeTime).Seconds())
	if *knownOut != "" {
		f, err := os.Create(*knownOut)
		if err != nil {
			die("%v", err)
		}
		if err := loadgen.WriteKnown(f, sampled); err != nil {
			die("%s: %v", *knownOut, err)
		}
		if err := f.Close(); err != nil {
			die("%v", err)
		}
		fmt.Fprintf(os.Stderr, "preload: %d known triplets in %s\n", loadgen.Triplets(sampled), *knownOut)
	}
}

func isRedis(s string) bool {
	return strings.HasPrefix(s, "redis://") || strings.HasPrefix(s, "rediss://") || strings.HasPrefix(s, "unix://")
}

// checkLoopback refuses a Redis URL whose host is not on loopback (a
// unix:// socket is local).
func checkLoopback(s string) error {
	if strings.HasPrefix(s, "unix://") {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	port := u.Port()
	if port == "" {
		port = "6379"
	}
	_, _, err = loadgen.ParseAddr("inet:" + net.JoinHostPort(u.Hostname(), port))
	return err
}
