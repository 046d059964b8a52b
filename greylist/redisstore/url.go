package redisstore

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/milter-grey/milter-grey/internal/redact"
)

// Modes of connection, as Open logs them.
const (
	modeServer   = "server"
	modeSentinel = "sentinel"
	modeCluster  = "cluster"
)

// clientConfig is a parsed URL: go-redis options for one of the modes.
type clientConfig struct {
	mode     string
	redacted string // the URL with passwords masked (redact.URL)

	server   *redis.Options         // modeServer
	failover *redis.FailoverOptions // modeSentinel
	cluster  *redis.ClusterOptions  // modeCluster

	knobs knobs // points into the options above
}

// parseURL chooses the mode from the scheme and query and lets go-redis
// parse the rest. Its errors never show a password.
func parseURL(rawURL string) (*clientConfig, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, malformed(rawURL, err)
	}
	cfg := &clientConfig{redacted: redact.URL(rawURL)}
	fail := func(format string, args ...any) (*clientConfig, error) {
		return nil, fmt.Errorf("redisstore: open %s: "+format, append([]any{cfg.redacted}, args...)...)
	}
	q := u.Query()
	switch {
	case u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix":
		return fail("unsupported scheme %q (want redis, rediss or unix)", u.Scheme)

	case u.Scheme == "unix":
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return fail("%w", err)
		}
		cfg.mode, cfg.server = modeServer, o

	case q.Has("master_name"):
		o, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return fail("%w", err)
		}
		if o.MasterName == "" {
			return fail("empty master_name")
		}
		// NewFailoverClient panics on the routing options; replicas may
		// also lag behind the master, which an Update must not read.
		if o.ReplicaOnly || o.RouteByLatency || o.RouteRandomly {
			return fail("replica_only, route_by_latency and route_randomly are not supported: reads must go to the master")
		}
		cfg.mode, cfg.failover = modeSentinel, o

	case q.Has("cluster"):
		on, err := strconv.ParseBool(q.Get("cluster"))
		if err != nil {
			return fail("cluster=%q: want true or false", q.Get("cluster"))
		}
		// go-redis does not know the parameter: take it out.
		q.Del("cluster")
		v := *u
		v.RawQuery = q.Encode()
		if !on {
			if q.Has("addr") {
				return fail("addr= with cluster=false: several addresses need cluster=true or master_name=")
			}
			o, err := redis.ParseURL(v.String())
			if err != nil {
				return fail("%w", err)
			}
			cfg.mode, cfg.server = modeServer, o
			break
		}
		// ParseClusterURL ignores the path; a Cluster has only db 0.
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return fail("a Redis Cluster has only database 0, not %q", p)
		}
		o, err := redis.ParseClusterURL(v.String())
		if err != nil {
			return fail("%w", err)
		}
		if o.ReadOnly || o.RouteByLatency || o.RouteRandomly {
			return fail("read_only, route_by_latency and route_randomly are not supported: reads must go to the masters")
		}
		cfg.mode, cfg.cluster = modeCluster, o

	case q.Has("addr"):
		return fail("addr= lists more servers: add cluster=true (Redis Cluster) or master_name=NAME (Sentinel)")

	default:
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return fail("%w", err)
		}
		cfg.mode, cfg.server = modeServer, o
	}
	cfg.knobs = cfg.newKnobs()
	return cfg, nil
}

// malformed reports a URL that net/url cannot parse. url.Parse's error
// quotes the whole URL, and its inner error may quote a piece of it (a
// password with an unescaped '/' or '#' ends up in the "port"), so the
// details are shown only for a URL that cannot hold a password.
func malformed(rawURL string, err error) error {
	if redact.URL(rawURL) == redact.Hidden {
		return errors.New("redisstore: open: malformed URL (not shown, it may hold a password; " +
			"characters such as / # ? @ % in a password must be percent-encoded)")
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("redisstore: open %q: malformed URL: %w", rawURL, err)
}

// newClient returns the go-redis client for the mode, and the same client
// as a ClusterClient in Cluster mode.
func (c *clientConfig) newClient() (redis.UniversalClient, *redis.ClusterClient) {
	switch c.mode {
	case modeSentinel:
		return redis.NewFailoverClient(c.failover), nil
	case modeCluster:
		cc := redis.NewClusterClient(c.cluster)
		return cc, cc
	default:
		return redis.NewClient(c.server), nil
	}
}

// knobs points at the settings the three go-redis option types share, so
// Options and the defaults are applied in one place.
type knobs struct {
	dialTimeout, readTimeout, writeTimeout *time.Duration
	poolSize, maxActiveConns               *int
	maxRetries, dialerRetries              *int
	contextTimeout                         *bool
}

func (c *clientConfig) newKnobs() knobs {
	switch c.mode {
	case modeSentinel:
		o := c.failover
		return knobs{&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolSize, &o.MaxActiveConns,
			&o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled}
	case modeCluster:
		o := c.cluster
		return knobs{&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolSize, &o.MaxActiveConns,
			&o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled}
	default:
		o := c.server
		return knobs{&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolSize, &o.MaxActiveConns,
			&o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled}
	}
}

// apply sets what opts sets, then the defaults for what neither opts nor
// the URL set, and checks the result.
func (k knobs) apply(opts Options) error {
	durations := []struct {
		name      string
		dst       *time.Duration
		opt, dflt time.Duration
	}{
		{"dial timeout", k.dialTimeout, opts.DialTimeout, DefaultDialTimeout},
		{"read timeout", k.readTimeout, opts.ReadTimeout, DefaultReadTimeout},
		{"write timeout", k.writeTimeout, opts.WriteTimeout, DefaultWriteTimeout},
	}
	for _, d := range durations {
		switch {
		case d.opt != 0:
			*d.dst = d.opt
		case *d.dst == 0:
			*d.dst = d.dflt
		}
		// go-redis parses 0 or less in the URL as -1, "no timeout".
		if *d.dst < 0 {
			return fmt.Errorf("%s must be positive (a Redis that hangs would hold up the MTA)", d.name)
		}
	}
	switch {
	case opts.PoolSize != 0:
		*k.poolSize = opts.PoolSize
	case *k.poolSize == 0:
		*k.poolSize = DefaultPoolSize
	}
	if n := *k.poolSize; n < 1 || n > MaxPoolSize {
		return fmt.Errorf("pool size %d out of range 1..%d", n, MaxPoolSize)
	}
	// go-redis opens connections beyond PoolSize under load unless
	// MaxActiveConns caps them.
	if *k.maxActiveConns == 0 {
		*k.maxActiveConns = *k.poolSize
	}
	if *k.maxRetries == 0 {
		*k.maxRetries = defaultMaxRetries
	}
	if *k.dialerRetries == 0 {
		*k.dialerRetries = defaultDialerRetries
	}
	// Honour the caller's deadline when it is shorter than the timeouts.
	*k.contextTimeout = true
	return nil
}
