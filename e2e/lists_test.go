package e2e

import (
	"bufio"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-milter"
)

// An admin moving from Postgrey names its lists as they are, with the
// ".local" files Postgrey reads when they exist: check-config accepts them.
func TestCheckConfigAcceptsPostgreysListsAndAnAbsentLocalFile(t *testing.T) {
	requirePostgrey(t)
	bin := buildDaemon(t)
	dir := t.TempDir()
	local := filepath.Join(dir, "whitelist_clients.local")
	conf := filepath.Join(dir, "milter-grey.toml")
	text := "whitelist_client_files = [" + strconv.Quote(postgreyClients) + ", " + strconv.Quote("?"+local) + "]\n" +
		"whitelist_recipient_files = [" + strconv.Quote(postgreyRecipients) + "]\n"
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "check-config", "-config", conf).CombinedOutput()
	if err != nil {
		t.Fatalf("check-config: %v\n%s", err, out)
	}
	for _, want := range []string{local + ": optional list file absent; skipped", conf + ": OK"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check-config said %q, want %q in it", out, want)
		}
	}
}

// One bad line in a list a third party maintains must not stop mail: the
// daemon starts, logs the line with file, line and value, and the other
// entries work. check-config, run before deploying, fails on it.
func TestListWithABadLineStartsTheDaemonAndFailsCheckConfig(t *testing.T) {
	t.Parallel()
	list := filepath.Join(t.TempDir(), "whitelist_clients")
	if err := os.WriteFile(list, []byte("# a third-party list\n198.51.100\n192.0.2.300\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, greyConfig(map[string]string{"whitelist_client_files": "[" + strconv.Quote(list) + "]"}))
	d.WaitLog(t, 5*time.Second, "level=WARN", `msg="list line skipped"`, "at="+list+":3", "value=192.0.2.300")

	from := newSender("badlist")
	act, err := milterRcpt(d.Addr, envelope{ClientIP: "198.51.100.20", Helo: "mail.sender.test", From: from, Rcpt: "user@dest.test"})
	if err != nil || act.Code != milter.ActContinue {
		t.Errorf("a client of the list's good entry: %+v, %v; want continue", act, err)
	}
	d.WaitLog(t, 5*time.Second, "action=pass", "reason=client-whitelist", from)

	out, err := exec.Command(d.bin, "check-config", "-config", d.config).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), list+`:3: bad IP address "192.0.2.300"`) {
		t.Errorf("check-config: exit %d (%v), output %q; want 1 naming %s:3", code, err, out, list)
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// milter-grey reads Debian's whitelist_clients and whitelist_recipients as
// Postgrey does: for clients derived from every entry of the file (inside
// and just outside each address range; each name, a subdomain and look-
// alikes; a name each regexp matches, and variants), the real Postgrey and
// milter-grey, each loaded with the files, agree on whether the client is
// whitelisted or greylisted.
func TestPostgreyAndMilterGreyAgreeOnDebiansWhitelists(t *testing.T) {
	t.Parallel()
	pg := startPostgrey(t, "--whitelist-clients="+postgreyClients, "--whitelist-recipients="+postgreyRecipients)
	local := filepath.Join(t.TempDir(), "absent.local")
	d := startDaemon(t, greyConfig(map[string]string{
		"whitelist_client_files":    "[" + strconv.Quote(postgreyClients) + ", " + strconv.Quote("?"+local) + "]",
		"whitelist_recipient_files": "[" + strconv.Quote(postgreyRecipients) + "]",
	}))
	if strings.Contains(d.Log(), "list line skipped") {
		t.Errorf("milter-grey skipped lines of Debian's lists:\n%s", d.Log())
	}

	entries := listEntries(t, postgreyClients)
	if len(entries) < 50 {
		t.Fatalf("only %d entries in %s", len(entries), postgreyClients)
	}
	whitelisted := func(p clientProbe, rcpt string) (postgrey, milterGrey bool) {
		t.Helper()
		from := newSender("cmp")
		postgrey = pg.Whitelisted(t, p.ip, p.name, from, rcpt)
		act, err := milterRcpt(d.Addr, envelope{ClientIP: p.ip, ClientName: p.name, Helo: "mail.sender.test", From: from, Rcpt: rcpt})
		switch {
		case err != nil:
			t.Fatalf("milter-grey: %v", err)
		case act.Code == milter.ActContinue:
			milterGrey = true
		case act.Code == milter.ActReplyCode && act.SMTPCode == 451:
		default:
			t.Fatalf("milter-grey answered %+v to %+v", act, p)
		}
		return postgrey, milterGrey
	}

	var asked, passed int
	for _, e := range entries {
		probes := clientProbes(t, e)
		hit := false
		for _, p := range probes {
			pgOK, mgOK := whitelisted(p, "user@dest.test")
			asked++
			if pgOK {
				passed++
				hit = true
			}
			if pgOK != mgOK {
				t.Errorf("entry %q, client %s %q: Postgrey whitelisted %v, milter-grey %v", e, p.ip, p.name, pgOK, mgOK)
			}
		}
		if !hit {
			t.Errorf("entry %q: Postgrey whitelisted none of %+v, so they test nothing", e, probes)
		}
	}
	t.Logf("%d entries, %d clients asked, %d whitelisted by both", len(entries), asked, passed)
	if asked == passed {
		t.Error("every client was whitelisted: the look-alikes test nothing")
	}

	other := clientProbe{ip: "192.0.2.2"}
	for _, rcpt := range []string{"postmaster@dest.test", "Abuse@Dest.Test", "postmaster+tag@dest.test", "user@dest.test", "postmasters@dest.test", "xabuse@dest.test"} {
		if pgOK, mgOK := whitelisted(other, rcpt); pgOK != mgOK {
			t.Errorf("recipient %s: Postgrey whitelisted %v, milter-grey %v", rcpt, pgOK, mgOK)
		}
	}
}

// listEntries returns the entries of a Postgrey list: each line without
// its '#' comment and surrounding white space, if anything is left.
func listEntries(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var entries []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line != "" {
			entries = append(entries, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return entries
}

// clientProbe is a client to ask both programs about: an address, and the
// name its MTA verified ("" for none).
type clientProbe struct{ ip, name string }

// nameProbeIP is the address of the clients probed by name; no entry
// lists it.
const nameProbeIP = "192.0.2.1"

// clientProbes derives, from one list entry, clients on both sides of what
// it should match. The forms are Postgrey's: /regexp/, an address or CIDR
// prefix (IPv4 or IPv6), a partial IPv4 address, or a host name.
func clientProbes(t *testing.T, entry string) []clientProbe {
	t.Helper()
	addrs := func(as ...netip.Addr) []clientProbe {
		var ps []clientProbe
		for _, a := range as {
			if a.IsValid() {
				ps = append(ps, clientProbe{ip: a.String()})
			}
		}
		return ps
	}
	names := func(ns ...string) []clientProbe {
		var ps []clientProbe
		for _, n := range ns {
			ps = append(ps, clientProbe{ip: nameProbeIP, name: n})
		}
		return ps
	}
	switch {
	case len(entry) > 2 && strings.HasPrefix(entry, "/") && strings.HasSuffix(entry, "/"):
		expr := entry[1 : len(entry)-1]
		name := shortestMatch(t, expr)
		return names(name, strings.ToUpper(name), "0"+name, name+".example")
	case strings.Contains(entry, "/"):
		p, err := netip.ParsePrefix(entry)
		if err != nil {
			t.Fatalf("entry %q: %v", entry, err)
		}
		first, last := rangeOf(p.Masked())
		return addrs(first, last, first.Prev(), last.Next())
	case strings.Contains(entry, ":") || strings.Count(entry, ".") == 3 && strings.Trim(entry, "0123456789.") == "":
		a, err := netip.ParseAddr(entry)
		if err != nil {
			t.Fatalf("entry %q: %v", entry, err)
		}
		return addrs(a, a.Prev(), a.Next())
	case strings.Trim(entry, "0123456789.") == "":
		// A partial IPv4 address. Postgrey reads a.b.c as a /24; it means
		// a.b as a /16 but builds a /24 (milter-grey reads the /16), so
		// only addresses on which both readings agree are asked about.
		switch strings.Count(entry, ".") {
		case 2:
			p := netip.MustParsePrefix(entry + ".0/24")
			first, last := rangeOf(p)
			return addrs(first, last, first.Prev(), last.Next())
		case 1:
			p := netip.MustParsePrefix(entry + ".0.0/16")
			first, last := rangeOf(p)
			return addrs(first.Next(), first.Prev(), last.Next())
		}
		t.Fatalf("entry %q: not an address Postgrey reads", entry)
	}
	return names(entry, "mx1."+entry, strings.ToUpper(entry), "x"+entry, entry+".example")
}

// rangeOf returns the first and last address of a prefix.
func rangeOf(p netip.Prefix) (first, last netip.Addr) {
	first = p.Addr()
	b := first.AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ = netip.AddrFromSlice(b)
	return first, last
}

// shortestMatch returns a short string that expr (a Postgrey regexp, read
// as RE2 reads it) matches: the first branch of each alternation, no
// repetition beyond the minimum, letters for '.' and classes where they
// are allowed.
func shortestMatch(t *testing.T, expr string) string {
	t.Helper()
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		t.Fatalf("regexp %q: %v", expr, err)
	}
	var b strings.Builder
	var walk func(re *syntax.Regexp)
	walk = func(re *syntax.Regexp) {
		switch re.Op {
		case syntax.OpLiteral:
			b.WriteString(string(re.Rune))
		case syntax.OpCharClass:
			b.WriteRune(classRune(re.Rune))
		case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
			b.WriteByte('a')
		case syntax.OpCapture, syntax.OpPlus:
			walk(re.Sub[0])
		case syntax.OpRepeat:
			for range re.Min {
				walk(re.Sub[0])
			}
		case syntax.OpConcat:
			for _, s := range re.Sub {
				walk(s)
			}
		case syntax.OpAlternate:
			walk(re.Sub[0])
		}
		// OpStar, OpQuest, anchors and empty matches add nothing.
	}
	walk(re)
	name := b.String()
	if !regexp.MustCompile("(?i)" + expr).MatchString(name) {
		t.Fatalf("shortestMatch(%q) = %q, which it does not match", expr, name)
	}
	return name
}

// classRune picks from a character class (pairs of lo, hi) a lower-case
// letter, a digit or a hyphen if it has one, as a host name would have.
func classRune(ranges []rune) rune {
	for _, r := range "abcdefghijklmnopqrstuvwxyz0123456789-" {
		for i := 0; i+1 < len(ranges); i += 2 {
			if ranges[i] <= r && r <= ranges[i+1] {
				return r
			}
		}
	}
	return ranges[0]
}
