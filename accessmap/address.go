package accessmap

import (
	"strings"
	"unicode/utf8"
)

// address is an envelope address in Postfix's internal form: the local
// part unquoted, the domain without its trailing dot.
type address struct {
	local, domain string
	null          bool // the null sender <>
}

// parseAddress turns an address as the MTA gives it (Postfix passes the
// MAIL FROM argument to milters as the client wrote it; go-milter strips the
// angle brackets) into Postfix's internal form, the way the Postfix SMTP
// server does before its access lookups: comments and white space outside
// quotes removed, quoted strings and backslash escapes undone, a source
// route dropped, and the domain split off at the last "@". ok is false for
// garbage and for addresses without a domain.
func parseAddress(s string) (a address, ok bool) {
	s = strings.Trim(s, " \t\r\n")
	if strings.HasPrefix(s, "<") {
		end := closingBracket(s)
		if end < 0 {
			return address{}, false
		}
		s = s[1:end]
	}
	s = dropSourceRoute(s)
	internal, ok := internalize(s)
	if !ok {
		return address{}, false
	}
	if internal == "" {
		return address{null: true}, true
	}
	at := strings.LastIndexByte(internal, '@')
	if at < 0 {
		return address{}, false // unqualified: Postfix would append $myorigin
	}
	local, domain := internal[:at], internal[at+1:]
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" {
		return address{}, false
	}
	return address{local: local, domain: domain}, true
}

// closingBracket returns the index of the ">" that closes the "<" at s[0],
// skipping quoted strings and escapes, or -1.
func closingBracket(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case c == '>' && !quoted:
			return i
		}
	}
	return -1
}

// dropSourceRoute removes an RFC 5321 source route ("@relay1,@relay2:"),
// which Postfix ignores.
func dropSourceRoute(s string) string {
	t := strings.TrimLeft(s, " \t")
	if !strings.HasPrefix(t, "@") {
		return s
	}
	if i := strings.IndexByte(t, ':'); i >= 0 && !strings.ContainsAny(t[:i], `"\(`) {
		return t[i+1:]
	}
	return s
}

// internalize undoes RFC 822 quoting as Postfix's tokenizer does: quoted
// strings lose their quotes, backslash escapes their backslash, comments
// and white space outside quotes disappear; domain literals stay as they
// are. ok is false when a quoted string, comment or literal is not closed.
func internalize(s string) (string, bool) {
	if !strings.ContainsAny(s, "\"\\( \t\r\n[") {
		return s, true // the common case: nothing to undo
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\r', '\n':
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			end := -1
			for j := i + 1; j < len(s); j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
					b.WriteByte(s[j])
					continue
				}
				if s[j] == '"' {
					end = j
					break
				}
				b.WriteByte(s[j])
			}
			if end < 0 {
				return "", false
			}
			i = end
		case '(':
			depth := 0
			end := -1
			for j := i; j < len(s) && end < 0; j++ {
				switch s[j] {
				case '\\':
					j++
				case '(':
					depth++
				case ')':
					depth--
					if depth == 0 {
						end = j
					}
				}
			}
			if end < 0 {
				return "", false
			}
			i = end
		case '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return "", false
			}
			b.WriteString(s[i : i+end+1])
			i += end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

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
