// Package redisstore is a greylist.Store on Redis, shared by several MX
// hosts: every host opens the same Redis, and an Update of a triplet is
// atomic across all of them, so two hosts never both see "new" for it.
//
// # URLs
//
// Open takes the URL forms go-redis parses (redis.ParseURL,
// redis.ParseFailoverURL, redis.ParseClusterURL); the query parameter
// master_name or cluster chooses Sentinel or Cluster:
//
//	redis://[user:password@]host[:port][/db]            one server (port 6379, db 0 by default)
//	rediss://[user:password@]host[:port][/db]           the same over TLS (skip_verify=true turns verification off)
//	unix://[user:password@]/path/to/redis.sock[?db=N]   a unix socket
//	redis://[user:password@]sentinel:26379[/db]?master_name=NAME[&addr=sentinel2:26379…][&username=U][&password=P]
//	    Sentinel: userinfo authenticates to the sentinels, username= and
//	    password= to the master (rediss:// for TLS)
//	redis://[user:password@]node:port?cluster=true[&addr=node2:port…]
//	    Redis Cluster: the nodes are seeds, the rest is discovered; no db
//
// Other query parameters are go-redis options in snake case (dial_timeout,
// read_timeout, write_timeout, pool_size, pool_timeout, max_retries,
// client_name, protocol, …); go-redis rejects unknown ones. A timeout set in
// Options overrides the URL's, which overrides the defaults; timeouts cannot
// be turned off (a Redis that hangs must not hold up the MTA). Reads and
// writes always go to the master: the Sentinel and Cluster options that
// route reads to replicas (replica_only, read_only, route_by_latency,
// route_randomly) are refused, because an Update reading a stale replica
// would not be atomic. Errors name the URL with its passwords masked.
//
// # Records and time
//
// A record is stored under Options.Prefix+key as a plain string holding
// greylist.Record.MarshalBinary (12–16 bytes), with the record's time to
// live as the key's expiry (SET … PX; no expiry for ttl 0). Decisions
// use the times inside the record and the clock of the deciding host (the
// engine's clock), never Redis's clock: the Redis TTL only cleans up. Keep
// the MX hosts' clocks in sync (NTP), as a host whose clock runs ahead
// passes retries early.
//
// # Atomic updates
//
// Update runs the caller's function (greylist.Policy.Step, so the state
// machine stays in Go, in one place) on the record it read and, only if
// it wants to write, writes with a compare-and-set script that succeeds
// only if the key still holds what was read. If another host wrote the
// key in between, Update starts over with the new record, up to 100 times
// with a random backoff of a few milliseconds at most. Updates of one key
// within a process also take an in-process lock first, so conflicts come
// only from other hosts. In a Cluster every command touches one key,
// hence one slot.
//
// The first read is speculative: Update calls the function on "no record"
// and sends its result with SET … NX GET, which writes it if the key is
// absent and otherwise returns the key's value, for the function to run
// again on. So the first delivery of a triplet costs one round trip, as
// does an Update that writes nothing (a known triplet seen within the
// minute, say); one that changes a record costs two. SET … NX GET needs
// Redis 7.0 or later: on an older server (it answers "syntax error") the
// Store logs a warning once and reads with GET instead, and a new triplet
// costs two round trips.
//
// # Failures
//
// Every call is bounded: connecting by DialTimeout, each reply by
// ReadTimeout (defaults 1 s and 500 ms, well inside the MTA's milter
// timeouts), and by the context's deadline when that is shorter. Failed
// commands are not retried (max_retries=N in the URL turns go-redis's
// retries back on), so a Redis that hangs fails a call after one read
// timeout, two when the call must open a connection (the handshake times
// out first); a Redis that is down fails it at once (connection refused)
// or after DialTimeout (no answer to the connect). After a restart of
// Redis the store reconnects by itself. It needs no Redis persistence to
// be correct, but without it (or a replica) a restart forgets every
// triplet, and senders are greylisted once more.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/internal/keylock"
)

// Defaults for the zero fields of Options.
const (
	DefaultPrefix       = "milter-grey:"
	DefaultDialTimeout  = time.Second
	DefaultReadTimeout  = 500 * time.Millisecond
	DefaultWriteTimeout = 500 * time.Millisecond
	DefaultPoolSize     = 32
	// MaxPoolSize bounds PoolSize: a milter needs a connection per
	// concurrent decision, not thousands.
	MaxPoolSize = 1024
)

// defaultMaxRetries is go-redis's MaxRetries unless the URL sets
// max_retries: -1, no retries. A restart of Redis needs none (go-redis
// checks pooled connections before use: measured, no call failed after a
// restart either way), and greylisting fails open, while each retry on a
// hung Redis costs another read timeout or two; go-redis's default of 3
// retries made a Get on a hung Redis take 2 s with even one.
const defaultMaxRetries = -1

// defaultDialerRetries is how many times a connection is dialled before
// the command fails (go-redis's default is 5, 100 ms apart); the command
// retry above already dials again.
const defaultDialerRetries = 1

// Options configures Open. The zero value is a sensible default.
type Options struct {
	// Prefix is prepended to every key, so several applications (or
	// several milter-grey set-ups) can share a database; default
	// DefaultPrefix. Scan strips it from the keys it returns.
	Prefix string

	// DialTimeout bounds connecting (and the TLS and AUTH handshake);
	// default DefaultDialTimeout.
	DialTimeout time.Duration

	// ReadTimeout and WriteTimeout bound each reply and each request;
	// defaults DefaultReadTimeout and DefaultWriteTimeout. They must stay
	// well inside the MTA's milter timeouts.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration

	// PoolSize is the most connections kept to each Redis node (1 to
	// MaxPoolSize; default DefaultPoolSize). A call that finds them all
	// busy waits for one, up to ReadTimeout + 1 s. go-redis keeps up to
	// 10 more connections for pipelines (Get, Scan).
	PoolSize int

	// Logger receives a line when the store connects, and a warning if
	// the server turns out to be older than Redis 7.0; nil discards them.
	Logger *slog.Logger
}

var _ greylist.Store = (*Store)(nil)

// Store is a greylist.Store on Redis. It is safe for concurrent use, and
// several Stores (in one process or on several hosts) may share a Redis.
type Store struct {
	rdb     redis.UniversalClient
	cluster *redis.ClusterClient // rdb, in Cluster mode; nil otherwise
	prefix  string
	url     string // redacted, for messages

	// locks serialises Updates of a key within the process; nil turns
	// that off (tests, to put the compare-and-set alone under load). The
	// compare-and-set is optimistic: of N concurrent read-modify-writes of
	// a key one write succeeds and N-1 start over, so a burst of
	// deliveries of one triplet (a message to many recipients of one
	// domain, say) would cost N²/2 round trips. With the lock the process
	// sends one update at a time per key, and conflicts come only from
	// other hosts (and Put).
	locks *keylock.Locks

	// noSetNXGet is set once the server has refused SET … NX GET: Updates
	// then start with a GET.
	noSetNXGet atomic.Bool
	log        *slog.Logger // nil: no logging

	closeOnce sync.Once
	closeErr  error
}

// Open connects to the Redis that rawURL names (see the package
// documentation for the forms), checks it answers PING within ctx, and
// returns the Store. Errors name the URL with its passwords masked.
func Open(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	cfg, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if err := cfg.knobs.apply(opts); err != nil {
		return nil, fmt.Errorf("redisstore: open %s: %w", cfg.redacted, err)
	}
	rdb, cluster := cfg.newClient()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redisstore: open %s: %s%w", cfg.redacted, hint(err), err)
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if opts.Logger != nil {
		opts.Logger.Info("redisstore: connected", "url", cfg.redacted, "mode", cfg.mode, "prefix", prefix,
			"dial_timeout", *cfg.knobs.dialTimeout, "read_timeout", *cfg.knobs.readTimeout,
			"pool_size", *cfg.knobs.poolSize)
	}
	return &Store{rdb: rdb, cluster: cluster, prefix: prefix, url: cfg.redacted, locks: keylock.New(), log: opts.Logger}, nil
}

// hint explains the errors an admin meets when setting up the URL.
func hint(err error) string {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "NOAUTH"),
		strings.Contains(msg, "invalid password"), strings.Contains(msg, "invalid username-password"):
		return "authentication failed (check the user and password in the URL): "
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time: "
	}
	return ""
}

// Close closes the connections. Calls after the first do nothing and
// return nil; other methods return an error after Close.
func (s *Store) Close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		if err := s.rdb.Close(); err != nil {
			s.closeErr = fmt.Errorf("redisstore: close %s: %w", s.url, err)
		}
	})
	if !first {
		return nil
	}
	return s.closeErr
}
