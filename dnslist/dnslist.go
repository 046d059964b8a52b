// Package dnslist looks a client's IP address up in DNS blocklists and
// allowlists (DNSBL, DNSWL), the lists RFC 5782 describes: it says whether
// a configured zone lists the address. What a listing means for a message
// (greylist it, or skip greylisting) is the policy engine's business.
//
// The query for 192.0.2.1 in zen.spamhaus.org is the A record of
// 1.2.0.192.zen.spamhaus.org; for an IPv6 address it is the 32 nibbles of
// the address in reverse order, each a label, then the zone. A name that
// does not exist (NXDOMAIN, or no A record) means "not listed"; an answer
// means listed, and lists tell kinds of listing apart by the address they
// answer, conventionally one in 127.0.0.0/8 (127.0.0.2 for a plain
// listing).
//
// Some answers in 127.0.0.0/8 are not listings but errors, and never
// count in a zone configured without codes:
//   - Spamhaus answers from 127.255.255.0/24 to say the query itself was
//     wrong, and asks that these never be taken as a listing:
//     127.255.255.252 for a mistyped zone name, 127.255.255.254 for a
//     query that came through a public or open resolver, 127.255.255.255
//     for a resolver that sent too many queries;
//   - dnswl.org answers 127.0.x.255 when it blocks a resolver's queries
//     (SpamAssassin's RCVD_IN_DNSWL_BLOCKED);
//   - 127.0.0.1 is the answer some lists give to refused queries (URIBL)
//     or to every query once they shut down.
//
// So the default is any answer in 127.0.0.0/8 except 127.0.0.1,
// 127.255.255.0/24 and addresses ending in .255. An answer outside
// 127.0.0.0/8 never counts either: it is what a resolver that rewrites
// NXDOMAIN into the address of a search page returns for every name. A
// zone configured with explicit codes counts exactly those.
//
// A lookup that fails (timeout, SERVFAIL, an unreadable answer) and an
// error answer count as "not listed", and are reported apart so that the
// caller can log and count them: a list that is down or refusing queries
// must neither decide for a client nor go unnoticed.
package dnslist

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/milter-grey/milter-grey/auth"
)

// ErrBadAnswer is the error of a lookup that got error answers and no
// listing: the list refused the query, or a resolver answered for a name
// that does not exist.
var ErrBadAnswer = errors.New("answer is not a listing (query refused by the list, or a resolver answering for names that do not exist)")

// Listing is a zone that lists an address.
type Listing struct {
	Zone   string     // the zone's name
	Answer netip.Addr // the answer that counted (the lowest, when several did)
}

// LookupError is a lookup in one zone that failed. The zone then counts as
// not listing the address.
type LookupError struct {
	Zone string // the zone's name
	Name string // the name queried
	Err  error
}

func (e *LookupError) Error() string {
	return fmt.Sprintf("dns list %s: lookup %s: %v", e.Zone, e.Name, e.Err)
}

func (e *LookupError) Unwrap() error { return e.Err }

// Timeout reports whether the lookup ran out of time.
func (e *LookupError) Timeout() bool {
	if errors.Is(e.Err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout()
}

// LookupErrors returns the failed lookups that an error from
// Checker.Lookup or Checker.Listed holds, in the order of the zones.
func LookupErrors(err error) []*LookupError {
	var out []*LookupError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *LookupError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, err := range e.Unwrap() {
				walk(err)
			}
		}
	}
	walk(err)
	return out
}

// Checker looks addresses up in a set of zones. It is safe for concurrent
// use; a nil *Checker lists nothing.
type Checker struct {
	r       *net.Resolver
	timeout time.Duration
	zones   []Zone
}

// New returns a Checker that asks r (auth.NewResolver's, so that the lists
// are queried through the configured DNS server) about zones, in that order
// of preference. timeout bounds one lookup of an address in all the zones;
// 0 means auth.DefaultTimeout.
func New(r *net.Resolver, timeout time.Duration, zones []Zone) *Checker {
	if r == nil {
		r = net.DefaultResolver
	}
	if timeout <= 0 {
		timeout = auth.DefaultTimeout
	}
	return &Checker{r: r, timeout: timeout, zones: slices.Clone(zones)}
}

// Lookup returns the first zone, in configuration order, that lists ip,
// with the answer that counted. It queries every zone at once and returns
// within the Checker's timeout (or when ctx ends, if sooner), whatever the
// DNS does; a zone that has not answered by then counts as not listing ip.
//
// err reports the zones whose lookup failed, as *LookupError values (see
// LookupErrors); it never changes the answer: a failed zone simply does not
// list ip, and a later zone may. Zones after the one that lists ip are not
// waited for, so their failures are not reported. A nil Checker, a Checker
// without zones or an invalid ip list nothing and send no query.
func (c *Checker) Lookup(ctx context.Context, ip netip.Addr) (l Listing, listed bool, err error) {
	ip = ip.Unmap().WithZone("")
	if c == nil || len(c.zones) == 0 || !ip.IsValid() {
		return Listing{}, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	rev := reversed(ip)
	// Buffered: a lookup that ends after Listed has returned must not block.
	answers := make(chan answer, len(c.zones))
	for i, z := range c.zones {
		go func() { answers <- c.lookup(ctx, i, z, rev) }()
	}

	got := make([]*answer, len(c.zones))
	var errs []error
	for next := range c.zones {
		for got[next] == nil {
			// Take the answers that are in before looking at the deadline:
			// a zone that answered in time is not a timeout.
			select {
			case a := <-answers:
				got[a.zone] = &a
				continue
			default:
			}
			select {
			case a := <-answers:
				got[a.zone] = &a
			case <-ctx.Done():
				got[next] = &answer{zone: next, err: c.lookupError(next, rev, ctx.Err())}
			}
		}
		a := got[next]
		if a.err != nil {
			errs = append(errs, a.err)
		}
		if a.listed {
			// Later zones may still be asking: their answers cannot
			// change the result, and the deferred cancel ends them.
			return Listing{Zone: c.zones[next].Name, Answer: a.code}, true, errors.Join(errs...)
		}
	}
	return Listing{}, false, errors.Join(errs...)
}

// Listed is Lookup without the answer: the name of the first zone that
// lists ip (greylist.DNSList).
func (c *Checker) Listed(ctx context.Context, ip netip.Addr) (zone string, listed bool, err error) {
	l, listed, err := c.Lookup(ctx, ip)
	return l.Zone, listed, err
}

// answer is the outcome of one zone's lookup.
type answer struct {
	zone   int // index in Checker.zones
	listed bool
	code   netip.Addr // the answer that counted
	err    error      // a *LookupError, or nil
}

func (c *Checker) lookup(ctx context.Context, i int, z Zone, rev string) answer {
	addrs, err := c.r.LookupNetIP(ctx, "ip4", rev+z.Name+".")
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return answer{zone: i}
		}
		if ctx.Err() != nil {
			// Cut short by the deadline or the caller: what the resolver
			// says then (often a closed socket) is not the cause.
			err = ctx.Err()
		}
		return answer{zone: i, err: c.lookupError(i, rev, err)}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	var bad []netip.Addr
	for _, a := range addrs {
		if z.counts(a) {
			return answer{zone: i, listed: true, code: a.Unmap()}
		}
		if errorAnswer(a) {
			bad = append(bad, a.Unmap())
		}
	}
	if len(bad) > 0 {
		return answer{zone: i, err: c.lookupError(i, rev, fmt.Errorf("%w: %v", ErrBadAnswer, bad))}
	}
	// Answers of the list that this zone's codes leave out: a listing of
	// another kind, not a failure.
	return answer{zone: i}
}

func (c *Checker) lookupError(i int, rev string, err error) *LookupError {
	z := c.zones[i].Name
	return &LookupError{Zone: z, Name: rev + z, Err: err}
}

// reversed returns the labels that precede the zone in a query for ip
// (RFC 5782 sections 2.1 and 2.4), with the trailing dot.
func reversed(ip netip.Addr) string {
	const hex = "0123456789abcdef"
	if ip.Is4() {
		b := ip.As4()
		return fmt.Sprintf("%d.%d.%d.%d.", b[3], b[2], b[1], b[0])
	}
	b := ip.As16()
	out := make([]byte, 0, 64)
	for i := len(b) - 1; i >= 0; i-- {
		out = append(out, hex[b[i]&0xf], '.', hex[b[i]>>4], '.')
	}
	return string(out)
}
