package main

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/milter-grey/milter-grey/auth"
)

// The spam senders. The facts each model rests on are in the package
// comment; the shares are assumptions.

// residentialBots: spamware on infected home computers, talking SMTP
// directly from residential addresses.
func (g *generator) residentialBots(n int) {
	bots := make([]*sender, max(20, n/3))
	for i := range bots {
		bots[i] = &sender{hosts: []host{g.residentialHost()}, retry: g.spamware(0.25)}
	}
	for _, t := range g.times(n) {
		b := pick(g.rng, bots)
		rcpts := g.botRecipients()
		g.add(ResidentialBot, t, g.forged(), b.hosts[0].name, g.someMailboxes(rcpts), b)
	}
}

// hostedBots: spam scripts on compromised web servers at hosting
// providers, talking SMTP directly: forward-confirmed, plain names.
func (g *generator) hostedBots(n int) {
	bots := make([]*sender, max(10, n/4))
	for i := range bots {
		bots[i] = &sender{hosts: []host{g.hostedHost()}, retry: g.spamware(0.2)}
	}
	for _, t := range g.times(n) {
		b := pick(g.rng, bots)
		from := g.forged()
		if g.rng.Float64() < 0.5 {
			from = "www-data@" + b.hosts[0].name // the web server's own user; no SPF
		}
		g.add(HostedBot, t, from, b.hosts[0].name, []string{g.mailbox()}, b)
	}
}

// dkimReplay: bots re-sending a message signed by a big provider's
// consumer domain, which an account there got signed, with that domain as
// envelope sender, from residential (70 %) and hosted (30 %) addresses
// its SPF record does not authorise: SPF fails, DKIM would pass. Nothing
// in the engine's trust or triggers reads DKIM, so the signature is not
// modelled beyond the envelope it comes with.
func (g *generator) dkimReplay(n int) {
	bots := make([]*sender, max(10, n/3))
	for i := range bots {
		if g.rng.Float64() < 0.7 {
			bots[i] = &sender{hosts: []host{g.residentialHost()}, retry: g.spamware(0.25)}
		} else {
			bots[i] = &sender{hosts: []host{g.hostedHost()}, retry: g.spamware(0.2)}
		}
	}
	for _, t := range g.times(n) {
		b := pick(g.rng, bots)
		rcpts := g.botRecipients()
		from := person(g.rng) + "@" + g.provider().domain
		g.add(DKIMReplay, t, from, b.hosts[0].name, g.someMailboxes(rcpts), b)
	}
}

// residentialHost makes up an infected home computer: mostly without a
// name or with a dynamic one, mostly listed.
func (g *generator) residentialHost() host {
	ip := g.addrIn(netip.MustParsePrefix("100.64.0.0/10"))
	h := host{ip: ip}
	switch r := g.rng.Float64(); {
	case r < 0.55: // no PTR, or one that does not resolve back
	case r < 0.97:
		h.name = dynamicName(g.rng, ip)
	default: // a name that says nothing of what the address is
		h.name = fmt.Sprintf("%s%d.%s.example", word(g.rng), g.rng.IntN(100), word(g.rng))
	}
	if g.rng.Float64() < 0.70 {
		g.w.listed[ip] = true
	}
	return h
}

// hostedHost makes up a compromised web server at a hosting provider:
// a forward-confirmed, plain name; listed more often than not.
func (g *generator) hostedHost() host {
	ip := g.addrIn(g.net24In(pick(g.rng, g.hosting)))
	name := ""
	switch r := g.rng.Float64(); {
	case r < 0.4:
		name = fmt.Sprintf("srv%d.%s-hosting.example", g.rng.IntN(10000), word(g.rng))
	case r < 0.7:
		name = fmt.Sprintf("vps%d.%s.example", g.rng.IntN(10000), word(g.rng))
	default:
		name = fmt.Sprintf("www.%s-shop.example", word(g.rng))
	}
	if g.rng.Float64() < 0.60 {
		g.w.listed[ip] = true
	}
	return host{ip: ip, name: name}
}

// botRecipients draws the number of the site's recipients of a bot's
// transaction.
func (g *generator) botRecipients() int {
	if g.rng.Float64() < 0.3 {
		return 2 + g.rng.IntN(4)
	}
	return 1
}

// spamware draws a bot's behaviour after a 4xx: most never retry; the
// share quick try once more within two minutes.
func (g *generator) spamware(quick float64) retrySchedule {
	if g.rng.Float64() < quick {
		return quickRetry{min: 30 * time.Second, max: 2 * time.Minute}
	}
	return noRetry{}
}

// forged makes up the envelope sender of a bot: a big provider's address,
// the site's own domain, or a made-up domain, some of which publish SPF.
func (g *generator) forged() string {
	switch r := g.rng.Float64(); {
	case r < 0.35:
		return person(g.rng) + "@" + g.provider().domain
	case r < 0.60:
		return g.mailboxes[g.rng.IntN(len(g.mailboxes))]
	}
	// One of a few thousand third parties' domains.
	i := g.rng.IntN(3000)
	for len(g.thirdParties) <= i {
		d := g.newDomain()
		if g.rng.Float64() < 0.4 {
			g.w.spf[d] = &spfRecord{other: pick(g.rng, []auth.Result{auth.ResultFail, auth.ResultSoftFail})}
		}
		g.thirdParties = append(g.thirdParties, d)
	}
	return word(g.rng) + "@" + g.thirdParties[i]
}

// snowshoe: spam spread thinly over many addresses of a few operators'
// /24s, each address with its own domain (changed weekly), forward-confirmed
// name and SPF record, sent by a real MTA that retries. An operator sends
// from three /24s at a time and moves each to a fresh one after one to two
// weeks, as a range gets a bad reputation.
func (g *generator) snowshoe(n int) {
	type block struct {
		until time.Time
		net   netip.Prefix
		ips   []netip.Addr
	}
	slots := make([][]block, 5*3) // 5 operators, 3 /24s each at a time
	for s := range slots {
		t := g.start.Add(-uniform(g.rng, 0, 7*day))
		for t.Before(g.end) {
			b := block{until: t.Add(uniform(g.rng, 7*day, 14*day)), net: g.net24In(pick(g.rng, g.hosting))}
			for range 16 {
				a := g.addrIn(b.net)
				b.ips = append(b.ips, a)
				if g.rng.Float64() < 0.25 {
					g.w.listed[a] = true
				}
			}
			slots[s] = append(slots[s], b)
			t = b.until
		}
	}
	type week struct {
		ip netip.Addr
		n  int
	}
	senders := map[week]*sender{}
	domains := map[*sender]string{}
	for _, t := range g.times(n) {
		slot := slots[g.rng.IntN(len(slots))]
		i := 0
		for slot[i].until.Before(t) {
			i++
		}
		b := slot[i]
		ip := pick(g.rng, b.ips)
		k := week{ip: ip, n: int(t.Sub(g.start) / (7 * day))}
		s := senders[k]
		if s == nil {
			domain := word(g.rng) + "-" + g.newDomain()
			g.w.spf[domain] = &spfRecord{pass: []netip.Prefix{b.net}, other: auth.ResultFail}
			s = &sender{hosts: []host{{ip: ip, name: "mail." + domain}}, retry: postfixRetry{}}
			senders[k], domains[s] = s, domain
		}
		from := pick(g.rng, []string{"news", "offers", "info", "deals"}) + "@" + domains[s]
		g.add(Snowshoe, t, from, s.hosts[0].name, []string{g.mailboxes[g.rng.IntN(len(g.mailboxes))]}, s)
	}
}
