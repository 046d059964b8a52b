package accessmap

import (
	"github.com/milter-grey/milter-grey/envelope"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: any input parses or fails without a panic, and every table
// that parses answers lookups, of its own keys among others, without one.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"nogreylist-senders", "postmap-format"} {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "access", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b), "user+tag@sub.example.com")
	}
	f.Add("example.com OK\nuser@example.com DUNNO\n.example.org OK\n<> OK\n", "<user@example.com>")
	f.Add("\"a b\"@x OK\n  more\n# c\n\"unbalanced\n", `"a b"@x`)
	f.Add("a\\", "(")
	f.Add("x 450\n@x OK\nx: y\n", "<@r:x@[1.2.3.4]>")
	f.Fuzz(func(t *testing.T, text, addr string) {
		for _, opts := range []Options{DefaultOptions(), {Delimiters: "+-", NullSenderKey: "X"}} {
			tb, warnings, err := Parse(opts, "f", strings.NewReader(text))
			for _, w := range warnings {
				_ = w.String()
			}
			if err != nil {
				if tb != nil {
					t.Fatal("a table with an error")
				}
				continue
			}
			if tb.Len() > strings.Count(text, "\n")+1 {
				t.Fatalf("%d entries from %d lines", tb.Len(), strings.Count(text, "\n")+1)
			}
			lookup(t, tb, addr)
			for key, e := range tb.entries {
				if e.Key != key || e.Line < 1 || e.Action == "" || e.Bypass != (classify(e.Action) == accept) {
					t.Fatalf("entry %q = %+v", key, e)
				}
				lookup(t, tb, key)
				lookup(t, tb, "u@"+key)
			}
		}
	})
}

// FuzzLookup: any address looked up in a table with every kind of key
// gives an answer that follows from the table, without a panic.
func FuzzLookup(f *testing.F) {
	for _, a := range []string{
		"", "<>", "user@example.com", "<User+Tag@Sub.Example.COM.>", `"john doe"@example.org`,
		"<@relay:u@x>", "u@[192.0.2.1]", "a(b)c@d", `"\`, "<", "postmaster+x@example.com",
		"owner-list@example.com", "user@", "@", "u@..", "héllo@exämple.com", "\xff@\xfe",
	} {
		f.Add(a)
	}
	table := "example.com OK\n.example.org OK\nuser@ OK\nspam@example.com REJECT\n" +
		"dunno.example.com DUNNO\n<> OK\n\"john doe\"@example.org OK\n[192.0.2.1] OK\nexämple.com OK\n"
	var tables []*Table
	for _, opts := range []Options{DefaultOptions(), dotStyle(), {Delimiters: "+-=", NullSenderKey: "<null>"}} {
		tb, _, err := Parse(opts, "f", strings.NewReader(table))
		if err != nil {
			f.Fatal(err)
		}
		tables = append(tables, tb)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		for _, tb := range tables {
			lookup(t, tb, addr)
		}
	})
}

// lookup checks that Lookup agrees with LookupKeys and the entries.
func lookup(t *testing.T, tb *Table, addr string) {
	t.Helper()
	m, bypass := tb.Lookup(envelope.Parse(addr))
	keys := tb.opts.LookupKeys(envelope.Parse(addr))
	var want Match
	for _, k := range keys {
		if k == "" {
			t.Fatalf("LookupKeys(%q) has an empty key: %q", addr, keys)
		}
		if e, ok := tb.entries[k]; ok {
			want = e
			break
		}
	}
	if m != want || bypass != want.Bypass {
		t.Fatalf("Lookup(%q) = %+v, %v; keys %q give %+v", addr, m, bypass, keys, want)
	}
	_ = m.String()
}

// FuzzParsePatterns: any regexp: or pcre: table parses or fails without a
// panic, and one that parses answers any address with a rule of its own,
// whose bypass follows from its result.
func FuzzParsePatterns(f *testing.F) {
	for _, name := range []string{"senders.regexp", "senders.pcre"} {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "access", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b), "substance@subst.example")
	}
	f.Add("if !/^a/\n/(x)?y/ [$1]$$\nendif\n/@/!/b/ OK\n", "xy@b")
	f.Add("/(?!a)/ OK\n/\\1/ OK\n/[[.a.]]/ OK\n${\n", "<>")
	f.Add("/ a # c/x ${1}\n/a/ $(1\n/(a)/U $1\n", `"a b"@c`)
	// Skipped lines around if and endif: a lookup must still end.
	f.Add("/^c@/ OK\nif /a/\n/b/ OK\n", "c@x")
	f.Add("if /a/\nif /(/\n/b/ OK\nendif junk\nendif\n/c/ OK\nendif\n", "c@x")
	f.Fuzz(func(t *testing.T, text, addr string) {
		for _, typ := range []string{"regexp", "pcre"} {
			tb, warnings, err := Parse(DefaultOptions(), typ+":f", strings.NewReader(text))
			for _, w := range warnings {
				_ = w.String()
			}
			if err != nil {
				if tb != nil {
					t.Fatal("a table with an error")
				}
				continue
			}
			if tb.Len() > strings.Count(text, "\n")+1 {
				t.Fatalf("%d rules from %d lines", tb.Len(), strings.Count(text, "\n")+1)
			}
			m, bypass := tb.Lookup(envelope.Parse(addr))
			if m.Key == "" {
				if bypass || m != (Match{}) {
					t.Fatalf("Lookup(%q) = %+v, %v without a rule", addr, m, bypass)
				}
				continue
			}
			if m.File != "f" || m.Line < 1 || bypass != m.Bypass || bypass != (classify(m.Action) == accept) {
				t.Fatalf("Lookup(%q) = %+v, %v", addr, m, bypass)
			}
		}
	})
}
