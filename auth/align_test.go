package auth_test

import (
	"testing"

	"github.com/milter-grey/milter-grey/auth"
)

func TestAligned(t *testing.T) {
	tests := []struct {
		name            string
		dkim, sender    string
		relaxed, strict bool
	}{
		{"equal", "example.com", "example.com", true, true},
		{"relaxed subdomain of d=", "example.com", "mail.example.com", true, false},
		{"relaxed d= is a subdomain", "mail.example.com", "example.com", true, false},
		{"relaxed sibling subdomains", "dkim.example.com", "bounce.example.com", true, false},
		{"multi-label suffix", "mail.example.co.uk", "example.co.uk", true, false},
		{"misaligned", "attacker.test", "example.com", false, false},
		{"look-alike suffix", "example.com.attacker.test", "example.com", false, false},
		{"look-alike prefix", "attacker-example.com", "example.com", false, false},
		{"look-alike digit", "examp1e.com", "example.com", false, false},
		{"d= is a public suffix", "com", "example.com", false, false},
		{"d= is a two-label public suffix", "co.uk", "example.co.uk", false, false},
		{"d= equals a public suffix sender", "com", "com", false, false},
		{"private PSL entries are separate organisations", "foo.blogspot.com", "bar.blogspot.com", false, false},
		{"private PSL subdomain", "foo.blogspot.com", "www.foo.blogspot.com", true, false},
		{"case", "EXAMPLE.Com", "example.COM", true, true},
		{"case in a multi-label suffix", "Mail.Example.CO.UK", "example.co.uk", true, false},
		{"trailing dot", "example.com.", "example.com", true, true},
		{"IDN U-label vs A-label", "bücher.example", "xn--bcher-kva.example", true, true},
		{"IDN upper-case U-label", "BÜCHER.example", "bücher.example", true, true},
		{"IDN subdomain", "mail.xn--bcher-kva.example", "bücher.example", true, false},
		{"empty d=", "", "example.com", false, false},
		{"empty sender", "example.com", "", false, false},
		{"single label", "localhost", "localhost", false, false},
		{"empty label", "example..com", "example.com", false, false},
		{"invalid IDN", "xn--a.ü.example", "example", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := auth.Aligned(tt.dkim, tt.sender, false); got != tt.relaxed {
				t.Errorf("relaxed Aligned(%q, %q) = %v, want %v", tt.dkim, tt.sender, got, tt.relaxed)
			}
			if got := auth.Aligned(tt.dkim, tt.sender, true); got != tt.strict {
				t.Errorf("strict Aligned(%q, %q) = %v, want %v", tt.dkim, tt.sender, got, tt.strict)
			}
		})
	}
}

func TestOrgDomain(t *testing.T) {
	tests := []struct {
		in, want string
		err      bool
	}{
		{"news.example.com", "example.com", false},
		{"a.b.example.co.uk", "example.co.uk", false},
		{"Mail.Example.CO.UK.", "example.co.uk", false},
		{"foo.blogspot.com", "foo.blogspot.com", false},
		{"bücher.example", "xn--bcher-kva.example", false},
		{"com", "", true},
		{"co.uk", "", true},
		{"localhost", "", true},
		{"", "", true},
		{".", "", true},
	}
	for _, tt := range tests {
		got, err := auth.OrgDomain(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("OrgDomain(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func FuzzAligned(f *testing.F) {
	for _, seed := range [][2]string{
		{"example.com", "example.com"},
		{"mail.example.com", "example.com"},
		{"com", "example.com"},
		{"foo.blogspot.com", "bar.blogspot.com"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"EXAMPLE.COM.", "example.com"},
		{"xn--", "."},
		{"a..b", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, d, s string) {
		relaxed := auth.Aligned(d, s, false)
		strict := auth.Aligned(d, s, true)
		if strict && !relaxed {
			t.Errorf("Aligned(%q, %q): strict but not relaxed", d, s)
		}
		if auth.Aligned(s, d, false) != relaxed || auth.Aligned(s, d, true) != strict {
			t.Errorf("Aligned(%q, %q) is not symmetric", d, s)
		}
		if relaxed {
			od, err1 := auth.OrgDomain(d)
			os, err2 := auth.OrgDomain(s)
			if err1 != nil || err2 != nil || od != os {
				t.Errorf("aligned but OrgDomain %q (%v) vs %q (%v)", od, err1, os, err2)
			}
		}
	})
}
