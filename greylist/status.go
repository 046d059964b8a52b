package greylist

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Status is what a stored record means now, as admin listings show it.
type Status string

const (
	StatusPending         Status = "pending"          // a triplet waiting for its retry
	StatusPassed          Status = "passed"           // a triplet retried in time: passes
	StatusNeverRetried    Status = "never-retried"    // pending past its retry window
	StatusAutoWhitelisted Status = "auto-whitelisted" // a client with enough passes
	StatusCounting        Status = "counting"         // a client or domain not there yet
	StatusTrusted         Status = "trusted"          // a proven domain with enough passes
)

// AutoWhitelisted reports whether a client's auto-whitelist record has
// enough passed triplets for the client to skip greylisting.
func (e *Engine) AutoWhitelisted(rec *Record) bool {
	return e.cfg.AutoWhitelist > 0 && rec.State == Passed && rec.Count >= uint32(e.cfg.AutoWhitelist)
}

// Status classifies the record stored at key at now.
func (e *Engine) Status(key string, rec *Record, now time.Time) Status {
	switch {
	case strings.HasPrefix(key, ClientPrefix) && rec.State == Passed:
		if e.AutoWhitelisted(rec) {
			return StatusAutoWhitelisted
		}
		return StatusCounting
	case strings.HasPrefix(key, DomainPrefix) && rec.State == Passed:
		if e.DomainTrusted(rec) {
			return StatusTrusted
		}
		return StatusCounting
	case strings.HasPrefix(key, TripletPrefix) && e.cfg.Policy.NeverRetried(rec, now):
		return StatusNeverRetried
	case rec.State == Passed:
		return StatusPassed
	}
	return StatusPending
}

// Pass stores the triplet at key as passed now, for max_age, as if it had
// been retried after the delay (admin "pass"), and drops what the engine
// cached of the store.
func (e *Engine) Pass(ctx context.Context, key string) error {
	if _, _, _, ok := SplitTripletKey(key); !ok {
		return fmt.Errorf("key %q is not a triplet key (t:CLIENT SENDER RECIPIENT)", key)
	}
	now := e.cfg.Now()
	rec := &Record{State: Passed, First: now, Last: now, Count: 1}
	if err := e.store.Put(ctx, key, rec, e.cfg.Policy.MaxAge); err != nil {
		return err
	}
	e.StoreChanged()
	return nil
}

// ClientPart is the client part of a key for what an admin names: an IP
// address (masked as the milter masks it), a network in CIDR notation, or
// spf:DOMAIN.
func (e *Engine) ClientPart(s string) (string, error) {
	s = strings.TrimSpace(s)
	if ip := ParseClientAddr(s); ip.IsValid() {
		return e.cfg.Mask.Key(ip), nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		p = p.Masked()
		if p.Bits() == p.Addr().BitLen() {
			return p.Addr().String(), nil
		}
		return p.String(), nil
	}
	if d, ok := strings.CutPrefix(strings.ToLower(s), spfClientPrefix); ok {
		d = strings.TrimSuffix(d, ".")
		if d != "" && !strings.ContainsAny(d, " \t@") {
			return SPFClient(d), nil
		}
	}
	return "", fmt.Errorf("client %q: want an IP address, a CIDR network or spf:DOMAIN", s)
}
