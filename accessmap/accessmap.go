// Package accessmap reads Postfix access(5) tables and looks up e-mail
// addresses in Postfix's order. milter-grey uses it for the sender bypass
// list, so that an admin's existing check_sender_access file works unchanged.
//
// It reads indexed tables (hash:, btree:, lmdb:, cdb:, texthash: and the
// like: the text source that postmap(1) reads) and pattern tables
// (regexp_table(5) and pcre_table(5)), looked up the way the Postfix 3.7
// SMTP server looks up an envelope sender with check_sender_access. It is
// not for cidr: or network tables, and it does not evaluate Postfix
// restrictions.
//
// # Lookup order
//
// For the sender user+ext@sub.example.com, with "+" as a delimiter and the
// Postfix 3.7 default (parent_domain_matches_subdomains includes
// smtpd_access_maps), the keys tried are
//
//	user+ext@sub.example.com
//	user@sub.example.com
//	sub.example.com
//	example.com
//	com
//	user+ext@
//	user@
//
// and the first key found decides. With ParentDomainMatchesSubdomains off,
// the domain lookups are sub.example.com, .example.com, .com instead: then
// "example.com" matches only example.com itself and ".example.com" matches
// its subdomains. In the default mode a ".example.com" key never matches
// (Postfix never looks it up); Load reports such keys as warnings. The null
// sender is looked up as "<>" (smtpd_null_access_lookup_key) and nothing
// else. Keys and lookups are case-insensitive.
//
// An address is looked up in the form Postfix uses: comments, source routes
// and needless quotes removed, the local part quoted again only where
// RFC 5322 needs it ("john doe"@example.com, but a.b@example.com for
// "a.b"@example.com), the domain without its trailing dot. Addresses
// without a domain never match: Postfix would append $myorigin, which
// milter-grey does not know.
//
// # Pattern tables
//
// A regexp: or pcre: table is a list of rules, "/pattern/flags result",
// "!/pattern/flags result" (applies when the pattern does not match), and
// "if /pattern/" ... "endif" blocks, tried in order; the first rule that
// applies decides, and its result may use $1, ${1} or $(1) for the text of
// a parenthesised subexpression ($$ is a '$'). As Postfix does for such
// tables, the pattern is applied to the whole address only: the key
// Postfix looks up first (user+ext@sub.example.com, or "<>" for the null
// sender), without case folding (patterns are case-insensitive unless the
// i flag turns that off), and never to the domain or user@ keys.
//
// Patterns are matched with Go's regexp package (RE2), which has no
// backreferences, lookaround, atomic groups, possessive quantifiers,
// recursion or conditionals: a pattern that uses one is an error naming
// file, line and the construct. regexp: tables are read as glibc's regcomp
// reads POSIX extended expressions (leftmost-longest matching; a backslash
// inside brackets is itself; \w, \s,  and their capitals as GNU defines
// them; a backslash before another letter or a digit, which means
// something else in POSIX than in Perl syntax, is an error), pcre: tables
// as PCRE2 reads them (flags i and s on by default; m, x, A, U toggle; E
// and X change nothing on an address).
//
// When several tables are loaded together, each lookup key is tried in
// every table in the order they were given, as a Postfix table list does:
// the whole address first, in indexed and pattern tables alike; then the
// other keys, in the indexed tables only.
//
// # Actions
//
// OK (the first word, in any case; trailing text is ignored) and an
// all-numerical result are Postfix's accept actions and bypass
// greylisting. DUNNO stops the lookup without a match, as in Postfix: a
// "user@example.com DUNNO" entry keeps that sender from matching a less
// specific "example.com OK".
//
// Every other action (REJECT, DEFER, 4NN/5NN text, HOLD, DISCARD, FILTER,
// restriction names, ...) is not a bypass. Load reports it as a warning,
// and at lookup time the entry decides "no bypass", like DUNNO. Stopping
// there is what Postfix does (the entry is found, so less specific keys are
// not tried), and it keeps a sender that the admin singled out from being
// bypassed by a broader OK. That includes "permit", which Postfix would
// evaluate as a restriction and accept: milter-grey evaluates no
// restrictions, and its bypass list is documented as OK-only.
//
// # File format
//
// Files are read as postmap(1) reads them: "key whitespace value"; blank
// lines and lines whose first non-white-space character is '#' are
// skipped (a '#' anywhere else is text); a line that starts with white
// space continues the entry before it, even across comment lines; a key
// may hold white space inside double quotes. Of duplicate keys the first
// wins, with a warning. A line that postmap would skip with a warning (a
// key without a value, an unbalanced quote, white space before the first
// entry) is an error here, naming file and line, so that a reload keeps
// the previous table instead of silently dropping an entry.
//
// # Reloading
//
// A Table is immutable and safe for concurrent lookups. To reload, call
// Load again and swap the pointer; to notice changes cheaply, compare
// Stat(paths...) with the Table's Fingerprint.
package accessmap

import (
	"github.com/milter-grey/milter-grey/envelope"
	"iter"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Options are the Postfix settings that change how a table is looked up.
// The zero value is a valid Postfix configuration (no address extensions,
// ".domain" style) but not Postfix's default; DefaultOptions is that.
type Options struct {
	// Delimiters is Postfix's recipient_delimiter: each byte is a delimiter
	// between a local part and its extension ("+", or "+-" for both).
	// Empty means no extensions.
	Delimiters string

	// ParentDomainMatchesSubdomains is true when Postfix's
	// parent_domain_matches_subdomains lists smtpd_access_maps (the
	// default): "example.com" then also matches sub.example.com. When
	// false, "example.com" matches only itself and ".example.com" matches
	// its subdomains.
	ParentDomainMatchesSubdomains bool

	// NullSenderKey is Postfix's smtpd_null_access_lookup_key, the key the
	// null sender <> is looked up as. Empty means "<>".
	NullSenderKey string
}

// DefaultOptions returns Postfix 3.7's defaults as milter-grey uses them:
// parent domains match subdomains, the null sender is "<>", and "+"
// delimits address extensions. (Postfix's built-in recipient_delimiter is
// empty, but "+" is what Debian's main.cf and most installations set.)
func DefaultOptions() Options {
	return Options{Delimiters: "+", ParentDomainMatchesSubdomains: true, NullSenderKey: "<>"}
}

// Match is the table entry that decided a lookup.
type Match struct {
	Key    string // the key as stored, lower-cased ("example.com"); for a pattern table the pattern as written ("/^postmaster@/")
	Action string // the whole value, e.g. "OK" or "REJECT go away"
	File   string // the file it came from, as given to Load or Parse
	Line   int    // the line where the entry starts
	Bypass bool   // the action is an accept action (OK or all-numerical)
}

// String describes the entry for a log line:
// "/etc/postfix/nogreylist-senders:23 example.com OK".
func (m Match) String() string {
	if m.Key == "" {
		return ""
	}
	return m.File + ":" + strconv.Itoa(m.Line) + " " + m.Key + " " + m.Action
}

// Table is a loaded access table. It is immutable and safe for concurrent
// use; a nil *Table is an empty table.
type Table struct {
	opts    Options
	entries map[string]Match
	// order is each indexed file's place among the tables given to Load,
	// and patterns the pattern tables, for the whole-address lookup.
	order    map[string]int
	patterns []*patternTable
	fp       Fingerprint
}

// Len is the number of entries, with each match rule of a pattern table
// as one.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	n := len(t.entries)
	for _, p := range t.patterns {
		n += p.len()
	}
	return n
}

// Options returns the options the table was loaded with.
func (t *Table) Options() Options {
	if t == nil {
		return Options{}
	}
	return t.opts
}

// Fingerprint identifies the files as they were when Load read them (empty
// for tables from Parse). When Stat of the same paths returns something
// else, a file has changed and the caller should Load again.
func (t *Table) Fingerprint() Fingerprint {
	if t == nil {
		return ""
	}
	return t.fp
}

// Lookup looks addr up in Postfix's order and returns the entry that
// decided, and whether the address bypasses greylisting.
//
// The boolean is true only for an accept action (m.Bypass). When a DUNNO or
// other entry decided, m describes it and the boolean is false; when no key
// was found, m is the zero Match. The null sender is looked up as Postfix
// does; an address Postfix would not accept as it is never matches.
func (t *Table) Lookup(addr envelope.Address) (m Match, bypass bool) {
	if t == nil || len(t.entries) == 0 && len(t.patterns) == 0 {
		return Match{}, false
	}
	if len(t.patterns) > 0 {
		// The whole address, in every table in order: a pattern table
		// before the indexed file that has the key decides first.
		full, ok := t.opts.fullKey(addr)
		if !ok {
			return Match{}, false
		}
		first := len(t.order) + len(t.patterns)
		if e, ok := t.entries[fold(full)]; ok {
			first = t.order[e.File]
		}
		for _, p := range t.patterns {
			if p.order > first {
				break
			}
			if m, ok := p.lookup(full); ok {
				return m, m.Bypass
			}
		}
	}
	for key := range t.opts.keys(addr) {
		if e, ok := t.entries[key]; ok {
			return e, e.Bypass
		}
	}
	return Match{}, false
}

// LookupKeys returns the keys Postfix would try for addr in indexed
// tables, in order, as Lookup tries them: for logs, tests and an admin's
// "explain". Pattern tables see the first key only, with its case kept.
func (o Options) LookupKeys(addr envelope.Address) []string {
	return slices.Collect(o.keys(addr))
}

// maxAddrLen bounds the addresses looked up. SMTP paths have at most 256
// octets; anything much longer is garbage and is not worth hashing.
const maxAddrLen = 2048

// fullKey is the first key Postfix looks up for a, before case folding:
// the whole address, or the null sender's key. It is what pattern tables
// are matched against (smtpd_check.c check_mail_access, the FULL lookup).
// ok is false for an address that is never looked up.
func (o Options) fullKey(a envelope.Address) (key string, ok bool) {
	switch {
	case len(a.Raw()) > maxAddrLen:
		return "", false
	case a.IsNull():
		if o.NullSenderKey == "" {
			return "<>", true
		}
		return o.NullSenderKey, true
	case !a.Qualified():
		return "", false
	}
	return quoteLocal(a.Local()) + "@" + a.Domain(), true
}

// keys yields the lookup keys for a in Postfix's order (smtpd_check.c
// check_mail_access and check_domain_access).
func (o Options) keys(a envelope.Address) iter.Seq[string] {
	return func(yield func(string) bool) {
		full, ok := o.fullKey(a)
		if !ok {
			return
		}
		// Keys are built as Postfix builds them and folded whole, as the
		// table's keys are. user+ext@domain (or the null sender's key)
		// first.
		if !yield(fold(full)) || a.IsNull() {
			return
		}
		// Then user@domain.
		local := quoteLocal(a.Local())
		base, hasExt := splitExtension(a.Local(), o.Delimiters)
		if hasExt {
			base = quoteLocal(base)
		}
		if hasExt && !yield(fold(base+"@"+a.Domain())) {
			return
		}
		// The domain, then its parents (example.com, com) or their
		// .parent forms (.example.com, .com).
		if !o.domainKeys(a.Domain(), yield) {
			return
		}
		// user+ext@, then user@.
		if !yield(fold(local + "@")) {
			return
		}
		if hasExt {
			yield(fold(base + "@"))
		}
	}
}

// domainKeys yields domain and its parent forms as Postfix's
// check_domain_access does, and reports whether to go on.
func (o Options) domainKeys(domain string, yield func(string) bool) bool {
	// Postfix applies no subdomain magic to a numerical host address.
	_, err := netip.ParseAddr(domain)
	numeric := err == nil
	for name := domain; name != ""; {
		if !yield(fold(name)) {
			return false
		}
		if numeric || len(name) < 2 {
			break
		}
		i := strings.IndexByte(name[1:], '.')
		if i < 0 {
			break
		}
		i++ // the dot's index in name
		if o.ParentDomainMatchesSubdomains {
			name = name[i+1:] // example.com
		} else {
			name = name[i:] // .example.com
		}
	}
	return true
}
