package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/milter-grey/milter-grey/config"
	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/greylist/badgerstore"
	"github.com/milter-grey/milter-grey/greylist/redisstore"
	"github.com/milter-grey/milter-grey/internal/redact"
)

// openStore opens the store a specification names: Redis for a URL, else
// the Badger directory.
func openStore(spec string, c *config.Config, log *slog.Logger) (greylist.Store, error) {
	if err := config.CheckStore(spec); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if config.IsRedis(spec) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return redisstore.Open(ctx, spec, redisstore.Options{Prefix: c.RedisPrefix, Logger: log.With("component", "redis")})
	}
	dir := strings.TrimPrefix(spec, "badger:")
	return badgerstore.Open(dir, badgerstore.Options{SyncWrites: c.SyncWrites, Logger: log.With("component", "badger")})
}

// copyStore copies every record from one store to another with its
// remaining lifetime (milter-grey copy-store).
func copyStore(c *config.Config, from, to string, log *slog.Logger) (int, error) {
	if from == "" || to == "" {
		return 0, errors.New("copy-store needs -from and -to (a Badger directory or a Redis URL)")
	}
	if from == to {
		return 0, errors.New("copy-store: -from and -to are the same store")
	}
	src, err := openStore(from, c, log)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w (a Badger directory can only be opened while milter-grey is stopped)", redact.URL(from), err)
	}
	defer src.Close()
	dst, err := openStore(to, c, log)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", redact.URL(to), err)
	}
	n, err := greylist.Copy(context.Background(), dst, src, time.Now)
	if cerr := dst.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", redact.URL(to), cerr)
	}
	return n, err
}
