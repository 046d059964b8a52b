package dnslist

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseZone(t *testing.T) {
	tests := []struct {
		in    string
		name  string
		codes []string
		str   string // String(), "" for in
	}{
		{in: "zen.spamhaus.org", name: "zen.spamhaus.org"},
		{in: "  Zen.Spamhaus.ORG.  ", name: "zen.spamhaus.org", str: "zen.spamhaus.org"},
		{in: "list.dnswl.org", name: "list.dnswl.org"},
		{in: "_bl.example-list.test", name: "_bl.example-list.test"},
		{in: "zen.spamhaus.org=127.0.0.2", name: "zen.spamhaus.org", codes: []string{"127.0.0.2/32"}},
		{in: "zen.spamhaus.org=127.0.0.2,127.0.0.4/30", name: "zen.spamhaus.org", codes: []string{"127.0.0.2/32", "127.0.0.4/30"}},
		{in: "zen.spamhaus.org = 127.0.0.2 , 127.0.0.4/30", name: "zen.spamhaus.org", codes: []string{"127.0.0.2/32", "127.0.0.4/30"}, str: "zen.spamhaus.org=127.0.0.2,127.0.0.4/30"},
		{in: "bl.test=127.0.0.5/30", name: "bl.test", codes: []string{"127.0.0.4/30"}, str: "bl.test=127.0.0.4/30"},
		{in: "wl.test=127.0.0.0/8", name: "wl.test", codes: []string{"127.0.0.0/8"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			z, err := ParseZone(tt.in)
			if err != nil {
				t.Fatalf("ParseZone: %v", err)
			}
			var codes []string
			for _, p := range z.Codes {
				codes = append(codes, p.String())
			}
			if z.Name != tt.name || !slices.Equal(codes, tt.codes) {
				t.Errorf("ParseZone = %q %v, want %q %v", z.Name, codes, tt.name, tt.codes)
			}
			want := tt.str
			if want == "" {
				want = tt.in
			}
			if got := z.String(); got != want {
				t.Errorf("String() = %q, want %q", got, want)
			}
		})
	}
}

func TestParseZoneErrors(t *testing.T) {
	tests := []struct {
		in       string
		mentions string // the bad part, which the error must name
	}{
		{"", "no zone name"},
		{"=127.0.0.2", "no zone name"},
		{"zen..spamhaus.org", `"zen..spamhaus.org"`},
		{".zen.spamhaus.org", `".zen.spamhaus.org"`},
		{"zen spamhaus.org", `' '`},
		{"zen.spamhaus.org/24", `'/'`},
		{"zen.spamhaus.org:127.0.0.2", `':'`},
		{strings.Repeat("a", 64) + ".test", "63 characters"},
		{strings.Repeat("abcdefghi.", 19) + "test", "longer than 189"},
		{"zen.spamhaus.org=", `bad answer code ""`},
		{"zen.spamhaus.org=127.0.0.2,", `bad answer code ""`},
		{"zen.spamhaus.org=127.0.0.[2..11]", `bad answer code "127.0.0.[2..11]"`},
		{"zen.spamhaus.org=127.0.0.256", `bad answer code "127.0.0.256"`},
		{"zen.spamhaus.org=::1", `bad answer code "::1"`},
		{"zen.spamhaus.org=::ffff:127.0.0.2", `bad answer code "::ffff:127.0.0.2"`},
		{"zen.spamhaus.org=127.0.0.0/33", `bad answer code "127.0.0.0/33"`},
		{"zen.spamhaus.org=2001:db8::/32", `bad answer code "2001:db8::/32"`},
		{"zen.spamhaus.org=127.0.0.2=127.0.0.3", `bad answer code "127.0.0.2=127.0.0.3"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			z, err := ParseZone(tt.in)
			if err == nil {
				t.Fatalf("ParseZone(%q) = %+v, want an error", tt.in, z)
			}
			if !strings.Contains(err.Error(), tt.mentions) {
				t.Errorf("error %q does not mention %s", err, tt.mentions)
			}
			if tt.in != "" && !strings.Contains(err.Error(), tt.in) {
				t.Errorf("error %q does not quote the zone as configured", err)
			}
		})
	}
}

func TestZoneCounts(t *testing.T) {
	def, _ := ParseZone("bl.test")
	coded, _ := ParseZone("bl.test=127.0.0.2,127.0.0.4/30,127.0.0.1")
	tests := []struct {
		answer       string
		def, coded   bool
		errorAnswer  bool
		whyInDefault string
	}{
		{"127.0.0.2", true, true, false, "the plain listing"},
		{"127.0.0.4", true, true, false, "a listing of another kind"},
		{"127.0.0.7", true, true, false, "inside the /30"},
		{"127.0.0.8", true, false, false, "outside the codes"},
		{"127.0.1.2", true, false, false, "anywhere in 127/8"},
		{"127.0.0.1", false, true, true, "refused or shut down; explicit codes may still name it"},
		{"127.0.0.255", false, false, true, "dnswl.org: queries blocked"},
		{"127.0.15.255", false, false, true, "dnswl.org: queries blocked"},
		{"127.255.255.252", false, false, true, "Spamhaus: zone name mistyped"},
		{"127.255.255.254", false, false, true, "Spamhaus: public or open resolver"},
		{"127.255.255.255", false, false, true, "Spamhaus: too many queries"},
		{"192.0.2.80", false, false, true, "a wildcard resolver's search page"},
		{"10.0.0.2", false, false, true, "not the 127/8 convention"},
		{"::ffff:127.0.0.2", true, true, false, "IPv4-mapped is IPv4"},
	}
	for _, tt := range tests {
		t.Run(tt.answer, func(t *testing.T) {
			a := netip.MustParseAddr(tt.answer)
			if got := def.counts(a); got != tt.def {
				t.Errorf("default zone counts %s = %v, want %v (%s)", a, got, tt.def, tt.whyInDefault)
			}
			if got := coded.counts(a); got != tt.coded {
				t.Errorf("zone with codes counts %s = %v, want %v", a, got, tt.coded)
			}
			if got := errorAnswer(a); got != tt.errorAnswer {
				t.Errorf("errorAnswer(%s) = %v, want %v", a, got, tt.errorAnswer)
			}
		})
	}
}

func TestReversed(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":   "1.2.0.192.",
		"127.0.0.2":   "2.0.0.127.",
		"10.20.30.40": "40.30.20.10.",
		// RFC 5782 section 2.4's example address.
		"2001:db8:1:2:3:4:567:89ab": "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.",
		"::1":                       "1." + strings.Repeat("0.", 31),
	} {
		if got := reversed(netip.MustParseAddr(in)); got != want {
			t.Errorf("reversed(%s) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseZone(f *testing.F) {
	for _, s := range []string{
		"zen.spamhaus.org",
		"zen.spamhaus.org=127.0.0.2,127.0.0.4/30",
		"list.dnswl.org.",
		"bl.test = 127.0.0.2 , 127.0.0.0/8",
		"=",
		"a..b",
		"x=127.0.0.[2..11]",
		"x=::1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		z, err := ParseZone(s)
		if err != nil {
			if !strings.Contains(err.Error(), "zone") {
				t.Errorf("error %q does not say it is about a zone", err)
			}
			return
		}
		if z.Name == "" || z.Name != strings.ToLower(z.Name) || strings.HasSuffix(z.Name, ".") || len(z.Name) > maxZoneLen {
			t.Errorf("ParseZone(%q) name %q", s, z.Name)
		}
		for _, p := range z.Codes {
			if !p.Addr().Is4() || p != p.Masked() {
				t.Errorf("ParseZone(%q) code %v", s, p)
			}
		}
		// The canonical form reads back as the same zone.
		again, err := ParseZone(z.String())
		if err != nil || again.Name != z.Name || !slices.Equal(again.Codes, z.Codes) {
			t.Errorf("ParseZone(%q).String() = %q reads back as %+v, %v", s, z.String(), again, err)
		}
	})
}
