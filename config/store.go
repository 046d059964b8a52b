package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/milter-grey/milter-grey/internal/redact"
)

// IsRedis reports whether a store specification names a Redis server.
func IsRedis(spec string) bool {
	for _, p := range []string{"redis://", "rediss://", "unix://"} {
		if strings.HasPrefix(spec, p) {
			return true
		}
	}
	return false
}

// CheckStore validates a store specification without opening it: a
// Badger directory ("/var/lib/milter-grey" or "badger:/path") or a Redis
// URL.
func CheckStore(spec string) error {
	switch {
	case spec == "":
		return errors.New("must name a Badger directory or a redis:// URL")
	case IsRedis(spec):
		if _, err := url.Parse(spec); err != nil {
			return errors.New("malformed Redis URL")
		}
	case strings.Contains(spec, "://"):
		return fmt.Errorf("%q: want a directory, redis://, rediss:// or unix:// (Redis)", redact.URL(spec))
	}
	return nil
}
