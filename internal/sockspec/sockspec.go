// Package sockspec reads socket addresses in the forms Postfix and Sendmail
// use for milters ("inet:HOST:PORT", "inet:PORT@HOST", "unix:/path"), for
// the daemon's listeners and for the tools that connect to them.
package sockspec

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Parse reads "inet:HOST:PORT", "inet:PORT@HOST" (Sendmail), "inet6:…",
// "unix:/path" or "local:/path" and returns the network ("tcp" or "unix")
// and the address to listen on or dial.
func Parse(spec string) (network, address string, err error) {
	kind, rest, ok := strings.Cut(spec, ":")
	if !ok {
		return "", "", fmt.Errorf("%q: want inet:HOST:PORT or unix:/path", spec)
	}
	switch kind {
	case "unix", "local":
		if !strings.HasPrefix(rest, "/") {
			return "", "", fmt.Errorf("%q: unix socket path must be absolute", spec)
		}
		return "unix", rest, nil
	case "inet", "inet6":
		host, port := "", ""
		if p, h, ok := strings.Cut(rest, "@"); ok {
			host, port = h, p
		} else if host, port, err = net.SplitHostPort(rest); err != nil {
			return "", "", fmt.Errorf("%q: %v", spec, err)
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return "", "", fmt.Errorf("%q: bad port %q", spec, port)
		}
		return "tcp", net.JoinHostPort(strings.Trim(host, "[]"), port), nil
	}
	return "", "", fmt.Errorf("%q: unknown socket type %q (want inet, inet6, unix or local)", spec, kind)
}

// IsLoopback reports whether a TCP address (host:port) stays on this host.
func IsLoopback(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	// Unmap: Go binds "::ffff:127.0.0.1" as the IPv4 127.0.0.1.
	return err == nil && ip.Unmap().IsLoopback()
}
