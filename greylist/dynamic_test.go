package greylist

import (
	"bufio"
	"strings"
	"testing"
)

// The engine asks NamePatterns through Lists.DynamicNames.
var _ NameMatcher = (*NamePatterns)(nil)

// Names of access lines, in the shapes large ISPs use, and names of mail
// servers, which the default list must tell apart.
func TestDefaultNamePatterns(t *testing.T) {
	p := DefaultNamePatterns()
	dynamic := []struct{ name, why string }{
		{"c-73-162-45-12.hsd1.ca.comcast.net", "address in the name"},
		{"pool-71-105-22-4.nycmny.fios.verizon.net", "pool"},
		{"ppp-88-217-44-3.dynamic.mnet-online.de", "ppp, dynamic"},
		{"dsl-187-156-31-2-dyn.prod-infinitum.com.mx", "dsl, dyn"},
		{"cpe-74-137-11-2.kya.res.rr.com", "cpe, res"},
		{"host86-150-1-2.range86-150.btcentralplus.com", "address after a word"},
		{"ip68-100-1-2.dc.dc.cox.net", "address after a word"},
		{"dynamic-adsl-94-37-1-2.clienti.tiscali.it", "dynamic, adsl"},
		{"1-2-3-4.dhcp.example.net", "address, dhcp"},
		{"dhcp024-210-034-053.columbus.rr.com", "zero-padded address"},
		{"74.67-201-80.adsl.skynet.be", "address with mixed separators"},
		{"200-171-228-6.customer.telesp.net.br", "customer"},
		{"modemcable090.28-201-24.mc.videotron.ca", "address split over labels"},
		{"pd9e4f89f.dip0.t-ipconnect.de", "hex address, dial-in pool"},
		{"ool-18be1aaf.dyn.optonline.net", "hex address"},
		{"0xd5aaf40b.dhcp.kabelnettet.dk", "0x hex address"},
		{"5ed0c0a1.cm-6-1a.dynamic.ziggo.nl", "dynamic"},
		{"dsl.dynamic8510023760.ttnet.net.tr", "dynamic followed by digits"},
		{"spc1-lewi4-6-0-cust190.lond.broadband.ntl.com", "cust, broadband"},
		{"cable-5-6-7-8.example.net", "cable"},
		{"pppoe12.example.org.uk", "pppoe"},
		{"C-73-162-45-12.HSD1.CA.COMCAST.NET.", "upper case, trailing dot"},
		{"customer.example.com", "a word as the whole first label counts too (documented)"},
	}
	mailServers := []struct{ name, why string }{
		{"mail.example.com", "a name of its own"},
		{"mx1.isp.example", "mx"},
		{"smtp-out.example.net", "smtp"},
		{"outbound.protection.outlook.com", "no generic part"},
		{"mail-db8eur05on2071.outbound.protection.outlook.com", "digits in a word are not an address"},
		{"a12-34.smtp-out.amazonses.com", "two numbers are not an address"},
		{"mail-ej1-f54.google.com", "mail"},
		{"69-171-232-143.mail-mail.facebook.com", "address, but says mail"},
		{"static.88-99-1-2.clients.your-server.de", "address, but says static"},
		{"mr85p00im-ztdg06021801.me.com", "long number, not an address"},
		{"sonic314-21.consmr.mail.ne1.yahoo.com", "two numbers"},
		{"o1.ptr1234.sendgrid.net", "no generic part"},
		{"mail181.suw121.mcdlv.net", "no generic part"},
		{"m228-4.mailgun.net", "two numbers"},
		{"mout.gmx.net", "no generic part"},
		{"mail.dyn.com", "the word is the registered domain"},
		{"smtp.pool.example.com", "pool, but smtp"},
		{"www.customer.io", "the word is the registered domain"},
		{"relay.res.example.edu", "relay"},
		{"mx.generaldynamics.com", "a word only when it stands alone"},
		{"smtp.poolside.example", "a word only when it stands alone"},
		{"cablemail.example.com", "a word only when it stands alone"},
		{"mta-72-70.sparkpostmail.com", "mta"},
		{"1-2-3-4.example", "address, but only one label after it"},
		{"1-2-3-4-x.example", "address, but only one label after its label"},
		{"newsletter.cable-company.example", "the word is in the registered domain"},
		{"news.dsl-provider.example", "the word is in the registered domain"},
		{"deadbeef.example.com", "eight hex digits right under a registered domain"},
		{"12345678.example.com", "eight digits right under a registered domain"},
		{"", "no name"},
	}
	for _, tt := range dynamic {
		if _, ok := p.Match(tt.name); !ok {
			t.Errorf("%s does not look dynamic (%s)", tt.name, tt.why)
		}
	}
	for _, tt := range mailServers {
		if pat, ok := p.Match(tt.name); ok {
			t.Errorf("%s looks dynamic by %s (%s)", tt.name, pat, tt.why)
		}
	}
}

// Every line of the shipped file is a comment, blank, or a pattern that
// compiles and has a comment right above it saying what it catches.
func TestDefaultNamePatternsDocumented(t *testing.T) {
	p := DefaultNamePatterns()
	sc := bufio.NewScanner(strings.NewReader(defaultNamePatterns))
	line, patterns := 0, 0
	prevComment := false
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		switch {
		case text == "":
			prevComment = false
		case strings.HasPrefix(text, "#"):
			prevComment = true
		default:
			patterns++
			if !prevComment {
				t.Errorf("dynamic_names.txt:%d: pattern %q has no comment above it", line, text)
			}
			if _, _, err := parseNamePattern(text); err != nil {
				t.Errorf("dynamic_names.txt:%d: %v", line, err)
			}
			prevComment = false
		}
	}
	if patterns == 0 || p.Len() != patterns {
		t.Errorf("the file has %d patterns, DefaultNamePatterns %d", patterns, p.Len())
	}
}

func TestNamePatternsMatch(t *testing.T) {
	p, err := ParseNamePatterns("test", strings.NewReader(`
# comment
\.dyn\.            # trailing comment
^ppp-
  ^static-host\.     
!^ppp-static\.
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, pattern string
	}{
		{"a.dyn.example", `\.dyn\.`},
		{"ppp-1.dyn.example", `\.dyn\.`}, // the first pattern in file order
		{"PPP-1.example.", `^ppp-`},
		{"static-host.example", `^static-host\.`},
		{"ppp-static.example", ""}, // an exception wins over any pattern
		{"mail.example", ""},
		{"", ""},
	} {
		pat, ok := p.Match(tt.name)
		if ok != (tt.pattern != "") || pat != tt.pattern {
			t.Errorf("Match(%q) = %q %v, want %q", tt.name, pat, ok, tt.pattern)
		}
	}
	if p.Len() != 4 {
		t.Errorf("Len = %d, want 4", p.Len())
	}
	var none *NamePatterns
	if _, ok := none.Match("ppp-1.example"); ok || none.Len() != 0 {
		t.Error("a nil NamePatterns matches")
	}
}

func TestParseNamePatternsErrors(t *testing.T) {
	for _, tt := range []struct {
		name, text, want string
	}{
		{"bad regexp", "ok\n\n(unclosed\n", `dyn.txt:3: pattern "(unclosed"`},
		{"bad exception", "# c\n![z-a]\n", `dyn.txt:2: pattern "![z-a]"`},
		{"empty exception", "!  # nothing\n", `dyn.txt:1: pattern "!": no regular expression`},
		{"white space", `dyn\.  \.example`, `dyn.txt:1: pattern "dyn\\.  \\.example": white space`},
		{"matches everything", "ppp|\n", `dyn.txt:1: pattern "ppp|" matches every host name`},
		{"matches everything too", `.*`, `dyn.txt:1: pattern ".*" matches every host name`},
		{"line too long", strings.Repeat("a", 70*1024), `dyn.txt:1: `},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseNamePatterns("dyn.txt", strings.NewReader(tt.text))
			if err == nil {
				t.Fatalf("no error; %d patterns", p.Len())
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error %q, want it to start with %q", err, tt.want)
			}
		})
	}
}

func FuzzParseNamePatterns(f *testing.F) {
	f.Add(defaultNamePatterns, "c-73-162-45-12.hsd1.ca.comcast.net")
	f.Add("!^mail\\.\n\\.dyn\\.\n", "mail.dyn.example")
	f.Add("(unclosed\n", "x")
	f.Add("a|\n", "")
	f.Fuzz(func(t *testing.T, text, host string) {
		p, err := ParseNamePatterns("fuzz.txt", strings.NewReader(text))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.txt:") {
				t.Errorf("error %q does not name the file", err)
			}
			return
		}
		pattern, ok := p.Match(host)
		if ok == (pattern == "") {
			t.Errorf("Match(%q) = %q, %v", host, pattern, ok)
		}
		if _, ok := p.Match(""); ok {
			t.Error("the empty name matches")
		}
	})
}
