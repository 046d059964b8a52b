package greylist

import (
	"fmt"
	"strings"

	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/envelope"
)

// The rules below are pure: they decide from their arguments alone, so
// each has a table test.

// exemption is rule 1: the recipients that pass without a look at the store.
// rcptKey is the recipient's key form ("" to check the client only).
func exemption(l *Lists, m *Message, rcptKey string) (Decision, bool) {
	if !m.Client.IsValid() {
		return Decision{Action: Pass, Reason: ReasonNoClientAddr}, true
	}
	if match, ok := l.Trusted.Match(m.Client); ok {
		return Decision{Action: Pass, Reason: ReasonTrusted, Match: match}, true
	}
	if m.AuthUser != "" {
		return Decision{Action: Pass, Reason: ReasonSASL, Match: m.AuthUser}, true
	}
	if match, ok := l.Clients.Match(m.Client, m.ClientName); ok {
		return Decision{Action: Pass, Reason: ReasonClientWhitelist, Match: match}, true
	}
	if rcptKey != "" {
		if match, ok := l.Recipients.Match(rcptKey); ok {
			return Decision{Action: Pass, Reason: ReasonRcptWhitelist, Match: match}, true
		}
	}
	return Decision{}, false
}

// dkimProof is the DKIM half of rule 4: whether the message's DKIM
// evidence proves the envelope sender's domain, and the verdict as the
// decision line shows it. A valid signature proves the sender when its d=
// is aligned with the sender's domain (auth.EvaluateDKIM), and only on a
// message with one From field: RFC 5322 allows one, and with two a valid
// signature may cover one while mail readers show the other (RFC 6376
// §8.15). No evidence (the message was not verified) proves nothing and
// shows nothing.
func dkimProof(ev *DKIMEvidence, sender envelope.Address, strict bool) (proven bool, note string) {
	if ev == nil {
		return false, ""
	}
	verdict := auth.EvaluateDKIM(ev.Results, sender.Domain(), strict)
	if verdict.Err == nil {
		verdict.Err = ev.Err
	}
	note = strings.TrimPrefix(verdict.String(), "dkim=")
	if !verdict.Proven() {
		return false, note
	}
	if ev.FromFields > 1 {
		return false, note + fmt.Sprintf(" (not a proof: %d From fields)", ev.FromFields)
	}
	return true, note
}

// Refusal is the one reply for a whole message, once recipients are
// decided after RCPT TO (the MTA can then only refuse the message, for
// all its recipients): the greylisted decision with the longest wait, if
// any recipient is greylisted.
func Refusal(ds []Decision) (Decision, bool) {
	var worst Decision
	found := false
	for _, d := range ds {
		if d.Action == Greylist && (!found || d.RetryIn > worst.RetryIn) {
			worst, found = d, true
		}
	}
	return worst, found
}
