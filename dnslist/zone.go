package dnslist

import (
	"fmt"
	"net/netip"
	"strings"
)

// Zone is one DNS list: its name and the answers that count as a listing.
type Zone struct {
	// Name is the zone in lower case, without the trailing dot.
	Name string
	// Codes are the answers that count as listed. Empty means the
	// default: any answer in 127.0.0.0/8 except the error answers (see
	// the package comment).
	Codes []netip.Prefix
}

// maxZoneLen keeps every query name within DNS's 253-character limit: an
// IPv6 query puts 32 one-character labels (64 characters with their dots)
// before the zone.
const maxZoneLen = 253 - 64

// ParseZone parses a zone as it is configured: "zen.spamhaus.org" (the
// default answers count), or "zen.spamhaus.org=127.0.0.2,127.0.0.4/30"
// (only those addresses and prefixes count).
func ParseZone(s string) (Zone, error) {
	nameText, codesText, hasCodes := strings.Cut(strings.TrimSpace(s), "=")
	name, err := zoneName(strings.TrimSpace(nameText))
	if err != nil {
		return Zone{}, fmt.Errorf("zone %q: %w", s, err)
	}
	z := Zone{Name: name}
	if !hasCodes {
		return z, nil
	}
	for _, code := range strings.Split(codesText, ",") {
		p, err := parseCode(strings.TrimSpace(code))
		if err != nil {
			return Zone{}, fmt.Errorf("zone %q: %w", s, err)
		}
		z.Codes = append(z.Codes, p)
	}
	return z, nil
}

// String returns z in the form ParseZone reads.
func (z Zone) String() string {
	if len(z.Codes) == 0 {
		return z.Name
	}
	codes := make([]string, len(z.Codes))
	for i, p := range z.Codes {
		if p.IsSingleIP() {
			codes[i] = p.Addr().String()
		} else {
			codes[i] = p.String()
		}
	}
	return z.Name + "=" + strings.Join(codes, ",")
}

func zoneName(s string) (string, error) {
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	if name == "" {
		return "", fmt.Errorf("no zone name")
	}
	if len(name) > maxZoneLen {
		return "", fmt.Errorf("zone name longer than %d characters", maxZoneLen)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("bad zone name %q: empty label or label longer than 63 characters", s)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("bad zone name %q: character %q", s, c)
			}
		}
	}
	return name, nil
}

// parseCode parses one answer code: an IPv4 address or prefix.
func parseCode(s string) (netip.Prefix, error) {
	bad := func() (netip.Prefix, error) {
		return netip.Prefix{}, fmt.Errorf("bad answer code %q: want an IPv4 address or prefix such as 127.0.0.2 or 127.0.0.4/30", s)
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is4() {
			return bad()
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return bad()
	}
	return netip.PrefixFrom(a, 32), nil
}

// counts reports whether answer a means the zone lists the address.
func (z Zone) counts(a netip.Addr) bool {
	a = a.Unmap()
	if len(z.Codes) == 0 {
		return loopback.Contains(a) && !errorAnswer(a)
	}
	for _, p := range z.Codes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

var loopback = netip.MustParsePrefix("127.0.0.0/8")

// errorAnswer reports an answer that says something about the query, not
// about the address: see the package comment.
func errorAnswer(a netip.Addr) bool {
	a = a.Unmap()
	if !loopback.Contains(a) {
		return true
	}
	b := a.As4()
	return b[1] == 255 && b[2] == 255 || b[3] == 255 || b == [4]byte{127, 0, 0, 1}
}
