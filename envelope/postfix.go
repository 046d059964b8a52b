package envelope

import "strings"

// internalForm is an envelope address in Postfix's internal form: the local
// part unquoted, the domain without its trailing dot.
type internalForm struct {
	local, domain string
	null          bool // the null sender <>
}

// parseInternal turns an address as the MTA gives it (Postfix passes the
// MAIL FROM argument to milters as the client wrote it; go-milter strips the
// angle brackets) into Postfix's internal form, the way the Postfix SMTP
// server does before its access lookups: comments and white space outside
// quotes removed, quoted strings and backslash escapes undone, a source
// route dropped, and the domain split off at the last "@". ok is false for
// garbage and for addresses without a domain.
func parseInternal(s string) (a internalForm, ok bool) {
	s = strings.Trim(s, " \t\r\n")
	if strings.HasPrefix(s, "<") {
		end := closingBracket(s)
		if end < 0 {
			return internalForm{}, false
		}
		s = s[1:end]
	}
	s = dropSourceRoute(s)
	internal, ok := Unquote(s)
	if !ok {
		return internalForm{}, false
	}
	if internal == "" {
		return internalForm{null: true}, true
	}
	at := strings.LastIndexByte(internal, '@')
	if at < 0 {
		return internalForm{}, false // unqualified: Postfix would append $myorigin
	}
	local, domain := internal[:at], internal[at+1:]
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" {
		return internalForm{}, false
	}
	return internalForm{local: local, domain: domain}, true
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

// Unquote undoes RFC 822 quoting as Postfix's tokenizer does: quoted
// strings lose their quotes, backslash escapes their backslash, comments
// and white space outside quotes disappear; domain literals stay as they
// are. ok is false when a quoted string, comment or literal is not closed.
func Unquote(s string) (string, bool) {
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
