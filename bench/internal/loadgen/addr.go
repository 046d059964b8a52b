package loadgen

import (
	"fmt"

	"github.com/milter-grey/milter-grey/internal/sockspec"
)

// ParseAddr reads a milter socket address in the forms Postfix uses
// (inet:HOST:PORT, inet:PORT@HOST, inet6:[ADDR]:PORT, unix:/path,
// local:/path) and returns the network and address to dial. A TCP address
// must be on loopback: the load generator never sends load elsewhere.
func ParseAddr(spec string) (network, address string, err error) {
	network, address, err = sockspec.Parse(spec)
	if err == nil && network == "tcp" && !sockspec.IsLoopback(address) {
		return "", "", fmt.Errorf("%q: not a loopback address; the load generator only loads this host", spec)
	}
	return network, address, err
}

// isLoopback accepts loopback literals and "localhost"; names are not
// resolved, so nothing can point the generator at another host.
