package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/greylist/badgerstore"
	"github.com/milter-grey/milter-grey/greylist/redisstore"
)

// isRedis reports whether a store specification names a Redis server.
func isRedis(spec string) bool {
	for _, p := range []string{"redis://", "rediss://", "unix://"} {
		if strings.HasPrefix(spec, p) {
			return true
		}
	}
	return false
}

// checkStoreSpec validates a store specification without opening it: a
// Badger directory ("/var/lib/milter-grey" or "badger:/path") or a Redis
// URL.
func checkStoreSpec(spec string) error {
	switch {
	case spec == "":
		return errors.New("must name a Badger directory or a redis:// URL")
	case isRedis(spec):
		if _, err := url.Parse(spec); err != nil {
			return errors.New("malformed Redis URL")
		}
	case strings.Contains(spec, "://"):
		return fmt.Errorf("%q: want a directory, redis://, rediss:// or unix:// (Redis)", redactSpec(spec))
	}
	return nil
}

// redactSpec hides a password in a store specification.
func redactSpec(spec string) string {
	u, err := url.Parse(spec)
	if err != nil || u.User == nil {
		return spec
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

// openStore opens the store a specification names: Redis for a URL, else
// the Badger directory.
func openStore(spec string, c *config, log *slog.Logger) (greylist.Store, error) {
	if err := checkStoreSpec(spec); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if isRedis(spec) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return redisstore.Open(ctx, spec, redisstore.Options{Prefix: c.RedisPrefix, Logger: log.With("component", "redis")})
	}
	dir := strings.TrimPrefix(spec, "badger:")
	return badgerstore.Open(dir, badgerstore.Options{SyncWrites: c.SyncWrites, Logger: log.With("component", "badger")})
}

// copyStore copies every record from one store to another with its
// remaining lifetime (milter-grey copy-store).
func copyStore(c *config, from, to string, log *slog.Logger) (int, error) {
	if from == "" || to == "" {
		return 0, errors.New("copy-store needs -from and -to (a Badger directory or a Redis URL)")
	}
	if from == to {
		return 0, errors.New("copy-store: -from and -to are the same store")
	}
	src, err := openStore(from, c, log)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w (a Badger directory can only be opened while milter-grey is stopped)", redactSpec(from), err)
	}
	defer src.Close()
	dst, err := openStore(to, c, log)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", redactSpec(to), err)
	}
	n, err := greylist.Copy(context.Background(), dst, src, time.Now)
	if cerr := dst.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", redactSpec(to), cerr)
	}
	return n, err
}
