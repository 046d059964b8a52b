package greylist

import (
	"net/netip"
	"testing"
)

func TestNetworks(t *testing.T) {
	var n Networks
	for _, e := range []string{
		"192.0.2.10",             // one IPv4 address
		"198.51.100.77/24",       // a CIDR with host bits set: masked
		"2001:db8:1::/48",        // IPv6 CIDR
		"2001:db8:ffff::1",       // one IPv6 address
		"::ffff:203.0.113.0/120", // IPv4-mapped CIDR: the IPv4 /24
		"::ffff:10.1.2.3",        // IPv4-mapped address: the IPv4 address
	} {
		if err := n.Add(e); err != nil {
			t.Fatalf("Add(%q): %v", e, err)
		}
	}
	if n.Len() != 6 {
		t.Errorf("Len = %d, want 6", n.Len())
	}
	cases := []struct {
		name string
		ip   string
		want string // "" for no match
	}{
		{"the IPv4 address", "192.0.2.10", "192.0.2.10/32"},
		{"its neighbour is outside", "192.0.2.11", ""},
		{"inside the CIDR", "198.51.100.1", "198.51.100.0/24"},
		{"outside the CIDR", "198.51.101.1", ""},
		{"inside the IPv6 CIDR", "2001:db8:1:ffff::1", "2001:db8:1::/48"},
		{"outside the IPv6 CIDR", "2001:db8:2::1", ""},
		{"the IPv6 address", "2001:db8:ffff::1", "2001:db8:ffff::1/128"},
		{"IPv4 inside a mapped CIDR entry", "203.0.113.9", "203.0.113.0/24"},
		{"IPv4 equal to a mapped address entry", "10.1.2.3", "10.1.2.3/32"},
		{"mapped client inside an IPv4 entry", "::ffff:192.0.2.10", "192.0.2.10/32"},
		{"mapped client inside a CIDR", "::ffff:198.51.100.200", "198.51.100.0/24"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := n.Match(netip.MustParseAddr(c.ip))
			if ok != (c.want != "") || got != c.want {
				t.Errorf("Match(%s) = %q, %v; want %q", c.ip, got, ok, c.want)
			}
		})
	}
	t.Run("invalid address never matches", func(t *testing.T) {
		var all Networks
		_ = all.Add("0.0.0.0/0")
		_ = all.Add("::/0")
		if m, ok := all.Match(netip.Addr{}); ok {
			t.Errorf("zero Addr matched %q", m)
		}
	})
	t.Run("nil list matches nothing", func(t *testing.T) {
		var nl *Networks
		if _, ok := nl.Match(netip.MustParseAddr("192.0.2.10")); ok || nl.Len() != 0 {
			t.Error("nil Networks matched or has entries")
		}
	})
}

func TestNetworksRejectBadEntries(t *testing.T) {
	for _, e := range []string{
		"192.0.2.256",
		"192.0.2.0/33",
		"2001:db8::/129",
		"192.0.2.0/",
		"example.com",
		"",
		"::ffff:0:0/64", // mapped prefix shorter than the IPv4 space
	} {
		t.Run(e, func(t *testing.T) {
			var n Networks
			if err := n.Add(e); err == nil {
				t.Errorf("Add(%q) accepted: %v", e, n.prefixes)
			}
		})
	}
}

func newClientList(t *testing.T, entries ...string) *ClientList {
	t.Helper()
	var l ClientList
	for _, e := range entries {
		if err := l.Add(e); err != nil {
			t.Fatalf("Add(%q): %v", e, err)
		}
	}
	return &l
}

func TestClientList(t *testing.T) {
	l := newClientList(t,
		"192.0.2.7",
		"198.51.100.0/24",
		"2001:db8:5::/48",
		"100.64.1",                // Postgrey's partial IPv4: a /24
		"10.20",                   // and a /16
		"Example.COM",             // the name and its subdomains
		".example.net",            // subdomains only
		`/^mx\d+\.example\.org$/`, // a regexp on the name
	)
	cases := []struct {
		name       string
		ip         string
		clientName string
		want       string // "" for no match
	}{
		{"IP entry", "192.0.2.7", "", "192.0.2.7/32"},
		{"CIDR entry", "198.51.100.200", "", "198.51.100.0/24"},
		{"IPv6 CIDR entry", "2001:db8:5:1::25", "", "2001:db8:5::/48"},
		{"IP entry with an unrelated name", "192.0.2.7", "mail.other.test", "192.0.2.7/32"},
		{"a.b.c matches its /24", "100.64.1.255", "", "100.64.1.0/24"},
		{"a.b.c does not match the next /24", "100.64.2.1", "", ""},
		{"a.b matches its /16", "10.20.255.1", "", "10.20.0.0/16"},
		{"a.b does not match the next /16", "10.21.0.1", "", ""},
		{"a mapped client inside a partial entry", "::ffff:100.64.1.9", "", "100.64.1.0/24"},
		{"name matches itself", "203.0.113.1", "example.com", "example.com"},
		{"name matches its subdomains", "203.0.113.1", "mx1.mail.example.com", "example.com"},
		{"name comparison is case-insensitive", "203.0.113.1", "MX.Example.Com", "example.com"},
		{"name with a trailing dot", "203.0.113.1", "mx.example.com.", "example.com"},
		{"name does not match a longer label", "203.0.113.1", "notexample.com", ""},
		{"name does not match a parent", "203.0.113.1", "com", ""},
		{".domain matches subdomains", "203.0.113.1", "mx.example.net", ".example.net"},
		{".domain does not match the domain itself", "203.0.113.1", "example.net", ""},
		{".domain does not match a longer label", "203.0.113.1", "mx.notexample.net", ""},
		{"regexp matches", "203.0.113.1", "mx12.example.org", `/^mx\d+\.example\.org$/`},
		{"regexp is case-insensitive", "203.0.113.1", "MX12.EXAMPLE.ORG", `/^mx\d+\.example\.org$/`},
		{"regexp does not match", "203.0.113.1", "www.example.org", ""},
		{"no name: names never match", "203.0.113.1", "", ""},
		{"unlisted IP", "203.0.113.1", "mail.other.test", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := l.Match(netip.MustParseAddr(c.ip), c.clientName)
			if ok != (c.want != "") || got != c.want {
				t.Errorf("Match(%s, %q) = %q, %v; want %q", c.ip, c.clientName, got, ok, c.want)
			}
		})
	}
	t.Run("a regexp that matches the empty string still needs a name", func(t *testing.T) {
		l := newClientList(t, "/.*/")
		if m, ok := l.Match(netip.MustParseAddr("203.0.113.1"), ""); ok {
			t.Errorf("matched %q without a client name", m)
		}
	})
	t.Run("nil list matches nothing", func(t *testing.T) {
		var nl *ClientList
		if _, ok := nl.Match(netip.MustParseAddr("192.0.2.7"), "example.com"); ok || nl.Len() != 0 {
			t.Error("nil ClientList matched or has entries")
		}
	})
	if l.Len() != 8 {
		t.Errorf("Len = %d, want 8", l.Len())
	}
}

func TestClientListRejectsBadEntries(t *testing.T) {
	for _, e := range []string{
		"192.0.2.300",
		"10.0.0.0/40",
		"10",        // one number: Postgrey matches no client with it
		"192.0.300", // a partial address out of range
		"192.0.2.",  // a trailing dot is not a partial address
		"10..2",     // nor an empty number
		"010.1",     // nor a leading zero (octal to inet_aton)
		"192.0/16",  // a partial address takes no prefix length
		"1.2.3.4.5", // five numbers
		"/[unclosed/",
		"user@example.com",
		"*.example.com",
		".",
	} {
		t.Run(e, func(t *testing.T) {
			var l ClientList
			if err := l.Add(e); err == nil {
				t.Errorf("Add(%q) accepted", e)
			}
		})
	}
}

func TestRecipientList(t *testing.T) {
	var l RecipientList
	for _, e := range []string{
		"Postmaster@Example.ORG", // user@domain
		"abuse@",                 // user@ in any domain
		"example.net",            // the domain and its subdomains
		".example.com",           // subdomains only
		`/^list-[a-z]+@lists\.example$/`,
	} {
		if err := l.Add(e); err != nil {
			t.Fatalf("Add(%q): %v", e, err)
		}
	}
	cases := []struct {
		name string
		rcpt string // as given: normalised before the lookup, as the engine does
		want string
	}{
		{"user@domain", "postmaster@example.org", "postmaster@example.org"},
		{"user@domain, any case", "PostMaster@EXAMPLE.org", "postmaster@example.org"},
		{"user@domain with an extension", "postmaster+spam@example.org", "postmaster@example.org"},
		{"user@domain, other user", "bob@example.org", ""},
		{"user@domain, other domain", "postmaster@example.com", ""},
		{"user@ in any domain", "abuse@anything.test", "abuse@"},
		{"user@ with an extension", "abuse+x@anything.test", "abuse@"},
		{"user@ without a domain", "abuse", "abuse@"},
		{"domain", "bob@example.net", "example.net"},
		{"domain matches subdomains", "bob@eu.example.net", "example.net"},
		{"domain does not match a longer label", "bob@notexample.net", ""},
		{".domain matches subdomains", "bob@mail.example.com", ".example.com"},
		{".domain does not match the domain itself", "bob@example.com", ""},
		{"regexp", "list-users@lists.example", `/^list-[a-z]+@lists\.example$/`},
		{"regexp is case-insensitive", "LIST-Users@Lists.Example", `/^list-[a-z]+@lists\.example$/`},
		{"regexp does not match", "list-123@lists.example", ""},
		{"unlisted", "bob@other.test", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rcpt := NormalizeRecipient(c.rcpt, "+")
			got, ok := l.Match(rcpt)
			if ok != (c.want != "") || got != c.want {
				t.Errorf("Match(%q) = %q, %v; want %q", rcpt, got, ok, c.want)
			}
		})
	}
	if l.Len() != 5 {
		t.Errorf("Len = %d, want 5", l.Len())
	}
	t.Run("nil list matches nothing", func(t *testing.T) {
		var nl *RecipientList
		if _, ok := nl.Match("postmaster@example.org"); ok || nl.Len() != 0 {
			t.Error("nil RecipientList matched or has entries")
		}
	})
}

func TestRecipientListRejectsBadEntries(t *testing.T) {
	for _, e := range []string{
		"@",
		"a@b@",
		"@example.org",
		"user@a@b",
		"/[unclosed/",
		"*.example.org",
	} {
		t.Run(e, func(t *testing.T) {
			var l RecipientList
			if err := l.Add(e); err == nil {
				t.Errorf("Add(%q) accepted", e)
			}
		})
	}
}
