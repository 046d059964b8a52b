package auth

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// Alignment modes, as configured and as logged.
const (
	AlignRelaxed = "relaxed"
	AlignStrict  = "strict"
)

// Aligned reports whether a DKIM signing domain (d=) is aligned with the
// envelope sender's domain (RFC 7489 section 3.1.1): with strict, the two
// names are equal; otherwise they have the same organisational domain by
// the public suffix list. Both are compared after lower-casing, dropping a
// trailing dot and converting IDNs to A-labels. A d= that is itself a
// public suffix ("com", "co.uk") or not a valid name never aligns.
func Aligned(dkimDomain, senderDomain string, strict bool) bool {
	d, err := dnsName(dkimDomain)
	if err != nil {
		return false
	}
	s, err := dnsName(senderDomain)
	if err != nil {
		return false
	}
	dorg, err := orgDomain(d)
	if err != nil {
		return false
	}
	sorg, err := orgDomain(s)
	if err != nil {
		return false
	}
	if strict {
		return d == s
	}
	return dorg == sorg
}

// OrgDomain returns the organisational domain of domain: its registrable
// part by the public suffix list, after the normalisation Aligned applies
// ("Mail.Example.CO.UK." -> "example.co.uk"). A public suffix itself, or a
// name that is not a valid domain, is an error.
func OrgDomain(domain string) (string, error) {
	d, err := dnsName(domain)
	if err != nil {
		return "", err
	}
	return orgDomain(d)
}

func orgDomain(d string) (string, error) {
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return "", fmt.Errorf("organisational domain of %q: %w", d, err)
	}
	return org, nil
}

var errEmptyDomain = errors.New("empty domain")

// dnsName normalises a domain for comparison and DNS: lower case, no
// trailing dot, A-labels. An ASCII name is only lower-cased (no IDNA
// validation, so names with "_" stay usable); a non-ASCII one must pass
// IDNA's lookup profile.
func dnsName(domain string) (string, error) {
	d := strings.TrimSuffix(strings.TrimSpace(domain), ".")
	if d == "" {
		return "", errEmptyDomain
	}
	if isASCII(d) {
		return strings.ToLower(d), nil
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("domain %q: %w", domain, err)
	}
	return strings.ToLower(a), nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
