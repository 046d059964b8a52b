package greylist

import (
	"fmt"
	"net/netip"
	"strings"
)

// ClientMask says how much of a client address identifies a sender: a
// retry often comes from another host of the same farm, so the key keeps
// only the network part.
type ClientMask struct {
	IPv4 int // prefix length for IPv4 clients, 1–32 (default 24)
	IPv6 int // prefix length for IPv6 clients, 1–128 (default 64)
}

// DefaultClientMask is /24 for IPv4 and /64 for IPv6.
var DefaultClientMask = ClientMask{IPv4: 24, IPv6: 64}

// Validate reports a prefix length out of range.
func (m ClientMask) Validate() error {
	if m.IPv4 < 1 || m.IPv4 > 32 {
		return fmt.Errorf("IPv4 mask /%d out of range 1–32", m.IPv4)
	}
	if m.IPv6 < 1 || m.IPv6 > 128 {
		return fmt.Errorf("IPv6 mask /%d out of range 1–128", m.IPv6)
	}
	return nil
}

// Key returns the client part of a triplet key: the masked network in CIDR
// notation, or the bare address when the mask keeps all of it. IPv4-mapped
// IPv6 addresses count as IPv4.
func (m ClientMask) Key(ip netip.Addr) string {
	ip = ip.Unmap().WithZone("")
	bits := m.IPv6
	if ip.Is4() {
		bits = m.IPv4
	}
	if bits >= ip.BitLen() {
		return ip.String()
	}
	p, err := ip.Prefix(bits)
	if err != nil { // only for an invalid address, which callers exclude
		return ip.String()
	}
	return p.String()
}

// ParseClientAddr parses a client address as MTAs pass it: plain IPv4 or
// IPv6, Sendmail's "IPv6:" form, optionally in brackets. It returns the
// zero Addr when s holds no address.
func ParseClientAddr(s string) netip.Addr {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "[")
	s = strings.TrimSuffix(s, "]")
	if len(s) > 5 && strings.EqualFold(s[:5], "ipv6:") {
		s = s[5:]
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap().WithZone("")
}
