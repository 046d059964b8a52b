package auth

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/milter-grey/milter-grey/internal/ctxconn"
)

// DefaultTimeout is the default deadline of one SPF evaluation and of one
// DKIM key lookup: short enough that a decision stays well inside the MTA's
// milter timeouts (Postfix waits 30 s for a command reply by default).
const DefaultTimeout = 3 * time.Second

// ResolverConfig selects the DNS server used for SPF and DKIM.
type ResolverConfig struct {
	// Server is "" for the system resolver (/etc/resolv.conf), or the
	// "host:port" of a DNS server to ask instead (port 53 if omitted).
	Server string
	// Timeout bounds one decision; 0 means DefaultTimeout. NewResolver uses
	// it to bound connecting to the server; pass the same value to
	// SPFOptions.Timeout and DKIMOptions.Timeout, which set the deadlines.
	Timeout time.Duration
}

func (c ResolverConfig) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// NewResolver returns the resolver described by cfg.
//
// With cfg.Server set it is Go's own stub resolver (PreferGo) sending every
// query to that server, over UDP with the retry over TCP when an answer is
// truncated; /etc/resolv.conf still sets the per-try timeout and the number
// of attempts. Without, it uses the system configuration.
//
// In both cases a lookup whose context is cancelled or expires gives up at
// once: Go's resolver honours the context only through the socket deadline,
// so the socket is also closed when the context ends.
func NewResolver(cfg ResolverConfig) *net.Resolver {
	d := &net.Dialer{Timeout: cfg.timeout()}
	if cfg.Server == "" {
		return &net.Resolver{
			Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
				c, err := d.DialContext(ctx, network, address)
				if err != nil {
					return nil, err
				}
				return ctxconn.CloseOnDone(ctx, c), nil
			},
		}
	}
	server := serverAddr(cfg.Server)
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, server)
			if err != nil {
				return nil, err
			}
			return ctxconn.CloseOnDone(ctx, c), nil
		},
	}
}

// serverAddr adds the default port 53 to a server without one.
func serverAddr(s string) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	return net.JoinHostPort(s, "53")
}

// rooted returns name with a trailing dot, so that Go's resolver never
// tries the resolv.conf search domains (example.com.corp.example) after an
// NXDOMAIN: the names SPF and DKIM look up are always absolute.
func rooted(name string) string {
	if name == "" || strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

// classifyDNSError returns err as the libraries need it to tell "no such
// record" from a failure.
//
// Both blitiri.com.ar/go/spf and go-msgauth's dkim classify errors by type
// assertion (not errors.As): a *net.DNSError with IsNotFound is NXDOMAIN or
// NODATA, and only an error whose Temporary() is true gives temperror. Any
// other error becomes permerror, which for SPF's top-level TXT lookup turns
// a timeout into a permanent result. RFC 7208 section 4.4 and RFC 6376
// section 6.1.2 both make every DNS failure other than "no such name"
// temporary, so this returns either a not-found *net.DNSError or a
// temporary one (with the original error kept for errors.Is/As).
func classifyDNSError(name string, err error) error {
	if err == nil {
		return nil
	}
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return &net.DNSError{Err: de.Err, Name: name, Server: de.Server, IsNotFound: true}
	}
	timeout := errors.Is(err, context.DeadlineExceeded)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		timeout = true
	}
	msg := err.Error()
	server := ""
	if de != nil {
		msg, server = de.Err, de.Server
	}
	return &net.DNSError{
		Err:         msg,
		Name:        name,
		Server:      server,
		IsTimeout:   timeout,
		IsTemporary: true,
		UnwrapErr:   err,
	}
}
