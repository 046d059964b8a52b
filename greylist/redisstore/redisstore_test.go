package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/greylist/storetest"
	"github.com/milter-grey/milter-grey/testutil/testredis"
)

// relaxed gives opts timeouts a loaded test machine (-race, parallel
// tests, a shared CI runner) cannot hit, except where opts sets them: only
// the tests of timeouts use the production defaults.
func relaxed(opts Options) Options {
	for _, d := range []*time.Duration{&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout} {
		if *d == 0 {
			*d = 10 * time.Second
		}
	}
	return opts
}

// openTest opens a store with relaxed(opts) and closes it when the test
// ends.
func openTest(t testing.TB, rawURL string, opts Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), rawURL, relaxed(opts))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openDefaults opens a store with the production defaults (timeouts
// included), for the tests of outages.
func openDefaults(t testing.TB, rawURL string) *Store {
	t.Helper()
	s, err := Open(t.Context(), rawURL, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawClient is a plain go-redis client on srv, to look behind the store.
func rawClient(t testing.TB, srv *testredis.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: srv.Password()})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestConformance runs the suite with the default prefix, each store on
// its own redis-server.
func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) greylist.Store {
		srv := testredis.Start(t)
		s, err := Open(t.Context(), srv.URL(), relaxed(Options{}))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// TestConformancePrefix runs the suite with every store on one shared
// redis-server, each under its own prefix made of glob characters: a
// store that sees another's keys, or mis-escapes MATCH, fails the Scan
// cases.
func TestConformancePrefix(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	var n atomic.Int32
	storetest.Run(t, func(t *testing.T) greylist.Store {
		s, err := Open(t.Context(), srv.URL(), relaxed(Options{Prefix: fmt.Sprintf(`mx*[%d]?\:`, n.Add(1))}))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// TestConformanceCluster runs the suite in Cluster mode (CLUSTER SLOTS
// routing, the compare-and-set script on the slot's master, SCAN on every
// master) on a one-node Redis Cluster, one prefix per store.
func TestConformanceCluster(t *testing.T) {
	t.Parallel()
	srv := testredis.StartCluster(t)
	var n atomic.Int32
	storetest.Run(t, func(t *testing.T) greylist.Store {
		s, err := Open(t.Context(), "redis://"+srv.Addr()+"?cluster=true", relaxed(Options{Prefix: fmt.Sprintf("cl%d:", n.Add(1))}))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if s.cluster == nil {
			t.Fatal("cluster=true did not open a ClusterClient")
		}
		return s
	})
}

// TestConformanceSentinel runs the suite through a Sentinel (go-redis
// asks it for the master, then talks to the master), with a password on
// the master, one prefix per store.
func TestConformanceSentinel(t *testing.T) {
	t.Parallel()
	master := testredis.StartWithPassword(t, "master-pw")
	sentinel := testredis.StartSentinel(t, master, "mymaster")
	var n atomic.Int32
	storetest.Run(t, func(t *testing.T) greylist.Store {
		s, err := Open(t.Context(), sentinel.URL(), relaxed(Options{Prefix: fmt.Sprintf("sn%d:", n.Add(1))}))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	const pw = "Sup3r-s3cret"
	srv := testredis.StartWithPassword(t, pw)
	tests := []struct {
		name string
		url  string
		opts Options
		want string // in the error text
	}{
		{"scheme", "http://127.0.0.1:6379", Options{}, `unsupported scheme "http"`},
		{"malformed", "redis://127.0.0.1:port/0", Options{}, "malformed URL"},
		{"malformed with password", "redis://user:" + pw + "/x@127.0.0.1:6379/0", Options{}, "may hold a password"},
		{"malformed sentinel", "redis://h:port?master_name=m&password=" + pw, Options{}, "may hold a password"},
		{"bad db", "redis://:" + pw + "@127.0.0.1:6379/x", Options{}, "invalid database number"},
		{"unknown option", "redis://:" + pw + "@127.0.0.1:6379/0?colour=blue", Options{}, "unexpected option: colour"},
		{"addr without mode", "redis://:" + pw + "@127.0.0.1:6379?addr=127.0.0.1:6380", Options{}, "cluster=true"},
		{"cluster db", "redis://:" + pw + "@127.0.0.1:6379/3?cluster=true", Options{}, "only database 0"},
		{"cluster bool", "redis://127.0.0.1:6379?cluster=yes", Options{}, "want true or false"},
		{"cluster read_only", "redis://127.0.0.1:6379?cluster=1&read_only=true", Options{}, "reads must go to the masters"},
		{"sentinel routing", "redis://127.0.0.1:26379?master_name=m&password=" + pw + "&route_randomly=true", Options{}, "reads must go to the master"},
		{"sentinel empty name", "redis://127.0.0.1:26379?master_name=", Options{}, "empty master_name"},
		{"no timeout in URL", "redis://127.0.0.1:6379?read_timeout=0", Options{}, "read timeout must be positive"},
		{"negative timeout", "redis://127.0.0.1:6379", Options{DialTimeout: -time.Second}, "dial timeout must be positive"},
		{"pool size", "redis://127.0.0.1:6379", Options{PoolSize: MaxPoolSize + 1}, "pool size 1025 out of range"},
		{"unix without path", "unix://", Options{}, "empty unix socket path"},
		{"wrong password", "redis://:wrong-" + pw + "@" + srv.Addr() + "/0", Options{}, "authentication failed"},
		{"no password", "redis://" + srv.Addr() + "/0", Options{}, "authentication failed"},
		{"not a cluster", "redis://:" + pw + "@" + srv.Addr() + "?cluster=true", Options{}, "cluster support disabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(t.Context(), tt.url, tt.opts)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded", tt.url)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("Open error %q does not contain %q", msg, tt.want)
			}
			if strings.Contains(msg, pw) {
				t.Errorf("Open error %q shows the password", msg)
			}
			if !strings.HasPrefix(msg, "redisstore: open") {
				t.Errorf("Open error %q does not start with redisstore: open", msg)
			}
		})
	}
}

// TestOpenRedactsPassword checks that the URL in an Open error keeps the
// host (so the admin knows what failed) and masks the passwords.
func TestOpenRedactsPassword(t *testing.T) {
	srv := testredis.StartWithPassword(t, "right")
	_, err := Open(t.Context(), "redis://user:wrong-pw@"+srv.Addr()+"/0", Options{})
	if err == nil {
		t.Fatal("Open with a wrong password succeeded")
	}
	want := "redis://user:xxxxx@" + srv.Addr() + "/0"
	if !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "wrong-pw") {
		t.Errorf("Open error %q, want it to name %q and not the password", err, want)
	}

	// The password authenticates; so does a percent-encoded one.
	openTest(t, srv.URL(), Options{})
	pw := "p@ss/w#rd:%"
	srv2 := testredis.StartWithPassword(t, pw)
	openTest(t, srv2.URL(), Options{}) // testredis escapes it
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"redis://:pw@h:1/2", "redis://:xxxxx@h:1/2"},
		{"rediss://user:pw@h:1", "rediss://user:xxxxx@h:1"},
		{"redis://user@h:1", "redis://user@h:1"},
		{"redis://s:spw@h:26379?master_name=m&password=mpw", "redis://s:xxxxx@h:26379?master_name=m&password=xxxxx"},
		{"unix://:pw@/run/redis.sock?db=2", "unix://:xxxxx@/run/redis.sock?db=2"},
	}
	for _, tt := range tests {
		cfg, err := parseURL(tt.in)
		if err != nil {
			t.Errorf("parseURL(%q): %v", tt.in, err)
			continue
		}
		if cfg.redacted != tt.want {
			t.Errorf("redacted %q = %q, want %q", tt.in, cfg.redacted, tt.want)
		}
	}
}

// TestURLForms checks what each supported URL form turns into, without
// connecting.
func TestURLForms(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		cfg := mustParse(t, "redis://u:p@h:7000/3?pool_size=8&read_timeout=2s", Options{ReadTimeout: 300 * time.Millisecond})
		o := cfg.server
		if cfg.mode != modeServer || o.Addr != "h:7000" || o.DB != 3 || o.Username != "u" || o.Password != "p" || o.TLSConfig != nil {
			t.Errorf("options %+v", o)
		}
		// Options beat the URL, the URL beats the defaults.
		if o.ReadTimeout != 300*time.Millisecond || o.PoolSize != 8 || o.MaxActiveConns != 8 ||
			o.DialTimeout != DefaultDialTimeout || o.WriteTimeout != DefaultWriteTimeout ||
			o.MaxRetries != defaultMaxRetries || !o.ContextTimeoutEnabled {
			t.Errorf("timeouts and pool: %+v", o)
		}
	})
	t.Run("defaults", func(t *testing.T) {
		o := mustParse(t, "redis://h", Options{}).server
		if o.Addr != "h:6379" || o.DB != 0 || o.PoolSize != DefaultPoolSize || o.ReadTimeout != DefaultReadTimeout ||
			o.DialerRetries != defaultDialerRetries {
			t.Errorf("options %+v", o)
		}
	})
	t.Run("tls", func(t *testing.T) {
		o := mustParse(t, "rediss://h:6380?skip_verify=true", Options{}).server
		if o.TLSConfig == nil || o.TLSConfig.ServerName != "h" || !o.TLSConfig.InsecureSkipVerify {
			t.Errorf("TLS config %+v", o.TLSConfig)
		}
	})
	t.Run("unix", func(t *testing.T) {
		o := mustParse(t, "unix:///run/redis/redis.sock?db=5", Options{}).server
		if o.Network != "unix" || o.Addr != "/run/redis/redis.sock" || o.DB != 5 {
			t.Errorf("options %+v", o)
		}
	})
	t.Run("sentinel", func(t *testing.T) {
		cfg := mustParse(t, "redis://su:sp@s1:26379/2?master_name=mymaster&addr=s2:26379&password=mp", Options{})
		o := cfg.failover
		if cfg.mode != modeSentinel || o.MasterName != "mymaster" || o.DB != 2 ||
			strings.Join(o.SentinelAddrs, ",") != "s1:26379,s2:26379" ||
			o.SentinelUsername != "su" || o.SentinelPassword != "sp" || o.Password != "mp" ||
			o.ReadTimeout != DefaultReadTimeout {
			t.Errorf("options %+v", o)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		cfg := mustParse(t, "rediss://u:p@n1:7000?cluster=true&addr=n2:7001&addr=n3:7002", Options{})
		o := cfg.cluster
		if cfg.mode != modeCluster || strings.Join(o.Addrs, ",") != "n1:7000,n2:7001,n3:7002" ||
			o.Username != "u" || o.Password != "p" || o.TLSConfig == nil || o.ReadTimeout != DefaultReadTimeout {
			t.Errorf("options %+v", o)
		}
	})
	t.Run("cluster=false", func(t *testing.T) {
		if cfg := mustParse(t, "redis://h/1?cluster=false", Options{}); cfg.mode != modeServer || cfg.server.DB != 1 {
			t.Errorf("mode %s, options %+v", cfg.mode, cfg.server)
		}
	})
}

func mustParse(t *testing.T, rawURL string, opts Options) *clientConfig {
	t.Helper()
	cfg, err := parseURL(rawURL)
	if err != nil {
		t.Fatalf("parseURL(%q): %v", rawURL, err)
	}
	if err := cfg.knobs.apply(opts); err != nil {
		t.Fatalf("apply: %v", err)
	}
	return cfg
}

// TestOpenUnreachable: nothing listens on the port, so Open fails, well
// within a second (connection refused, one dial, one retry).
func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	srv.Stop()
	start := time.Now()
	s, err := Open(t.Context(), srv.URL(), Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open of a stopped server succeeded")
	}
	t.Logf("Open of a stopped server: %v after %v", err, time.Since(start))
	if !strings.Contains(err.Error(), srv.Addr()) {
		t.Errorf("error %q does not name the address", err)
	}
}

func TestGlobEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain:prefix/", "plain:prefix/"},
		{"a*b", `a\*b`},
		{"a?b", `a\?b`},
		{"[x]", `\[x\]`},
		{`back\slash`, `back\\slash`},
		{"ü*\x00", "ü\\*\x00"},
	}
	for _, tt := range tests {
		if got := globEscape(tt.in); got != tt.want {
			t.Errorf("globEscape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// decide is one delivery of key on s at now: Policy.Step inside Update.
// It returns what the last call of fn saw and decided.
func decide(ctx context.Context, s *Store, p greylist.Policy, key string, now time.Time) (sawNil bool, v greylist.Verdict, err error) {
	err = s.Update(ctx, key, func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
		sawNil = cur == nil
		next, ttl, verdict := p.Step(cur, now)
		v = verdict
		return next, ttl, nil
	})
	return sawNil, v, err
}

// TestTwoHostsExactlyOneNew: two stores (two MX hosts) on one Redis, 64
// goroutines each, deliver the same fresh triplets at once. For every key
// exactly one delivery, on either host, sees it as new; every other one is
// greylisted early, and the record counts all of them. Run once as
// configured and once without the in-process key lock, so SET NX GET and
// the compare-and-set alone carry the load of 128 writers of one key.
func TestTwoHostsExactlyOneNew(t *testing.T) {
	t.Parallel()
	for _, locks := range []bool{true, false} {
		t.Run(fmt.Sprintf("locks=%v", locks), func(t *testing.T) {
			t.Parallel()
			srv := testredis.Start(t)
			hosts := []*Store{openTest(t, srv.URL(), Options{}), openTest(t, srv.URL(), Options{})}
			if !locks {
				for _, h := range hosts {
					h.locks = nil
				}
			}
			const goroutines, keys = 64, 16
			p := greylist.DefaultPolicy
			now := time.Now()
			var news, early [keys]atomic.Int32
			start := make(chan struct{})
			var wg sync.WaitGroup
			for _, h := range hosts {
				for range goroutines {
					wg.Go(func() {
						<-start
						for _, i := range rand.Perm(keys) {
							sawNil, v, err := decide(t.Context(), h, p, fmt.Sprintf("192.0.2.0/24|s@example.org|r%d@example.net", i), now)
							if err != nil {
								t.Errorf("Update: %v", err)
								return
							}
							if sawNil != (v.Reason == greylist.ReasonNew) {
								t.Errorf("fn saw nil = %v but decided %s", sawNil, v.Reason)
							}
							switch v.Reason {
							case greylist.ReasonNew:
								news[i].Add(1)
							case greylist.ReasonEarly:
								early[i].Add(1)
							default:
								t.Errorf("decided %s, want new or early", v.Reason)
							}
						}
					})
				}
			}
			close(start)
			wg.Wait()
			for i := range keys {
				if n := news[i].Load(); n != 1 {
					t.Errorf("key %d: %d deliveries saw it new, want exactly 1", i, n)
				}
				if n := early[i].Load(); n != 2*goroutines-1 {
					t.Errorf("key %d: %d early deliveries, want %d", i, n, 2*goroutines-1)
				}
				rec, _, err := hosts[i%2].Get(t.Context(), fmt.Sprintf("192.0.2.0/24|s@example.org|r%d@example.net", i))
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				if rec.State != greylist.Pending || rec.Count != 2*goroutines || !rec.First.Equal(now.Truncate(time.Millisecond)) {
					t.Errorf("key %d: record %+v, want pending, count %d, first %v", i, rec, 2*goroutines, now)
				}
			}
		})
	}
}

// TestTwoHostsRetry: a pending triplet first seen before the delay is
// retried on both hosts at once. Every delivery passes; exactly one is the
// retry that turns the record to passed, the rest find it known.
func TestTwoHostsRetry(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	hosts := []*Store{openTest(t, srv.URL(), Options{}), openTest(t, srv.URL(), Options{})}
	p := greylist.DefaultPolicy
	now := time.Now().Truncate(time.Millisecond)
	first := now.Add(-p.Delay - time.Minute)
	const key = "198.51.100.0/24|sender@example.org|rcpt@example.net"
	if err := hosts[0].Put(t.Context(), key, &greylist.Record{State: greylist.Pending, First: first, Last: first, Count: 1}, p.RetryWindow); err != nil {
		t.Fatal(err)
	}

	const goroutines = 16
	var retried, known atomic.Int32
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, h := range hosts {
		for range goroutines {
			wg.Go(func() {
				<-start
				_, v, err := decide(t.Context(), h, p, key, now)
				switch {
				case err != nil:
					t.Errorf("Update: %v", err)
				case !v.Pass:
					t.Errorf("verdict %+v, want a pass", v)
				case v.Reason == greylist.ReasonRetried:
					retried.Add(1)
				case v.Reason == greylist.ReasonKnown:
					known.Add(1)
				default:
					t.Errorf("reason %s", v.Reason)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	if r, k := retried.Load(), known.Load(); r != 1 || k != 2*goroutines-1 {
		t.Errorf("%d retried and %d known, want 1 and %d", r, k, 2*goroutines-1)
	}
	rec, exp, err := hosts[1].Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	want := greylist.Record{State: greylist.Passed, First: first, Last: now, Count: 1}
	if rec.State != want.State || !rec.First.Equal(want.First) || !rec.Last.Equal(want.Last) || rec.Count != want.Count {
		t.Errorf("record %+v, want %+v", rec, want)
	}
	if d := time.Until(exp); d < p.MaxAge-time.Minute || d > p.MaxAge {
		t.Errorf("expires in %v, want about MaxAge %v", d, p.MaxAge)
	}
}

// TestUpdateRetriesOnConflict makes each attempt of an Update lose to a
// Put of the same key between its read and its write, so the server-side
// compare-and-set, not the in-process lock, keeps the update atomic.
func TestUpdateRetriesOnConflict(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := openTest(t, srv.URL(), Options{})
	ctx := t.Context()
	const key = "conflict"
	rec := func(n uint32) *greylist.Record { return &greylist.Record{State: greylist.Pending, Count: n} }

	// The Put lands before the speculative SET NX GET, which finds the key.
	t.Run("retried", func(t *testing.T) {
		var saw []*greylist.Record
		err := s.Update(ctx, key, func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
			saw = append(saw, cur)
			if len(saw) == 1 {
				// Another host writes between our read and write.
				if err := s.Put(ctx, key, rec(10), 0); err != nil {
					t.Fatal(err)
				}
			}
			if cur == nil {
				return rec(1), 0, nil
			}
			return rec(cur.Count + 1), 0, nil
		})
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		if len(saw) != 2 || saw[0] != nil || saw[1] == nil || saw[1].Count != 10 {
			t.Fatalf("fn saw %v, want [nil, count 10]", saw)
		}
		if got, _, err := s.Get(ctx, key); err != nil || got.Count != 11 {
			t.Errorf("Get = %+v, %v; want count 11", got, err)
		}
	})

	// The key exists: the Put lands between the read of the SET NX GET
	// and the compare-and-set, which fails; the next attempt GETs.
	t.Run("retried after the speculative read", func(t *testing.T) {
		var saw []*greylist.Record
		err := s.Update(ctx, key, func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
			saw = append(saw, cur)
			if len(saw) == 2 {
				if err := s.Put(ctx, key, rec(20), 0); err != nil {
					t.Fatal(err)
				}
			}
			if cur == nil {
				return rec(1), 0, nil
			}
			return rec(cur.Count + 1), 0, nil
		})
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		if len(saw) != 3 || saw[0] != nil || saw[1] == nil || saw[1].Count != 11 || saw[2] == nil || saw[2].Count != 20 {
			t.Fatalf("fn saw %v, want [nil, count 11, count 20]", saw)
		}
		if got, _, err := s.Get(ctx, key); err != nil || got.Count != 21 {
			t.Errorf("Get = %+v, %v; want count 21", got, err)
		}
	})

	t.Run("gives up", func(t *testing.T) {
		calls := 0
		err := s.Update(ctx, key, func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
			calls++
			if err := s.Put(ctx, key, rec(uint32(1000+calls)), 0); err != nil {
				t.Fatal(err)
			}
			return rec(1), 0, nil
		})
		if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), key) {
			t.Errorf("Update = %v, want an error naming the key and wrapping ErrConflict", err)
		}
		// The speculative call on nil, then one per attempt.
		if calls != maxUpdateAttempts+1 {
			t.Errorf("fn called %d times, want %d", calls, maxUpdateAttempts+1)
		}
		if got, _, err := s.Get(ctx, key); err != nil || got.Count != uint32(1000+calls) {
			t.Errorf("Get = %+v, %v; want the last Put's record", got, err)
		}
	})

	t.Run("context cancelled while retrying", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		calls := 0
		err := s.Update(ctx, key, func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
			calls++
			if err := s.Put(t.Context(), key, rec(7), 0); err != nil {
				t.Fatal(err)
			}
			cancel()
			return rec(1), 0, nil
		})
		if !errors.Is(err, context.Canceled) || calls != 1 {
			t.Errorf("Update = %v after %d calls, want context.Canceled after 1", err, calls)
		}
	})
}

// TestUpdateNilReleasesWatch: an Update that writes nothing leaves its
// pooled connection clean (it once left a WATCH there, which made a later
// transaction on that connection fail): the next Put and Update on the
// one connection work.
func TestUpdateNilReleasesWatch(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	// One connection, so the next Update reuses it.
	s := openTest(t, srv.URL(), Options{PoolSize: 1})
	ctx := t.Context()
	rec := &greylist.Record{State: greylist.Passed, Count: 1}
	if err := s.Put(ctx, "a", rec, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, "a", func(*greylist.Record) (*greylist.Record, time.Duration, error) { return nil, 0, nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "a", rec, 0); err != nil { // would abort a leaked transaction on "a"
		t.Fatal(err)
	}
	calls := 0
	err := s.Update(ctx, "b", func(*greylist.Record) (*greylist.Record, time.Duration, error) {
		calls++
		return rec, 0, nil
	})
	if err != nil || calls != 1 {
		t.Errorf("Update(b) = %v after %d calls, want nil after 1", err, calls)
	}
}

func TestBadRecord(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := openTest(t, srv.URL(), Options{})
	raw := rawClient(t, srv)
	ctx := t.Context()
	const key = "bad/record"
	garbage := "\xff\x00\x13"
	if err := raw.Set(ctx, DefaultPrefix+key, garbage, 0).Err(); err != nil {
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
	called := false // with a record: the speculative call sees nil
	err = s.Update(ctx, key, func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
		called = called || cur != nil
		return &greylist.Record{State: greylist.Pending}, 0, nil
	})
	check("Update", err)
	if called {
		t.Error("Update called fn on an undecodable record")
	}
	check("Scan", s.Scan(ctx, "bad/", func(string, *greylist.Record, time.Time) error { return nil }))

	// A key of another type is an error too, not a panic.
	if err := raw.HSet(ctx, DefaultPrefix+"bad/hash", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, "bad/hash"); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Errorf("Get of a hash = %v, want WRONGTYPE", err)
	}

	if v, err := raw.Get(ctx, DefaultPrefix+key).Result(); err != nil || v != garbage {
		t.Errorf("bad record changed: %q, %v", v, err)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, _, err := s.Get(ctx, key); !errors.Is(err, greylist.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
}

// TestStoredForm pins what is in Redis: the prefix, the binary record as a
// string, the TTL in milliseconds, and no TTL for 0.
func TestStoredForm(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := openTest(t, srv.URL(), Options{Prefix: "mg/"})
	raw := rawClient(t, srv)
	ctx := t.Context()
	rec := &greylist.Record{State: greylist.Pending, First: time.UnixMilli(1_700_000_000_123), Last: time.UnixMilli(1_700_000_000_123), Count: 1}
	want, _ := rec.MarshalBinary()
	if err := s.Put(ctx, "k", rec, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if v, err := raw.Get(ctx, "mg/k").Bytes(); err != nil || string(v) != string(want) {
		t.Errorf("stored value %x, %v; want %x", v, err, want)
	}
	if d, err := raw.PTTL(ctx, "mg/k").Result(); err != nil || d <= time.Second || d > 1500*time.Millisecond {
		t.Errorf("PTTL = %v, %v; want (1s, 1.5s]", d, err)
	}
	if err := s.Put(ctx, "k", rec, 0); err != nil {
		t.Fatal(err)
	}
	if d, err := raw.PTTL(ctx, "mg/k").Result(); err != nil || d != -1 {
		t.Errorf("PTTL after a ttl 0 Put = %v, %v; want -1 (no expiry)", d, err)
	}
	if n, err := raw.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Errorf("unprefixed key exists: %d, %v", n, err)
	}
}

func TestPutRejects(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := openTest(t, srv.URL(), Options{})
	if err := s.Put(t.Context(), "k", nil, 0); err == nil {
		t.Error("Put of a nil record succeeded")
	}
	// go-redis would send -1 as KEEPTTL.
	if err := s.Put(t.Context(), "k", &greylist.Record{State: greylist.Pending}, -1); err == nil {
		t.Error("Put with a negative ttl succeeded")
	}
	err := s.Update(t.Context(), "k", func(*greylist.Record) (*greylist.Record, time.Duration, error) {
		return &greylist.Record{State: greylist.Pending}, -time.Second, nil
	})
	if err == nil || !strings.Contains(err.Error(), "negative ttl") {
		t.Errorf("Update returning a negative ttl = %v, want an error", err)
	}
	if _, _, err := s.Get(t.Context(), "k"); !errors.Is(err, greylist.ErrNotFound) {
		t.Errorf("Get = %v, want ErrNotFound", err)
	}
}

func TestCloseTwice(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s, err := Open(t.Context(), srv.URL(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if _, _, err := s.Get(t.Context(), "k"); err == nil || errors.Is(err, greylist.ErrNotFound) {
		t.Errorf("Get after Close = %v, want an error", err)
	}
	err = s.Update(t.Context(), "k", func(*greylist.Record) (*greylist.Record, time.Duration, error) {
		return &greylist.Record{State: greylist.Pending}, 0, nil
	})
	if err == nil {
		t.Error("Update after Close succeeded")
	}
}

// TestOutage: with Redis stopped every call fails (it does not hang), and
// once Redis is back on the same address the same Store works again.
func TestOutage(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := openDefaults(t, srv.URL())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	inc := func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
		n := greylist.Record{State: greylist.Pending, Count: 1}
		if cur != nil {
			n.Count = cur.Count + 1
		}
		return &n, time.Hour, nil
	}
	if err := s.Update(ctx, "k", inc); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	for i := range 3 { // also after go-redis has given up dialling
		start := time.Now()
		err := s.Update(ctx, "k", inc)
		if err == nil {
			t.Fatal("Update with Redis stopped succeeded")
		}
		_, _, gerr := s.Get(ctx, "k")
		if gerr == nil || errors.Is(gerr, greylist.ErrNotFound) {
			t.Fatalf("Get with Redis stopped = %v, want an outage error", gerr)
		}
		if i == 0 {
			t.Logf("Redis stopped: Update %v, Get %v (%v for both)", err, gerr, time.Since(start))
		}
	}
	if err := s.Scan(ctx, "", func(string, *greylist.Record, time.Time) error { return nil }); err == nil {
		t.Error("Scan with Redis stopped succeeded")
	}

	srv.Restart() // a new, empty Redis on the same port
	start := time.Now()
	var err error
	for {
		if err = s.Update(ctx, "k", inc); err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Update after Restart still fails: %v", err)
	}
	t.Logf("Store usable again %v after Restart", time.Since(start))
	if rec, _, err := s.Get(ctx, "k"); err != nil || rec.Count != 1 {
		t.Errorf("Get after Restart = %+v, %v; want a new record with count 1", rec, err)
	}
}

// TestPausedRedis: a Redis that accepts connections but never answers
// (SIGSTOP) makes calls fail at the read timeout, not hang; a context
// deadline shorter than that cuts them sooner.
func TestPausedRedis(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := openDefaults(t, srv.URL())
	if err := s.Put(t.Context(), "k", &greylist.Record{State: greylist.Pending, Count: 1}, 0); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	resumed := false
	defer func() {
		if !resumed {
			srv.Resume()
		}
	}()

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	called := false // with a record: the speculative call sees nil
	err := s.Update(ctx, "k", func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
		called = called || cur != nil
		return cur, 0, nil
	})
	if err == nil {
		t.Fatal("Update on a paused Redis succeeded")
	}
	if called {
		t.Error("Update called fn with a record it cannot have read")
	}
	t.Logf("paused Redis: Update failed after %v: %v", time.Since(start), err)
	if ctx.Err() != nil {
		t.Errorf("Update returned only when the test's 5 s context expired: %v", err)
	}

	// Many deliveries of one key at once all fail; none waits forever on
	// the in-process lock behind another.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			if _, _, err := decide(ctx, s, greylist.DefaultPolicy, "k", time.Now()); err == nil {
				t.Error("Update on a paused Redis succeeded")
			}
		})
	}
	wg.Wait()
	if _, _, err := s.Get(ctx, "k"); err == nil {
		t.Error("Get on a paused Redis succeeded")
	}

	srv.Resume()
	resumed = true
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec, _, err := s.Get(t.Context(), "k")
		if err == nil {
			if rec.Count != 1 {
				t.Errorf("record after Resume %+v, want count 1", rec)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Get after Resume still fails: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestScanSkipsOtherKeys: Scan sees only its store's prefix, and strips it.
func TestScanSkipsOtherKeys(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := openTest(t, srv.URL(), Options{})
	raw := rawClient(t, srv)
	ctx := t.Context()
	for _, k := range []string{"other-app:x", "milter-grey", "milter-grey;x"} {
		if err := raw.Set(ctx, k, "not a record", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// More keys than one SCAN round and one pipeline.
	const n = 3 * scanCount
	for i := range n {
		if err := s.Put(ctx, fmt.Sprintf("t/%04d", i), &greylist.Record{State: greylist.Pending, Count: uint32(i)}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	seen := make(map[string]bool)
	err := s.Scan(ctx, "", func(key string, rec *greylist.Record, _ time.Time) error {
		if seen[key] {
			t.Errorf("key %q twice", key)
		}
		seen[key] = true
		if want := fmt.Sprintf("t/%04d", rec.Count); key != want {
			t.Errorf("key %q holds count %d", key, rec.Count)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if len(seen) != n {
		t.Errorf("Scan saw %d keys, want %d", len(seen), n)
	}
}

func TestLogger(t *testing.T) {
	t.Parallel()
	srv := testredis.StartWithPassword(t, "hunter2")
	var buf bytes.Buffer // Open logs before it returns
	openTest(t, srv.URL(), Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	out := buf.String()
	if !strings.Contains(out, "redisstore: connected") || !strings.Contains(out, "mode=server") {
		t.Errorf("log %q lacks the connect line", out)
	}
	if strings.Contains(out, "hunter2") {
		t.Errorf("log %q shows the password", out)
	}
}

func TestLibraryLogger(t *testing.T) {
	var buf bytes.Buffer
	g := libraryLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	g.Printf(t.Context(), "redis: connection pool: failed to dial after %d attempts: %v", 1, "refused")
	g.Printf(t.Context(), "sentinel: new master=%q addr=%q\n", "mymaster", "10.0.0.2:6379")
	out := buf.String()
	for _, want := range []string{
		`level=DEBUG msg="redis: connection pool: failed to dial after 1 attempts: refused" component=go-redis`,
		`level=INFO msg="sentinel: new master=\"mymaster\" addr=\"10.0.0.2:6379\"" component=go-redis`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	libraryLogger{}.Printf(t.Context(), "dropped %d", 1) // nil logger: no panic
}

// BenchmarkUpdate measures Update against a real redis-server on
// loopback: "new" creates a key per call (the first delivery of a
// triplet), "existing" increments keys of a hot set shared by all
// goroutines, so it includes waits for the in-process key lock.
func BenchmarkUpdate(b *testing.B) {
	srv := testredis.Start(b)
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
		s := openTest(b, srv.URL(), Options{Prefix: "bench-new:"})
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				key := fmt.Sprintf("192.0.2.%d|sender%d@example.org|rcpt@example.net", i%256, i)
				if err := s.Update(b.Context(), key, inc); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("existing", func(b *testing.B) {
		s := openTest(b, srv.URL(), Options{Prefix: "bench-existing:"})
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
	b.Run("get", func(b *testing.B) {
		s := openTest(b, srv.URL(), Options{Prefix: "bench-existing:"})
		var n atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1) % 1000 // the keys "existing" wrote
				key := fmt.Sprintf("192.0.2.%d|sender%d@example.org|rcpt@example.net", i%256, i)
				if _, _, err := s.Get(b.Context(), key); err != nil && !errors.Is(err, greylist.ErrNotFound) {
					b.Fatal(err)
				}
			}
		})
	})
}
