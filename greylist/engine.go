package greylist

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/milter-grey/milter-grey/accessmap"
)

// Action is what happens to a recipient.
type Action uint8

const (
	Pass     Action = iota // accept the recipient
	Greylist               // answer 451 for this recipient
	// Defer: a listed sender not proven by SPF; the caller verifies DKIM
	// and decides the recipient again at end of message (AtEndOfMessage).
	Defer
	// Later: a recipient of the null sender, decided after the envelope
	// (AfterEnvelope), so that an address verification probe that never
	// sends DATA is neither greylisted nor remembered.
	Later
)

func (a Action) String() string {
	switch a {
	case Greylist:
		return "greylist"
	case Defer:
		return "defer"
	case Later:
		return "later"
	}
	return "pass"
}

// OnError says what a decision does when the store fails.
type OnError uint8

const (
	// ErrorAccept passes the recipient: greylisting is a filter, not a gate,
	// and a broken store must not stop mail.
	ErrorAccept OnError = iota
	// ErrorTempfail answers 451, for sites that prefer delay to spam.
	ErrorTempfail
)

// Config configures an Engine. The zero value of each field means its
// default.
type Config struct {
	Policy Policy
	Mask   ClientMask
	// Delimiters are the address extension delimiters ("+" by default; ""
	// keeps extensions only when set through NoDelimiter).
	Delimiters  string
	NoDelimiter bool
	// AutoWhitelist is the number of triplets that must pass (be retried
	// after the delay), counted at most once an hour, before their client
	// skips greylisting; 0 turns the auto-whitelist off.
	AutoWhitelist int
	// KeyBySPFDomain keys a triplet whose sender SPF proves by the
	// sender's domain ("spf:example.com") instead of the client network,
	// so a retry from another server of the sender's pool passes.
	KeyBySPFDomain bool
	// DomainTrust is the number of triplets of a sender domain proven by
	// SPF that must pass (be retried after the delay), counted at most
	// once an hour, before the domain is trusted: its mail then passes whenever SPF proves it again, from any
	// server its record authorises. 0 turns domain trust off.
	DomainTrust int
	// SPFKeyDropsLocalPart: in a triplet keyed by the SPF-proven domain,
	// the sender part is the sender's domain alone ("@example.com"), so
	// that a proven domain waits once per recipient, not once per bounce
	// address or per-message token.
	SPFKeyDropsLocalPart bool
	OnError              OnError
	// SPF evaluates SPF when a decision needs it (a listed sender, or
	// keying by SPF domain); nil: SPF is not available.
	SPF SPFChecker
	// Scope says which new triplets are greylisted: Everyone (the zero
	// value) or only Suspicious ones, those for which one of Triggers
	// holds (zero: all of them).
	Scope    Scope
	Triggers Triggers
	// DNSBL lists the clients that are always greylisted: they are never
	// auto-whitelisted, and under the suspicious scope a listing is a
	// trigger. DNSWL lists clients that are never greylisted. nil: none.
	DNSBL DNSList
	DNSWL DNSList
	// StrictAlignment: a DKIM signature proves a listed sender only when
	// its d= is the sender's domain itself, not merely the same
	// organisational domain.
	StrictAlignment bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives store outage reports (one on failure, one on
	// recovery); nil discards them.
	Logger *slog.Logger
}

// DefaultAutoWhitelist is the default number of passes that whitelist a
// client.
const DefaultAutoWhitelist = 5

// awlInterval is how often a client's passes are counted: once an hour, so
// one busy correspondent cannot whitelist itself in a minute.
const awlInterval = time.Hour

// Lists are the exemption lists; an Engine swaps them as a whole on reload.
type Lists struct {
	Trusted            *Networks      // never greylisted
	Clients            *ClientList    // whitelisted clients
	Recipients         *RecipientList // whitelisted recipients
	NeverAutoWhitelist *ClientList    // clients the auto-whitelist must not learn
	// Bypass lists senders that skip greylisting when SPF or an aligned
	// DKIM signature proves their domain (Postfix access(5) tables).
	Bypass *accessmap.Table
	// NeverTrustDomains are domains that never earn or use domain trust.
	NeverTrustDomains *DomainList
	// DynamicNames are patterns of residential or dynamic host names, a
	// trigger under the suspicious scope; nil matches nothing.
	DynamicNames NameMatcher
}

// Decision is the engine's answer for one Request.
type Decision struct {
	Action Action
	Reason Reason
	// Match is the list entry that exempted the recipient, or the bypass
	// list entry that matched the sender.
	Match string
	// SPF is the SPF result, when the decision evaluated it ("" if not).
	SPF string
	// DKIM is the message's DKIM verdict, for recipients decided at end
	// of message ("" if not).
	DKIM string
	// Trigger is why a new triplet was greylisted under the suspicious
	// scope, or the DNS blocklist that lists the client; "" otherwise.
	Trigger Trigger
	// Key is the triplet key, when the triplet was looked up.
	Key    string
	Waited time.Duration // for ReasonRetried: how long the sender waited
	// RetryIn is, when greylisted, how long until a retry passes.
	RetryIn time.Duration
	Err     error // the store error, for ReasonStoreError
}

// Engine decides recipients. It is safe for concurrent use.
type Engine struct {
	cfg   Config
	store Store
	lists atomic.Pointer[Lists]
	log   *slog.Logger

	awl     awlCache
	down    atomic.Bool // fast path for storeOK
	mu      sync.Mutex  // guards the outage report
	outage  bool
	failed  int
	since   time.Time
	lastErr error
}

// New returns an Engine deciding on store with cfg; zero fields take their
// defaults.
func New(store Store, cfg Config) *Engine {
	if cfg.Policy.Delay == 0 {
		cfg.Policy.Delay = DefaultPolicy.Delay
	}
	if cfg.Policy.RetryWindow == 0 {
		cfg.Policy.RetryWindow = DefaultPolicy.RetryWindow
	}
	if cfg.Policy.MaxAge == 0 {
		cfg.Policy.MaxAge = DefaultPolicy.MaxAge
	}
	if cfg.Mask.IPv4 == 0 {
		cfg.Mask.IPv4 = DefaultClientMask.IPv4
	}
	if cfg.Mask.IPv6 == 0 {
		cfg.Mask.IPv6 = DefaultClientMask.IPv6
	}
	if cfg.Delimiters == "" && !cfg.NoDelimiter {
		cfg.Delimiters = "+"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	e := &Engine{cfg: cfg, store: store, log: cfg.Logger}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.lists.Store(&Lists{})
	return e
}

// StoreChanged tells the engine that records were changed behind its back
// (admin deletes, passes and restores): it drops what it cached of them.
func (e *Engine) StoreChanged() { e.awl.reset() }

// SetLists replaces the exemption lists; decisions under way finish with
// the lists they started with.
func (e *Engine) SetLists(l *Lists) { e.lists.Store(l) }

// Lists returns the lists in force.
func (e *Engine) Lists() *Lists { return e.lists.Load() }

// Config returns the engine's configuration with defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

// Now is the engine's clock.
func (e *Engine) Now() time.Time { return e.cfg.Now() }

// touchCounter keeps an auto-whitelist record (a client's, key c:…, or a
// proven domain's, key d:…): a newly passed triplet (retried) counts, at
// most once an hour, so one burst of mail cannot earn trust in minutes;
// any pass of a client or domain already trusted pushes its expiry back,
// at most once an hour. A failure here does not change the decision
// already taken.
func (e *Engine) touchCounter(ctx context.Context, key string, now time.Time, count bool) {
	wrote := false
	err := e.store.Update(ctx, key, func(cur *Record) (*Record, time.Duration, error) {
		wrote = true
		switch {
		case cur == nil || now.Sub(cur.Last) > e.cfg.Policy.MaxAge:
			if !count {
				wrote = false
				return nil, 0, nil
			}
			return &Record{State: Passed, First: now, Last: now, Count: 1}, e.cfg.Policy.MaxAge, nil
		case now.Sub(cur.Last) < awlInterval:
			wrote = false
			return nil, 0, nil
		default:
			n := *cur
			if count {
				n.Count++
			}
			n.Last = now
			return &n, e.cfg.Policy.MaxAge, nil
		}
	})
	switch {
	case err != nil:
		e.storeFailed(err)
	case wrote:
		e.storeOK()
	}
}

// storeFailed turns a store error into the on_error decision and reports
// the outage once, not once per recipient.
func (e *Engine) storeFailed(err error) Decision {
	e.mu.Lock()
	e.failed++
	e.lastErr = err
	first := !e.outage
	if first {
		e.outage = true
		e.since = e.cfg.Now()
		e.down.Store(true)
	}
	e.mu.Unlock()
	if first {
		e.log.Warn("store failing; decisions follow on_error until it recovers",
			"on_error", e.onErrorName(), "err", err)
	}
	return e.onErrorDecision(err)
}

// onErrorDecision is the decision on_error makes for a store failure.
func (e *Engine) onErrorDecision(err error) Decision {
	d := Decision{Action: Pass, Reason: ReasonStoreError, Err: err}
	if e.cfg.OnError == ErrorTempfail {
		d.Action = Greylist
	}
	return d
}

// storeOK ends an outage. It is called after a successful write only: a
// store that still answers reads may refuse writes (a full disk, a
// read-only directory, a Redis at maxmemory), and a read that succeeds in
// the middle of such an outage would end it and the next write would
// start another, a pair of warnings for each.
func (e *Engine) storeOK() {
	if !e.down.Load() {
		return
	}
	e.mu.Lock()
	if !e.outage {
		e.mu.Unlock()
		return
	}
	failed, since, lastErr := e.failed, e.since, e.lastErr
	e.outage, e.failed, e.lastErr = false, 0, nil
	e.down.Store(false)
	e.mu.Unlock()
	e.log.Warn("store recovered", "failed_decisions", failed,
		"outage", e.cfg.Now().Sub(since).Round(time.Millisecond), "last_err", lastErr)
}

// StoreHealthy reports whether the last store operation succeeded.
func (e *Engine) StoreHealthy() bool { return !e.down.Load() }

func (e *Engine) onErrorName() string {
	if e.cfg.OnError == ErrorTempfail {
		return "tempfail"
	}
	return "accept"
}
