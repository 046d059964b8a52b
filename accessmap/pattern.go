package accessmap

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
)

// patternTable is one regexp: or pcre: table: rules tried in order on the
// whole address, as Postfix's dict_regexp and dict_pcre try them.
type patternTable struct {
	name  string
	order int // the table's place in the list given to Load
	rules []rule
}

type ruleOp int

const (
	opMatch ruleOp = iota // /pattern/flags result
	opIf                  // if /pattern/flags
	opEndif               // endif
)

// rule is one line of a pattern table.
type rule struct {
	op   ruleOp
	line int
	// key is the pattern as written, "!/^owner-/i": Match.Key.
	key string
	re  *regexp.Regexp
	// match is false for a negated pattern (!/pattern/): the rule applies
	// when the pattern does not match.
	match bool
	// second is the optional second pattern of regexp: tables
	// (/pattern1/!/pattern2/ result), which must also apply.
	second      *regexp.Regexp
	secondMatch bool
	result      []resultPart // opMatch
	endif       int          // opIf: the index of its endif
}

// resultPart is literal text or a $number of a result.
type resultPart struct {
	text  string
	group int // > 0: the text of this parenthesised subexpression
}

// applies reports whether the rule's patterns apply to s, with the
// submatches of the first one for $number substitution.
func (r *rule) applies(s string) ([]int, bool) {
	var sub []int
	if r.match {
		if sub = r.re.FindStringSubmatchIndex(s); sub == nil {
			return nil, false
		}
	} else if r.re.MatchString(s) {
		return nil, false
	}
	if r.second != nil && r.second.MatchString(s) != r.secondMatch {
		return nil, false
	}
	return sub, true
}

// expand builds the result of a match rule, substituting $number as
// Postfix does: an unmatched or empty subexpression gives nothing.
func (r *rule) expand(s string, sub []int) string {
	if len(r.result) == 1 && r.result[0].group == 0 {
		return r.result[0].text
	}
	var b strings.Builder
	for _, p := range r.result {
		if p.group == 0 {
			b.WriteString(p.text)
		} else if i := 2 * p.group; i+1 < len(sub) && sub[i] >= 0 {
			b.WriteString(s[sub[i]:sub[i+1]])
		}
	}
	return b.String()
}

// lookup tries the rules on s, the whole address, and returns the entry
// of the first match rule that applies. An if whose pattern does not apply
// skips to its endif.
func (p *patternTable) lookup(s string) (Match, bool) {
	for i := 0; i < len(p.rules); i++ {
		r := &p.rules[i]
		switch r.op {
		case opMatch:
			sub, ok := r.applies(s)
			if !ok {
				continue
			}
			action := r.expand(s, sub)
			return Match{Key: r.key, Action: action, File: p.name, Line: r.line, Bypass: classify(action) == accept}, true
		case opIf:
			if _, ok := r.applies(s); !ok {
				i = r.endif
			}
		}
	}
	return Match{}, false
}

// len is the number of match rules.
func (p *patternTable) len() int {
	n := 0
	for _, r := range p.rules {
		if r.op == opMatch {
			n++
		}
	}
	return n
}

// readPatterns reads a regexp: or pcre: table. A line Postfix would skip
// with a warning is skipped, with a Warning, as in access(5) files; so is
// a pattern RE2 cannot match. Leaving out a rule must never let a sender
// through that the table stops, so:
//   - a bad rule whose result is a plain bypass (OK) is left out alone: its
//     senders are greylisted;
//   - a bad rule with any other result (DUNNO, REJECT, one that cannot be
//     read) may have stopped the lookup before a later bypass rule: the
//     rest of the file is left out;
//   - a bad if leaves out its whole block, up to its endif.
func readPatterns(kind tableKind, name string, r io.Reader) (*patternTable, []Warning, error) {
	p := &patternTable{name: name}
	var warnings []Warning
	skip := func(line int, msg string) {
		warnings = append(warnings, Warning{File: name, Line: line, Msg: msg, Skipped: true})
	}
	var open []int // the indexes of the ifs not yet closed
	dropDepth := 0 // > 0: inside the block of a bad if, at this depth
	for ll, err := range logicalLines(r) {
		if err != nil {
			w, err := lineProblem(name, err)
			if err != nil {
				return p, warnings, err
			}
			warnings = append(warnings, *w)
			continue
		}
		line := trimSpace(ll.text)
		if dropDepth > 0 {
			switch {
			case keyword(line, "if"):
				dropDepth++
			case keyword(line, "endif"):
				dropDepth--
			}
			continue
		}
		ru, w, msg := parseRule(kind, line)
		if msg != "" {
			switch {
			case ru.op == opIf:
				skip(ll.line, msg+"; the rules up to its endif are left out")
				dropDepth = 1
			case ru.op == opEndif && len(open) > 0:
				// It still closes its block, so that one mistake is
				// reported once.
				skip(ll.line, msg)
				if i := open[len(open)-1]; i >= 0 {
					p.rules[i].endif = len(p.rules)
					p.rules = append(p.rules, rule{op: opEndif, key: "endif", line: ll.line})
				}
				open = open[:len(open)-1]
			case ru.op == opEndif || skippedRuleBypasses(kind, line):
				skip(ll.line, msg)
			default:
				skip(ll.line, msg+"; the rule may stop the lookup before the rules after it, so the rest of the file is left out")
				return p, closeIfs(p, name, open, warnings), nil
			}
			continue
		}
		ru.line = ll.line
		if w != "" {
			warnings = append(warnings, Warning{File: name, Line: ll.line, Key: ru.key, Action: resultText(ru.result), Msg: w})
		}
		switch ru.op {
		case opIf:
			open = append(open, len(p.rules))
		case opEndif:
			if len(open) == 0 {
				skip(ll.line, "endif without a matching if")
				continue
			}
			if i := open[len(open)-1]; i >= 0 {
				p.rules[i].endif = len(p.rules)
			}
			open = open[:len(open)-1]
		}
		p.rules = append(p.rules, ru)
	}
	return p, closeIfs(p, name, open, warnings), nil
}

// closeIfs ends the blocks of the ifs still open at the end of p: each runs
// to the end of the file, so that when its pattern does not apply the rest
// of the file is skipped. It returns warnings with one more for each.
func closeIfs(p *patternTable, name string, open []int, warnings []Warning) []Warning {
	for _, i := range open {
		if i >= 0 {
			p.rules[i].endif = len(p.rules)
			warnings = append(warnings, Warning{File: name, Line: p.rules[i].line, Msg: "if without a matching endif: it runs to the end of the file"})
		}
	}
	return warnings
}

// skippedRuleBypasses reports whether a match rule that cannot be loaded
// has a plain bypass for its result (OK or all-numerical, no $number), so
// that leaving it out only greylists the senders it names.
func skippedRuleBypasses(kind tableKind, line string) bool {
	_, rest, msg := cutPattern(kind, line)
	if msg != "" {
		return false
	}
	if kind == regexpTable && strings.HasPrefix(rest, "!") {
		if _, rest, msg = cutPattern(kind, rest); msg != "" {
			return false
		}
	}
	result := trimSpace(rest)
	return result != rest && !strings.Contains(result, "$") && classify(result) == accept
}

// resultText gives a result back as written, for warnings.
func resultText(parts []resultPart) string {
	var b strings.Builder
	for _, p := range parts {
		if p.group > 0 {
			b.WriteString("${" + strconv.Itoa(p.group) + "}")
		} else {
			b.WriteString(strings.ReplaceAll(p.text, "$", "$$"))
		}
	}
	return b.String()
}

// parseRule parses one logical line, as dict_regexp_parseline and
// dict_pcre_parse_rule do: a line that starts with a letter or digit is
// "if" or "endif", any other is a match rule. msg says what is wrong; the
// warning is for a rule that loads but can never bypass.
func parseRule(kind tableKind, line string) (r rule, warning, msg string) {
	switch {
	case line != "" && !isAlnum(line[0]):
		pat, rest, msg := cutPattern(kind, line)
		if msg != "" {
			return r, "", msg
		}
		r = rule{op: opMatch, key: pat.src, match: pat.match}
		if kind == regexpTable && strings.HasPrefix(rest, "!") {
			// regexp: tables only: /pattern1/!/pattern2/ result.
			second, more, msg := cutPattern(kind, rest)
			if msg != "" {
				return r, "", msg
			}
			if r.second, msg = compile(kind, second); msg != "" {
				return r, "", msg
			}
			r.secondMatch = second.match
			r.key += second.src
			rest = more
		}
		result := trimSpace(rest)
		if result == rest && rest != "" {
			return r, "", fmt.Sprintf("%s: no white space between the pattern and the result %q", r.key, rest)
		}
		parts, maxSub, msg := parseResult(result)
		if msg != "" {
			return r, "", r.key + ": " + msg
		}
		if maxSub > 0 && !r.match {
			return r, "", r.key + ": $number in the result of a negated pattern (there is no match to take it from)"
		}
		if r.re, msg = compile(kind, pat); msg != "" {
			return r, "", msg
		}
		if maxSub > r.re.NumSubexp() {
			return r, "", fmt.Sprintf("%s: result uses $%d, the pattern has %d parenthesised subexpressions", r.key, maxSub, r.re.NumSubexp())
		}
		r.result = parts
		switch {
		case result == "":
			warning = "no result: Postfix uses the empty string, which is not a bypass; the rule stops the lookup like DUNNO"
		case maxSub > 0:
			// Known only at lookup time.
		case classify(result) == accept && allDigits(result) && len(result) == 3 && (result[0] == '4' || result[0] == '5'):
			warning = "all-numerical result: Postfix treats it as OK, not as a reply code; this rule is a bypass"
		case classify(result) == other:
			warning = "not a bypass action (only OK and all-numerical results are); the rule stops the lookup like DUNNO"
		}
		return r, warning, ""
	case keyword(line, "if"):
		r.op = opIf
		pat, rest, msg := cutPattern(kind, trimSpace(line[2:]))
		if msg != "" {
			return r, "", msg
		}
		if rest = trimSpace(rest); rest != "" {
			return r, "", fmt.Sprintf("text after if %s: %q (a rule inside if ... endif must start its own line, without leading white space)", pat.src, rest)
		}
		r = rule{op: opIf, key: "if " + pat.src, match: pat.match}
		if r.re, msg = compile(kind, pat); msg != "" {
			return r, "", msg
		}
		return r, "", ""
	case keyword(line, "endif"):
		r.op = opEndif
		if rest := trimSpace(line[5:]); rest != "" {
			return r, "", fmt.Sprintf("text after endif: %q", rest)
		}
		return rule{op: opEndif, key: "endif"}, "", ""
	}
	return r, "", fmt.Sprintf("%q is neither /pattern/ result, if /pattern/ nor endif", line)
}

// keyword reports whether line starts with word (any case) followed by a
// character that is not a letter or digit, as Postfix reads "if" and
// "endif".
func keyword(line, word string) bool {
	return len(line) >= len(word) && strings.EqualFold(line[:len(word)], word) &&
		(len(line) == len(word) || !isAlnum(line[len(word)]))
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// pattern is one delimited pattern of a rule, not yet compiled.
type pattern struct {
	src   string // as written, "!/^owner-/i"
	body  string // between the delimiters
	flags string
	match bool // false when negated by an odd number of '!'
}

// cutPattern reads "!/body/flags" from the start of s, as Postfix's
// get_pat functions do: '!'s and white space toggle and separate, the
// first other character is the delimiter, a backslash escapes the next
// character, and the flags run to white space (or, in regexp: tables, to
// the '!' of a second pattern).
func cutPattern(kind tableKind, s string) (p pattern, rest, msg string) {
	p.match = true
	i := 0
	for ; i < len(s) && (s[i] == '!' || isSpace(s[i])); i++ {
		if s[i] == '!' {
			p.match = !p.match
		}
	}
	if i == len(s) {
		return p, "", "no pattern"
	}
	start, delim := i, s[i]
	i++
	bodyStart := i
	for ; i < len(s) && s[i] != delim; i++ {
		if s[i] == '\\' {
			i++
		}
	}
	if i >= len(s) {
		return p, "", fmt.Sprintf("no closing %q after the pattern %s", delim, s[start:])
	}
	p.body = s[bodyStart:i]
	i++
	flagStart := i
	for ; i < len(s) && !isSpace(s[i]) && !(kind == regexpTable && s[i] == '!'); i++ {
	}
	p.flags = s[flagStart:i]
	p.src = trimSpace(s[:i])
	return p, s[i:], ""
}

// parseResult splits a result at its $number references as Postfix's
// mac_parse reads them: $$ is a '$', $N, ${N} and $(N) refer to the Nth
// parenthesised subexpression. maxSub is the largest N.
func parseResult(s string) (parts []resultPart, maxSub int, msg string) {
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, resultPart{text: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		if s[i] != '$' {
			lit.WriteByte(s[i])
			i++
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			lit.WriteByte('$')
			i += 2
			continue
		}
		i++
		var name string
		if i < len(s) && (s[i] == '{' || s[i] == '(') {
			open, close := s[i], byte('}')
			if open == '(' {
				close = ')'
			}
			depth, j := 1, i+1
			for ; j < len(s) && depth > 0; j++ {
				switch s[j] {
				case open:
					depth++
				case close:
					depth--
				}
			}
			if depth > 0 {
				return nil, 0, fmt.Sprintf("unclosed %q in the result", s[i-1:])
			}
			name, i = s[i+1:j-1], j
		} else {
			j := i
			for j < len(s) && (isAlnum(s[j]) || s[j] == '_') {
				j++
			}
			name, i = s[i:j], j
		}
		n, err := strconv.Atoi(name)
		switch {
		case name == "":
			return nil, 0, "a '$' with nothing after it in the result (write $$ for a '$')"
		case !allDigits(name) || err != nil:
			return nil, 0, fmt.Sprintf("$%s in the result: only $number refers to the match (write $$ for a '$')", name)
		case n < 1:
			return nil, 0, fmt.Sprintf("$%s in the result: subexpressions count from $1", name)
		}
		flush()
		parts = append(parts, resultPart{group: n})
		maxSub = max(maxSub, n)
	}
	flush()
	if len(parts) == 0 {
		parts = []resultPart{{}}
	}
	return parts, maxSub, ""
}

// compile turns a pattern into a Go regular expression with its flags'
// meaning. msg names the pattern and what Go's regexp (RE2) cannot do.
func compile(kind tableKind, p pattern) (*regexp.Regexp, string) {
	var expr, msg string
	var longest bool
	if kind == regexpTable {
		expr, msg = posixFlags(p)
		longest = true // POSIX takes the leftmost longest match
	} else {
		expr, msg = pcreFlags(p)
	}
	if msg != "" {
		return nil, p.src + ": " + msg
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, p.src + ": " + re2Error(err)
	}
	if longest {
		re.Longest()
	}
	return re, ""
}

// posixFlags gives the Go form of a regexp: pattern with its flags: i
// (case-insensitive, on by default) and m (multi-line) toggle; x turns
// extended syntax off, which is not supported.
func posixFlags(p pattern) (string, string) {
	icase, multi, extended := true, false, true
	for _, f := range p.flags {
		switch f {
		case 'i':
			icase = !icase
		case 'm':
			multi = !multi
		case 'x':
			extended = !extended
		default:
			return "", fmt.Sprintf("unknown flag %q (regexp: tables take i, m and x)", f)
		}
	}
	if !extended {
		return "", "flag x turns extended syntax off: basic regular expressions are not supported; use the extended form"
	}
	body, msg := posixToRE2(p.body)
	if msg != "" {
		return "", msg
	}
	// Without REG_NEWLINE, '.' matches a newline too.
	flags := "s"
	if multi {
		flags = "m"
	}
	if icase {
		flags += "i"
	}
	return "(?" + flags + ")" + body, ""
}

// posixToRE2 rewrites a POSIX extended regular expression, as glibc's
// regcomp reads it for Postfix, in Go's syntax with the same meaning. A
// backslash before a letter or digit means something else in each (\d is
// the letter d in POSIX, a digit in Go); only the GNU escapes both share
// (\w \W \s \S \b \B) are kept, \` and \' become \A and \z, the others are
// errors. Inside a bracket expression a backslash is itself.
func posixToRE2(s string) (string, string) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\\':
			if i+1 >= len(s) {
				return "", "a trailing backslash"
			}
			i++
			e := s[i]
			switch {
			case strings.IndexByte("wWsSbB", e) >= 0:
				b.WriteByte('\\')
				b.WriteByte(e)
			case e == '`':
				b.WriteString(`\A`)
			case e == '\'':
				b.WriteString(`\z`)
			case e >= '1' && e <= '9':
				return "", fmt.Sprintf("backreference \\%c: Go's regexp (RE2) has no backreferences", e)
			case e == '<' || e == '>':
				return "", fmt.Sprintf("\\%c (GNU start or end of a word) is not supported: Go's regexp (RE2) lacks it; use \\b", e)
			case isAlnum(e):
				return "", fmt.Sprintf("\\%c is the letter %c in a regexp: (POSIX) table, but means something else in pcre: and Go; write %c, or use a bracket expression such as [0-9]", e, e, e)
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
		case '[':
			class, end, msg := posixClass(s, i)
			if msg != "" {
				return "", msg
			}
			b.WriteString(class)
			i = end
		case '(':
			if i+1 < len(s) && s[i+1] == '?' {
				return "", "(? is not POSIX syntax (lookaround and flags in the pattern are pcre: features; Go's regexp (RE2) has no lookaround)"
			}
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), ""
}

// posixClass rewrites the bracket expression that starts at s[i] and
// returns it with the index of its closing ']'. In POSIX a ']' right after
// '[' or '[^' is a member, a backslash is itself, and [:class:] names a
// class; [=x=] and [.x.] are not supported.
func posixClass(s string, i int) (string, int, string) {
	var b strings.Builder
	b.WriteByte('[')
	j := i + 1
	if j < len(s) && s[j] == '^' {
		b.WriteByte('^')
		j++
	}
	first := true
	for ; j < len(s); j++ {
		c := s[j]
		switch {
		case c == ']' && !first:
			b.WriteByte(']')
			return b.String(), j, ""
		case c == '[' && j+1 < len(s) && s[j+1] == ':':
			end := strings.Index(s[j+2:], ":]")
			if end < 0 {
				return "", 0, "unclosed [: in a bracket expression"
			}
			b.WriteString(s[j : j+2+end+2])
			j += 2 + end + 1
		case c == '[' && j+1 < len(s) && (s[j+1] == '=' || s[j+1] == '.'):
			return "", 0, fmt.Sprintf("[%c in a bracket expression (equivalence classes and collating symbols) is not supported", s[j+1])
		case c == '\\' || c == ']' || c == '[':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
		first = false
	}
	return "", 0, "unclosed bracket expression ["
}

// pcreFlags gives the Go form of a pcre: pattern with its flags, as
// Postfix sets them for PCRE2: i (case-insensitive) and s (dot matches
// newline) are on by default; m, x (extended), A (anchored), U (ungreedy)
// toggle; E (dollar matches only at the end) changes nothing on an
// address, which has no newline; X is ignored, as Postfix with PCRE2 does.
func pcreFlags(p pattern) (string, string) {
	icase, dotall, multi, extended, anchored, ungreedy := true, true, false, false, false, false
	for _, f := range p.flags {
		switch f {
		case 'i':
			icase = !icase
		case 's':
			dotall = !dotall
		case 'm':
			multi = !multi
		case 'x':
			extended = !extended
		case 'A':
			anchored = !anchored
		case 'U':
			ungreedy = !ungreedy
		case 'E', 'X':
		default:
			return "", fmt.Sprintf("unknown flag %q (pcre: tables take i, m, s, x, A, E, U and X)", f)
		}
	}
	body, msg := pcreToRE2(p.body, extended)
	if msg != "" {
		return "", msg
	}
	var flags string
	for _, f := range []struct {
		on   bool
		flag string
	}{{icase, "i"}, {dotall, "s"}, {multi, "m"}, {ungreedy, "U"}} {
		if f.on {
			flags += f.flag
		}
	}
	if flags != "" {
		body = "(?" + flags + ")" + body
	}
	if anchored {
		body = `\A(?:` + body + `)`
	}
	return body, ""
}

// pcreToRE2 rewrites the PCRE features Go's regexp reads differently:
// (?#comments) go, \Z (end, or before a final newline) is \z on an
// address, and in extended mode white space and #comments outside
// character classes go. What RE2 lacks is left for the compiler to report.
func pcreToRE2(s string, extended bool) (string, string) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && s[i+1] == 'Q':
			end := strings.Index(s[i+2:], `\E`)
			if end < 0 {
				b.WriteString(s[i:])
				return b.String(), ""
			}
			b.WriteString(s[i : i+2+end+2])
			i += 2 + end + 1
		case c == '\\' && i+1 < len(s) && s[i+1] == 'Z':
			b.WriteString(`\z`)
			i++
		case c == '\\':
			b.WriteByte(c)
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case c == '[':
			end, msg := perlClassEnd(s, i)
			if msg != "" {
				return "", msg
			}
			b.WriteString(s[i : end+1])
			i = end
		case strings.HasPrefix(s[i:], "(?#"):
			end := strings.IndexByte(s[i:], ')')
			if end < 0 {
				return "", "unclosed (?# comment"
			}
			i += end
		case extended && isSpace(c):
		case extended && c == '#':
			end := strings.IndexByte(s[i:], '\n')
			if end < 0 {
				return b.String(), ""
			}
			i += end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), ""
}

// perlClassEnd returns the index of the ']' that closes the character
// class at s[i], where a backslash escapes and a ']' first is a member.
func perlClassEnd(s string, i int) (int, string) {
	j := i + 1
	if j < len(s) && s[j] == '^' {
		j++
	}
	if j < len(s) && s[j] == ']' {
		j++
	}
	for ; j < len(s); j++ {
		switch {
		case s[j] == '\\':
			j++
		case s[j] == '[' && j+1 < len(s) && s[j+1] == ':':
			if end := strings.Index(s[j+2:], ":]"); end >= 0 {
				j += 2 + end + 1
			}
		case s[j] == '[' && j+1 < len(s) && (s[j+1] == '=' || s[j+1] == '.'):
			return 0, fmt.Sprintf("[%c in a character class (POSIX collating elements) is not supported", s[j+1])
		case s[j] == ']':
			return j, ""
		}
	}
	return 0, "unclosed character class ["
}

// re2Error explains a Go regexp compile error, naming the construct RE2
// lacks when that is the cause.
func re2Error(err error) string {
	var se *syntax.Error
	if !errors.As(err, &se) {
		return err.Error()
	}
	lacks := func(what string) string {
		return fmt.Sprintf("%s %s is not supported: milter-grey matches with Go's regexp (RE2), which has no %s; rewrite the rule without it (if !/pattern/ ... endif often does what a negative lookahead did)",
			what, se.Expr, what)
	}
	e := se.Expr
	switch se.Code {
	case syntax.ErrInvalidEscape:
		switch {
		case len(e) == 2 && e[1] >= '1' && e[1] <= '9', e == `\g`, e == `\k`:
			return lacks("a backreference")
		case e == `\K`:
			return lacks("the match start reset")
		}
	case syntax.ErrInvalidPerlOp, syntax.ErrInvalidNamedCapture:
		switch {
		case strings.HasPrefix(e, "(?=") || strings.HasPrefix(e, "(?!"):
			return lacks("lookahead")
		case strings.HasPrefix(e, "(?<=") || strings.HasPrefix(e, "(?<!"):
			return lacks("lookbehind")
		case strings.HasPrefix(e, "(?>"):
			return lacks("an atomic group")
		case strings.HasPrefix(e, "(?P") && !strings.HasPrefix(e, "(?P<"):
			return lacks("a backreference or subroutine call")
		case strings.HasPrefix(e, "(?("):
			return lacks("a conditional subpattern")
		case strings.HasPrefix(e, "(?R") || strings.HasPrefix(e, "(?&") || isRecursion(e):
			return lacks("recursion")
		case strings.HasPrefix(e, "(?|"):
			return lacks("a branch reset group")
		}
	case syntax.ErrInvalidRepeatOp:
		if strings.HasSuffix(e, "+") {
			return lacks("a possessive quantifier")
		}
	}
	return fmt.Sprintf("%s (%s): not a regular expression Go's regexp (RE2) reads", se.Code, e)
}

// trimSpace removes Postfix's white space (ISSPACE in the C locale) from
// both ends of s.
func trimSpace(s string) string {
	i, j := 0, len(s)
	for i < j && isSpace(s[i]) {
		i++
	}
	for j > i && isSpace(s[j-1]) {
		j--
	}
	return s[i:j]
}

// isRecursion reports whether expr starts a PCRE recursion or subroutine
// call by number: (?1), (?+1), (?-1).
func isRecursion(expr string) bool {
	rest, ok := strings.CutPrefix(expr, "(?")
	if ok && rest != "" && (rest[0] == '+' || rest[0] == '-') {
		rest = rest[1:]
	}
	return ok && rest != "" && rest[0] >= '0' && rest[0] <= '9'
}
