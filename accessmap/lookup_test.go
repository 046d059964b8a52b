package accessmap

import (
	"fmt"
	"github.com/milter-grey/milter-grey/envelope"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// parse parses an access table given as text, failing the test on error.
func parse(t *testing.T, opts Options, text string) (*Table, []Warning) {
	t.Helper()
	tb, warnings, err := Parse(opts, "access", strings.NewReader(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return tb, warnings
}

func dotStyle() Options {
	o := DefaultOptions()
	o.ParentDomainMatchesSubdomains = false
	return o
}

// The lookup order of access(5), EMAIL ADDRESS PATTERNS and EMAIL ADDRESS
// EXTENSION, as checked against Postfix 3.7.11 itself.
func TestLookupKeys(t *testing.T) {
	def := DefaultOptions()
	noExt := DefaultOptions()
	noExt.Delimiters = ""
	plusMinus := DefaultOptions()
	plusMinus.Delimiters = "+-"
	nullKey := DefaultOptions()
	nullKey.NullSenderKey = "<NullSender>"
	tests := []struct {
		name string
		opts Options
		addr string
		want []string
	}{
		{"address, then domain and its parents, then user@", def, "user@sub.example.com",
			[]string{"user@sub.example.com", "sub.example.com", "example.com", "com", "user@"}},
		{"without parent domain matching the parents are looked up as .parent", dotStyle(), "user@sub.example.com",
			[]string{"user@sub.example.com", "sub.example.com", ".example.com", ".com", "user@"}},
		{"extension: user+foo@domain, user@domain, domain, user+foo@, user@", def, "user+foo@example.com",
			[]string{"user+foo@example.com", "user@example.com", "example.com", "com", "user+foo@", "user@"}},
		{"extension with .parent style", dotStyle(), "user+foo@sub.example.com",
			[]string{"user+foo@sub.example.com", "user@sub.example.com", "sub.example.com", ".example.com", ".com", "user+foo@", "user@"}},
		{"no delimiter, no extension", noExt, "user+foo@example.com",
			[]string{"user+foo@example.com", "example.com", "com", "user+foo@"}},
		{"every delimiter byte splits, at the first one", plusMinus, "u-a+b@ex.test",
			[]string{"u-a+b@ex.test", "u@ex.test", "ex.test", "test", "u-a+b@", "u@"}},
		{"the extension starts at the first delimiter", def, "u+a+b@ex.test",
			[]string{"u+a+b@ex.test", "u@ex.test", "ex.test", "test", "u+a+b@", "u@"}},
		{"an empty extension still splits", def, "u+@ex.test",
			[]string{"u+@ex.test", "u@ex.test", "ex.test", "test", "u+@", "u@"}},
		{"a leading delimiter does not split", def, "+x@ex.test",
			[]string{"+x@ex.test", "ex.test", "test", "+x@"}},
		{"postmaster is never split", def, "Postmaster@ex.test",
			[]string{"postmaster@ex.test", "ex.test", "test", "postmaster@"}},
		{"postmaster+x is split", def, "postmaster+x@ex.test",
			[]string{"postmaster+x@ex.test", "postmaster@ex.test", "ex.test", "test", "postmaster+x@", "postmaster@"}},
		{"mailer-daemon is never split on -", plusMinus, "MAILER-DAEMON@ex.test",
			[]string{"mailer-daemon@ex.test", "ex.test", "test", "mailer-daemon@"}},
		{"owner-list is never split on -", plusMinus, "owner-list@ex.test",
			[]string{"owner-list@ex.test", "ex.test", "test", "owner-list@"}},
		{"list-request is never split on -", plusMinus, "list-request@ex.test",
			[]string{"list-request@ex.test", "ex.test", "test", "list-request@"}},
		{"case is folded", def, "User+Tag@Sub.Example.COM",
			[]string{"user+tag@sub.example.com", "user@sub.example.com", "sub.example.com", "example.com", "com", "user+tag@", "user@"}},
		{"angle brackets are removed", def, "<a@ex.test>",
			[]string{"a@ex.test", "ex.test", "test", "a@"}},
		{"ESMTP parameters after the brackets are ignored", def, "<a@ex.test> SIZE=100",
			[]string{"a@ex.test", "ex.test", "test", "a@"}},
		{"the trailing dot of the domain is removed", def, "a@Example.COM.",
			[]string{"a@example.com", "example.com", "com", "a@"}},
		{"a source route is ignored", def, "<@relay.test,@other.test:a@ex.test>",
			[]string{"a@ex.test", "ex.test", "test", "a@"}},
		{"needless quotes are removed", def, `"a.b"@ex.test`,
			[]string{"a.b@ex.test", "ex.test", "test", "a.b@"}},
		{"quotes stay where RFC 5322 needs them", def, `"John Doe"@ex.test`,
			[]string{`"john doe"@ex.test`, "ex.test", "test", `"john doe"@`}},
		{"quoted words are joined", def, `a."b c"@ex.test`,
			[]string{`"a.b c"@ex.test`, "ex.test", "test", `"a.b c"@`}},
		{"the extension is split off the unquoted local part", def, `"a b+c"@ex.test`,
			[]string{`"a b+c"@ex.test`, `"a b"@ex.test`, "ex.test", "test", `"a b+c"@`, `"a b"@`}},
		{"quotes and backslashes in a quoted local part are escaped", def, `"q\"t\\"@ex.test`,
			[]string{`"q\"t\\"@ex.test`, "ex.test", "test", `"q\"t\\"@`}},
		{"a backslash outside quotes escapes", def, `a\b@ex.test`,
			[]string{"ab@ex.test", "ex.test", "test", "ab@"}},
		{"comments and white space are removed", def, "< a (comment) @ex.test>",
			[]string{"a@ex.test", "ex.test", "test", "a@"}},
		{"leading, trailing and double dots need quotes", def, `".x."@ex.test`,
			[]string{`".x."@ex.test`, "ex.test", "test", `".x."@`}},
		{"the empty local part is quoted", def, `""@ex.test`,
			[]string{`""@ex.test`, "ex.test", "test", `""@`}},
		{"a quoted @ belongs to the local part", def, `"a@b"@ex.test`,
			[]string{`"a@b"@ex.test`, "ex.test", "test", `"a@b"@`}},
		{"8-bit local parts need no quotes", def, "Héllo@Ex.Test",
			[]string{"héllo@ex.test", "ex.test", "test", "héllo@"}},
		{"a domain literal has no parent domains that matter", def, "u@[192.0.2.1]",
			[]string{"u@[192.0.2.1]", "[192.0.2.1]", "0.2.1]", "2.1]", "1]", "u@"}},
		{"a numerical domain has no parent domains", def, "u@192.0.2.1",
			[]string{"u@192.0.2.1", "192.0.2.1", "u@"}},
		{"the null sender is <>", def, "", []string{"<>"}},
		{"the null sender in brackets is <>", def, "<>", []string{"<>"}},
		{"the null sender with white space is <>", def, " < > ", []string{"<>"}},
		{"the null sender key is configurable", nullKey, "<>", []string{"<nullsender>"}},
		{"an unqualified address is not looked up", def, "user", nil},
		{"an address ending in @ is not looked up", def, "user@", nil},
		{"an unclosed bracket is garbage", def, "<user@ex.test", nil},
		{"an unclosed quote is garbage", def, `"user@ex.test`, nil},
		{"an unclosed comment is garbage", def, `user(@ex.test`, nil},
		{"an overlong address is garbage", def, strings.Repeat("a", 3000) + "@ex.test", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.opts.LookupKeys(envelope.Parse(tt.addr)); !slices.Equal(got, tt.want) {
				t.Errorf("LookupKeys(%q)\n got %q\nwant %q", tt.addr, got, tt.want)
			}
		})
	}
}

// Each step of the order, checked by removing the entry that matched and
// looking up again, as the Postfix oracle was queried.
func TestLookupOrderFirstKeyDecides(t *testing.T) {
	entries := []string{
		"user+ext@sub.example.com OK",
		"user@sub.example.com OK",
		"sub.example.com OK",
		".sub.example.com OK",
		"example.com OK",
		".example.com OK",
		"com OK",
		".com OK",
		"user+ext@ OK",
		"user@ OK",
	}
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{"parent domains match subdomains", DefaultOptions(), []string{
			"user+ext@sub.example.com", "user@sub.example.com", "sub.example.com",
			"example.com", "com", "user+ext@", "user@"}},
		{".domain style", dotStyle(), []string{
			"user+ext@sub.example.com", "user@sub.example.com", "sub.example.com",
			".example.com", ".com", "user+ext@", "user@"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			left := slices.Clone(entries)
			var got []string
			for {
				tb, _ := parse(t, tt.opts, strings.Join(left, "\n"))
				m, ok := tb.Lookup(envelope.Parse("<user+ext@sub.example.com>"))
				if !ok {
					break
				}
				got = append(got, m.Key)
				left = slices.DeleteFunc(left, func(e string) bool { return strings.HasPrefix(e, m.Key+" ") })
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("matched in order\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	type want struct {
		key    string // "" for no entry
		bypass bool
	}
	tests := []struct {
		name  string
		opts  Options
		table string
		addr  string
		want  want
	}{
		{"user@domain beats domain", DefaultOptions(), "example.com REJECT\nuser@example.com OK", "user@example.com", want{"user@example.com", true}},
		{"domain beats user@", DefaultOptions(), "user@ REJECT\nexample.com OK", "user@example.com", want{"example.com", true}},
		{"user@ matches in any domain", DefaultOptions(), "user@ OK", "user@example.org", want{"user@", true}},
		{"domain matches its subdomains by default", DefaultOptions(), "example.com OK", "a@b.c.example.com", want{"example.com", true}},
		{"domain matches only itself in .domain style", dotStyle(), "example.com OK", "a@sub.example.com", want{}},
		{"domain matches itself in .domain style", dotStyle(), "example.com OK", "a@example.com", want{"example.com", true}},
		{".domain matches subdomains in .domain style", dotStyle(), ".example.com OK", "a@b.sub.example.com", want{".example.com", true}},
		{".domain does not match the domain itself", dotStyle(), ".example.com OK", "a@example.com", want{}},
		{".domain never matches by default", DefaultOptions(), ".example.com OK", "a@sub.example.com", want{}},
		{"a domain is not a suffix match", DefaultOptions(), "example.com OK", "a@notexample.com", want{}},
		{"a domain is not a prefix match", DefaultOptions(), "example.com OK", "a@example.com.evil.test", want{}},
		{"the address without extension matches", DefaultOptions(), "user@example.com OK", "user+tag@example.com", want{"user@example.com", true}},
		{"the address with extension beats the one without", DefaultOptions(), "user@example.com REJECT\nuser+tag@example.com OK", "user+tag@example.com", want{"user+tag@example.com", true}},
		{"user@ matches an address with extension", DefaultOptions(), "user@ OK", "user+tag@example.org", want{"user@", true}},
		{"an extension entry does not match another extension", DefaultOptions(), "user+a@example.com OK", "user+b@example.com", want{}},
		{"multi-byte delimiter set", Options{Delimiters: "+-=", ParentDomainMatchesSubdomains: true}, "user@example.com OK", "user=x-y@example.com", want{"user@example.com", true}},
		{"keys are case-insensitive", DefaultOptions(), "User@Example.COM OK", "USER@example.com", want{"user@example.com", true}},
		{"DUNNO stops the lookup", DefaultOptions(), "user@example.com DUNNO\nexample.com OK", "user@example.com", want{"user@example.com", false}},
		{"DUNNO stops only its own key", DefaultOptions(), "user@example.com DUNNO\nexample.com OK", "other@example.com", want{"example.com", true}},
		{"DUNNO on the address without extension stops the lookup", DefaultOptions(), "user@example.com dunno\nexample.com OK", "user+x@example.com", want{"user@example.com", false}},
		{"DUNNO on a subdomain stops the parent", DefaultOptions(), "sub.example.com DUNNO\nexample.com OK", "a@sub.example.com", want{"sub.example.com", false}},
		{"REJECT is not a bypass and stops the lookup", DefaultOptions(), "spam@example.com REJECT\nexample.com OK", "spam@example.com", want{"spam@example.com", false}},
		{"a reply code is not a bypass", DefaultOptions(), "example.com 450 try later", "a@example.com", want{"example.com", false}},
		{"a restriction name is not a bypass", DefaultOptions(), "example.com permit", "a@example.com", want{"example.com", false}},
		{"OK in any case is a bypass", DefaultOptions(), "example.com ok", "a@example.com", want{"example.com", true}},
		{"OK with text is a bypass", DefaultOptions(), "example.com OK\tpartner", "a@example.com", want{"example.com", true}},
		{"OKAY is not OK", DefaultOptions(), "example.com OKAY", "a@example.com", want{"example.com", false}},
		{"all-numerical is treated as OK", DefaultOptions(), "example.com 1700000000", "a@example.com", want{"example.com", true}},
		{"all-numerical three digits is treated as OK", DefaultOptions(), "example.com 450", "a@example.com", want{"example.com", true}},
		{"numbers with text are not OK", DefaultOptions(), "example.com 12345 text", "a@example.com", want{"example.com", false}},
		{"the null sender matches <>", DefaultOptions(), "<> OK\nexample.com OK", "", want{"<>", true}},
		{"the null sender matches nothing else", DefaultOptions(), "example.com OK\n@ OK", "<>", want{}},
		{"a quoted local part matches its quoted key", DefaultOptions(), `"John Doe"@example.org OK`, `<"john doe"@Example.ORG>`, want{`"john doe"@example.org`, true}},
		{"a needlessly quoted local part matches the plain key", DefaultOptions(), "a.b@example.org OK", `"a.b"@example.org`, want{"a.b@example.org", true}},
		{"a needlessly quoted key never matches", DefaultOptions(), `"a.b"@example.org OK`, `"a.b"@example.org`, want{}},
		{"a trailing dot in the address still matches", DefaultOptions(), "user@example.com OK", "user@example.com.", want{"user@example.com", true}},
		{"an unqualified address never matches", DefaultOptions(), "user@ OK", "user", want{}},
		{"garbage never matches", DefaultOptions(), "example.com OK", "<user@example.com", want{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, _ := parse(t, tt.opts, tt.table)
			m, ok := tb.Lookup(envelope.Parse(tt.addr))
			if m.Key != tt.want.key || ok != tt.want.bypass || m.Bypass != ok {
				t.Errorf("Lookup(%q) = %+v, %v; want key %q bypass %v", tt.addr, m, ok, tt.want.key, tt.want.bypass)
			}
		})
	}
}

func TestLookupMatchDescribesTheEntry(t *testing.T) {
	tb, _ := parse(t, DefaultOptions(), "# comment\n\nExample.COM   OK  partner \n")
	m, ok := tb.Lookup(envelope.Parse("a@example.com"))
	want := Match{Key: "example.com", Action: "OK  partner", File: "access", Line: 3, Bypass: true}
	if !ok || m != want {
		t.Fatalf("Lookup = %+v, %v; want %+v", m, ok, want)
	}
	if got, want := m.String(), "access:3 example.com OK  partner"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (Match{}).String(); got != "" {
		t.Errorf("zero Match String() = %q, want empty", got)
	}
}

func TestNilAndEmptyTable(t *testing.T) {
	var nilTable *Table
	if m, ok := nilTable.Lookup(envelope.Parse("a@example.com")); ok || m != (Match{}) {
		t.Errorf("nil table Lookup = %+v, %v", m, ok)
	}
	if nilTable.Len() != 0 || nilTable.Fingerprint() != "" || nilTable.Options() != (Options{}) {
		t.Error("nil table is not empty")
	}
	tb, _ := parse(t, DefaultOptions(), "# only comments\n")
	if tb.Len() != 0 {
		t.Errorf("Len = %d", tb.Len())
	}
	if _, ok := tb.Lookup(envelope.Parse("a@example.com")); ok {
		t.Error("empty table matched")
	}
}

// The file an admin keeps for check_sender_access, loaded unchanged.
func TestNogreylistSendersFile(t *testing.T) {
	path := filepath.Join("..", "testdata", "access", "nogreylist-senders")
	tb, warnings, err := Load(DefaultOptions(), path)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings: %v", warnings)
	}
	if tb.Len() != 1 {
		t.Errorf("Len() = %d, want 1", tb.Len())
	}
	tests := []struct {
		name   string
		addr   string
		bypass bool
	}{
		{"the domain bypasses", "someone@example.com", true},
		{"a subdomain bypasses", "someone@Sub.Example.COM", true},
		{"an address with extension bypasses", "user+tag@example.com", true},
		{"the address in brackets bypasses", "<someone@example.com>", true},
		{"another domain does not", "someone@example.org", false},
		{"a domain ending in the name does not", "someone@notexample.com", false},
		{"a domain starting with the name does not", "someone@example.com.evil.test", false},
		{"the null sender does not", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, ok := tb.Lookup(envelope.Parse(tt.addr))
			if ok != tt.bypass {
				t.Fatalf("Lookup(%q) = %+v, %v; want bypass %v", tt.addr, m, ok, tt.bypass)
			}
			if ok && (m.Key != "example.com" || m.Line != 23 || m.File != path) {
				t.Errorf("Lookup(%q) = %+v; want example.com at %s:23", tt.addr, m, path)
			}
		})
	}
}

func TestSeveralFiles(t *testing.T) {
	dir := t.TempDir()
	first := filepath.Join(dir, "first")
	second := filepath.Join(dir, "second")
	writeFile(t, first, "example.com OK\nshared.test OK\nuser@ OK\n")
	writeFile(t, second, "# more\nshared.test REJECT\nspam@example.com DUNNO\nexample.org OK\nuser@ ok\n")
	tb, warnings, err := Load(DefaultOptions(), first, second)
	if err != nil {
		t.Fatal(err)
	}
	if tb.Len() != 5 {
		t.Errorf("Len() = %d, want 5", tb.Len())
	}
	tests := []struct {
		name   string
		addr   string
		key    string
		file   string
		bypass bool
	}{
		{"an entry of the first file", "a@example.com", "example.com", first, true},
		{"an entry of the second file", "a@example.org", "example.org", second, true},
		{"the first file wins a duplicate key", "a@shared.test", "shared.test", first, true},
		{"a more specific key of a later file still comes first", "spam@example.com", "spam@example.com", second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, ok := tb.Lookup(envelope.Parse(tt.addr))
			if m.Key != tt.key || m.File != tt.file || ok != tt.bypass {
				t.Errorf("Lookup(%q) = %+v, %v; want %s from %s, bypass %v", tt.addr, m, ok, tt.key, tt.file, tt.bypass)
			}
		})
	}
	t.Run("a shadowed entry with another action is reported", func(t *testing.T) {
		want := []Warning{
			{File: second, Line: 2, Key: "shared.test", Action: "REJECT", Msg: "entry ignored, " + first + ":2 (OK) comes first"},
		}
		if !slices.Equal(warnings, want) {
			t.Errorf("warnings\n got %v\nwant %v", warnings, want)
		}
	})
}

// A Table is read by every milter session at once.
func TestConcurrentLookups(t *testing.T) {
	tb, _ := parse(t, DefaultOptions(), "example.com OK\nspam@example.com REJECT\n")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 1000 {
				addr := fmt.Sprintf("u%d+%d@sub%d.example.com", i, j, j%3)
				if _, ok := tb.Lookup(envelope.Parse(addr)); !ok {
					t.Errorf("Lookup(%q) did not bypass", addr)
					return
				}
			}
		})
	}
	wg.Wait()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkLookup(b *testing.B) {
	src, err := os.ReadFile(filepath.Join("..", "testdata", "access", "postmap-format"))
	if err != nil {
		b.Fatal(err)
	}
	tb, _, err := Parse(DefaultOptions(), "f", strings.NewReader(string(src)))
	if err != nil {
		b.Fatal(err)
	}
	for _, addr := range []string{"user+tag@mail.example.com", "<someone@nowhere.example.net>", `"john doe"@example.net`} {
		b.Run(addr, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				tb.Lookup(envelope.Parse(addr))
			}
		})
	}
}
