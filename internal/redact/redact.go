// Package redact masks the passwords in a store specification (a Redis URL
// or a Badger directory) before it goes into a message or a log line.
package redact

import (
	"net/url"
	"strings"
)

// Hidden stands for a specification that is not shown at all.
const Hidden = "(URL not shown: it is malformed and may hold a password)"

// URL returns spec with the password of its userinfo and of a password=
// query parameter (Sentinel's master password) masked as xxxxx. Anything
// without a password, a Badger directory for one, comes back unchanged.
//
// A spec that net/url cannot parse is returned as Hidden when it may hold
// a password (it has an '@' or the word password): a password with an
// unescaped '/', '#' or '?' moves the URL's boundaries, so no part of it
// can be trusted to be free of the password.
func URL(spec string) string {
	u, err := url.Parse(spec)
	if err != nil {
		if strings.Contains(spec, "@") || strings.Contains(strings.ToLower(spec), "password") {
			return Hidden
		}
		return spec
	}
	q := u.Query()
	_, userPassword := u.User.Password()
	if !userPassword && !q.Has("password") {
		return spec
	}
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
