package accessmap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/milter-grey/milter-grey/envelope"
)

// parsePatterns parses a regexp: or pcre: table given as text.
func parsePatterns(t *testing.T, typ, text string) (*Table, []Warning) {
	t.Helper()
	tb, warnings, err := Parse(DefaultOptions(), typ+":senders", strings.NewReader(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return tb, warnings
}

// The rules of regexp_table(5) and pcre_table(5) as Postfix applies them to
// an envelope sender with check_sender_access.
func TestPatternLookup(t *testing.T) {
	type want struct {
		addr   string
		action string // "" when no rule applies
		line   int
		bypass bool
	}
	tests := []struct {
		name  string
		types []string
		table string
		want  []want
	}{
		{"the pattern sees the whole address", []string{"regexp", "pcre"},
			"/^postmaster@example\\.com$/ OK\n",
			[]want{{"postmaster@example.com", "OK", 1, true}, {"<postmaster@example.com>", "OK", 1, true},
				{"x-postmaster@example.com", "", 0, false}, {"postmaster@example.com.evil.test", "", 0, false}}},
		{"never the domain or user@ alone, as an indexed table would be", []string{"regexp", "pcre"},
			"/^example\\.com$/ OK\n/^user@$/ OK\n",
			[]want{{"user@example.com", "", 0, false}}},
		{"the extension stays in the address", []string{"regexp", "pcre"},
			"/^user\\+tag@example\\.com$/ OK\n/^user@example\\.com$/ DUNNO\n",
			[]want{{"user+tag@example.com", "OK", 1, true}, {"user@example.com", "DUNNO", 2, false}}},
		{"case-insensitive by default", []string{"regexp", "pcre"},
			"/^bob@example\\.com$/ OK\n",
			[]want{{"Bob@Example.COM", "OK", 1, true}}},
		{"the i flag makes case matter, and the address keeps its case", []string{"regexp", "pcre"},
			"/^Bob@Example\\.com$/i OK\n",
			[]want{{"Bob@Example.com", "OK", 1, true}, {"bob@example.com", "", 0, false}}},
		{"the first rule that applies decides; DUNNO is no bypass", []string{"regexp", "pcre"},
			"/^news@/ DUNNO\n/@example\\.com$/ OK\n",
			[]want{{"news@example.com", "DUNNO", 1, false}, {"alice@example.com", "OK", 2, true}}},
		{"another action stops the lookup without a bypass", []string{"regexp", "pcre"},
			"/^spam@/ REJECT go away\n/@example\\.com$/ OK\n",
			[]want{{"spam@example.com", "REJECT go away", 1, false}}},
		{"a negated pattern applies when it does not match", []string{"regexp", "pcre"},
			"!/@example\\.com$/ OK\n",
			[]want{{"a@other.test", "OK", 1, true}, {"a@example.com", "", 0, false}}},
		{"two '!' cancel", []string{"regexp", "pcre"},
			"!!/@example\\.com$/ OK\n",
			[]want{{"a@example.com", "OK", 1, true}}},
		{"if ... endif: the rules inside apply when the pattern matches", []string{"regexp", "pcre"},
			"if /@lists\\.example$/\n/^owner-/ DUNNO\n/-announce@/ OK\nendif\n/-announce@/ REJECT\n",
			[]want{{"x-announce@lists.example", "OK", 3, true}, {"owner-x@lists.example", "DUNNO", 2, false},
				{"x-announce@other.test", "REJECT", 5, false}}},
		{"if !: the rules inside apply when it does not match; blocks nest", []string{"regexp", "pcre"},
			"IF !/^bounce/\nif /@example\\.com$/\n/^/ OK\nEndIf\nendif\n",
			[]want{{"a@example.com", "OK", 3, true}, {"bounce@example.com", "", 0, false}, {"a@other.test", "", 0, false}}},
		{"$number takes a subexpression; a numeric result is a bypass", []string{"regexp", "pcre"},
			"/^n([0-9]+)@/ $1\n",
			[]want{{"n1700000000@example.com", "1700000000", 1, true}}},
		{"${number} and $(number); a result that expands to OK is a bypass", []string{"regexp", "pcre"},
			"/^(ok|no)@(x)\\.test$/ ${1}$(2)\n/^(ok|no)@/ $1\n",
			[]want{{"ok@x.test", "okx", 1, false}, {"ok@y.test", "ok", 2, true}, {"no@y.test", "no", 2, false}}},
		{"an unmatched subexpression expands to nothing; $$ is a '$'", []string{"regexp", "pcre"},
			"/^(x)?y@/ [$1]$$\n",
			[]want{{"y@example.com", "[]$", 1, false}, {"xy@example.com", "[x]$", 1, false}}},
		{"regexp: takes the leftmost-longest match, as POSIX does", []string{"regexp"},
			"/^(sub|subst)/ $1\n",
			[]want{{"substance@example.com", "subst", 1, false}}},
		{"pcre: takes the leftmost-first match, as Perl does", []string{"pcre"},
			"/^(sub|subst)/ $1\n",
			[]want{{"substance@example.com", "sub", 1, false}}},
		{"regexp: a second pattern must not match", []string{"regexp"},
			"/@shop\\.example$/!/^noreply@/ OK\n",
			[]want{{"news@shop.example", "OK", 1, true}, {"noreply@shop.example", "", 0, false}}},
		{"regexp: a backslash in brackets is itself, classes by name", []string{"regexp"},
			"/^[[:digit:]]+@/ OK\n/^[^\\.]+@dots\\.example$/ OK\n",
			[]want{{"123@example.com", "OK", 1, true}, {"ab@dots.example", "OK", 2, true}, {"a.b@dots.example", "", 0, false}}},
		{"regexp: GNU \\w and \\b", []string{"regexp"},
			"/^\\w+\\b@/ OK\n",
			[]want{{"abc@example.com", "OK", 1, true}, {"a-b@example.com", "", 0, false}}},
		{"pcre: Perl classes, (?#comments), \\Z", []string{"pcre"},
			"/(?#digits)^\\d+@example\\.com\\Z/ OK\n",
			[]want{{"123@example.com", "OK", 1, true}, {"12a@example.com", "", 0, false}}},
		{"pcre: x ignores white space and comments outside classes", []string{"pcre"},
			"/ ^ a \\. b [ ]? @ example\\.com $ # the rest is a comment/x OK\n",
			[]want{{"a.b@example.com", "OK", 1, true}}},
		{"pcre: U makes quantifiers lazy", []string{"pcre"},
			"/^(.+)@.+$/U $1\n",
			[]want{{`"a@b"@example.com`, `"a`, 1, false}}},
		{"pcre: A anchors at the start", []string{"pcre"},
			"/b@example\\.com/A OK\n",
			[]want{{"b@example.com", "OK", 1, true}, {"ab@example.com", "", 0, false}}},
		{"pcre: s is on by default, m, E and X are accepted", []string{"pcre"},
			"/^a.b@x$/mEX OK\n",
			[]want{{"a.b@x", "OK", 1, true}}},
		{"the null sender is <>", []string{"regexp", "pcre"},
			"/^<>$/ OK\n",
			[]want{{"", "OK", 1, true}, {"<>", "OK", 1, true}}},
		{"another delimiter", []string{"regexp", "pcre"},
			"%^a/b@example\\.com$% OK\n",
			[]want{{"a/b@example.com", "OK", 1, true}}},
		{"an escaped delimiter", []string{"regexp", "pcre"},
			"/^a\\/b@example\\.com$/ OK\n",
			[]want{{"a/b@example.com", "OK", 1, true}}},
		{"continuation lines and comments, as in every Postfix table", []string{"regexp", "pcre"},
			"# senders\n/^a@example\\.com$/\n  OK\n",
			[]want{{"a@example.com", "OK", 2, true}}},
		{"garbage never matches", []string{"regexp", "pcre"},
			"/.*/ OK\n",
			[]want{{"<unclosed", "", 0, false}, {"nodomain", "", 0, false}}},
	}
	for _, tt := range tests {
		for _, typ := range tt.types {
			t.Run(typ+": "+tt.name, func(t *testing.T) {
				tb, _ := parsePatterns(t, typ, tt.table)
				for _, w := range tt.want {
					m, bypass := tb.Lookup(envelope.Parse(w.addr))
					if m.Action != w.action || m.Line != w.line || bypass != w.bypass || bypass != m.Bypass {
						t.Errorf("Lookup(%q) = %+v, %v; want action %q at line %d, bypass %v", w.addr, m, bypass, w.action, w.line, w.bypass)
					}
					if w.action != "" && (m.File != "senders" || !strings.HasPrefix(m.String(), "senders:") || m.Key == "") {
						t.Errorf("Lookup(%q) = %+v: want the file and the pattern", w.addr, m)
					}
				}
			})
		}
	}
}

// A rule Postfix would skip with a warning, and a pattern that Go's
// regexp (RE2) cannot match as PCRE or glibc would, are skipped with a
// warning naming file and line; the other rules load.
func TestPatternErrors(t *testing.T) {
	tests := []struct {
		name string
		typ  string
		rule string
		text string // in the message
	}{
		{"no closing delimiter", "pcre", "/abc OK", "no closing"},
		{"an unknown flag", "pcre", "/abc/q OK", `unknown flag 'q'`},
		{"a regexp: flag pcre: has", "regexp", "/abc/s OK", `unknown flag 's'`},
		{"neither a rule, if nor endif", "pcre", "example.com OK", "neither"},
		{"text after if", "pcre", "if /a/ OK\nendif", "text after if"},
		{"text after endif", "pcre", "endif OK", "text after endif"},
		{"endif without if", "regexp", "endif", "endif without"},
		{"$number beyond the subexpressions", "pcre", "/(a)/ $2", "$2"},
		{"$number of a negated pattern", "regexp", "!/(a)/ $1", "negated"},
		{"$name", "pcre", "/(a)/ $user", "$user"},
		{"$0", "pcre", "/(a)/ $0", "from $1"},
		{"a bare $", "pcre", "/(a)/ 5$", "nothing after it"},
		{"an unclosed ${", "regexp", "/(a)/ ${1", "unclosed"},
		{"a bad regular expression", "pcre", "/a(/ OK", "missing closing )"},
		{"pcre: a backreference", "pcre", `/^(.)\1@/ OK`, "backreference"},
		{"pcre: \\g backreference", "pcre", `/^(.)\g1@/ OK`, "backreference"},
		{"pcre: a lookahead", "pcre", `/^(?!abuse@).*@example\.com$/ OK`, "lookahead"},
		{"pcre: a negative lookbehind", "pcre", `/(?<!mail)\.example\.com$/ OK`, "lookbehind"},
		{"pcre: an atomic group", "pcre", `/(?>a+)@/ OK`, "atomic group"},
		{"pcre: a possessive quantifier", "pcre", `/a++@/ OK`, "possessive"},
		{"pcre: recursion", "pcre", `/(a(?1)?b)/ OK`, "recursion"},
		{"pcre: a conditional", "pcre", `/(a)?(?(1)b|c)/ OK`, "conditional"},
		{"pcre: \\K", "pcre", `/a\Kb/ OK`, "match start reset"},
		{"pcre: a collating element", "pcre", `/[[.a.]]/ OK`, "collating"},
		{"regexp: a backreference", "regexp", `/^(.)\1@/ OK`, "backreference"},
		{"regexp: \\< (GNU word start)", "regexp", `/\<mail/ OK`, `\<`},
		{"regexp: \\d is the letter d in POSIX", "regexp", `/^\d+@/ OK`, "letter d"},
		{"regexp: (? is not POSIX", "regexp", `/(?i)a/ OK`, "(?"},
		{"regexp: basic syntax (x off)", "regexp", `/a/x OK`, "basic regular expressions"},
		{"regexp: an equivalence class", "regexp", `/[[=a=]]/ OK`, "equivalence"},
		{"regexp: an unclosed bracket", "regexp", `/[a/ OK`, "unclosed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := "# line 1\n/^fine@/ OK\n" + tt.rule + "\n"
			tb, warnings, err := Parse(DefaultOptions(), tt.typ+":senders", strings.NewReader(text))
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.rule, err)
			}
			if len(warnings) == 0 {
				t.Fatalf("Parse(%q): no warning", tt.rule)
			}
			w := warnings[0]
			if !w.Skipped || w.File != "senders" || w.Line != 3 || !strings.Contains(w.Msg, tt.text) {
				t.Errorf("warning %+v, want senders:3 skipped and %q", w, tt.text)
			}
			if !strings.HasPrefix(w.String(), "senders:3: ") {
				t.Errorf("warning %q does not start with file:line", w)
			}
			if _, ok := tb.Lookup(envelope.Parse("fine@example.com")); !ok {
				t.Error("the good rule did not load")
			}
		})
	}
	t.Run("a bad endif still closes its if", func(t *testing.T) {
		tb, warnings, err := Parse(DefaultOptions(), "pcre:senders", strings.NewReader("if /a/\n/b/ OK\nendif junk\n/^c@/ OK\n"))
		if err != nil {
			t.Fatal(err)
		}
		if len(warnings) != 1 || !warnings[0].Skipped || warnings[0].Line != 3 {
			t.Errorf("warnings %+v, want line 3 skipped", warnings)
		}
		for addr, want := range map[string]bool{"c@x.test": true, "b@a.test": true, "b@x.test": false} {
			if _, ok := tb.Lookup(envelope.Parse(addr)); ok != want {
				t.Errorf("Lookup(%s) = %v, want %v", addr, ok, want)
			}
		}
	})
	t.Run("an if without endif is reported at the if and runs to the end", func(t *testing.T) {
		tb, warnings, err := Parse(DefaultOptions(), "pcre:senders", strings.NewReader("/^c@/ OK\nif /a/\n/b/ OK\n"))
		if err != nil {
			t.Fatal(err)
		}
		if len(warnings) != 1 || warnings[0].Line != 2 || !strings.Contains(warnings[0].Msg, "endif") {
			t.Errorf("warnings %+v, want line 2 without endif", warnings)
		}
		for addr, want := range map[string]bool{"c@x.test": true, "b@a.test": true, "b@x.test": false} {
			if _, ok := tb.Lookup(envelope.Parse(addr)); ok != want {
				t.Errorf("Lookup(%s) = %v, want %v", addr, ok, want)
			}
		}
	})
}

// Rules that load but can never bypass are warnings, as in indexed tables.
func TestPatternWarnings(t *testing.T) {
	for _, tt := range []struct {
		rule string
		text string
	}{
		{"/^a@/ REJECT no", "not a bypass"},
		{"/^a@/", "no result"},
		{"/^a@/ 450", "all-numerical"},
	} {
		t.Run(tt.rule, func(t *testing.T) {
			_, warnings := parsePatterns(t, "pcre", "/^ok@/ OK\n"+tt.rule+"\n")
			if len(warnings) != 1 || warnings[0].Line != 2 || !strings.Contains(warnings[0].Msg, tt.text) {
				t.Errorf("warnings %v, want one at line 2 saying %q", warnings, tt.text)
			}
		})
	}
	t.Run("a result with $number is judged at lookup", func(t *testing.T) {
		if _, warnings := parsePatterns(t, "pcre", "/^(a)@/ $1\n"); len(warnings) != 0 {
			t.Errorf("warnings %v", warnings)
		}
	})
}

// Tables loaded together are one Postfix table list: the whole address is
// tried in each table in order, pattern tables included; the domain and
// user@ keys only in the indexed ones.
func TestLoadPatternAndIndexedTables(t *testing.T) {
	dir := t.TempDir()
	hash := filepath.Join(dir, "senders")
	writeFile(t, hash, "example.com OK\nnews@example.com DUNNO\n")
	pcre := filepath.Join(dir, "senders.pcre")
	writeFile(t, pcre, "/^news@example\\.com$/ OK\n/^spam@/ REJECT\n")
	tests := []struct {
		name   string
		paths  []string
		addr   string
		file   string
		action string
	}{
		{"the indexed table first: its whole-address key decides", []string{hash, "pcre:" + pcre}, "news@example.com", hash, "DUNNO"},
		{"the pattern table first: its rule decides", []string{"pcre:" + pcre, hash}, "news@example.com", pcre, "OK"},
		{"the whole address in the pattern table beats a domain key", []string{hash, "pcre:" + pcre}, "spam@example.com", pcre, "REJECT"},
		{"no rule applies: the domain key decides", []string{"pcre:" + pcre, hash}, "alice@example.com", hash, "OK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, _, err := Load(DefaultOptions(), tt.paths...)
			if err != nil {
				t.Fatal(err)
			}
			if tb.Len() != 4 {
				t.Errorf("Len = %d, want 4 (two entries, two rules)", tb.Len())
			}
			if m, _ := tb.Lookup(envelope.Parse(tt.addr)); m.File != tt.file || m.Action != tt.action {
				t.Errorf("Lookup(%q) = %+v, want %s from %s", tt.addr, m, tt.action, tt.file)
			}
		})
	}
	t.Run("a change to a pattern table changes the fingerprint", func(t *testing.T) {
		tb, _, err := Load(DefaultOptions(), "pcre:"+pcre)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pcre, []byte("/^other@/ OK\n/^x/ OK\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if fp, err := Stat("pcre:" + pcre); err != nil || fp == tb.Fingerprint() {
			t.Errorf("Stat = %q, %v; want a new fingerprint", fp, err)
		}
	})
}

// How a regexp: (POSIX) pattern is read for Go's regexp.
func TestPosixToRE2(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`^a\.b$`, `^a\.b$`},
		{`[\.]`, `[\\.]`},
		{`[^@\.]+`, `[^@\\.]+`},
		{`[]a]`, `[\]a]`},
		{`[^]a]`, `[^\]a]`},
		{`[[:alpha:][:digit:]_-]`, `[[:alpha:][:digit:]_-]`},
		{`[a[b]`, `[a\[b]`},
		{`\w+\b\s\S\W\B`, `\w+\b\s\S\W\B`},
		{"\\`a\\'", `\Aa\z`},
		{`a{2,3}|(b)`, `a{2,3}|(b)`},
	} {
		got, msg := posixToRE2(tt.in)
		if msg != "" || got != tt.want {
			t.Errorf("posixToRE2(%q) = %q, %q; want %q", tt.in, got, msg, tt.want)
		}
	}
}

// Leaving out a rule never lets through a sender the table stops: a bad
// bypass rule is left out alone, a bad rule with another result takes the
// rest of the file with it, a bad if its block.
func TestPatternSkipsSafely(t *testing.T) {
	for _, tt := range []struct {
		name    string
		text    string
		bypass  map[string]bool
		skipped int // lines reported skipped
	}{
		{"a bad bypass rule is left out alone",
			"/^(?!x)a@/ OK\n/^b@/ OK\n",
			map[string]bool{"a@p.test": false, "b@p.test": true}, 1},
		{"a bad exception leaves out the rest of the file",
			"/^first@/ OK\n/^(?!x)noreply@p\\.test$/ DUNNO\n/@p\\.test$/ OK\n",
			map[string]bool{"first@p.test": true, "noreply@p.test": false, "other@p.test": false}, 1},
		{"a bad rule with $number in its result leaves out the rest",
			"/^(?!x)(a)@/ $1\n/^b@/ OK\n",
			map[string]bool{"b@p.test": false}, 1},
		{"a bad rule whose result cannot be read leaves out the rest",
			"/^a@ OK\n/^b@/ OK\n",
			map[string]bool{"b@p.test": false}, 1},
		{"a bad if leaves out its block, nested ifs included",
			"if /(?!x)@p\\.test$/\n/^a@/ OK\nif /b/\n/^b@/ OK\nendif\nendif\n/^c@/ OK\n",
			map[string]bool{"a@p.test": false, "b@p.test": false, "c@p.test": true}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tb, warnings, err := Parse(DefaultOptions(), "pcre:senders", strings.NewReader(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, w := range warnings {
				if w.Skipped {
					n++
				}
			}
			if n != tt.skipped {
				t.Errorf("%d lines skipped, want %d: %v", n, tt.skipped, warnings)
			}
			for addr, want := range tt.bypass {
				if _, bypass := tb.Lookup(envelope.Parse(addr)); bypass != want {
					t.Errorf("Lookup(%s) bypass = %v, want %v", addr, bypass, want)
				}
			}
		})
	}
}
