package loadgen

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ParseAddr reads a milter socket address in the forms Postfix uses
// (inet:HOST:PORT, inet:PORT@HOST, inet6:[ADDR]:PORT, unix:/path,
// local:/path) and returns the network and address to dial. A TCP address
// must be on loopback: the load generator never sends load elsewhere.
func ParseAddr(spec string) (network, address string, err error) {
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
		var host, port string
		if p, h, ok := strings.Cut(rest, "@"); ok {
			host, port = h, p
		} else if host, port, err = net.SplitHostPort(rest); err != nil {
			return "", "", fmt.Errorf("%q: %v", spec, err)
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return "", "", fmt.Errorf("%q: bad port %q", spec, port)
		}
		host = strings.Trim(host, "[]")
		if !isLoopback(host) {
			return "", "", fmt.Errorf("%q: %q is not a loopback address; the load generator only loads this host", spec, host)
		}
		return "tcp", net.JoinHostPort(host, port), nil
	}
	return "", "", fmt.Errorf("%q: unknown socket type %q (want inet, inet6, unix or local)", spec, kind)
}

// isLoopback accepts loopback literals and "localhost"; names are not
// resolved, so nothing can point the generator at another host.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
