package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
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
		return fmt.Errorf("%q: want a directory, redis://, rediss:// or unix:// (Redis)", RedactStore(spec))
	}
	return nil
}

// RedactStore hides a password in a store specification, for messages.
func RedactStore(spec string) string {
	u, err := url.Parse(spec)
	if err != nil || u.User == nil {
		return spec
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
