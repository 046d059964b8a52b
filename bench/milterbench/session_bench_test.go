package milterbench

// To profile the daemon's side of a benchmark:
//
//	go test -run '^$' -bench 'Session/milter-grey/rcpts=10' -benchtime 20000x \
//	    -cpuprofile cpu.out -memprofile mem.out ./bench/milterbench/
//	go tool pprof -top -tagfocus side=server milterbench.test cpu.out   # the daemon's side only
//	go tool pprof -top -sample_index alloc_space -focus HandleMilterCommands milterbench.test mem.out
//
// The server's goroutines (go-milter's per connection, Badger's) carry
// the pprof label side=server, the load generator's side=client.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/milter-grey/milter-grey/bench/internal/baseline"
	"github.com/milter-grey/milter-grey/bench/internal/loadgen"
	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/greylist/badgerstore"
	"github.com/milter-grey/milter-grey/milter"
)

// benchDelay is the greylisting delay of the benchmarks' servers: short,
// so that the warm-up's retries pass at once.
const benchDelay = 20 * time.Millisecond

// benchServe serves a milter-grey Server (or, with bare, the baseline) on
// a loopback port until the benchmark ends, under the label side=server.
func benchServe(b *testing.B, bare bool) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var closeAll func()
	pprof.Do(context.Background(), pprof.Labels("side", "server"), func(context.Context) {
		if bare {
			srv := baseline.New(baseline.Config{Delay: benchDelay})
			go srv.Serve(ln)
			closeAll = func() { srv.Close() }
			return
		}
		dir := b.TempDir()
		store, err := badgerstore.Open(filepath.Join(dir, "db"), badgerstore.Options{}) // its goroutines are labelled too
		if err != nil {
			b.Fatal(err)
		}
		logf, err := os.Create(filepath.Join(dir, "decisions.log"))
		if err != nil {
			b.Fatal(err)
		}
		log := slog.New(slog.NewTextHandler(logf, nil))
		engine := greylist.New(store, greylist.Config{
			Policy:        greylist.Policy{Delay: benchDelay},
			AutoWhitelist: greylist.DefaultAutoWhitelist,
			Logger:        log,
		})
		l := &greylist.Lists{Trusted: &greylist.Networks{}}
		for _, p := range []string{"127.0.0.0/8", "::1/128"} {
			if err := l.Trusted.Add(p); err != nil {
				b.Fatal(err)
			}
		}
		engine.SetLists(l)
		srv, err := milter.NewServer(milter.Config{Engine: engine, AddHeader: true, Hostname: "bench.test", Log: log})
		if err != nil {
			b.Fatal(err)
		}
		go srv.Serve(ln)
		closeAll = func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
			store.Close()
			logf.Close()
		}
	})
	b.Cleanup(closeAll)
	return "inet:" + ln.Addr().String()
}

// BenchmarkSession runs whole SMTP sessions (one milter connection each)
// as bench/run.sh's load does: 16 in flight, half the recipients new and
// half known. One op is one session; decisions/s and the RCPT latency
// quantiles are reported as extra metrics. "baseline" is the bare
// in-memory milter of bench/internal/baseline, the stack's limit.
func BenchmarkSession(b *testing.B) {
	for _, impl := range []string{"baseline", "milter-grey"} {
		for _, rcpts := range []int{1, 10} {
			b.Run(fmt.Sprintf("%s/rcpts=%d", impl, rcpts), func(b *testing.B) {
				addr := benchServe(b, impl == "baseline")
				known := loadgen.NewKnownPool(42, 200, 10, loadgen.DefaultPools)
				if _, err := loadgen.Warmup(b.Context(), addr, 16, 10*time.Second, 3*benchDelay, known); err != nil {
					b.Fatal(err)
				}
				cfg := loadgen.Config{
					Addr: addr, Concurrency: 16, Sessions: b.N, Rcpts: rcpts, NewFraction: 0.5,
					Pools: loadgen.DefaultPools, Seed: uint64(b.N), Timeout: 10 * time.Second, MaxErrors: 1,
				}
				b.ResetTimer()
				var rep *loadgen.Report
				var err error
				pprof.Do(b.Context(), pprof.Labels("side", "client"), func(ctx context.Context) {
					rep, err = loadgen.Run(ctx, cfg, known)
				})
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				if rep.Errors > 0 || rep.KnownGreylisted > 0 {
					b.Fatalf("%d errors %v, %d known triplets greylisted", rep.Errors, rep.ErrorSamples, rep.KnownGreylisted)
				}
				b.ReportMetric(rep.DecisionsPerS, "decisions/s")
				b.ReportMetric(rep.Latency.P50, "p50-µs")
				b.ReportMetric(rep.Latency.P99, "p99-µs")
			})
		}
	}
}

// BenchmarkRcpt is one RCPT round trip on an open session (connect, HELO
// and MAIL done once): the latency a recipient adds to an SMTP
// transaction, one at a time. "new" recipients are greylisted (451),
// "known" ones pass.
func BenchmarkRcpt(b *testing.B) {
	for _, impl := range []string{"baseline", "milter-grey"} {
		for _, kind := range []string{"new", "known"} {
			b.Run(impl+"/"+kind, func(b *testing.B) {
				addr := benchServe(b, impl == "baseline")
				const pool = 1000
				env := loadgen.Envelope{Client: loadgen.DefaultPools.IPv4[0].Addr().Next(), Sender: "sbench@m001.example.org"}
				for i := range pool {
					env.Rcpts = append(env.Rcpts, fmt.Sprintf("u%06d@dom01.example.net", i))
				}
				if kind == "known" {
					if _, err := loadgen.Warmup(b.Context(), addr, 1, 10*time.Second, 3*benchDelay, []loadgen.Envelope{env}); err != nil {
						b.Fatal(err)
					}
				}
				network, address, _ := loadgen.ParseAddr(addr)
				c := gomilter.NewClientWithOptions(network, address, gomilter.ClientOptions{
					ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
					ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader,
				})
				s, err := c.Session()
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				must := func(a *gomilter.Action, err error) *gomilter.Action {
					if err != nil {
						b.Fatal(err)
					}
					return a
				}
				must(s.Conn("mail.m001.example.org", gomilter.FamilyInet, 25, env.Client.String()))
				must(s.Helo("mail.m001.example.org"))
				must(s.Mail(env.Sender, nil))
				want := gomilter.ActContinue
				if kind == "new" {
					want = gomilter.ActReplyCode
				}
				b.ReportAllocs()
				b.ResetTimer()
				pprof.Do(b.Context(), pprof.Labels("side", "client"), func(context.Context) {
					for i := 0; b.Loop(); i++ {
						rcpt := env.Rcpts[i%pool]
						if kind == "new" {
							rcpt = fmt.Sprintf("n%09d@dom01.example.net", i)
						}
						if err := s.Macros(gomilter.CodeRcpt, "{rcpt_addr}", rcpt); err != nil {
							b.Fatal(err)
						}
						if a := must(s.Rcpt(rcpt, nil)); a.Code != want {
							b.Fatalf("RCPT %s: %c, want %c", rcpt, a.Code, want)
						}
					}
				})
			})
		}
	}
}
