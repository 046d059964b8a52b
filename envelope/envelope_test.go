package envelope

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	type want struct {
		null, qualified  bool
		local, domain    string
		keyLocal, keyDom string
		str              string
	}
	for _, c := range []struct {
		in   string
		want want
	}{
		// The common case, with and without brackets.
		{"alice@Example.COM", want{qualified: true, local: "alice", domain: "Example.COM",
			keyLocal: "alice", keyDom: "@example.com", str: "alice@Example.COM"}},
		{"<Alice+tag@example.com.>", want{qualified: true, local: "Alice+tag", domain: "example.com",
			keyLocal: "alice+tag", keyDom: "@example.com", str: "Alice+tag@example.com"}},
		{"  < bob@example.org >  ", want{qualified: true, local: "bob", domain: "example.org",
			keyLocal: "bob", keyDom: "@example.org", str: "bob@example.org"}},
		// Null sender.
		{"", want{null: true, str: "<>"}},
		{"<>", want{null: true, str: "<>"}},
		{" < > ", want{null: true, str: "<>"}},
		{`<"">`, want{null: true, str: "<>"}}, // Postfix's internal form of "" is the null sender
		{`<\`, want{keyLocal: `\`, str: `\`}}, // garbage that unquotes to nothing is not the null sender
		{`\`, want{keyLocal: `\`, str: `\`}},
		// Quoting: the internal form is unquoted; the key form keeps the text.
		{`"John Doe"@example.net`, want{qualified: true, local: "John Doe", domain: "example.net",
			keyLocal: `"john doe"`, keyDom: "@example.net", str: "John Doe@example.net"}},
		{`"a@b"@example.com`, want{qualified: true, local: "a@b", domain: "example.com",
			keyLocal: `"a@b"`, keyDom: "@example.com", str: "a@b@example.com"}},
		{`a\.b@example.com`, want{qualified: true, local: "a.b", domain: "example.com",
			keyLocal: `a\.b`, keyDom: "@example.com", str: "a.b@example.com"}},
		{"alice(comment)@example.com", want{qualified: true, local: "alice", domain: "example.com",
			keyLocal: "alice(comment)", keyDom: "@example.com", str: "alice@example.com"}},
		// A source route is dropped from the internal form.
		{"<@relay.example:alice@example.com>", want{qualified: true, local: "alice", domain: "example.com",
			keyLocal: "@relay.example:alice", keyDom: "@example.com", str: "alice@example.com"}},
		// Not qualified: no internal form, a key form all the same.
		{"Postmaster", want{keyLocal: "postmaster", str: "postmaster"}},
		{"alice@", want{keyLocal: "alice", keyDom: "@", str: "alice@"}},
		{"alice@example.net..", want{qualified: true, local: "alice", domain: "example.net.",
			keyLocal: "alice", keyDom: "@example.net", str: "alice@example.net."}},
		{`"unclosed@example.com`, want{keyLocal: `"unclosed`, keyDom: "@example.com", str: `"unclosed@example.com`}},
		{"<<alice@example.net>>", want{qualified: true, local: "<alice", domain: "example.net",
			keyLocal: "alice", keyDom: "@example.net", str: "<alice@example.net"}},
	} {
		a := Parse(c.in)
		got := want{a.IsNull(), a.Qualified(), a.Local(), a.Domain(), a.KeyLocal(), a.KeyDomain(), a.String()}
		if got != c.want {
			t.Errorf("Parse(%q) = %+v\n                 want %+v", c.in, got, c.want)
		}
		if a.Raw() != c.in {
			t.Errorf("Parse(%q).Raw() = %q", c.in, a.Raw())
		}
	}
}

// LowerDomain is what SPF and DKIM alignment compare: the domain of the
// internal form, lower-cased; "" for the null sender and for an address
// without a domain.
func TestLowerDomain(t *testing.T) {
	for in, want := range map[string]string{
		"alice@Example.COM":    "example.com",
		"<alice@example.com>":  "example.com",
		"alice@example.com.":   "example.com",
		"\"a@b\"@example.com":  "example.com",
		"":                     "",
		"<>":                   "",
		"postmaster":           "",
		"alice@":               "",
		"user+tag@Sub.Ex.Test": "sub.ex.test",
		"kunde@Bücher.TEST":    "bücher.test",
	} {
		if got := Parse(in).LowerDomain(); got != want {
			t.Errorf("Parse(%q).LowerDomain() = %q, want %q", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "<>", "alice@example.com", `"a b"@x`, "<@r:a@b>", "a(b)c@d", `"`, "(", "[", "@", "a@b@c", "<<a>>", "\x00@\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a := Parse(s)
		if a.Raw() != s {
			t.Fatalf("Raw() = %q, want %q", a.Raw(), s)
		}
		if a.IsNull() && (a.Qualified() || a.KeyLocal() != "" || a.KeyDomain() != "") {
			t.Fatalf("Parse(%q): null sender with parts %+v", s, a)
		}
		if a.Qualified() && a.Domain() == "" {
			t.Fatalf("Parse(%q): qualified without a domain", s)
		}
		if !a.Qualified() && (a.Local() != "" || a.Domain() != "") {
			t.Fatalf("Parse(%q): internal form without being qualified: %+v", s, a)
		}
		if d := a.KeyDomain(); d != "" && !strings.HasPrefix(d, "@") {
			t.Fatalf("Parse(%q): key domain %q without its @", s, d)
		}
		if utf8.ValidString(s) && strings.ToLower(a.KeyLocal()) != a.KeyLocal() {
			t.Fatalf("Parse(%q): key local part %q not lower-cased", s, a.KeyLocal())
		}
		if !a.IsNull() && a.KeyLocal()+a.KeyDomain() == "" {
			t.Fatalf("Parse(%q): neither null nor a key form", s)
		}
	})
}
