package greylist_test

// Benchmarks of the per-recipient work of the engine (bench/run.sh runs
// them): Decide on a map in memory (testutil/memstore: the engine's own
// cost), on Badger in memory and on disk (what the store adds), and the key
// building blocks.

import (
	"context"
	"fmt"
	"github.com/milter-grey/milter-grey/envelope"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/greylist/badgerstore"
	"github.com/milter-grey/milter-grey/testutil/memstore"
)

// benchRequest is one recipient of one message in a benchmark.
type benchRequest struct {
	msg  greylist.Message
	rcpt envelope.Address
}

// newBenchRequest is the i-th request of a benchmark: client, sender and
// recipient shaped as the load generator makes them.
func newBenchRequest(i int) benchRequest {
	return benchRequest{
		msg: greylist.Message{
			Client:     netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}),
			ClientName: fmt.Sprintf("mail.m%03d.example.org", i%1000),
			Sender:     envelope.Parse(fmt.Sprintf("s%07x@m%03d.example.org", i, i%1000)),
		},
		rcpt: envelope.Parse(fmt.Sprintf("u%07x@dom%02d.example.net", i, i%16)),
	}
}

// benchDecide runs Decide with the daemon's defaults (auto-whitelist on,
// empty lists, the loopback trusted) on store. "new" decides a triplet
// never seen; "known" one that passed (refreshed within the minute, so
// Decide writes nothing), as most mail of a running server.
func benchDecide(b *testing.B, open func(b *testing.B) greylist.Store) {
	for _, kind := range []string{"new", "known"} {
		b.Run(kind, func(b *testing.B) {
			store := open(b)
			e := greylist.New(store, greylist.Config{AutoWhitelist: greylist.DefaultAutoWhitelist})
			const pool = 10_000
			reqs := make([]benchRequest, pool)
			ctx := context.Background()
			now := time.Now()
			for i := range reqs {
				reqs[i] = newBenchRequest(i)
				if kind == "known" {
					key := greylist.TripletKey(greylist.DefaultClientMask.Key(reqs[i].msg.Client),
						greylist.SenderKey(reqs[i].msg.Sender, "+"), greylist.RecipientKey(reqs[i].rcpt, "+"))
					rec := &greylist.Record{State: greylist.Passed, First: now.Add(-time.Hour), Last: now, Count: 1}
					if err := store.Put(ctx, key, rec, time.Hour); err != nil {
						b.Fatal(err)
					}
				}
			}
			var n atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(n.Add(1))
					req := reqs[i%pool]
					if kind == "new" {
						req.rcpt = envelope.Parse(fmt.Sprintf("n%09d@dom01.example.net", i))
					}
					d := e.Decide(ctx, &req.msg, req.rcpt, greylist.AtRcpt)
					if want := kind == "known"; (d.Action == greylist.Pass) != want || d.Err != nil {
						b.Fatalf("%s: got %v %s %v", kind, d.Action, d.Reason, d.Err)
					}
				}
			})
		})
	}
}

func BenchmarkDecideMapStore(b *testing.B) {
	benchDecide(b, func(*testing.B) greylist.Store { return memstore.New(nil) })
}

func BenchmarkDecideBadgerInMemory(b *testing.B) {
	benchDecide(b, func(b *testing.B) greylist.Store {
		s, err := badgerstore.Open("", badgerstore.Options{InMemory: true})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	})
}

func BenchmarkDecideBadgerOnDisk(b *testing.B) {
	benchDecide(b, func(b *testing.B) greylist.Store {
		s, err := badgerstore.Open(b.TempDir(), badgerstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	})
}

var sink string

func BenchmarkNormalizeSender(b *testing.B) {
	for _, tc := range []struct{ name, addr string }{
		{"plain", "Alice.Smith@Example.COM"},
		{"extension", "alice+news@example.com"},
		{"batv", "prvs=1234abcd=alice@example.com"},
		{"srs0", "SRS0=HHH=TT=example.org=alice@forwarder.example"},
		{"verp", "bounce-12345-678@lists.example.org"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sink = greylist.NormalizeSender(tc.addr, "+")
			}
		})
	}
}

func BenchmarkNormalizeRecipient(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink = greylist.NormalizeRecipient("<Bob+Tag@Example.NET>", "+")
	}
}

func BenchmarkTripletKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink = greylist.TripletKey("198.51.100.0/24", "alice@example.com", "bob@example.net")
	}
}

func BenchmarkClientMaskKey(b *testing.B) {
	for _, tc := range []struct{ name, ip string }{{"ipv4", "198.51.100.7"}, {"ipv6", "2001:db8:1:2:3:4:5:6"}} {
		ip := netip.MustParseAddr(tc.ip)
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sink = greylist.DefaultClientMask.Key(ip)
			}
		})
	}
}
