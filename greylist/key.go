package greylist

import (
	"strings"

	"github.com/milter-grey/milter-grey/envelope"
)

// Key prefixes separate the kinds of record in one store.
const (
	TripletPrefix = "t:" // t:CLIENT SENDER RECIPIENT
	ClientPrefix  = "c:" // c:CLIENT, auto-whitelist counter
)

// TripletKey builds the store key of a triplet from its already normalised
// parts. Parts never contain spaces (NormalizeSender and NormalizeRecipient
// escape them), so the key splits back unambiguously.
func TripletKey(client, sender, rcpt string) string {
	var b strings.Builder
	b.Grow(len(TripletPrefix) + len(client) + len(sender) + len(rcpt) + 2)
	b.WriteString(TripletPrefix)
	b.WriteString(client)
	b.WriteByte(' ')
	b.WriteString(sender)
	b.WriteByte(' ')
	b.WriteString(rcpt)
	return b.String()
}

// SplitTripletKey is the inverse of TripletKey.
func SplitTripletKey(key string) (client, sender, rcpt string, ok bool) {
	rest, found := strings.CutPrefix(key, TripletPrefix)
	if !found {
		return "", "", "", false
	}
	parts := strings.SplitN(rest, " ", 3)
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// ClientKey builds the store key of a client's auto-whitelist record.
func ClientKey(client string) string { return ClientPrefix + client }

// spfClientPrefix marks the client part of a triplet keyed by the domain
// SPF proved instead of the client's network.
const spfClientPrefix = "spf:"

// SPFClient is the client part of a key for a sender domain SPF proved.
func SPFClient(domain string) string { return spfClientPrefix + domain }

// SPFKeySender is the sender part of a triplet keyed by its SPF-proven
// domain: senderKey (SenderKey's form of sender), or with dropLocal the
// sender's domain alone ("@example.com"), so that a proven domain waits
// once per recipient, not once per bounce address.
func SPFKeySender(sender envelope.Address, senderKey string, dropLocal bool) string {
	if dropLocal && !sender.IsNull() && sender.KeyDomain() != "" {
		return truncate(escapeKeyPart(sender.KeyDomain()))
	}
	return senderKey
}
