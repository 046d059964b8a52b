package accessmap

import (
	"errors"
	"github.com/milter-grey/milter-grey/envelope"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// entries returns the table as folded key -> action.
func entries(tb *Table) map[string]string {
	m := make(map[string]string)
	for k, e := range tb.entries {
		m[k] = e.Action
	}
	return m
}

// The text format of postmap(1) and access(5) TABLE FORMAT, as checked
// against postmap -s of Postfix 3.7.11.
func TestParseFormat(t *testing.T) {
	tests := []struct {
		name string
		text string
		want map[string]string
	}{
		{"key whitespace value", "example.com OK\n", map[string]string{"example.com": "OK"}},
		{"tabs and several spaces separate", "a.test\t \tOK\n", map[string]string{"a.test": "OK"}},
		{"surrounding white space of the value is removed", "a.test   REJECT  go away \t\n", map[string]string{"a.test": "REJECT  go away"}},
		{"CRLF line ends", "a.test OK\r\nb.test OK\r\n", map[string]string{"a.test": "OK", "b.test": "OK"}},
		{"no newline at the end", "a.test OK", map[string]string{"a.test": "OK"}},
		{"keys are folded to lower case", "User@Example.COM OK\n", map[string]string{"user@example.com": "OK"}},
		{"values keep their case", "a.test Reject Go Away\n", map[string]string{"a.test": "Reject Go Away"}},
		{"comment lines are skipped", "# a comment\na.test OK\n", map[string]string{"a.test": "OK"}},
		{"indented comment lines are skipped", "   # indented\n\t# tab\na.test OK\n", map[string]string{"a.test": "OK"}},
		{"comment lines with text after # are skipped", "#         don't be too permissive.\na.test OK\n", map[string]string{"a.test": "OK"}},
		{"# elsewhere is text", "a.test OK # not a comment\n", map[string]string{"a.test": "OK # not a comment"}},
		{"# in a key is text", "a#b.test OK\n", map[string]string{"a#b.test": "OK"}},
		{"blank and white-space-only lines are skipped", "\n \t \na.test OK\n\n", map[string]string{"a.test": "OK"}},
		{"a line starting with white space continues the value", "a.test REJECT some\n   more\n", map[string]string{"a.test": "REJECT some   more"}},
		{"a continuation may carry the whole value", "a.test\n OK\n", map[string]string{"a.test": "OK"}},
		{"comments and blank lines do not end a logical line", "a.test REJECT x\n# c\n\n\ty\nb.test OK\n", map[string]string{"a.test": "REJECT x\ty", "b.test": "OK"}},
		{"a quoted key may hold white space", `"john doe"@example.com OK` + "\n", map[string]string{`"john doe"@example.com`: "OK"}},
		{"a backslash escapes white space in a key", `a\ b OK` + "\n", map[string]string{`a\ b`: "OK"}},
		{"the first of duplicate keys wins", "a.test OK\nA.TEST REJECT\n", map[string]string{"a.test": "OK"}},
		{"a duplicate's continuation goes with it", "a.test OK\na.test REJECT\n  more\nb.test OK\n", map[string]string{"a.test": "OK", "b.test": "OK"}},
		{"an empty file is an empty table", "", map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, _ := parse(t, DefaultOptions(), tt.text)
			if got := entries(tb); !maps.Equal(got, tt.want) {
				t.Errorf("entries\n got %q\nwant %q", got, tt.want)
			}
			if tb.Len() != len(tt.want) {
				t.Errorf("Len() = %d, want %d", tb.Len(), len(tt.want))
			}
		})
	}
}

func TestParseLineNumbers(t *testing.T) {
	text := "# c\n\nfirst.test OK\nsecond.test REJECT\n  continued\n\n# c\nthird.test OK\n"
	tb, _ := parse(t, DefaultOptions(), text)
	for key, line := range map[string]int{"first.test": 3, "second.test": 4, "third.test": 8} {
		if got := tb.entries[key].Line; got != line {
			t.Errorf("%s at line %d, want %d", key, got, line)
		}
	}
}

// Lines that postmap skips with a warning are skipped, each with a Warning
// naming file and line; the other lines load.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    []string // each skipped line's warning, in order
		entries int      // the entries that load
	}{
		{"a key with no value", "a.test OK\nnovalue\n", []string{`f:2: "novalue" has no value; expected format: key whitespace value (line skipped)`}, 1},
		{"a key with white space only after it", "a.test   \t\n", []string{`f:1: "a.test" has no value; expected format: key whitespace value (line skipped)`}, 0},
		{"an unbalanced quote", "\"a b OK\n", []string{`f:1: unbalanced '"' in the key (line skipped)`}, 0},
		{"a first line starting with white space", "  a.test OK\nb.test OK\n", []string{"f:1: line starts with white space but continues no entry (postmap: logical line must not start with whitespace) (line skipped)"}, 1},
		{"every bad line is reported", "a\nb OK\nc\n", []string{
			`f:1: "a" has no value; expected format: key whitespace value (line skipped)`,
			`f:3: "c" has no value; expected format: key whitespace value (line skipped)`}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, warnings, err := Parse(DefaultOptions(), "f", strings.NewReader(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range warnings {
				if !w.Skipped || w.File != "f" || w.Line == 0 {
					t.Errorf("warning %+v: want a skipped line with file and line", w)
				}
				got = append(got, w.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("warnings\n got %q\nwant %q", got, tt.want)
			}
			if tb.Len() != tt.entries {
				t.Errorf("%d entries, want %d", tb.Len(), tt.entries)
			}
		})
	}
	t.Run("a binary file is an error, not a line to skip", func(t *testing.T) {
		tb, _, err := Parse(DefaultOptions(), "f", strings.NewReader("a.test OK\n\x00\x01\x02\n"))
		want := "f: line 2: NUL byte: not an access(5) text file (give the file postmap reads, not the .db it writes)"
		if err == nil || err.Error() != want || tb != nil {
			t.Errorf("Parse = %v, %v; want no table and %q", tb, err, want)
		}
	})
	t.Run("many bad lines do not lose the good ones", func(t *testing.T) {
		text := strings.Repeat("x\n", 1000) + "last.test OK\n"
		tb, warnings, err := Parse(DefaultOptions(), "f", strings.NewReader(text))
		if err != nil || len(warnings) != 1000 {
			t.Fatalf("Parse: %d warnings, %v", len(warnings), err)
		}
		if _, ok := tb.Lookup(envelope.Parse("a@last.test")); !ok {
			t.Error("the good line after the bad ones did not load")
		}
	})
	t.Run("a read error names the file", func(t *testing.T) {
		r := iotest.TimeoutReader(strings.NewReader(strings.Repeat("a.test OK\n", 1000)))
		_, _, err := Parse(DefaultOptions(), "f", r)
		if !errors.Is(err, iotest.ErrTimeout) || !strings.HasPrefix(err.Error(), "f: ") {
			t.Errorf("error %v", err)
		}
	})
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		text string
		want []Warning
	}{
		{"OK, DUNNO and all-numerical give no warning", DefaultOptions(), "a.test OK\nb.test DUNNO\nc.test 1234\n", nil},
		{"REJECT is reported with file and line", DefaultOptions(), "a.test OK\nspam.test REJECT go away\n", []Warning{
			{File: "f", Line: 2, Key: "spam.test", Action: "REJECT go away", Msg: "not a bypass action (only OK and all-numerical results are); the entry stops the lookup like DUNNO"}}},
		{"a reply code is reported", DefaultOptions(), "a.test 550 5.7.1 no\n", []Warning{
			{File: "f", Line: 1, Key: "a.test", Action: "550 5.7.1 no", Msg: "not a bypass action (only OK and all-numerical results are); the entry stops the lookup like DUNNO"}}},
		{"a restriction is reported", DefaultOptions(), "a.test permit_mynetworks, reject\n", []Warning{
			{File: "f", Line: 1, Key: "a.test", Action: "permit_mynetworks, reject", Msg: "not a bypass action (only OK and all-numerical results are); the entry stops the lookup like DUNNO"}}},
		{"a lone reply code is all-numerical and reported as a bypass", DefaultOptions(), "a.test 450\n", []Warning{
			{File: "f", Line: 1, Key: "a.test", Action: "450", Msg: "all-numerical result: Postfix treats it as OK, not as a reply code; this entry is a bypass"}}},
		{"a duplicate key is reported", DefaultOptions(), "a.test OK\n\nA.test REJECT\n", []Warning{
			{File: "f", Line: 3, Key: "A.test", Action: "REJECT", Msg: "duplicate entry ignored, line 1 wins"}}},
		{".domain is reported when parent domains match", DefaultOptions(), ".example.com OK\n", []Warning{
			{File: "f", Line: 1, Key: ".example.com", Action: "OK", Msg: "never matches while parent_domain_matches_subdomains includes smtpd_access_maps (the Postfix default): example.com already matches its subdomains"}}},
		{".domain is fine in .domain style", dotStyle(), ".example.com OK\n", nil},
		{"@domain is reported", DefaultOptions(), "@example.com OK\n", []Warning{
			{File: "f", Line: 1, Key: "@example.com", Action: "OK", Msg: "never matches: a domain is written without @ (example.com), a local part with a trailing @ (user@)"}}},
		{"a domain with a trailing dot is reported", DefaultOptions(), "example.com. OK\n", []Warning{
			{File: "f", Line: 1, Key: "example.com.", Action: "OK", Msg: "never matches: Postfix looks domains up without a trailing dot"}}},
		{"a needlessly quoted address is reported", DefaultOptions(), `"a.b"@example.com OK` + "\n", []Warning{
			{File: "f", Line: 1, Key: `"a.b"@example.com`, Action: "OK", Msg: "never matches: Postfix looks this address up as a.b@example.com"}}},
		{"an address that needs quotes is reported", DefaultOptions(), "a..b@example.com OK\n", []Warning{
			{File: "f", Line: 1, Key: "a..b@example.com", Action: "OK", Msg: `never matches: Postfix looks this address up as "a..b"@example.com`}}},
		{"a needlessly quoted local part is reported", DefaultOptions(), `"user"@ OK` + "\n", []Warning{
			{File: "f", Line: 1, Key: `"user"@`, Action: "OK", Msg: "never matches: Postfix looks this local part up as user@"}}},
		{"quoted keys that Postfix looks up are fine", DefaultOptions(), `"john doe"@example.com OK` + "\n" + `"john doe"@ OK` + "\n<> OK\n", nil},
		{"a quoted domain is reported", DefaultOptions(), `"example.com" OK` + "\n", []Warning{
			{File: "f", Line: 1, Key: `"example.com"`, Action: "OK", Msg: "never matches: Postfix looks domains up without quotes, backslashes or white space"}}},
		{"key: value format is reported", DefaultOptions(), "postmaster: OK\n", []Warning{
			{File: "f", Line: 1, Key: "postmaster:", Action: "OK", Msg: `record is in "key: value" format; is this an alias file?`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got, err := Parse(tt.opts, "f", strings.NewReader(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("warnings\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestWarningString(t *testing.T) {
	w := Warning{File: "/etc/postfix/nogreylist-senders", Line: 12, Key: "spam@example.com", Action: "REJECT", Msg: "not a bypass action"}
	if got, want := w.String(), "/etc/postfix/nogreylist-senders:12: not a bypass action: spam@example.com REJECT"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		value string
		want  action
	}{
		{"OK", accept}, {"ok", accept}, {"Ok whatever", accept}, {"OK\tpartner", accept},
		{"0", accept}, {"1700000000", accept}, {"450", accept},
		{"DUNNO", dunno}, {"dunno text", dunno},
		{"OKAY", other}, {"OK,reject", other}, {"REJECT", other}, {"DEFER later", other},
		{"450 later", other}, {"550 5.7.1 no", other}, {"12345 text", other}, {"-1", other},
		{"HOLD", other}, {"DISCARD", other}, {"FILTER smtp:[127.0.0.1]:10025", other},
		{"PREPEND X-Foo: bar", other}, {"REDIRECT a@b", other}, {"WARN", other}, {"INFO", other},
		{"BCC a@b", other}, {"permit", other}, {"reject_unverified_sender", other},
		{"DEFER_IF_PERMIT", other},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			if got := classify(tt.value); got != tt.want {
				t.Errorf("classify(%q) = %d, want %d", tt.value, got, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access")
	writeFile(t, path, "example.com OK\n")
	tests := []struct {
		name string
		arg  string
	}{
		{"a plain path", path},
		{"a hash: table reads its source", "hash:" + path},
		{"a texthash: table", "texthash:" + path},
		{"a proxied table", "proxy:lmdb:" + path},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, _, err := Load(DefaultOptions(), tt.arg)
			if err != nil {
				t.Fatal(err)
			}
			if m, ok := tb.Lookup(envelope.Parse("a@example.com")); !ok || m.File != path {
				t.Errorf("Lookup = %+v, %v", m, ok)
			}
		})
	}
	t.Run("no files is an empty table", func(t *testing.T) {
		tb, _, err := Load(DefaultOptions())
		if err != nil || tb.Len() != 0 {
			t.Errorf("Load() = %v, %v", tb, err)
		}
	})
	t.Run("a missing file is an error naming it", func(t *testing.T) {
		missing := filepath.Join(dir, "missing")
		_, _, err := Load(DefaultOptions(), path, missing)
		if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
			t.Errorf("error %v", err)
		}
	})
	t.Run("a directory is an error", func(t *testing.T) {
		if _, _, err := Load(DefaultOptions(), dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("a cidr: table is an error", func(t *testing.T) {
		if _, _, err := Load(DefaultOptions(), "cidr:"+path); err == nil || !strings.Contains(err.Error(), "table type cidr") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("a bad line is skipped with file and line, the rest loads", func(t *testing.T) {
		bad := filepath.Join(dir, "bad")
		writeFile(t, bad, "# c\nexample.org\nexample.net OK\n")
		tb, warnings, err := Load(DefaultOptions(), path, bad)
		if err != nil {
			t.Fatal(err)
		}
		if len(warnings) != 1 || !warnings[0].Skipped || warnings[0].File != bad || warnings[0].Line != 2 {
			t.Errorf("warnings %+v, want %s:2 skipped", warnings, bad)
		}
		if _, ok := tb.Lookup(envelope.Parse("a@example.net")); !ok {
			t.Error("the line after the bad one did not load")
		}
	})
}
