package greylist

import (
	"context"
	"net/netip"

	"github.com/milter-grey/milter-grey/accessmap"
	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/envelope"
)

// SPFChecker evaluates SPF for a client and an envelope sender (the HELO
// name for the null sender). *auth.SPF is one.
type SPFChecker interface {
	Check(ctx context.Context, ip netip.Addr, helo string, sender envelope.Address) auth.SPFResult
}

// Message is one SMTP transaction as the engine sees it: the client and the
// envelope sender, parsed once by the caller. The engine keeps on it what
// it learns of the message while deciding its recipients (the sender's key
// form, the bypass list's answer, SPF, the DKIM evidence), so that each is
// computed at most once per message. A Message belongs to one session: it
// is not safe for concurrent use.
type Message struct {
	Client     netip.Addr // zero when the MTA gave no IP address
	ClientName string     // the forward-confirmed host name, or ""
	Helo       string
	AuthUser   string // the SASL login of the session, or ""
	Sender     envelope.Address

	senderKey string // SenderKey(Sender), once computed
	keyDone   bool

	bypass     accessmap.Match // the bypass list's entry for Sender
	listed     bool
	bypassDone bool

	spf     auth.SPFResult
	spfDone bool

	dynamic     string // the dynamic-name pattern ClientName matches, or ""
	dynamicDone bool

	dkim *DKIMEvidence // set at end of message

	dnsbl, dnswl listAnswer // the DNS lists' answers for Client
}

// DKIMEvidence is what the end of a message tells about its DKIM
// signatures, for a listed sender that SPF did not prove.
type DKIMEvidence struct {
	// Results are the verified signatures; Err is why verification
	// stopped early (too large, timed out), or nil.
	Results []auth.DKIMResult
	Err     error
	// FromFields is the number of From header fields of the message.
	FromFields int
}

// SetDKIM records the message's DKIM evidence, for the recipients decided
// at end of message.
func (m *Message) SetDKIM(ev DKIMEvidence) { m.dkim = &ev }

// senderKeyForm returns the sender's key form, computed once.
func (m *Message) senderKeyForm(delimiters string) string {
	if !m.keyDone {
		m.senderKey, m.keyDone = SenderKey(m.Sender, delimiters), true
	}
	return m.senderKey
}

// listedSender looks the sender up in the bypass list, once per message
// and list generation.
func (m *Message) listedSender(l *Lists) (accessmap.Match, bool) {
	if !m.bypassDone {
		m.bypass, m.listed = l.Bypass.Lookup(m.Sender)
		m.bypassDone = true
	}
	return m.bypass, m.listed
}

// dynamicName returns the pattern of l.DynamicNames that the client's
// name matches (a residential or dynamic address), or "", once per message.
func (m *Message) dynamicName(l *Lists) string {
	if !m.dynamicDone {
		if m.ClientName != "" && l.DynamicNames != nil {
			m.dynamic, _ = l.DynamicNames.Match(m.ClientName)
		}
		m.dynamicDone = true
	}
	return m.dynamic
}

// SPF returns the message's SPF result, if it was evaluated.
func (m *Message) SPF() (auth.SPFResult, bool) { return m.spf, m.spfDone }

// checkSPF evaluates SPF once per message; ok is false when no checker is
// configured.
func (m *Message) checkSPF(ctx context.Context, c SPFChecker) (res auth.SPFResult, ok bool) {
	if !m.spfDone {
		if c == nil {
			return auth.SPFResult{}, false
		}
		m.spf, m.spfDone = c.Check(ctx, m.Client, m.Helo, m.Sender), true
	}
	return m.spf, true
}

// spfLog is an SPF result as decision lines show it ("pass", "fail",
// "pass(wide-open)"), "" when not evaluated.
func spfLog(r auth.SPFResult, done bool) string {
	if !done {
		return ""
	}
	s := r.String()
	if len(s) > 4 && s[:4] == "spf=" {
		return s[4:]
	}
	return s
}
