package greylist

// Reason says why a recipient was passed or greylisted. Its string is what
// the decision log prints as reason=…, a stable interface for admins.
type Reason string

const (
	ReasonNew     Reason = "new"     // first sighting of the triplet
	ReasonEarly   Reason = "early"   // retried before the delay was over
	ReasonRetried Reason = "retried" // retried after the delay: passes from now on
	ReasonKnown   Reason = "known"   // a triplet that passed before

	ReasonTrusted         Reason = "trusted"          // client in trusted_networks
	ReasonSASL            Reason = "sasl"             // SMTP AUTH session
	ReasonClientWhitelist Reason = "client-whitelist" // client in whitelist_clients
	ReasonRcptWhitelist   Reason = "rcpt-whitelist"   // recipient in whitelist_recipients
	ReasonAutoWhitelist   Reason = "auto-whitelist"   // client with enough passed triplets
	ReasonDNSWL           Reason = "dnswl"            // client listed by a DNS allowlist
	ReasonTrustedDomain   Reason = "trusted-domain"   // sender domain proven by SPF and trusted (learned)
	ReasonNotSuspicious   Reason = "not-suspicious"   // new triplet, no trigger: passed and recorded (suspicious scope)
	ReasonNoClientAddr    Reason = "no-client-address"
	ReasonStoreError      Reason = "store-error" // the store failed: on_error decides

	ReasonBypassSPF  Reason = "bypass-spf"   // listed sender proven by SPF
	ReasonBypassDKIM Reason = "bypass-dkim"  // listed sender proven by an aligned DKIM signature
	ReasonPending    Reason = "pending-dkim" // listed sender not proven by SPF: DKIM decides at end of message
)

// Describe says in words what a reason means, for admin "explain".
func (r Reason) Describe() string {
	switch r {
	case ReasonNew:
		return "first attempt of this triplet: it would be refused with 451 and recorded"
	case ReasonEarly:
		return "retried before the delay was over"
	case ReasonRetried:
		return "retried after the delay: it would pass from now on"
	case ReasonKnown:
		return "a triplet that passed before"
	case ReasonTrusted:
		return "the client is in trusted_networks"
	case ReasonSASL:
		return "an authenticated (SASL) session"
	case ReasonClientWhitelist:
		return "the client is whitelisted"
	case ReasonRcptWhitelist:
		return "the recipient is whitelisted"
	case ReasonAutoWhitelist:
		return "the client's network has enough passed triplets"
	case ReasonDNSWL:
		return "the client is listed by a DNS allowlist (dnswl_zones): never greylisted"
	case ReasonTrustedDomain:
		return "the sender's domain, proven by SPF for this client, has retried to this site before: trusted"
	case ReasonNotSuspicious:
		return "a new triplet with no trigger (greylist = \"suspicious\"): it would pass and be recorded as passed"
	case ReasonBypassSPF:
		return "a listed sender, proven by SPF"
	case ReasonPending:
		return "a listed sender not proven by SPF: a DKIM signature aligned with it would pass the message at its end; without one it is greylisted"
	case ReasonNoClientAddr:
		return "no IP address to key by"
	case ReasonStoreError:
		return "the store failed: on_error decides"
	}
	return "see the README"
}
