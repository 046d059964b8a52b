package auth

import (
	"context"
	"fmt"
	"github.com/milter-grey/milter-grey/envelope"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"blitiri.com.ar/go/spf"

	"github.com/milter-grey/milter-grey/internal/ttlcache"
)

// SPF defaults.
const (
	DefaultSPFCacheTTL  = 5 * time.Minute
	DefaultSPFCacheSize = 10000
)

// SPFOptions tunes an SPF checker. The zero value works.
type SPFOptions struct {
	// Timeout is the deadline of one whole Check (the evaluation and the
	// wide-open check together); 0 means DefaultTimeout.
	Timeout time.Duration
	// CacheTTL is how long a result is reused for the same client IP,
	// sender and HELO; 0 means DefaultSPFCacheTTL, < 0 disables the cache.
	CacheTTL time.Duration
	// CacheSize bounds the number of cached results; 0 means
	// DefaultSPFCacheSize. When full, expired entries are dropped, then
	// arbitrary ones.
	CacheSize int
	// Now is the clock of the cache; nil means time.Now.
	Now func() time.Time
}

// SPF checks senders against SPF records (RFC 7208, with its limits of 10
// DNS-querying mechanisms and 2 void lookups). It is safe for concurrent use.
type SPF struct {
	r     *net.Resolver
	opts  SPFOptions
	cache *ttlcache.Cache[SPFResult]
}

// SPFResult is the outcome of one SPF check.
type SPFResult struct {
	// Result is the RFC 7208 result: pass, fail, softfail, neutral, none,
	// temperror or permerror.
	Result Result
	// Domain is the domain whose record was checked: the sender's domain,
	// or the HELO name for the null sender. Empty when there was nothing
	// to check.
	Domain string
	// WideOpen is set when the record also passes for a documentation
	// address (192.0.2.1 or 2001:db8::1): it authorises (nearly) everyone,
	// so its pass proves nothing.
	WideOpen bool
	// Err explains the result; informational only, and set even on pass
	// ("matched ip").
	Err error
}

// Proven reports whether the result proves the checked domain: a pass from
// a record that is not wide open. Anything else, including a DNS failure,
// is "not proven".
func (r SPFResult) Proven() bool {
	return r.Result == ResultPass && !r.WideOpen
}

// NewSPF returns an SPF checker that resolves through r.
func NewSPF(r *net.Resolver, opts SPFOptions) *SPF {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = DefaultSPFCacheTTL
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultSPFCacheSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &SPF{r: r, opts: opts, cache: ttlcache.New[SPFResult](opts.CacheTTL, opts.CacheSize)}
}

// Check evaluates SPF for a message from ip that said HELO helo and MAIL
// FROM sender (for the null sender, the HELO identity
// "postmaster@"+helo is checked instead).
//
// The whole check, including the wide-open check, ends within
// SPFOptions.Timeout (or ctx's own deadline if earlier): a timeout or any
// other DNS failure gives temperror, never pass. Results are cached for
// SPFOptions.CacheTTL, except those touched by a DNS failure.
func (s *SPF) Check(ctx context.Context, ip netip.Addr, helo string, sender envelope.Address) SPFResult {
	ip = ip.Unmap()
	helo = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(helo), "."))

	if !ip.IsValid() {
		return SPFResult{Result: ResultPermError, Err: fmt.Errorf("spf: invalid client address")}
	}

	var domain, checked string
	switch {
	case sender.IsNull():
		// RFC 7208 section 2.4: for the null sender, check the HELO
		// identity; an address literal or a bare word is not one.
		if !isDomainLike(helo) {
			return SPFResult{Result: ResultNone, Err: fmt.Errorf("spf: null sender and HELO %q is not a domain", helo)}
		}
		domain = helo
		checked = "postmaster@" + helo
	case !sender.Qualified():
		return SPFResult{Result: ResultNone, Err: fmt.Errorf("spf: sender %q has no domain", sender.Raw())}
	default:
		local := sender.Local()
		if local == "" || strings.Contains(local, "@") {
			// RFC 7208 section 4.3 for the empty local part; the spf
			// package splits at the first '@', so a quoted local part
			// holding one would make it check another domain.
			local = "postmaster"
		}
		d, err := dnsName(sender.Domain())
		if err != nil || !isDomainLike(d) {
			return SPFResult{Result: ResultNone, Err: fmt.Errorf("spf: sender domain %q is not a domain", sender.Domain())}
		}
		domain = d
		checked = local + "@" + d
	}

	key := ip.String() + "|" + strings.ToLower(checked) + "|" + helo
	now := s.opts.Now()
	if res, ok := s.cached(key, now); ok {
		return res
	}

	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	res, cacheable := s.evaluate(ctx, ip, helo, checked)
	res.Domain = domain
	if cacheable && ctx.Err() == nil {
		s.store(key, res, now)
	}
	return res
}

// evaluate runs the check and, on pass, the wide-open check. It reports
// whether the result may be cached (no DNS failure was seen).
func (s *SPF) evaluate(ctx context.Context, ip netip.Addr, helo, sender string) (SPFResult, bool) {
	r := &spfResolver{r: s.r, memo: make(map[string]memoAnswer)}
	opts := []spf.Option{spf.WithResolver(r), spf.WithContext(ctx)}

	res, err := spf.CheckHostWithSender(net.IP(ip.AsSlice()), helo, sender, opts...)
	out := SPFResult{Result: fromSPF(res), Err: err}
	if out.Result != ResultPass {
		return out, !r.failed && out.Result != ResultTempError
	}

	// Wide-open check: the same record for an address nobody sends
	// from. Lookups made above are answered from r's memo.
	probe := probeAddr(ip)
	pres, perr := spf.CheckHostWithSender(net.IP(probe.AsSlice()), helo, sender, opts...)
	switch fromSPF(pres) {
	case ResultPass:
		out.WideOpen = true
	case ResultTempError:
		// Whether the record is wide open is unknown: not proven.
		return SPFResult{Result: ResultTempError, Err: fmt.Errorf("wide-open check with %s: %w", probe, perr)}, false
	}
	return out, !r.failed
}

// probeAddr returns the documentation address used for the wide-open
// check, of the client's family and outside the client's own network.
func probeAddr(ip netip.Addr) netip.Addr {
	if ip.Is4() {
		if netip.MustParsePrefix("192.0.2.0/24").Contains(ip) {
			return netip.MustParseAddr("198.51.100.1")
		}
		return netip.MustParseAddr("192.0.2.1")
	}
	if netip.MustParsePrefix("2001:db8::/32").Contains(ip) {
		return netip.MustParseAddr("3fff::1") // RFC 9637
	}
	return netip.MustParseAddr("2001:db8::1")
}

func fromSPF(r spf.Result) Result {
	switch r {
	case spf.Pass:
		return ResultPass
	case spf.Fail:
		return ResultFail
	case spf.SoftFail:
		return ResultSoftFail
	case spf.Neutral:
		return ResultNeutral
	case spf.None:
		return ResultNone
	case spf.TempError:
		return ResultTempError
	}
	return ResultPermError
}

// isDomainLike reports whether s can be an SPF domain: at least two
// labels, not an address literal.
func isDomainLike(s string) bool {
	if s == "" || strings.HasPrefix(s, "[") || !strings.Contains(s, ".") {
		return false
	}
	_, err := netip.ParseAddr(s)
	return err != nil
}

func (s *SPF) cached(key string, now time.Time) (SPFResult, bool) {
	if s.opts.CacheTTL < 0 {
		return SPFResult{}, false
	}
	return s.cache.Get(key, now)
}

func (s *SPF) store(key string, res SPFResult, now time.Time) {
	if s.opts.CacheTTL < 0 || res.Result == ResultTempError {
		return
	}
	s.cache.Put(key, res, now)
}

// spfResolver adapts *net.Resolver to spf.DNSResolver for one Check: names
// are made absolute, errors are classified as the spf package needs (see
// classifyDNSError), answers are remembered so the wide-open check repeats
// no query, and DNS failures are noted so the result is not cached.
type spfResolver struct {
	r *net.Resolver

	mu     sync.Mutex
	memo   map[string]memoAnswer
	failed bool
}

type memoAnswer struct {
	val any
	err error
}

func lookupMemo[T any](r *spfResolver, key string, fn func() (T, error)) (T, error) {
	r.mu.Lock()
	a, ok := r.memo[key]
	r.mu.Unlock()
	if ok {
		v, _ := a.val.(T)
		return v, a.err
	}
	v, err := fn()
	if err != nil {
		if de, isDNS := err.(*net.DNSError); !isDNS || !de.IsNotFound {
			r.mu.Lock()
			r.failed = true
			r.mu.Unlock()
		}
	}
	r.mu.Lock()
	r.memo[key] = memoAnswer{val: v, err: err}
	r.mu.Unlock()
	return v, err
}

func (r *spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return lookupMemo(r, "txt "+name, func() ([]string, error) {
		v, err := r.r.LookupTXT(ctx, rooted(name))
		return v, classifyDNSError(name, err)
	})
}

func (r *spfResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return lookupMemo(r, "mx "+name, func() ([]*net.MX, error) {
		v, err := r.r.LookupMX(ctx, rooted(name))
		if err != nil && len(v) > 0 {
			// Go returns the valid records alongside an error about
			// invalid ones; spf uses them, so keep the error as is.
			return v, err
		}
		return v, classifyDNSError(name, err)
	})
}

func (r *spfResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return lookupMemo(r, "ip "+host, func() ([]net.IPAddr, error) {
		v, err := r.r.LookupIPAddr(ctx, rooted(host))
		return v, classifyDNSError(host, err)
	})
}

func (r *spfResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	return lookupMemo(r, "ptr "+addr, func() ([]string, error) {
		v, err := r.r.LookupAddr(ctx, addr)
		return v, classifyDNSError(addr, err)
	})
}
