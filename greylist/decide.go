package greylist

import (
	"context"
	"time"

	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/envelope"
)

// Stage is the point of an SMTP transaction at which a recipient is
// decided. The MTA can refuse one recipient only at RCPT TO; later, only
// the whole message.
type Stage uint8

const (
	// AtRcpt: at RCPT TO.
	AtRcpt Stage = iota
	// AfterEnvelope: at the first event after DATA, for the recipients of
	// the null sender (Action Later at RCPT TO).
	AfterEnvelope
	// AtEndOfMessage: with the message's DKIM evidence (Message.SetDKIM),
	// for the recipients of a listed sender that SPF did not prove (Action
	// Defer). Without evidence the sender counts as not proven.
	AtEndOfMessage
)

// Decide decides one recipient of m at stage, writing what it learns to
// the store (a new or retried triplet, the auto-whitelist). The rules, in
// the order of the README's "How a message is decided":
//
//  1. exemptions: no client address, trusted network, SASL, client and
//     recipient whitelists (exemption), then a DNS allowlist (DNSWL);
//  2. the null sender waits until after the envelope (Later);
//  3. the client auto-whitelist, unless a DNS blocklist lists the client;
//  4. learned domain trust, when SPF proves the sender (domaintrust.go);
//  5. the bypass list: a listed sender proven by SPF passes; one that SPF
//     does not prove waits for DKIM at end of message (Defer), unless its
//     triplet passes anyway; at end of message an aligned DKIM signature
//     proves it (dkimProof);
//  6. the triplet state machine (Policy.Step), keyed by the SPF-proven
//     domain when KeyBySPFDomain is on; under the Suspicious scope a new
//     triplet without a trigger (trigger) passes and is recorded as
//     passed (Policy.Admit).
func (e *Engine) Decide(ctx context.Context, m *Message, rcpt envelope.Address, stage Stage) Decision {
	return e.decide(ctx, liveView{e}, m, rcpt, stage)
}

// Explain says what Decide would answer now, and why, by the same rules
// against a read-only view of the store: nothing is written and nothing
// counts towards the auto-whitelist (admin "explain"). A recipient of the
// null sender is explained as it is decided after the envelope.
func (e *Engine) Explain(ctx context.Context, m *Message, rcpt envelope.Address) Decision {
	stage := AtRcpt
	if m.Sender.IsNull() {
		stage = AfterEnvelope
	}
	return e.decide(ctx, readOnlyView{e}, m, rcpt, stage)
}

func (e *Engine) decide(ctx context.Context, v view, m *Message, rcpt envelope.Address, stage Stage) Decision {
	l := e.lists.Load()
	rcptKey := RecipientKey(rcpt, e.cfg.Delimiters)
	if d, ok := exemption(l, m, rcptKey); ok {
		return d
	}
	if a := m.dnswl.ask(ctx, e.cfg.DNSWL, m.Client); a.listed {
		return Decision{Action: Pass, Reason: ReasonDNSWL, Match: a.zone}
	}
	if m.Sender.IsNull() && stage == AtRcpt {
		return Decision{Action: Later}
	}
	now := e.cfg.Now()
	client := e.cfg.Mask.Key(m.Client)
	dnsbl := m.dnsbl.ask(ctx, e.cfg.DNSBL, m.Client)
	// A blocklisted client is never auto-whitelisted.
	awl := e.cfg.AutoWhitelist > 0 && !dnsbl.listed
	if awl {
		if _, never := l.NeverAutoWhitelist.Match(m.Client, m.ClientName); never {
			awl = false
		}
	}
	if awl {
		whitelisted, err := v.autoWhitelisted(ctx, client, now)
		if err != nil {
			return v.failed(err)
		}
		if whitelisted {
			return Decision{Action: Pass, Reason: ReasonAutoWhitelist, Match: client}
		}
	}

	trustDomain, trustable := e.trustable(ctx, m, l, dnsbl.listed)
	if trustable {
		trusted, err := v.domainTrusted(ctx, trustDomain, now)
		if err != nil {
			return v.failed(err)
		}
		if trusted && !dynamicClient(m, l) {
			return Decision{Action: Pass, Reason: ReasonTrustedDomain, Match: trustDomain, SPF: spfLog(m.SPF())}
		}
	}

	sender := m.senderKeyForm(e.cfg.Delimiters)
	var dkim string
	if l.Bypass != nil {
		if match, listed := m.listedSender(l); listed {
			spf, spfOK := m.checkSPF(ctx, e.cfg.SPF)
			switch {
			case spf.Proven():
				return Decision{Action: Pass, Reason: ReasonBypassSPF, Match: match.String(), SPF: spfLog(spf, true)}
			case stage == AtEndOfMessage:
				proven, note := dkimProof(m.dkim, m.Sender, e.cfg.StrictAlignment)
				if proven {
					return Decision{Action: Pass, Reason: ReasonBypassDKIM, Match: match.String(),
						SPF: spfLog(spf, spfOK), DKIM: note}
				}
				dkim = note
			case spfOK && !e.wouldPass(ctx, TripletKey(client, sender, rcptKey), now):
				// A triplet that passes anyway needs no proof; the
				// others wait for DKIM at end of message.
				return Decision{Action: Defer, Reason: ReasonPending, Match: match.String(), SPF: spfLog(spf, true)}
			}
		}
	}

	tripletClient := client
	if e.cfg.KeyBySPFDomain {
		if spf, ok := m.checkSPF(ctx, e.cfg.SPF); ok && spf.Proven() && spf.Domain != "" {
			tripletClient = SPFClient(spf.Domain)
			sender = SPFKeySender(m.Sender, sender, e.cfg.SPFKeyDropsLocalPart)
		}
	}
	key := TripletKey(tripletClient, sender, rcptKey)
	var trig Trigger
	mode := stepGreylist
	if e.cfg.Scope == Suspicious {
		mode = stepAsk
	}
	verdict, err := v.step(ctx, key, now, mode)
	if err == nil && mode == stepAsk && verdict.Reason == ReasonNew {
		// A new triplet: greylisted only if a trigger holds.
		trig = trigger(e.signals(ctx, m, l, dnsbl), e.cfg.Triggers)
		mode = stepAdmit
		if trig != "" {
			mode = stepGreylist
		}
		verdict, err = v.step(ctx, key, now, mode)
	}
	if trig == "" && dnsbl.listed && !verdict.Pass {
		trig = TriggerDNSBL + ":" + Trigger(dnsbl.zone)
	}
	spf := spfLog(m.SPF())
	if err != nil {
		d := v.failed(err)
		d.Key, d.SPF, d.DKIM = key, spf, dkim
		return d
	}
	if verdict.Reason == ReasonRetried {
		if awl {
			v.retried(ctx, client, now)
		}
		if trustable && !dynamicClient(m, l) { // a server the domain's SPF record authorises retried
			v.domainRetried(ctx, trustDomain, now)
		}
	}
	d := Decision{Action: Pass, Reason: verdict.Reason, Key: key, SPF: spf, DKIM: dkim, Trigger: trig,
		Waited: verdict.Waited, RetryIn: verdict.RetryIn}
	if !verdict.Pass {
		d.Action = Greylist
	}
	return d
}

// signals gathers what the triggers look at for m's client: the DNS
// blocklist's answer, SPF (evaluated now if it was not), the host name.
func (e *Engine) signals(ctx context.Context, m *Message, l *Lists, dnsbl *listAnswer) clientSignals {
	s := clientSignals{dnsbl: dnsbl.zone, dnsFailure: dnsbl.err != nil, name: m.ClientName}
	if !dnsbl.listed {
		s.dnsbl = ""
	}
	if spf, ok := m.checkSPF(ctx, e.cfg.SPF); ok {
		s.spf, s.spfProven = spf.Result, spf.Proven()
		s.dnsFailure = s.dnsFailure || spf.Result == auth.ResultTempError
	}
	s.dynamicName = m.dynamicName(l)
	return s
}

// wouldPass reports whether the triplet at key passes now (known, or
// retried after the delay), reading only. A store error counts as no: the
// caller then waits for DKIM.
func (e *Engine) wouldPass(ctx context.Context, key string, now time.Time) bool {
	cur, _, err := e.store.Get(ctx, key)
	if err != nil {
		return false
	}
	_, _, v := e.cfg.Policy.Step(cur, now)
	return v.Pass
}
