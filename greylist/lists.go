package greylist

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// Networks is a set of IP prefixes (trusted_networks).
type Networks struct {
	prefixes []netip.Prefix
}

// Add adds an address or a CIDR prefix.
func (n *Networks) Add(entry string) error {
	p, err := parsePrefix(entry)
	if err != nil {
		return err
	}
	n.prefixes = append(n.prefixes, p)
	return nil
}

// Match returns the prefix that contains ip.
func (n *Networks) Match(ip netip.Addr) (string, bool) {
	if n == nil || !ip.IsValid() {
		return "", false
	}
	ip = ip.Unmap()
	for _, p := range n.prefixes {
		if p.Contains(ip) {
			return p.String(), true
		}
	}
	return "", false
}

// Len is the number of entries.
func (n *Networks) Len() int {
	if n == nil {
		return 0
	}
	return len(n.prefixes)
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad CIDR %q", s)
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("bad CIDR %q: IPv4-mapped prefix shorter than /96", s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad IP address %q", s)
	}
	ip = ip.Unmap()
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

// ClientList matches clients by address or host name, with the entries of
// Postgrey's whitelist_clients: an IP address, a CIDR prefix, a partial IPv4
// address ("192.0.2" is 192.0.2.0/24, "10.1" is 10.1.0.0/16), a host name
// (which also matches its subdomains), ".domain" (subdomains only) or
// "/regexp/" on the name, case-insensitive and unanchored. Names are only
// ever compared with a forward-confirmed client name.
//
// Postgrey 1.37 documents the partial forms as "leave off one number" but
// builds a /24 for "a.b" too (a.b.0.0/24, not the a.b.0.0/16 its own code
// comment and Postfix's access(5) mean); milter-grey reads "a.b" as the /16.
// A single number ("10") is refused: Postgrey reads it as a host name that
// no client has, and Postfix as a /8, and neither is what a list should
// say silently.
type ClientList struct {
	nets    Networks
	names   []string // "example.com": the name and its subdomains
	dotted  []string // ".example.com": subdomains only
	regexps []*regexp.Regexp
}

// Add adds one entry.
func (l *ClientList) Add(entry string) error {
	switch {
	case len(entry) > 2 && entry[0] == '/' && entry[len(entry)-1] == '/':
		re, err := regexp.Compile("(?i)" + entry[1:len(entry)-1])
		if err != nil {
			return fmt.Errorf("bad regexp %s: %v", entry, err)
		}
		l.regexps = append(l.regexps, re)
	case looksLikeAddr(entry):
		p, err := parseClientPrefix(entry)
		if err != nil {
			return err
		}
		l.nets.prefixes = append(l.nets.prefixes, p)
	case strings.HasPrefix(entry, "."):
		name, err := hostName(entry[1:])
		if err != nil {
			return err
		}
		l.dotted = append(l.dotted, name)
	default:
		name, err := hostName(entry)
		if err != nil {
			return err
		}
		l.names = append(l.names, name)
	}
	return nil
}

// Match returns the entry that matches the client, if any. name must be
// the forward-confirmed host name, or "" when there is none.
func (l *ClientList) Match(ip netip.Addr, name string) (string, bool) {
	if l == nil {
		return "", false
	}
	if e, ok := l.nets.Match(ip); ok {
		return e, true
	}
	if name == "" {
		return "", false
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	for _, n := range l.names {
		if name == n || strings.HasSuffix(name, "."+n) {
			return n, true
		}
	}
	for _, n := range l.dotted {
		if strings.HasSuffix(name, "."+n) {
			return "." + n, true
		}
	}
	for _, re := range l.regexps {
		if re.MatchString(name) {
			return "/" + re.String()[4:] + "/", true
		}
	}
	return "", false
}

// Len is the number of entries.
func (l *ClientList) Len() int {
	if l == nil {
		return 0
	}
	return l.nets.Len() + len(l.names) + len(l.dotted) + len(l.regexps)
}

// parseClientPrefix is parsePrefix with Postgrey's partial IPv4 forms.
func parseClientPrefix(s string) (netip.Prefix, error) {
	if strings.ContainsAny(s, ":/") {
		return parsePrefix(s)
	}
	var suffix string
	var bits int
	switch strings.Count(s, ".") {
	case 3:
		return parsePrefix(s)
	case 2:
		suffix, bits = ".0", 24
	case 1:
		suffix, bits = ".0.0", 16
	case 0:
		return netip.Prefix{}, fmt.Errorf("bad IP address %q: write at least two numbers (\"10.1\" is 10.1.0.0/16) or a CIDR prefix", s)
	default:
		return netip.Prefix{}, fmt.Errorf("bad IP address %q", s)
	}
	ip, err := netip.ParseAddr(s + suffix)
	if err != nil || !ip.Is4() {
		return netip.Prefix{}, fmt.Errorf("bad partial IPv4 address %q", s)
	}
	return netip.PrefixFrom(ip, bits), nil
}

func looksLikeAddr(s string) bool {
	if strings.Contains(s, ":") {
		return true // IPv6; host names have no colon
	}
	for _, c := range strings.TrimSuffix(s, "/") {
		if !(c >= '0' && c <= '9' || c == '.' || c == '/') {
			return false
		}
	}
	return true
}

func hostName(s string) (string, error) {
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	if s == "" || strings.ContainsAny(s, " \t@/*") {
		return "", fmt.Errorf("bad host name %q", s)
	}
	return s, nil
}

// RecipientList matches recipients: "user@domain" exactly, "user@" in any
// domain, "domain" (and its subdomains), ".domain" (subdomains only), or
// "/regexp/" on the whole address. Recipients are compared after
// NormalizeRecipient, so entries need no address extensions.
type RecipientList struct {
	addrs   map[string]bool
	locals  map[string]bool
	domains []string
	dotted  []string
	regexps []*regexp.Regexp
}

// Add adds one entry.
func (l *RecipientList) Add(entry string) error {
	e := strings.ToLower(entry)
	switch {
	case len(e) > 2 && e[0] == '/' && e[len(e)-1] == '/':
		re, err := regexp.Compile("(?i)" + entry[1:len(entry)-1])
		if err != nil {
			return fmt.Errorf("bad regexp %s: %v", entry, err)
		}
		l.regexps = append(l.regexps, re)
	case strings.HasSuffix(e, "@"):
		if len(e) == 1 || strings.Count(e, "@") != 1 {
			return fmt.Errorf("bad recipient %q", entry)
		}
		if l.locals == nil {
			l.locals = make(map[string]bool)
		}
		l.locals[strings.TrimSuffix(e, "@")] = true
	case strings.Contains(e, "@"):
		if l.addrs == nil {
			l.addrs = make(map[string]bool)
		}
		local, domain, _ := strings.Cut(e, "@")
		domain = strings.TrimSuffix(domain, ".")
		if local == "" || domain == "" || strings.Contains(domain, "@") {
			return fmt.Errorf("bad recipient %q", entry)
		}
		l.addrs[local+"@"+domain] = true
	case strings.HasPrefix(e, "."):
		name, err := hostName(e[1:])
		if err != nil {
			return err
		}
		l.dotted = append(l.dotted, name)
	default:
		name, err := hostName(e)
		if err != nil {
			return err
		}
		l.domains = append(l.domains, name)
	}
	return nil
}

// Match returns the entry that matches a normalised recipient, if any.
func (l *RecipientList) Match(rcpt string) (string, bool) {
	if l == nil {
		return "", false
	}
	if l.addrs[rcpt] {
		return rcpt, true
	}
	local, domain, _ := strings.Cut(rcpt, "@")
	if l.locals[local] {
		return local + "@", true
	}
	for _, d := range l.domains {
		if domain == d || strings.HasSuffix(domain, "."+d) {
			return d, true
		}
	}
	for _, d := range l.dotted {
		if strings.HasSuffix(domain, "."+d) {
			return "." + d, true
		}
	}
	for _, re := range l.regexps {
		if re.MatchString(rcpt) {
			return "/" + re.String()[4:] + "/", true
		}
	}
	return "", false
}

// Len is the number of entries.
func (l *RecipientList) Len() int {
	if l == nil {
		return 0
	}
	return len(l.addrs) + len(l.locals) + len(l.domains) + len(l.dotted) + len(l.regexps)
}
