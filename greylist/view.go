package greylist

import (
	"context"
	"errors"
	"time"
)

// view is the store as one decision sees it. Decide and Explain run the
// same rules (Engine.decide) against a different view: Decide's writes
// what it learns, Explain's only reads.
type view interface {
	// autoWhitelisted reports whether client has enough passed triplets.
	autoWhitelisted(ctx context.Context, client string, now time.Time) (bool, error)
	// step runs the triplet state machine on the record at key.
	step(ctx context.Context, key string, now time.Time, mode stepMode) (Verdict, error)
	// retried counts a triplet of client that passed after the delay
	// towards the auto-whitelist.
	retried(ctx context.Context, client string, now time.Time)
	// domainTrusted reports whether a proven domain is trusted.
	domainTrusted(ctx context.Context, domain string, now time.Time) (bool, error)
	// domainRetried counts a triplet of a proven domain that passed after
	// the delay towards its trust.
	domainRetried(ctx context.Context, domain string, now time.Time)
	// failed turns a store error into the on_error decision.
	failed(err error) Decision
}

// stepMode says what a step does with a new triplet.
type stepMode uint8

const (
	stepGreylist stepMode = iota // it waits: Policy.Step
	stepAdmit                    // it passes and is recorded as passed: Policy.Admit
	stepAsk                      // nothing is written; the verdict says ReasonNew
)

// stepper is the state machine a mode runs: Step, or Admit; stepAsk runs
// Step and drops the write of a new triplet.
func (p Policy) stepper(mode stepMode) func(cur *Record, now time.Time) (*Record, time.Duration, Verdict) {
	switch mode {
	case stepAdmit:
		return p.Admit
	case stepAsk:
		return func(cur *Record, now time.Time) (*Record, time.Duration, Verdict) {
			next, ttl, v := p.Step(cur, now)
			if v.Reason == ReasonNew {
				return nil, 0, v
			}
			return next, ttl, v
		}
	}
	return p.Step
}

// liveView is Decide's view: it writes, caches and reports outages.
type liveView struct{ e *Engine }

func (v liveView) autoWhitelisted(ctx context.Context, client string, now time.Time) (bool, error) {
	e := v.e
	if whitelisted, cached := e.awl.get(client, now); cached {
		return whitelisted, nil
	}
	whitelisted, err := e.clientWhitelisted(ctx, client)
	if err != nil {
		return false, err
	}
	e.awl.put(client, whitelisted, now)
	if whitelisted {
		// Keep an active client's entry alive (a write at most an
		// hour), once per cache period.
		e.touchCounter(ctx, ClientKey(client), now, false)
	}
	return whitelisted, nil
}

func (v liveView) step(ctx context.Context, key string, now time.Time, mode stepMode) (Verdict, error) {
	var verdict Verdict
	wrote := false
	step := v.e.cfg.Policy.stepper(mode)
	err := v.e.store.Update(ctx, key, func(cur *Record) (*Record, time.Duration, error) {
		next, ttl, vd := step(cur, now)
		verdict, wrote = vd, next != nil
		return next, ttl, nil
	})
	if err == nil && wrote { // a read proves nothing about writes (see storeOK)
		v.e.storeOK()
	}
	return verdict, err
}

func (v liveView) retried(ctx context.Context, client string, now time.Time) {
	v.e.touchCounter(ctx, ClientKey(client), now, true)
	v.e.awl.forget(client) // it may just have been whitelisted
}

func (v liveView) domainTrusted(ctx context.Context, domain string, now time.Time) (bool, error) {
	e := v.e
	key := DomainKey(domain)
	if trusted, cached := e.awl.get(key, now); cached {
		return trusted, nil
	}
	trusted, err := e.recordHolds(ctx, key, e.DomainTrusted)
	if err != nil {
		return false, err
	}
	e.awl.put(key, trusted, now)
	if trusted {
		e.touchCounter(ctx, key, now, false)
	}
	return trusted, nil
}

func (v liveView) domainRetried(ctx context.Context, domain string, now time.Time) {
	key := DomainKey(domain)
	v.e.touchCounter(ctx, key, now, true)
	v.e.awl.forget(key)
}

func (v liveView) failed(err error) Decision { return v.e.storeFailed(err) }

// readOnlyView is Explain's view: reads only, no cache, no outage report.
type readOnlyView struct{ e *Engine }

func (v readOnlyView) autoWhitelisted(ctx context.Context, client string, _ time.Time) (bool, error) {
	return v.e.clientWhitelisted(ctx, client)
}

func (v readOnlyView) step(ctx context.Context, key string, now time.Time, mode stepMode) (Verdict, error) {
	cur, _, err := v.e.store.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		cur, err = nil, nil
	}
	if err != nil {
		return Verdict{}, err
	}
	_, _, verdict := v.e.cfg.Policy.stepper(mode)(cur, now)
	return verdict, nil
}

func (readOnlyView) retried(context.Context, string, time.Time) {}

func (v readOnlyView) domainTrusted(ctx context.Context, domain string, _ time.Time) (bool, error) {
	return v.e.recordHolds(ctx, DomainKey(domain), v.e.DomainTrusted)
}

func (readOnlyView) domainRetried(context.Context, string, time.Time) {}

func (v readOnlyView) failed(err error) Decision { return v.e.onErrorDecision(err) }

// clientWhitelisted reads client's auto-whitelist record from the store.
func (e *Engine) clientWhitelisted(ctx context.Context, client string) (bool, error) {
	return e.recordHolds(ctx, ClientKey(client), e.AutoWhitelisted)
}

// recordHolds reads the record at key and reports whether it exists and
// holds.
func (e *Engine) recordHolds(ctx context.Context, key string, holds func(*Record) bool) (bool, error) {
	rec, _, err := e.store.Get(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return holds(rec), nil
}
