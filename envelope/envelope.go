// Package envelope parses SMTP envelope addresses, the arguments of MAIL
// FROM and RCPT TO as the MTA passes them to the milter, once per address.
//
// An Address carries the two forms milter-grey needs of one address:
//
//   - Postfix's internal form (Local, Domain): quotes, backslash escapes,
//     comments and a source route undone, the domain split off at the last
//     "@" and its trailing dot dropped, as the Postfix SMTP server does
//     before its access(5) lookups. The bypass list, SPF and DKIM alignment
//     use it. An address Postfix would not accept as it is (an unclosed
//     quote, no domain) has none: Qualified is false.
//   - The text form for triplet keys (KeyLocal, KeyDomain): the address as
//     written, lower-cased, surrounding white space and angle brackets
//     removed, split at the last "@". It exists for every address, so that
//     garbage still gets a key, and it is what keys have always been made
//     of: keys stored by earlier versions stay valid.
//
// Normalising the key form (extensions, BATV, SRS, VERP numbers) is a rule
// of greylisting and lives in package greylist.
package envelope

import (
	"strings"
	"unicode"
)

// Address is one envelope address, parsed. The zero value is the null
// sender.
type Address struct {
	raw    string
	local  string // internal form
	domain string // internal form, case kept
	parsed bool   // local and domain hold the internal form
	null   bool

	keyLocal  string // lower-cased text before the last '@'
	keyDomain string // "@domain", "@" for an empty domain, "" without '@'
}

// Parse parses an envelope address as the MTA gives it, with or without
// angle brackets. "" and "<>" are the null sender. It never fails: an
// address that is not well formed is not Qualified, and still has a key
// form.
func Parse(s string) Address {
	a := Address{raw: s}
	text := strings.TrimFunc(s, isEdge)
	if text == "" {
		a.null = true
		return a
	}
	if in, ok := parseInternal(s); ok {
		switch {
		case in.null && text == `""`:
			// <"">: Postfix's internal form is empty, the null sender.
			a.null = true
			return a
		case !in.null:
			a.local, a.domain, a.parsed = in.local, in.domain, true
		}
		// Any other text that unquotes to nothing (a lone backslash)
		// is garbage, not the null sender: its key form stays, so
		// that normalising a key gives the key again.
	}
	text = strings.ToLower(text)
	if i := strings.LastIndexByte(text, '@'); i >= 0 {
		a.keyLocal, a.keyDomain = text[:i], strings.TrimRightFunc(text[i:], isDomainEnd)
	} else {
		a.keyLocal = text
	}
	return a
}

// isEdge reports what surrounds an address without being part of it.
func isEdge(r rune) bool { return unicode.IsSpace(r) || r == '<' || r == '>' }

// isDomainEnd reports what is trimmed from the end of a key's domain.
func isDomainEnd(r rune) bool { return r == '.' || isEdge(r) }

// Raw is the address as the MTA gave it, for logs.
func (a Address) Raw() string { return a.raw }

// IsNull reports whether a is the null sender <> (bounces, DSNs, address
// verification probes).
func (a Address) IsNull() bool { return a.null }

// Qualified reports whether a has Postfix's internal form, with a domain.
func (a Address) Qualified() bool { return a.parsed }

// Local is the local part in Postfix's internal form (unquoted, case
// kept); "" unless Qualified.
func (a Address) Local() string { return a.local }

// Domain is the domain in Postfix's internal form, case kept; "" unless
// Qualified.
func (a Address) Domain() string { return a.domain }

// LowerDomain is Domain lower-cased (ASCII and Unicode), the form SPF
// and DKIM alignment compare.
func (a Address) LowerDomain() string { return strings.ToLower(a.domain) }

// KeyLocal is the lower-cased local part of the text form: what a triplet
// key's sender or recipient is made of, before normalisation.
func (a Address) KeyLocal() string { return a.keyLocal }

// KeyDomain is the domain of the text form with its "@" ("@example.com";
// "@" when the domain is empty; "" when the address has no "@").
func (a Address) KeyDomain() string { return a.keyDomain }

// String is the address in Postfix's internal form (local@domain), "<>"
// for the null sender, or the text form when the address is not
// qualified.
func (a Address) String() string {
	switch {
	case a.null:
		return "<>"
	case a.parsed:
		return a.local + "@" + a.domain
	}
	return a.keyLocal + a.keyDomain
}
