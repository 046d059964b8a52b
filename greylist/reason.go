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
	ReasonNotSuspicious   Reason = "not-suspicious"   // new triplet, no trigger: passed and recorded (suspicious scope)
	ReasonNoClientAddr    Reason = "no-client-address"
	ReasonStoreError      Reason = "store-error" // the store failed: on_error decides

	ReasonBypassSPF  Reason = "bypass-spf"   // listed sender proven by SPF
	ReasonBypassDKIM Reason = "bypass-dkim"  // listed sender proven by an aligned DKIM signature
	ReasonPending    Reason = "pending-dkim" // listed sender not proven by SPF: DKIM decides at end of message
)
