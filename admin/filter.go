package admin

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/milter-grey/milter-grey/greylist"
)

// Filter selects records for a listing or a deletion. Empty fields match
// everything.
type Filter struct {
	// Client is an IP address (matching the network it is keyed by), a
	// CIDR prefix (matching every network that overlaps it), or a key's
	// client part as written ("spf:example.com").
	Client string `json:"client,omitempty"`
	// Sender and Rcpt are an address (normalised as keys are: case,
	// extension, BATV/SRS/VERP), "<>" for the null sender, or a domain
	// ("example.com" or "@example.com", matching its subdomains too).
	Sender string `json:"sender,omitempty"`
	Rcpt   string `json:"rcpt,omitempty"`
	// State is pending, passed or never-retried (triplets), or
	// auto-whitelisted or counting (clients).
	State string `json:"state,omitempty"`
	// Kind is triplet or client.
	Kind string `json:"kind,omitempty"`
	// Limit stops a listing after so many entries; 0: no limit.
	Limit int `json:"limit,omitempty"`
	// All must be set to delete with an otherwise empty filter.
	All bool `json:"all,omitempty"`
}

// Empty reports whether f selects every record.
func (f Filter) Empty() bool {
	return f.Client == "" && f.Sender == "" && f.Rcpt == "" && f.State == "" && f.Kind == ""
}

// query encodes f as URL query parameters.
func (f Filter) query() url.Values {
	q := url.Values{}
	for _, p := range []struct{ k, v string }{
		{"client", f.Client}, {"sender", f.Sender}, {"rcpt", f.Rcpt}, {"state", f.State}, {"kind", f.Kind},
	} {
		if p.v != "" {
			q.Set(p.k, p.v)
		}
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return q
}

// filterFromQuery is the inverse of Filter.query.
func filterFromQuery(q url.Values) (Filter, error) {
	f := Filter{
		Client: q.Get("client"), Sender: q.Get("sender"), Rcpt: q.Get("rcpt"),
		State: q.Get("state"), Kind: q.Get("kind"),
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return f, fmt.Errorf("limit %q: want a number, 0 for no limit", l)
		}
		f.Limit = n
	}
	return f, nil
}

// matcher is a compiled Filter.
type matcher struct {
	prefix string // the key prefix to scan
	kind   string
	state  string
	client func(string) bool
	sender func(string) bool
	rcpt   func(string) bool
}

var (
	tripletStates = map[string]bool{StatePending: true, StatePassed: true, StateNeverRetried: true}
	clientStates  = map[string]bool{StateAutoWhitelisted: true, StateCounting: true}
	domainStates  = map[string]bool{StateTrusted: true, StateCounting: true}
)

// compile checks f and builds its matcher; delimiters are the address
// extension delimiters keys are normalised with.
func (f Filter) compile(delimiters string) (*matcher, error) {
	m := &matcher{kind: f.Kind, state: f.State}
	switch f.Kind {
	case "", KindTriplet, KindClient, KindDomain:
	default:
		return nil, fmt.Errorf("kind %q: want triplet, client or domain", f.Kind)
	}
	switch {
	case f.State == "":
	case m.kind == KindDomain:
		if !domainStates[f.State] {
			return nil, fmt.Errorf("state %q: a domain is trusted or counting", f.State)
		}
	case f.State == StateTrusted:
		m.kind = KindDomain
	case tripletStates[f.State]:
		if m.kind == KindClient {
			return nil, fmt.Errorf("state %q is a triplet state", f.State)
		}
		m.kind = KindTriplet
	case clientStates[f.State]:
		if m.kind == KindTriplet {
			return nil, fmt.Errorf("state %q is a client state", f.State)
		}
		m.kind = KindClient
	default:
		return nil, fmt.Errorf("state %q: want pending, passed, never-retried, auto-whitelisted, trusted or counting", f.State)
	}
	if m.kind == KindDomain && (f.Client != "" || f.Sender != "" || f.Rcpt != "") {
		return nil, errors.New("domain records have no client, sender or recipient")
	}
	if f.Sender != "" || f.Rcpt != "" {
		if m.kind == KindClient {
			return nil, errors.New("client records have no sender or recipient")
		}
		m.kind = KindTriplet
	}
	switch m.kind {
	case KindTriplet:
		m.prefix = greylist.TripletPrefix
	case KindClient:
		m.prefix = greylist.ClientPrefix
	case KindDomain:
		m.prefix = greylist.DomainPrefix
	}
	var err error
	if f.Client != "" {
		if m.client, err = clientMatcher(f.Client); err != nil {
			return nil, err
		}
	}
	if f.Sender != "" {
		m.sender = addrMatcher(f.Sender, func(a string) string { return greylist.NormalizeSender(a, delimiters) })
	}
	if f.Rcpt != "" {
		m.rcpt = addrMatcher(f.Rcpt, func(a string) string { return greylist.NormalizeRecipient(a, delimiters) })
	}
	return m, nil
}

// match reports whether an entry is selected.
func (m *matcher) match(e *Entry) bool {
	switch {
	case m.kind != "" && e.Kind != m.kind,
		m.state != "" && e.State != m.state,
		m.client != nil && !m.client(e.Client),
		m.sender != nil && !m.sender(e.Sender),
		m.rcpt != nil && !m.rcpt(e.Rcpt):
		return false
	}
	return true
}

// clientMatcher matches a key's client part against an address, a prefix
// or a literal client part.
func clientMatcher(s string) (func(string) bool, error) {
	s = strings.TrimSpace(s)
	var want netip.Prefix
	if ip := greylist.ParseClientAddr(s); ip.IsValid() {
		want = netip.PrefixFrom(ip, ip.BitLen())
	} else if p, err := netip.ParsePrefix(s); err == nil {
		want = p.Masked()
	} else {
		lit := strings.ToLower(s)
		if strings.ContainsAny(lit, " \t") {
			return nil, fmt.Errorf("client %q: want an IP address, a CIDR prefix or spf:DOMAIN", s)
		}
		return func(c string) bool { return strings.EqualFold(c, lit) }, nil
	}
	return func(c string) bool {
		p, ok := keyPrefix(c)
		return ok && p.Overlaps(want)
	}, nil
}

// keyPrefix parses a key's client part: a network or a single address.
func keyPrefix(c string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(c); err == nil {
		return p, true
	}
	if ip, err := netip.ParseAddr(c); err == nil {
		return netip.PrefixFrom(ip, ip.BitLen()), true
	}
	return netip.Prefix{}, false
}

// addrMatcher matches a key's address part against an address (after
// normalize) or a domain and its subdomains.
func addrMatcher(s string, normalize func(string) string) func(string) bool {
	s = strings.TrimSpace(s)
	if s == greylist.NullSender {
		return func(a string) bool { return a == greylist.NullSender }
	}
	if local, _, ok := strings.Cut(s, "@"); ok && local != "" {
		want := normalize(s)
		return func(a string) bool { return a == want }
	}
	domain := strings.TrimSuffix(strings.ToLower(strings.TrimPrefix(s, "@")), ".")
	return func(a string) bool {
		i := strings.LastIndexByte(a, '@')
		if i < 0 {
			return false
		}
		d := a[i+1:]
		return d == domain || strings.HasSuffix(d, "."+domain)
	}
}
