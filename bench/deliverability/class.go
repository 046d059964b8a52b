package main

// Class is a kind of sender: a row of the report.
type Class uint8

const (
	BigProvider Class = iota
	Notification
	OneTimeCode
	SelfHosted
	MailingList
	ResidentialBot
	HostedBot
	DKIMReplay
	Snowshoe
	numClasses
)

func (c Class) String() string {
	switch c {
	case BigProvider:
		return "big mailbox providers"
	case Notification:
		return "ESP notifications"
	case OneTimeCode:
		return "ESP one-time codes"
	case SelfHosted:
		return "self-hosted MTAs"
	case MailingList:
		return "mailing lists"
	case ResidentialBot:
		return "bots, residential"
	case HostedBot:
		return "bots, hosted"
	case DKIMReplay:
		return "bots, DKIM replay"
	case Snowshoe:
		return "snowshoe spam"
	}
	return "?"
}

// Legitimate reports whether the class is wanted mail.
func (c Class) Legitimate() bool { return c < ResidentialBot }

// Bot reports whether the class is botnet spam (sent by spamware, not by
// an MTA with a queue).
func (c Class) Bot() bool { return c == ResidentialBot || c == HostedBot || c == DKIMReplay }

// share is the class's part of the messages a site receives: an assumed
// mix for a small organisation's MX, where a bit under half of the
// transactions are spam, 30 % of them from bots.
func (c Class) share() float64 {
	switch c {
	case BigProvider:
		return 0.28
	case Notification:
		return 0.10
	case OneTimeCode:
		return 0.03
	case SelfHosted:
		return 0.10
	case MailingList:
		return 0.07
	case ResidentialBot:
		return 0.265
	case HostedBot:
		return 0.015
	case DKIMReplay:
		return 0.02
	case Snowshoe:
		return 0.12
	}
	return 0
}
