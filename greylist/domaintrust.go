package greylist

import (
	"context"
	"fmt"
	"strings"
)

// Learned trust by proven domain.
//
// A sender domain whose own, SPF-authorised servers have retried past the
// delay to this site gains nothing from being greylisted again: greylisting
// stops senders that never retry. So a domain proven by SPF (a pass from a
// record that is not wide open) whose triplets passed after the delay
// DomainTrust times (once by default), counted at most once an hour, is
// trusted for max_age after its last pass: its mail passes at RCPT TO
// whenever SPF proves it again for the client, from any server its record
// authorises (reason=trusted-domain).
//
// Why one pass by default: the deliverability benchmark (bench/
// deliverability) shows that every further pass asked for costs more
// legitimate delay than it buys. With one pass, greylisting everyone
// delays 1.8 % of legitimate messages instead of 5.3 %; with two passes
// 2.8 %, with three over a day 3.3 %; no setting accepts more bot or DKIM
// replay messages than greylisting without trust. What more passes would guard against is a spammer who owns
// the domain and its SPF record; such a sender retries like any MTA and is
// let in by the auto-whitelist too, so more passes only make it wait
// longer. An admin who wants that wait sets a higher domain_trust: passes
// are counted at most once an hour, so N passes span at least N-1 hours,
// and a burst of mail never counts more than once.
//
// The threat model:
//   - Only an SPF pass for this client, from a record that is not wide
//     open, earns or uses trust. A forged sender of a trusted domain (SPF
//     fail, softfail, none, temperror) is decided as if there were no trust.
//   - DKIM never contributes: a signature proves the message, not the host
//     that sends it, and a signed message can be replayed by anyone.
//   - Trust is per exact domain, the domain SPF checked: bounce.example.com
//     earns its own; an ESP's customers (em123.esp.example,
//     em456.esp.example) never share one's trust, and neither do the users
//     of a domain under a public suffix (user.github.io).
//   - A client on a DNS blocklist neither earns nor uses trust, nor does a
//     domain in never_trust_domains; the null sender (whose SPF identity is
//     the HELO name) neither.
//   - Nor does a client whose name is a dynamic one (DynamicNames): a
//     residential address is where bots run, and some SPF records
//     authorise a whole access provider's range; the domain's own mail
//     server there has the auto-whitelist.

// DomainPrefix starts the key of a domain's trust record: d:DOMAIN.
const DomainPrefix = "d:"

// DomainKey builds the store key of a proven domain's trust record.
func DomainKey(domain string) string { return DomainPrefix + domain }

// DefaultDomainTrust is the default number of passes that make a proven
// domain trusted.
const DefaultDomainTrust = 1

// DomainTrusted reports whether a domain's trust record makes it trusted.
func (e *Engine) DomainTrusted(rec *Record) bool {
	return e.cfg.DomainTrust > 0 && rec.State == Passed && rec.Count >= uint32(e.cfg.DomainTrust)
}

// TrustDomain stores domain as trusted now, for max_age (admin "pass").
func (e *Engine) TrustDomain(ctx context.Context, domain string) (string, error) {
	d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(domain)), ".")
	if d == "" || strings.ContainsAny(d, " \t@/") {
		return "", fmt.Errorf("domain %q: want a domain name", domain)
	}
	n := e.cfg.DomainTrust
	if n <= 0 {
		return "", fmt.Errorf("domain trust is off (domain_trust = 0)")
	}
	now := e.cfg.Now()
	rec := &Record{State: Passed, First: now, Last: now, Count: uint32(n)}
	key := DomainKey(d)
	if err := e.store.Put(ctx, key, rec, e.cfg.Policy.MaxAge); err != nil {
		return "", err
	}
	e.StoreChanged()
	return key, nil
}

// DomainList is a list of domains, each matching itself and its
// subdomains (never_trust_domains).
type DomainList struct {
	domains map[string]bool
}

// Add adds a domain ("example.com" or ".example.com", the same).
func (l *DomainList) Add(entry string) error {
	d := strings.TrimSuffix(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(entry)), "."), ".")
	if d == "" || strings.ContainsAny(d, " \t@/") {
		return fmt.Errorf("bad domain %q", entry)
	}
	if l.domains == nil {
		l.domains = make(map[string]bool)
	}
	l.domains[d] = true
	return nil
}

// Match returns the entry that matches domain or one of its parents.
func (l *DomainList) Match(domain string) (string, bool) {
	if l == nil || len(l.domains) == 0 {
		return "", false
	}
	for d := domain; d != ""; {
		if l.domains[d] {
			return d, true
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	return "", false
}

// Len is the number of entries.
func (l *DomainList) Len() int {
	if l == nil {
		return 0
	}
	return len(l.domains)
}

// dynamicClient reports whether m's client has a dynamic name, which
// neither earns nor uses trust. It is asked only once trust is at stake (a
// trusted domain, or a retried triplet), since matching the patterns costs
// more than the rest of a known triplet's decision.
func dynamicClient(m *Message, l *Lists) bool { return m.dynamicName(l) != "" }

// trustable returns the domain of m's sender that SPF proves for its
// client, if it may earn or use trust (but see dynamicClient).
func (e *Engine) trustable(ctx context.Context, m *Message, l *Lists, blocklisted bool) (string, bool) {
	if e.cfg.DomainTrust <= 0 || blocklisted || m.Sender.IsNull() {
		return "", false
	}
	spf, ok := m.checkSPF(ctx, e.cfg.SPF)
	if !ok || !spf.Proven() || spf.Domain == "" {
		return "", false
	}
	if _, never := l.NeverTrustDomains.Match(spf.Domain); never {
		return "", false
	}
	return spf.Domain, true
}
