package greylist

import (
	"regexp"

	"github.com/milter-grey/milter-grey/envelope"
	"strings"
	"unicode"
	"unicode/utf8"
)

// NullSender is how the empty envelope sender (bounces, DSNs, address
// verification probes) appears in keys and logs.
const NullSender = "<>"

// maxAddrLen bounds an address part of a key. SMTP limits a path to 256
// octets (RFC 5321 §4.5.3.1.3); a longer one is truncated rather than
// allowed to make huge keys.
const maxAddrLen = 320

var (
	// BATV: prvs=TAG=user, with variants used by some senders.
	batvRe = regexp.MustCompile(`^(?:prvs|msprvs1|btv1)=+[0-9a-z]+=+(.+)$`)
	// SRS0=HASH=TT=domain=local and SRS1=HASH=forwarder==HASH=TT=domain=local
	// (the separator after SRS0/SRS1 may be '=', '+' or '-'). The hash and
	// timestamp change daily; the rest identifies the original sender.
	srs0Re = regexp.MustCompile(`^srs0[=+-][^=]+=[^=]+=(.+)$`)
	srs1Re = regexp.MustCompile(`^srs1[=+-][^=]+=(.+?)==[^=]+=[^=]+=(.+)$`)
	// A UUID (8-4-4-4-12 hex digits), as bulk senders put in bounce
	// addresses (Amazon SES: 0102018c…-3c8e1b2a-9d4e-4f1a-8b7c-2e5d6f7a8b9c-000000).
	uuidRe = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	// A local part ending in a recipient encoded as user=domain, the VERP
	// form of mailing-list and ESP bounce addresses
	// (bounce-mc.us5_1234.5678-user=dest.test).
	verpRe = regexp.MustCompile(`[-+._][^-+._=@]+=[a-z0-9-]+(?:\.[a-z0-9-]+)+$`)
)

// NormalizeSender returns the key form of an envelope sender given as
// text; see SenderKey.
func NormalizeSender(addr, delimiters string) string {
	return SenderKey(envelope.Parse(addr), delimiters)
}

// SenderKey returns the form of an envelope sender used in triplet keys:
// lower-cased, address extension removed, and the per-message parts of
// BATV, SRS and VERP addresses replaced, so that a legitimate retry (and
// the next message of the same correspondent) produces the same key. The
// null sender is "<>".
func SenderKey(a envelope.Address, delimiters string) string {
	if a.IsNull() {
		return NullSender
	}
	local := maskNumbers(maskTokens(senderLocal(a.KeyLocal(), delimiters)))
	return truncate(joinAddr(local, a.KeyDomain()))
}

// senderLocal undoes BATV and SRS, else strips the address extension. The
// prefix tests keep the regexps off the common path.
func senderLocal(local, delimiters string) string {
	if hasAnyPrefix(local, "prvs=", "msprvs1=", "btv1=") {
		if m := batvRe.FindStringSubmatch(local); m != nil {
			local = m[1]
		}
	}
	if strings.HasPrefix(local, "srs1") {
		if m := srs1Re.FindStringSubmatch(local); m != nil {
			return "srs1=" + m[1] + "==" + m[2]
		}
	}
	if strings.HasPrefix(local, "srs0") {
		if m := srs0Re.FindStringSubmatch(local); m != nil {
			return "srs0=" + m[1]
		}
	}
	return stripExtension(local, delimiters)
}

// NormalizeRecipient returns the key form of a recipient given as text;
// see RecipientKey.
func NormalizeRecipient(addr, delimiters string) string {
	return RecipientKey(envelope.Parse(addr), delimiters)
}

// RecipientKey returns the form of a recipient used in keys and list
// lookups: lower-cased with the address extension removed. It is
// idempotent: a normalised recipient, parsed again, normalises to itself.
func RecipientKey(a envelope.Address, delimiters string) string {
	s := recipientKey(a, delimiters)
	if len(s) > maxAddrLen {
		// The cut may leave a trailing dot or cut the domain off:
		// normalising the cut address again makes the result a fixed
		// point (being short enough, it is not cut again).
		s = truncate(recipientKey(envelope.Parse(truncate(s)), delimiters))
	}
	return s
}

func recipientKey(a envelope.Address, delimiters string) string {
	if a.IsNull() {
		return NullSender
	}
	return joinAddr(stripExtension(a.KeyLocal(), delimiters), a.KeyDomain())
}

// joinAddr joins an address's key parts (after the local part is normalised)
// and escapes it.
func joinAddr(local, domain string) string {
	if domain == "" {
		// The local part ends the address: cutting an extension must not
		// leave there what parsing trims around an address.
		if l := strings.TrimRightFunc(local, isAddrEdge); l != "" {
			local = l
		}
	}
	return escapeKeyPart(local + domain)
}

// isAddrEdge reports what surrounds an address without being part of it
// (as envelope.Parse trims it).
func isAddrEdge(r rune) bool { return unicode.IsSpace(r) || r == '<' || r == '>' }

// truncate cuts s to at most maxAddrLen bytes, at a character boundary.
func truncate(s string) string {
	if len(s) <= maxAddrLen {
		return s
	}
	n := maxAddrLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// stripExtension removes an address extension: everything from the first
// delimiter character on, as Postfix's recipient_delimiter does. A local
// part that starts with a delimiter (owner lists like "-request") is kept.
func stripExtension(local, delimiters string) string {
	if delimiters == "" {
		return local
	}
	if i := strings.IndexAny(local, delimiters); i > 0 {
		return local[:i]
	}
	return local
}

// maskNumbers replaces every run of digits that stands alone between
// non-alphanumeric characters with '#': VERP and list-bounce addresses such
// as bounce-12345-678@ carry a fresh number per message. Digits inside a
// word (user2024) are part of the name and stay, and so does a local part
// that is only a number (12345@qq.com is a mailbox, not a VERP tag).
func maskNumbers(s string) string {
	if strings.Trim(s, "0123456789") == "" {
		return s // an all-digit mailbox (12345@qq.com) is a name, not a VERP tag
	}
	var b strings.Builder
	changed := false
	for i := 0; i < len(s); {
		if isDigit(s[i]) && (i == 0 || !isWord(s[i-1])) {
			j := i
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			if j == len(s) || !isWord(s[j]) {
				if !changed {
					b.Grow(len(s))
					b.WriteString(s[:i])
					changed = true
				}
				b.WriteByte('#')
				i = j
				continue
			}
			if changed {
				b.WriteString(s[i:j])
			}
			i = j
			continue
		}
		if changed {
			b.WriteByte(s[i])
		}
		i++
	}
	if !changed {
		return s
	}
	return b.String()
}

// minHexToken is the length from which a run of hex digits with a digit in
// it is taken for a per-message token: shorter ones are words (cafe12) or
// years, longer ones are hashes and message ids.
const minHexToken = 8

// maskTokens replaces the per-message tokens of bulk senders' bounce
// addresses with '#', so that every message of one sender gives one key:
//   - in a local part that encodes the recipient (VERP: …-user=dest.test),
//     every word with a digit before the encoded recipient (VERP tags are
//     machine-made: bounce-mc.us5_1234.5678-user=dest.test becomes
//     bounce-mc.#_#.#-user=dest.test);
//   - a UUID (8-4-4-4-12 hex digits);
//   - a run of at least minHexToken hex digits with a digit in it, unless it
//     is the whole local part (a mailbox may be named so).
//
// Runs of digits alone are left to maskNumbers.
func maskTokens(local string) string {
	if strings.IndexByte(local, '=') > 0 {
		if loc := verpRe.FindStringIndex(local); loc != nil {
			return maskDigitWords(local[:loc[0]]) + local[loc[0]:]
		}
	}
	if len(local) >= 36 && strings.IndexByte(local, '-') >= 0 {
		local = uuidRe.ReplaceAllLiteralString(local, "#")
	}
	return maskHexRuns(local)
}

// maskDigitWords replaces each alphanumeric word that holds a digit with
// '#'.
func maskDigitWords(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if !isAlnum(s[i]) {
			b.WriteByte(s[i])
			i++
			continue
		}
		j, digit := i, false
		for j < len(s) && isAlnum(s[j]) {
			digit = digit || isDigit(s[j])
			j++
		}
		if digit {
			b.WriteByte('#')
		} else {
			b.WriteString(s[i:j])
		}
		i = j
	}
	return b.String()
}

// maskHexRuns replaces each alphanumeric word of at least minHexToken hex
// digits, with a digit and a letter in it, with '#' (all-digit runs are
// maskNumbers' business); a local part that is one such word is kept.
func maskHexRuns(s string) string {
	if len(s) < minHexToken {
		return s
	}
	var b strings.Builder
	changed := false
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && isAlnum(s[j]) {
			j++
		}
		if j == i {
			if changed {
				b.WriteByte(s[i])
			}
			i++
			continue
		}
		if j-i >= minHexToken && j-i < len(s) && isHexToken(s[i:j]) {
			if !changed {
				b.Grow(len(s))
				b.WriteString(s[:i])
				changed = true
			}
			b.WriteByte('#')
		} else if changed {
			b.WriteString(s[i:j])
		}
		i = j
	}
	if !changed {
		return s
	}
	return b.String()
}

// isHexToken reports whether w is lower-case hex digits with at least one
// digit and one letter.
func isHexToken(w string) bool {
	digit, letter := false, false
	for i := 0; i < len(w); i++ {
		switch c := w[i]; {
		case isDigit(c):
			digit = true
		case c >= 'a' && c <= 'f':
			letter = true
		default:
			return false
		}
	}
	return digit && letter
}

func isAlnum(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isWord(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

// escapeKeyPart makes a key component free of the space that separates key
// parts and of control bytes, so that keys stay readable and split back
// unambiguously. The escape is %xx in lower case and '%' itself is left
// alone, so that an escaped part is a fixed point of normalisation (which
// lower-cases) and percent-hack addresses (user%host@relay) stay readable.
func escapeKeyPart(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
