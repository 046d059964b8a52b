package accessmap

import (
	"strings"
	"unicode/utf8"
)

// quoteLocal returns a local part in the external form Postfix looks up
// (quote_822_local): as is when it is an RFC 822 dot-string, otherwise in
// double quotes with '"', '\' and CR escaped. 8-bit bytes need no quotes.
func quoteLocal(local string) string {
	if isDotString(local) {
		return local
	}
	var b strings.Builder
	b.Grow(len(local) + 2)
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' || c == '\r' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String()
}

// isDotString reports whether local needs no quotes: non-empty, no
// leading, trailing or doubled dot, no space, control or special byte.
func isDotString(local string) bool {
	if local == "" || local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return false
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c <= ' ' || c == 0x7f || strings.IndexByte(`()<>@,;:\"[]`, c) >= 0 {
			return false
		}
	}
	return true
}

// splitExtension returns the local part without its address extension, as
// Postfix's split_addr does: at the first delimiter byte, but never at the
// start, and never for postmaster, mailer-daemon and double-bounce, nor
// (when "-" is a delimiter) for owner-foo and foo-request.
func splitExtension(local, delimiters string) (base string, ok bool) {
	if delimiters == "" {
		return "", false
	}
	if asciiEqualFold(local, "postmaster") || asciiEqualFold(local, "mailer-daemon") ||
		asciiEqualFold(local, "double-bounce") {
		return "", false
	}
	if strings.IndexByte(delimiters, '-') >= 0 {
		if len(local) >= 6 && asciiEqualFold(local[:6], "owner-") {
			return "", false
		}
		if len(local) > 8 && asciiEqualFold(local[len(local)-8:], "-request") {
			return "", false
		}
	}
	for i := 0; i < len(local); i++ {
		if strings.IndexByte(delimiters, local[i]) >= 0 {
			if i == 0 {
				return "", false
			}
			return local[:i], true
		}
	}
	return "", false
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if asciiLower(a[i]) != asciiLower(b[i]) {
			return false
		}
	}
	return true
}

func asciiLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// fold lower-cases a key or lookup string as Postfix does: ASCII always,
// and (with SMTPUTF8, the Postfix 3.7 default) other letters when the
// string is valid UTF-8. Invalid UTF-8 is folded as ASCII only, so that
// distinct byte strings stay distinct.
func fold(s string) string {
	ascii := true
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
		if 'A' <= c && c <= 'Z' {
			upper = true
		}
	}
	switch {
	case ascii && !upper:
		return s
	case !ascii && utf8.ValidString(s):
		return strings.ToLower(s)
	}
	b := []byte(s)
	for i, c := range b {
		b[i] = asciiLower(c)
	}
	return string(b)
}
