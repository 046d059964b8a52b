package greylist

import (
	"net/netip"
	"testing"
)

func TestClientMaskKey(t *testing.T) {
	cases := []struct {
		name string
		mask ClientMask
		ip   string
		want string
	}{
		{"IPv4 masked to /24 by default", DefaultClientMask, "192.0.2.77", "192.0.2.0/24"},
		{"IPv4 /32 keeps the bare address", ClientMask{IPv4: 32, IPv6: 64}, "192.0.2.77", "192.0.2.77"},
		{"IPv4 custom /16", ClientMask{IPv4: 16, IPv6: 64}, "192.0.2.77", "192.0.0.0/16"},
		{"IPv4 custom /28", ClientMask{IPv4: 28, IPv6: 64}, "192.0.2.77", "192.0.2.64/28"},
		{"IPv6 masked to /64 by default", DefaultClientMask, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"IPv6 /128 keeps the bare address", ClientMask{IPv4: 24, IPv6: 128}, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2:3:4:5:6"},
		{"IPv6 custom /48", ClientMask{IPv4: 24, IPv6: 48}, "2001:db8:1:2:3:4:5:6", "2001:db8:1::/48"},
		{"IPv4-mapped IPv6 counts as IPv4", DefaultClientMask, "::ffff:192.0.2.77", "192.0.2.0/24"},
		{"IPv4-mapped IPv6 with /32 is the bare IPv4", ClientMask{IPv4: 32, IPv6: 64}, "::ffff:192.0.2.77", "192.0.2.77"},
		{"IPv6 zone dropped", ClientMask{IPv4: 24, IPv6: 128}, "fe80::1%eth0", "fe80::1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.mask.Key(netip.MustParseAddr(c.ip)); got != c.want {
				t.Errorf("%+v.Key(%s) = %q, want %q", c.mask, c.ip, got, c.want)
			}
		})
	}
}

func TestClientMaskValidate(t *testing.T) {
	cases := []struct {
		name string
		mask ClientMask
		ok   bool
	}{
		{"default is valid", DefaultClientMask, true},
		{"smallest prefixes are valid", ClientMask{IPv4: 1, IPv6: 1}, true},
		{"whole addresses are valid", ClientMask{IPv4: 32, IPv6: 128}, true},
		{"IPv4 /0 is out of range", ClientMask{IPv4: 0, IPv6: 64}, false},
		{"IPv4 /33 is out of range", ClientMask{IPv4: 33, IPv6: 64}, false},
		{"negative IPv4 is out of range", ClientMask{IPv4: -1, IPv6: 64}, false},
		{"IPv6 /0 is out of range", ClientMask{IPv4: 24, IPv6: 0}, false},
		{"IPv6 /129 is out of range", ClientMask{IPv4: 24, IPv6: 129}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.mask.Validate()
			if (err == nil) != c.ok {
				t.Errorf("%+v.Validate() = %v, want ok=%v", c.mask, err, c.ok)
			}
		})
	}
}

func TestParseClientAddr(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want string // "" for no address
	}{
		{"plain IPv4", "192.0.2.1", "192.0.2.1"},
		{"plain IPv6", "2001:db8::1", "2001:db8::1"},
		{"Sendmail IPv6: form", "IPv6:2001:db8::1", "2001:db8::1"},
		{"bracketed IPv6: form", "[IPv6:2001:db8::1]", "2001:db8::1"},
		{"bracketed IPv4", "[192.0.2.1]", "192.0.2.1"},
		{"ipv6: prefix is case-insensitive", "ipv6:2001:db8::1", "2001:db8::1"},
		{"IpV6: prefix is case-insensitive", "[IpV6:2001:DB8::1]", "2001:db8::1"},
		{"surrounding space ignored", " 192.0.2.1 ", "192.0.2.1"},
		{"IPv4-mapped IPv6 is IPv4", "::ffff:192.0.2.1", "192.0.2.1"},
		{"zone dropped", "fe80::1%eth0", "fe80::1"},
		{"empty is no address", "", ""},
		{"unknown is no address", "unknown", ""},
		{"host name is no address", "mail.example.com", ""},
		{"garbage is no address", "not an address", ""},
		{"out-of-range octet is no address", "192.0.2.256", ""},
		{"empty brackets are no address", "[]", ""},
		{"bare IPv6: is no address", "IPv6:", ""},
		{"IPv6: with garbage is no address", "IPv6:zzzz", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ParseClientAddr(c.in)
			if c.want == "" {
				if got.IsValid() {
					t.Errorf("ParseClientAddr(%q) = %v, want no address", c.in, got)
				}
				return
			}
			if !got.IsValid() || got.String() != c.want {
				t.Errorf("ParseClientAddr(%q) = %v, want %s", c.in, got, c.want)
			}
		})
	}
}
