package accessmap

import (
	"bufio"
	"errors"
	"fmt"
	"github.com/milter-grey/milter-grey/envelope"
	"io"
	"os"
	"strconv"
	"strings"
)

// Warning is something about a table line that an admin should know but
// that does not stop the table from loading: an action that is not a
// bypass, a duplicate key, a key that can never match; or a line that
// cannot be parsed (Skipped).
type Warning struct {
	File   string
	Line   int
	Key    string // the key as written (not folded)
	Action string
	Msg    string
	// Skipped: the line cannot be parsed and is left out, as postmap(1)
	// leaves it out with a warning, so that the rest of the table loads
	// and one typo does not stop the daemon (check-config fails on such a
	// line). Pattern tables leave out more where a rule Postfix would
	// keep cannot be loaded (readPatterns).
	Skipped bool
}

// String formats the warning for a log: "file:line: msg: key action", and
// "file:line: msg (line skipped)".
func (w Warning) String() string {
	s := w.File + ":" + strconv.Itoa(w.Line) + ": " + w.Msg
	if w.Key != "" {
		s += ": " + w.Key + " " + w.Action
	}
	if w.Skipped {
		s += " (line skipped)"
	}
	return s
}

// syntaxError is a line logicalLines cannot make an entry of; the readers
// turn it into a skipped-line Warning.
type syntaxError struct {
	Line int
	Msg  string
}

func (e *syntaxError) Error() string { return "line " + strconv.Itoa(e.Line) + ": " + e.Msg }

// Load reads the access tables at paths, in order, as one table. A key
// found in several places is decided by its first occurrence: within a file
// that is what postmap(1) keeps for hash: tables (with a warning; texthash:
// would refuse the whole table), and
// across files it is what a Postfix table list (hash:a, hash:b) returns for
// that key. The lookup order is applied to the merged table, so a more
// specific key in a later file still beats a less specific one in an
// earlier file.
//
// A path may carry a Postfix table type, as copied from main.cf:
// "hash:/etc/postfix/access" reads /etc/postfix/access (the text source,
// not the .db); "regexp:/etc/postfix/senders.regexp" and "pcre:…" read a
// pattern table (see Pattern tables). Other types (cidr:, network tables)
// are an error.
//
// A line that cannot be parsed is skipped and reported in a Warning with
// Skipped set. The error is for a file that cannot be used: it cannot be
// read (an *os.PathError), it is a binary file (the .db postmap writes), or
// its table type is not supported. The warnings are for a log.
func Load(opts Options, paths ...string) (*Table, []Warning, error) {
	t := newTable(opts)
	var warnings []Warning
	var fp fingerprintBuilder
	for i, p := range paths {
		kind, path, err := tableSource(p)
		if err != nil {
			return nil, nil, err
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, err
		}
		fi, err := f.Stat() // before reading: a change after this is seen by the next Stat
		if err == nil && fi.IsDir() {
			err = &os.PathError{Op: "read", Path: path, Err: errors.New("is a directory")}
		}
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		fp.add(path, fi)
		w, err := t.readTable(kind, i, path, f)
		f.Close()
		warnings = append(warnings, w...)
		if err != nil {
			return nil, warnings, err
		}
	}
	t.fp = fp.fingerprint()
	return t, warnings, nil
}

// Parse reads one access table from r; name is used in warnings, errors
// and matches. A table type before the name says what r holds:
// "regexp:senders" and "pcre:senders" are pattern tables, anything else
// access(5) text. See Load.
func Parse(opts Options, name string, r io.Reader) (*Table, []Warning, error) {
	t := newTable(opts)
	kind, name, err := tableSource(name)
	if err != nil {
		return nil, nil, err
	}
	warnings, err := t.readTable(kind, 0, name, r)
	if err != nil {
		return nil, warnings, err
	}
	return t, warnings, nil
}

func newTable(opts Options) *Table {
	return &Table{opts: opts, entries: make(map[string]Match), order: make(map[string]int)}
}

// tableKind is what a table's source file holds.
type tableKind int

const (
	indexedTable tableKind = iota // access(5) text, the source of hash: and the like
	regexpTable                   // regexp_table(5)
	pcreTable                     // pcre_table(5)
)

// tableSource strips a Postfix table type from p and says what its file
// holds. Types whose source is access(5) text or a pattern table are
// accepted; the others are errors.
func tableSource(p string) (tableKind, string, error) {
	for {
		typ, rest, ok := strings.Cut(p, ":")
		if !ok || !isTableType(typ) {
			return indexedTable, p, nil
		}
		switch typ {
		case "proxy":
			p = rest
			continue
		case "hash", "btree", "lmdb", "cdb", "dbm", "sdbm", "texthash":
			return indexedTable, rest, nil
		case "regexp":
			return regexpTable, rest, nil
		case "pcre":
			return pcreTable, rest, nil
		}
		return 0, "", fmt.Errorf("access table %s: table type %s: is not supported (the text source of indexed tables such as hash:, and regexp: and pcre: tables are)", p, typ)
	}
}

// readTable adds the table in r, the order-th given, to t.
func (t *Table) readTable(kind tableKind, order int, name string, r io.Reader) ([]Warning, error) {
	if kind == indexedTable {
		if _, ok := t.order[name]; !ok {
			t.order[name] = order
		}
		return t.read(name, r)
	}
	p, warnings, err := readPatterns(kind, name, r)
	p.order = order
	t.patterns = append(t.patterns, p)
	return warnings, err
}

// isTableType reports whether typ names a Postfix lookup table type.
func isTableType(typ string) bool {
	switch typ {
	case "proxy", "hash", "btree", "lmdb", "cdb", "dbm", "sdbm", "texthash",
		"regexp", "pcre", "cidr", "tcp", "socketmap", "ldap", "mysql", "pgsql",
		"sqlite", "memcache", "static", "inline", "unionmap", "pipemap",
		"randmap", "nis", "nisplus", "netinfo", "environ", "fail", "internal", "unix":
		return true
	}
	return false
}

// lineProblem sorts an error from logicalLines: a line to skip, reported
// as a Warning, or an error about the whole file, which stops reading it.
func lineProblem(name string, err error) (*Warning, error) {
	var se *syntaxError
	if errors.As(err, &se) {
		return &Warning{File: name, Line: se.Line, Msg: se.Msg, Skipped: true}, nil
	}
	return nil, fmt.Errorf("%s: %w", name, err)
}

// read adds the entries of one file to t.
func (t *Table) read(name string, r io.Reader) (warnings []Warning, _ error) {
	seen := make(map[string]int) // folded key -> line, in this file
	for ll, err := range logicalLines(r) {
		if err != nil {
			w, err := lineProblem(name, err)
			if err != nil {
				return warnings, err
			}
			warnings = append(warnings, *w)
			continue
		}
		key, value, msg := splitKeyValue(ll.text)
		if msg != "" {
			warnings = append(warnings, Warning{File: name, Line: ll.line, Msg: msg, Skipped: true})
			continue
		}
		warn := func(msg string) {
			warnings = append(warnings, Warning{File: name, Line: ll.line, Key: key, Action: value, Msg: msg})
		}
		folded := fold(key)
		if first, dup := seen[folded]; dup {
			warn(fmt.Sprintf("duplicate entry ignored, line %d wins", first))
			continue
		}
		seen[folded] = ll.line
		if prev, dup := t.entries[folded]; dup {
			if !strings.EqualFold(prev.Action, value) {
				warn(fmt.Sprintf("entry ignored, %s:%d (%s) comes first", prev.File, prev.Line, prev.Action))
			}
			continue
		}
		m := Match{Key: folded, Action: value, File: name, Line: ll.line}
		switch classify(value) {
		case accept:
			m.Bypass = true
			if len(value) == 3 && (value[0] == '4' || value[0] == '5') {
				warn("all-numerical result: Postfix treats it as OK, not as a reply code; this entry is a bypass")
			}
		case dunno:
		default:
			warn("not a bypass action (only OK and all-numerical results are); the entry stops the lookup like DUNNO")
		}
		if msg := t.deadKey(folded); msg != "" {
			warn(msg)
		}
		if strings.HasSuffix(key, ":") {
			warn(`record is in "key: value" format; is this an alias file?`)
		}
		t.entries[folded] = m
	}
	return warnings, nil
}

// deadKey explains why Postfix never looks up key, or returns "".
func (t *Table) deadKey(key string) string {
	nullKey := t.opts.NullSenderKey
	if nullKey == "" {
		nullKey = "<>"
	}
	if key == fold(nullKey) {
		return ""
	}
	if strings.HasPrefix(key, "@") {
		return "never matches: a domain is written without @ (example.com), a local part with a trailing @ (user@)"
	}
	if local, ok := strings.CutSuffix(key, "@"); ok {
		internal, ok := envelope.Unquote(local)
		if !ok {
			return ""
		}
		if want := fold(quoteLocal(internal)) + "@"; want != key {
			return "never matches: Postfix looks this local part up as " + want
		}
		return ""
	}
	if strings.Contains(key, "@") {
		a := envelope.Parse(key)
		if !a.Qualified() {
			return ""
		}
		if want := fold(quoteLocal(a.Local()) + "@" + a.Domain()); want != key {
			return "never matches: Postfix looks this address up as " + want
		}
		return ""
	}
	if strings.ContainsAny(key, "\"\\ \t") {
		return "never matches: Postfix looks domains up without quotes, backslashes or white space"
	}
	if strings.HasSuffix(key, ".") {
		return "never matches: Postfix looks domains up without a trailing dot"
	}
	if strings.HasPrefix(key, ".") && t.opts.ParentDomainMatchesSubdomains {
		return "never matches while parent_domain_matches_subdomains includes smtpd_access_maps (the Postfix default): " +
			strings.TrimPrefix(key, ".") + " already matches its subdomains"
	}
	return ""
}

// action is what an access table result means for the bypass list.
type action int

const (
	other  action = iota // anything else: not a bypass, stops the lookup
	accept               // OK or all-numerical: bypass
	dunno                // DUNNO: stops the lookup, no match
)

// classify reads a result as Postfix's check_table_result does: the first
// word (up to a space or tab) compared without case, and an all-digit value
// taken as OK.
func classify(value string) action {
	word, _, _ := strings.Cut(strings.ReplaceAll(value, "\t", " "), " ")
	switch {
	case strings.EqualFold(word, "OK"):
		return accept
	case strings.EqualFold(word, "DUNNO"):
		return dunno
	case allDigits(value):
		return accept
	}
	return other
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// logicalLine is one entry's text with the number of its first line.
type logicalLine struct {
	text string
	line int
}

// isSpace is Postfix's ISSPACE in the C locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// logicalLines reads r as Postfix's readllines does: blank lines and lines
// whose first non-white-space character is '#' are skipped (also in the
// middle of a logical line), and a line that starts with white space is
// appended, newline removed, to the logical line before it.
func logicalLines(r io.Reader) func(yield func(logicalLine, error) bool) {
	return func(yield func(logicalLine, error) bool) {
		br := bufio.NewReader(r)
		var cur strings.Builder
		start, lineno := 0, 0
		for {
			line, err := br.ReadString('\n')
			if err != nil && err != io.EOF {
				yield(logicalLine{}, err)
				return
			}
			if line == "" && err == io.EOF {
				break
			}
			lineno++
			line = strings.TrimSuffix(line, "\n")
			if strings.IndexByte(line, 0) >= 0 {
				// postmap's .db output, or some other binary file: the
				// wrong file, not a bad line.
				yield(logicalLine{}, fmt.Errorf("line %d: NUL byte: not an access(5) text file (give the file postmap reads, not the .db it writes)", lineno))
				return
			}
			i := 0
			for i < len(line) && isSpace(line[i]) {
				i++
			}
			switch {
			case i == len(line) || line[i] == '#':
				// blank or comment: skipped, does not end a logical line
			case i > 0:
				if start == 0 {
					if !yield(logicalLine{}, &syntaxError{Line: lineno, Msg: "line starts with white space but continues no entry (postmap: logical line must not start with whitespace)"}) {
						return
					}
					break
				}
				cur.WriteString(line)
			default:
				if start > 0 && !yield(logicalLine{cur.String(), start}, nil) {
					return
				}
				cur.Reset()
				cur.WriteString(line)
				start = lineno
			}
			if err == io.EOF {
				break
			}
		}
		if start > 0 {
			yield(logicalLine{cur.String(), start}, nil)
		}
	}
}

// splitKeyValue splits a logical line as postmap's split_qnameval does:
// the key ends at the first white space outside double quotes (a backslash
// escapes the next character), the value is the rest with surrounding white
// space removed. The key keeps its quotes and backslashes. msg says what is
// wrong, or is "".
func splitKeyValue(s string) (key, value, msg string) {
	quoted := false
	end := 0
	for ; end < len(s); end++ {
		c := s[end]
		if c == '\\' {
			end++
			if end >= len(s) {
				break
			}
			continue
		}
		if isSpace(c) && !quoted {
			break
		}
		if c == '"' {
			quoted = !quoted
		}
	}
	if quoted {
		return "", "", `unbalanced '"' in the key`
	}
	end = min(end, len(s))
	key = s[:end]
	value = strings.TrimFunc(s[end:], func(r rune) bool { return r < 0x80 && isSpace(byte(r)) })
	if value == "" {
		return "", "", fmt.Sprintf("%q has no value; expected format: key whitespace value", key)
	}
	return key, value, ""
}
