package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/greylist/storetest"
	"github.com/milter-grey/milter-grey/testutil/testlog"
	"github.com/milter-grey/milter-grey/testutil/testredis"
)

// commandLog is a go-redis hook that records the data commands a Store
// sends (one round trip each; the store uses no pipelines for Update), and
// can make the server look older than 7.0 by answering SET … GET with a
// syntax error itself.
type commandLog struct {
	mu       sync.Mutex
	cmds     []string // "get", "set nx get", "evalsha", …
	oldRedis bool     // refuse SET … GET as Redis 6 does
}

func (l *commandLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *commandLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (l *commandLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		name := cmd.Name()
		switch name {
		case "hello", "client", "auth", "select", "ping":
			return next(ctx, cmd) // connection set-up
		}
		if name == "set" {
			for _, a := range cmd.Args()[3:] {
				if s, ok := a.(string); ok {
					switch strings.ToLower(s) {
					case "nx", "get":
						name += " " + strings.ToLower(s)
					}
				}
			}
		}
		l.mu.Lock()
		l.cmds = append(l.cmds, name)
		old := l.oldRedis
		l.mu.Unlock()
		if old && strings.HasSuffix(name, " get") {
			cmd.SetErr(replyError("ERR syntax error"))
			return cmd.Err()
		}
		return next(ctx, cmd)
	}
}

// take returns the commands recorded since the last take.
func (l *commandLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.cmds
	l.cmds = nil
	return c
}

// logCommands adds a commandLog to s.
func logCommands(s *Store) *commandLog {
	l := &commandLog{}
	s.rdb.AddHook(l)
	return l
}

// replyError is an error reply as go-redis returns it (a redis.Error).
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

// commandStats returns the calls of each command since CONFIG RESETSTAT,
// as the server counts them (commands run by scripts included).
func commandStats(t *testing.T, raw *redis.Client) map[string]int {
	t.Helper()
	info, err := raw.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	stats := make(map[string]int)
	for line := range strings.Lines(info) {
		// cmdstat_set:calls=1,usec=3,usec_per_call=3.00,rejected_calls=0,failed_calls=0
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		n, err := strconv.Atoi(calls)
		if err != nil {
			t.Fatalf("INFO commandstats line %q", line)
		}
		stats[name] = n
	}
	return stats
}

// newRecord is an UpdateFunc as the engine's for a triplet: a new pending
// record, or the count incremented.
func newRecord(ttl time.Duration, saw *[]*greylist.Record) greylist.UpdateFunc {
	return func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
		*saw = append(*saw, cur)
		if cur == nil {
			return &greylist.Record{State: greylist.Pending, First: time.UnixMilli(1_700_000_000_000), Count: 1}, ttl, nil
		}
		next := *cur
		next.Count++
		return &next, ttl, nil
	}
}

// TestUpdateNewKeyOneRoundTrip: the first Update of a key is one SET NX
// GET, as the client sends it and as the server counts it: no GET, no
// script. The record and its expiry are as a Put would store them.
func TestUpdateNewKeyOneRoundTrip(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := openTest(t, srv.URL(), Options{})
	raw := rawClient(t, srv)
	cmds := logCommands(s)
	tests := []struct {
		name           string
		ttl            time.Duration
		minPTTL, maxPT time.Duration // -1: no expiry
	}{
		{"no expiry", 0, -1, -1},
		{"milliseconds", 1500 * time.Millisecond, time.Second, 1500 * time.Millisecond},
		{"whole seconds", 24 * time.Hour, 24*time.Hour - time.Minute, 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "new/" + tt.name
			if err := raw.ConfigResetStat(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}
			cmds.take()
			var saw []*greylist.Record
			if err := s.Update(t.Context(), key, newRecord(tt.ttl, &saw)); err != nil {
				t.Fatalf("Update: %v", err)
			}
			if got := cmds.take(); !slices.Equal(got, []string{"set nx get"}) {
				t.Errorf("commands sent %q, want one SET NX GET", got)
			}
			stats := commandStats(t, raw)
			if stats["set"] != 1 || stats["get"] != 0 || stats["evalsha"] != 0 || stats["eval"] != 0 {
				t.Errorf("server counted %v, want set=1 and no get, evalsha or eval", stats)
			}
			if len(saw) != 1 || saw[0] != nil {
				t.Errorf("fn saw %v, want [nil]", saw)
			}
			if rec, _, err := s.Get(t.Context(), key); err != nil || rec.State != greylist.Pending || rec.Count != 1 {
				t.Errorf("Get = %+v, %v; want the new record", rec, err)
			}
			d, err := raw.PTTL(t.Context(), DefaultPrefix+key).Result()
			if err != nil || d < tt.minPTTL || d > tt.maxPT {
				t.Errorf("PTTL = %v, %v; want [%v, %v]", d, err, tt.minPTTL, tt.maxPT)
			}
		})
	}
}

// TestUpdateExistingKey: for a key that exists, the SET NX GET writes
// nothing and returns the record, which fn gets without a GET; what fn
// returns then is written by the compare-and-set, or nothing is when fn
// writes nothing (one round trip).
func TestUpdateExistingKey(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := openTest(t, srv.URL(), Options{})
	raw := rawClient(t, srv)
	cmds := logCommands(s)
	ctx := t.Context()
	stored := &greylist.Record{State: greylist.Passed, First: time.UnixMilli(1_600_000_000_000), Last: time.UnixMilli(1_600_000_100_000), Count: 5}
	if err := s.Put(ctx, "k", stored, time.Hour); err != nil {
		t.Fatal(err)
	}

	t.Run("writes", func(t *testing.T) {
		cmds.take()
		var saw []*greylist.Record
		if err := s.Update(ctx, "k", newRecord(2*time.Hour, &saw)); err != nil {
			t.Fatalf("Update: %v", err)
		}
		if len(saw) != 2 || saw[0] != nil || !sameRecord(saw[1], stored) {
			t.Errorf("fn saw %v, want [nil, %+v]", saw, stored)
		}
		got := cmds.take()
		if len(got) < 2 || got[0] != "set nx get" || !strings.HasPrefix(got[1], "eval") || slices.Contains(got, "get") {
			t.Errorf("commands sent %q, want SET NX GET then the script (EVALSHA, EVAL if not loaded), no GET", got)
		}
		want := *stored
		want.Count++
		if rec, _, err := s.Get(ctx, "k"); err != nil || !sameRecord(rec, &want) {
			t.Errorf("Get = %+v, %v; want %+v", rec, err, want)
		}
		if d, err := raw.PTTL(ctx, DefaultPrefix+"k").Result(); err != nil || d <= time.Hour || d > 2*time.Hour {
			t.Errorf("PTTL = %v, %v; want fn's 2h", d, err)
		}
	})

	t.Run("writes nothing", func(t *testing.T) {
		before, _ := raw.Get(ctx, DefaultPrefix+"k").Bytes()
		cmds.take()
		var saw []*greylist.Record
		err := s.Update(ctx, "k", func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
			saw = append(saw, cur)
			if cur == nil {
				return &greylist.Record{State: greylist.Pending, Count: 1}, time.Hour, nil
			}
			return nil, 0, nil
		})
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		if len(saw) != 2 || saw[0] != nil || saw[1] == nil {
			t.Errorf("fn saw %v, want [nil, the record]", saw)
		}
		if got := cmds.take(); !slices.Equal(got, []string{"set nx get"}) {
			t.Errorf("commands sent %q, want one SET NX GET", got)
		}
		if after, _ := raw.Get(ctx, DefaultPrefix+"k").Bytes(); !bytes.Equal(before, after) {
			t.Errorf("record changed from %x to %x", before, after)
		}
	})
}

// TestUpdateSpeculationDeclined: when fn writes nothing on nil, or fails
// on nil, or returns a ttl encode refuses, Update does not send SET NX GET
// and calls fn on what a GET read, as before.
func TestUpdateSpeculationDeclined(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := openTest(t, srv.URL(), Options{})
	cmds := logCommands(s)
	ctx := t.Context()
	if err := s.Put(ctx, "k", &greylist.Record{State: greylist.Passed, Count: 7}, 0); err != nil {
		t.Fatal(err)
	}
	errNil := errors.New("no record")
	tests := []struct {
		name  string
		onNil func() (*greylist.Record, time.Duration, error)
	}{
		{"writes nothing", func() (*greylist.Record, time.Duration, error) { return nil, 0, nil }},
		{"fails", func() (*greylist.Record, time.Duration, error) { return nil, 0, errNil }},
		{"negative ttl", func() (*greylist.Record, time.Duration, error) {
			return &greylist.Record{State: greylist.Pending}, -time.Second, nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmds.take()
			var saw []*greylist.Record
			err := s.Update(ctx, "k", func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
				saw = append(saw, cur)
				if cur == nil {
					return tt.onNil()
				}
				next := *cur
				next.Count++
				return &next, 0, nil
			})
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			if len(saw) != 2 || saw[0] != nil || saw[1] == nil {
				t.Errorf("fn saw %v, want [nil, the record]", saw)
			}
			if got := cmds.take(); len(got) < 2 || got[0] != "get" || !strings.HasPrefix(got[1], "eval") || slices.Contains(got, "set nx get") {
				t.Errorf("commands sent %q, want GET then the script", got)
			}
		})
	}
	if rec, _, err := s.Get(ctx, "k"); err != nil || rec.Count != 7+uint32(len(tests)) {
		t.Errorf("Get = %+v, %v; want count %d", rec, err, 7+len(tests))
	}
	// On an absent key the GET path calls fn(nil) again: its error is
	// Update's.
	err := s.Update(ctx, "absent", func(*greylist.Record) (*greylist.Record, time.Duration, error) { return nil, 0, errNil })
	if err != errNil {
		t.Errorf("Update = %v, want fn's error as it returned it", err)
	}
}

// TestUpdateOldServer: a server that answers SET NX GET with "ERR syntax
// error" (the hook plays Redis 6) switches the Store to GET and the
// compare-and-set for good, with one warning; the results are the same.
func TestUpdateOldServer(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	var logBuf testlog.Buffer
	s := openTest(t, srv.URL(), Options{Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	cmds := logCommands(s)
	cmds.oldRedis = true
	ctx := t.Context()

	var saw []*greylist.Record
	if err := s.Update(ctx, "k", newRecord(time.Hour, &saw)); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := cmds.take(); len(got) < 3 || got[0] != "set nx get" || got[1] != "get" || !strings.HasPrefix(got[2], "eval") {
		t.Errorf("first Update sent %q, want the refused SET NX GET, then GET and the script", got)
	}
	if !s.noSetNXGet.Load() {
		t.Fatal("the syntax error did not mark SET NX GET unsupported")
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			var saw []*greylist.Record
			if err := s.Update(ctx, "k", newRecord(time.Hour, &saw)); err != nil {
				t.Errorf("Update: %v", err)
			}
		})
	}
	wg.Wait()
	if got := cmds.take(); slices.Contains(got, "set nx get") {
		t.Errorf("later Updates sent %q, want no SET NX GET", got)
	}
	if rec, _, err := s.Get(ctx, "k"); err != nil || rec.Count != 9 {
		t.Errorf("Get = %+v, %v; want count 9", rec, err)
	}
	out := logBuf.String()
	if n := strings.Count(out, "refuses SET NX GET"); n != 1 || !strings.Contains(out, "level=WARN") || !strings.Contains(out, `error="ERR syntax error"`) {
		t.Errorf("log has %d warnings, want 1 with the error:\n%s", n, out)
	}
}

// sameRecord reports whether a and b hold the same record.
func sameRecord(a, b *greylist.Record) bool {
	return a != nil && b != nil && a.State == b.State && a.First.Equal(b.First) && a.Last.Equal(b.Last) && a.Count == b.Count
}

// TestUpdateWritesRefused: a Redis that refuses writes (maxmemory reached)
// answers the SET NX GET with OOM. That is not "unsupported": the Update
// goes on with a GET as before, so one that writes nothing still succeeds,
// and the next Update tries SET NX GET again.
func TestUpdateWritesRefused(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := openTest(t, srv.URL(), Options{})
	raw := rawClient(t, srv)
	ctx := t.Context()
	if err := s.Put(ctx, "k", &greylist.Record{State: greylist.Passed, Count: 3}, 0); err != nil {
		t.Fatal(err)
	}
	if err := raw.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	defer raw.ConfigSet(ctx, "maxmemory", "0")
	var saw []*greylist.Record
	err := s.Update(ctx, "k", func(cur *greylist.Record) (*greylist.Record, time.Duration, error) {
		saw = append(saw, cur)
		if cur == nil {
			return &greylist.Record{State: greylist.Pending, Count: 1}, 0, nil
		}
		return nil, 0, nil
	})
	if err != nil || len(saw) != 2 || saw[1] == nil || saw[1].Count != 3 {
		t.Errorf("Update of a known key writing nothing = %v, fn saw %v; want nil, [nil, count 3]", err, saw)
	}
	err = s.Update(ctx, "new", newRecord(0, &saw))
	if err == nil || !strings.Contains(err.Error(), "OOM") {
		t.Errorf("Update of a new key = %v, want the OOM error", err)
	}
	if s.noSetNXGet.Load() {
		t.Error("an OOM reply marked SET NX GET unsupported")
	}
}

// TestConformanceGetPath runs the suite with SET NX GET marked
// unsupported, as after an old server's syntax error: every Update starts
// with a GET, as before Redis 7.0 support.
func TestConformanceGetPath(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	var n atomic.Int32
	storetest.Run(t, func(t *testing.T) greylist.Store {
		s, err := Open(t.Context(), srv.URL(), relaxed(Options{Prefix: fmt.Sprintf("get%d:", n.Add(1))}))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		s.noSetNXGet.Store(true)
		return s
	})
}

// TestSetNXGetUnsupported: only an error reply saying the syntax is not
// understood marks SET NX GET unsupported; other replies (the write was
// refused, the key has another type) and network errors do not.
func TestSetNXGetUnsupported(t *testing.T) {
	srv := testredis.Start(t)
	raw := rawClient(t, srv)
	// What this redis-server says to a SET whose options conflict, as
	// Redis 6.2 says to NX with GET.
	real := raw.Do(t.Context(), "set", "k", "v", "nx", "xx").Err()
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"Redis 6 and earlier", replyError("ERR syntax error"), true},
		{"this redis-server", real, true},
		{"wrapped", fmt.Errorf("update: %w", replyError("ERR syntax error")), true},
		{"unknown option", replyError("ERR unknown option 'GET'"), true},
		{"unsupported option", replyError("ERR Unsupported option: NX with GET"), true},
		{"wrong type", replyError("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{"out of memory", replyError("OOM command not allowed when used memory > 'maxmemory'."), false},
		{"read only", replyError("READONLY You can't write against a read only replica."), false},
		{"no permission", replyError("NOPERM User milter has no permissions to run the 'set' command"), false},
		{"unknown command", replyError("ERR unknown command 'set', with args beginning with: "), false},
		{"nil", redis.Nil, false},
		{"not a reply", errors.New("ERR syntax error"), false},
		{"timeout", timeout, false},
		{"deadline", context.DeadlineExceeded, false},
		{"connection closed", io.EOF, false},
		{"client closed", redis.ErrClosed, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil {
				t.Fatal("no error")
			}
			if got := setNXGetUnsupported(tt.err); got != tt.want {
				t.Errorf("setNXGetUnsupported(%q) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestPXMillis(t *testing.T) {
	tests := []struct {
		ttl  time.Duration
		want int64
	}{
		{0, 0},
		{time.Nanosecond, 1},
		{999 * time.Microsecond, 1},
		{time.Millisecond, 1},
		{1999 * time.Microsecond, 1},
		{1500 * time.Millisecond, 1500},
		{24 * time.Hour, 86_400_000},
	}
	for _, tt := range tests {
		if got := pxMillis(tt.ttl); got != tt.want {
			t.Errorf("pxMillis(%v) = %d, want %d", tt.ttl, got, tt.want)
		}
	}
}
