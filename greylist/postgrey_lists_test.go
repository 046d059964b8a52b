package greylist

import (
	"bufio"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/milter-grey/milter-grey/testutil/testci"
)

// The lists Debian's postgrey package installs (e2e/install-deps.sh
// installs it). They are read where the package puts them, not copied.
const (
	postgreyClients    = "/etc/postgrey/whitelist_clients"
	postgreyRecipients = "/etc/postgrey/whitelist_recipients"
)

// entryLines counts the lines of a list file that hold an entry, as
// Postgrey counts them: what is left after '#' comments and white space.
func entryLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if strings.TrimSpace(line) != "" {
			n++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

func requirePostgreyLists(t *testing.T) {
	t.Helper()
	for _, p := range []string{postgreyClients, postgreyRecipients} {
		if _, err := os.Stat(p); err != nil {
			testci.SkipOrFail(t, "Debian's postgrey lists: %v (e2e/install-deps.sh installs the postgrey package)", err)
		}
	}
}

func TestPostgreyDebianClientList(t *testing.T) {
	requirePostgreyLists(t)
	var l ClientList
	var r ListReport
	if err := r.ReadFile(postgreyClients, l.Add); err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	for _, s := range r.Skipped {
		t.Errorf("entry not loaded: %v", s)
	}
	if want := entryLines(t, postgreyClients); l.Len() != want {
		t.Errorf("loaded %d entries, the file has %d", l.Len(), want)
	}

	// A sample of each form, with the verdict Postgrey gives: client
	// addresses are tested without a name, names from an address that no
	// entry lists (Postgrey's client_name is Postfix's forward-confirmed
	// name, as milter-grey's is).
	const other = "192.0.2.1"
	cases := []struct {
		name       string
		ip         string
		clientName string
		want       bool
	}{
		{"partial IPv4 a.b.c: inside its /24", "195.235.39.200", "", true},
		{"partial IPv4 a.b.c: the next /24", "195.235.40.1", "", false},
		{"IPv4 address", "193.77.153.67", "", true},
		{"IPv4 address: its neighbour", "193.77.153.68", "", false},
		{"IPv4 CIDR: last address", "205.201.143.255", "", true},
		{"IPv4 CIDR: just past it", "205.201.144.0", "", false},
		{"IPv6 prefix", "2a01:4180:4051:800::25", "", true},
		{"IPv6 prefix: the next /64", "2a01:4180:4051:801::25", "", false},
		{"host name: a subdomain", other, "out-21.smtp.github.com", true},
		{"host name: the name itself", other, "github.com", true},
		{"host name: any case", other, "Out-21.SMTP.GitHub.COM", true},
		{"host name: a longer label is not a subdomain", other, "notgithub.com", false},
		{"host name: as a prefix of another domain", other, "github.com.attacker.test", false},
		{"regexp", other, "mail12.telekom.de", true},
		{"regexp: any case", other, "MAIL12.Telekom.DE", true},
		{"regexp: \\d+ needs a digit", other, "mailx.telekom.de", false},
		{"regexp with a lazy quantifier", other, "mx1.server.arvato-systems.de", true},
		{"regexp with an alternation", other, "smtpfree12-g21.free.fr", true},
		{"regexp with an alternation: other names", other, "mx12-g21.free.fr", false},
		{"an unlisted client", other, "mail.example.org", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, ok := l.Match(netip.MustParseAddr(c.ip), c.clientName)
			if ok != c.want {
				t.Errorf("Match(%s, %q) = %q, %v; Postgrey says %v", c.ip, c.clientName, m, ok, c.want)
			}
		})
	}
}

func TestPostgreyDebianRecipientList(t *testing.T) {
	requirePostgreyLists(t)
	var l RecipientList
	var r ListReport
	if err := r.ReadFile(postgreyRecipients, l.Add); err != nil {
		t.Fatalf("ReadFile: %v", err)
	}
	for _, s := range r.Skipped {
		t.Errorf("entry not loaded: %v", s)
	}
	if want := entryLines(t, postgreyRecipients); l.Len() != want {
		t.Errorf("loaded %d entries, the file has %d", l.Len(), want)
	}
	for _, c := range []struct {
		rcpt string
		want bool
	}{
		{"postmaster@example.org", true},
		{"Abuse@Example.ORG", true},
		{"postmaster+tag@example.org", true}, // Postgrey allows a +extension
		{"bob@example.org", false},
		{"postmasters@example.org", false},
	} {
		rcpt := NormalizeRecipient(c.rcpt, "+")
		if m, ok := l.Match(rcpt); ok != c.want {
			t.Errorf("Match(%q) = %q, %v; Postgrey says %v", rcpt, m, ok, c.want)
		}
	}
}
