package main

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/milter-grey/milter-grey/auth"
)

// The legitimate senders. The facts each model rests on are in the
// package comment; the shares of new correspondences are assumptions.

const (
	// providerFresh, selfHostedFresh: the share of person-to-person
	// messages that start a new correspondence (a new sender, or a known
	// sender writing to a new recipient).
	providerFresh   = 0.12
	selfHostedFresh = 0.12
	// notificationFresh: the share of notifications from a service the
	// recipient has not had mail from recently; otpFresh, the same for
	// one-time codes, many of which come with a sign-up.
	notificationFresh = 0.06
	otpFresh          = 0.35
)

// provider is a big mailbox provider: its consumer domain and the business
// domains it hosts share one pool of servers.
type provider struct {
	share  float64
	domain string // the consumer domain
	s      *sender
	nets   []netip.Prefix
	hosted []string // business domains sending through it
}

// providers builds Gmail-, Microsoft- and Yahoo-like pools.
func (g *generator) providers() []*provider {
	google, gnets := g.pool(6, 32, 4, func(i int, _ netip.Addr) string {
		return fmt.Sprintf("mail-%s-f%d.google.com", pick(g.rng, []string{"sor", "wr", "ej", "pf", "qt", "yb"}), i%256)
	})
	microsoft, mnets := g.pool(6, 64, 4, func(i int, _ netip.Addr) string {
		return fmt.Sprintf("mail-%s%d.outbound.protection.outlook.com", pick(g.rng, []string{"am6eur05on", "db8eur06on", "vi1eur04on", "he1eur02on"}), 2000+i)
	})
	yahoo, ynets := g.pool(3, 16, 4, func(i int, _ netip.Addr) string {
		return fmt.Sprintf("sonic%d-%d.consmr.mail.%s.yahoo.com", 300+i%50, i%40, pick(g.rng, []string{"gq1", "bf2", "ne1", "ir2"}))
	})
	retry := poolRetry{min: time.Minute, max: 15 * time.Minute}
	ps := []*provider{
		{share: 0.50, domain: "gmail.com", s: &sender{hosts: google, rotate: true, retry: retry}, nets: gnets},
		{share: 0.35, domain: "outlook.com", s: &sender{hosts: microsoft, rotate: true, retry: retry}, nets: mnets},
		{share: 0.15, domain: "yahoo.com", s: &sender{hosts: yahoo, rotate: true, retry: retry}, nets: ynets},
	}
	for _, p := range ps {
		// The consumer domains end their records in ~all or -all.
		g.w.spf[p.domain] = &spfRecord{pass: p.nets, other: pick(g.rng, []auth.Result{auth.ResultSoftFail, auth.ResultFail})}
	}
	return ps
}

// bigProviders: people writing from a big provider, from its consumer
// domain or from a business domain it hosts.
func (g *generator) bigProviders(n int) {
	type thread struct {
		p     *provider
		from  string
		rcpts []string
	}
	var threads []thread
	var history []int
	senders := map[*provider][]string{}
	for _, t := range g.times(n) {
		i := g.thread(history, providerFresh)
		if i < 0 {
			p := g.provider()
			from := ""
			if known := senders[p]; len(known) > 0 && g.rng.Float64() < 0.3 {
				from = pick(g.rng, known) // a known sender, a new recipient
			} else {
				from = person(g.rng) + "@" + g.providerDomain(p)
				senders[p] = append(senders[p], from)
			}
			i = len(threads)
			threads = append(threads, thread{p: p, from: from, rcpts: g.someMailboxes(g.recipients())})
		}
		history = append(history, i)
		th := threads[i]
		g.add(BigProvider, t, th.from, domainOf(th.from), th.rcpts, th.p.s)
	}
}

// provider draws a provider by market share.
func (g *generator) provider() *provider {
	r := g.rng.Float64()
	for _, p := range g.ps {
		if r < p.share {
			return p
		}
		r -= p.share
	}
	return g.ps[len(g.ps)-1]
}

// providerDomain draws the domain of a new sender of p: its consumer
// domain, or a business domain it hosts (often a new one).
func (g *generator) providerDomain(p *provider) string {
	if g.rng.Float64() < 0.4 {
		return p.domain
	}
	if len(p.hosted) > 0 && g.rng.Float64() < 0.7 {
		return pick(g.rng, p.hosted)
	}
	d := g.newDomain()
	p.hosted = append(p.hosted, d)
	g.w.spf[d] = &spfRecord{pass: p.nets, other: pick(g.rng, []auth.Result{auth.ResultSoftFail, auth.ResultFail})}
	return d
}

// recipients draws the number of local recipients of a person's message.
func (g *generator) recipients() int {
	if g.rng.Float64() < 0.8 {
		return 1
	}
	return 2 + g.rng.IntN(2)
}

// service is a company sending notifications and one-time codes through
// an ESP; from makes up a message's envelope sender.
type service struct {
	s    *sender
	from func(rcpt string) string
}

// espMail: notifications and one-time codes from services sending through
// ESPs, most with a per-message token in the envelope sender.
func (g *generator) espMail(notifications, codes int) {
	services := g.services(600)
	popular := newZipfPicker(g.rng, len(services))
	for _, c := range []struct {
		class Class
		n     int
		fresh float64
	}{{Notification, notifications, notificationFresh}, {OneTimeCode, codes, otpFresh}} {
		type thread struct {
			svc  *service
			rcpt string
		}
		var threads []thread
		var history []int
		for _, t := range g.times(c.n) {
			i := g.thread(history, c.fresh)
			if i < 0 {
				i = len(threads)
				threads = append(threads, thread{svc: services[popular.next()], rcpt: g.mailbox()})
			}
			history = append(history, i)
			th := threads[i]
			from := th.svc.from(th.rcpt)
			g.add(c.class, t, from, domainOf(from), []string{th.rcpt}, th.svc.s)
		}
	}
}

// services builds n services on Amazon SES-, SendGrid-, Mailchimp-,
// Postmark- and Google-like senders.
func (g *generator) services(n int) []*service {
	retry := poolRetry{min: time.Minute, max: 15 * time.Minute}
	ses, sesNets := g.pool(6, 32, 4, func(i int, _ netip.Addr) string {
		return fmt.Sprintf("a%d-%d.smtp-out.amazonses.com", 8+i%40, i%256)
	})
	sesSender := &sender{hosts: ses, rotate: true, retry: retry}
	for _, region := range []string{"us-east-1", "us-west-2", "eu-west-1"} {
		g.w.spf[region+".amazonses.com"] = &spfRecord{pass: sesNets, other: auth.ResultFail}
	}
	sendgrid, sgNets := g.pool(4, 48, 4, func(i int, _ netip.Addr) string {
		return fmt.Sprintf("o%d.sg%d.sendgrid.net", 1+i%16, i)
	})
	sgSender := &sender{hosts: sendgrid, rotate: true, retry: retry}
	g.w.spf["sendgrid.net"] = &spfRecord{pass: sgNets, other: auth.ResultSoftFail}
	mailchimp, mcNets := g.pool(4, 16, 8, func(i int, _ netip.Addr) string {
		return fmt.Sprintf("mail%d.atl%d.mcdlv.net", i%256, 1+i/256)
	})
	postmark, pmNets := g.pool(2, 8, 8, func(i int, _ netip.Addr) string {
		return fmt.Sprintf("mta%d.mtasv.net", i)
	})
	pmSender := &sender{hosts: postmark, rotate: true, retry: retry}
	google := g.ps[0]
	for _, product := range []string{"gaia", "calendar-server", "doclist", "scoutcamp"} {
		g.w.spf[product+".bounces.google.com"] = &spfRecord{pass: google.nets, other: auth.ResultSoftFail}
	}

	var svcs []*service
	for range n {
		brand := g.newDomain()
		rng := g.rng
		r := rng.Float64()
		switch {
		case r < 0.35: // Amazon SES: its regional domain, or a custom MAIL FROM domain
			domain := pick(rng, []string{"us-east-1", "us-west-2", "eu-west-1"}) + ".amazonses.com"
			if rng.Float64() < 0.4 {
				domain = "bounce." + brand
				g.w.spf[domain] = &spfRecord{pass: sesNets, other: auth.ResultFail}
			}
			svcs = append(svcs, &service{s: sesSender, from: func(string) string {
				return fmt.Sprintf("%s-%s-%s-%s-%s-%s-000000@%s", hexToken(rng, 16), hexToken(rng, 8),
					hexToken(rng, 4), hexToken(rng, 4), hexToken(rng, 4), hexToken(rng, 12), domain)
			}})
		case r < 0.60: // SendGrid: its domain, or the customer's emNNNN subdomain
			domain := "sendgrid.net"
			if rng.Float64() < 0.5 {
				domain = fmt.Sprintf("em%d.%s", 100+rng.IntN(9900), brand)
				g.w.spf[domain] = &spfRecord{pass: sgNets, other: auth.ResultSoftFail}
			}
			uid := 10000 + rng.IntN(90000)
			svcs = append(svcs, &service{s: sgSender, from: func(rcpt string) string {
				return fmt.Sprintf("bounces+%d-%s-%s@%s", uid, hexToken(rng, 4), verp(rcpt), domain)
			}})
		case r < 0.72: // Mailchimp: the sending server group's domain
			first := rng.IntN(len(mailchimp)/8) * 8
			group := mailchimp[first : first+8]
			domain := fmt.Sprintf("mail%d.suw%d.mcsv.net", rng.IntN(256), rng.IntN(100))
			g.w.spf[domain] = &spfRecord{pass: mcNets, other: auth.ResultSoftFail}
			dc, acct := 1+rng.IntN(20), 1000000+rng.IntN(9000000)
			svcs = append(svcs, &service{s: &sender{hosts: group, rotate: true, retry: retry}, from: func(rcpt string) string {
				return fmt.Sprintf("bounce-mc.us%d_%d.%d-%s@%s", dc, acct, rng.IntN(10000000), verp(rcpt), domain)
			}})
		case r < 0.92: // Postmark: one fixed address at the customer's bounce domain
			domain := "pm-bounces." + brand
			g.w.spf[domain] = &spfRecord{pass: pmNets, other: auth.ResultSoftFail}
			svcs = append(svcs, &service{s: pmSender, from: func(string) string { return "pm_bounces@" + domain }})
		default: // Google's own services: a random token at a bounces subdomain
			domain := pick(rng, []string{"gaia", "calendar-server", "doclist", "scoutcamp"}) + ".bounces.google.com"
			svcs = append(svcs, &service{s: google.s, from: func(string) string {
				return "3" + alnum(rng, 27) + "@" + domain
			}})
		}
	}
	return svcs
}

// verp encodes a recipient in a local part as VERP senders do
// (user@dest.test: user=dest.test).
func verp(rcpt string) string { return strings.Replace(rcpt, "@", "=", 1) }

// selfHosted: people writing from small organisations running their own
// MTA on one address.
func (g *generator) selfHosted(n int) {
	type thread struct {
		o     *org
		from  string
		rcpts []string
	}
	var orgs []*org
	var threads []thread
	var history []int
	for _, t := range g.times(n) {
		i := g.thread(history, selfHostedFresh)
		if i < 0 {
			var o *org
			if len(orgs) == 0 || g.rng.Float64() < 0.35 {
				o = g.newOrg()
				orgs = append(orgs, o)
			} else {
				o = pick(g.rng, orgs)
			}
			from := ""
			if len(o.users) > 0 && g.rng.Float64() < 0.4 {
				from = pick(g.rng, o.users)
			} else {
				from = person(g.rng) + "@" + o.domain
				o.users = append(o.users, from)
			}
			i = len(threads)
			threads = append(threads, thread{o: o, from: from, rcpts: g.someMailboxes(g.recipients())})
		}
		history = append(history, i)
		th := threads[i]
		g.add(SelfHosted, t, th.from, "mail."+th.o.domain, th.rcpts, th.o.s)
	}
}

// org is a small organisation with its own mail server.
type org struct {
	domain string
	s      *sender
	users  []string // its people who wrote to the site
}

// newOrg makes up a small organisation: one server at a hosting provider
// or on a business line, mostly with its own name, SPF and a queue.
func (g *generator) newOrg() *org {
	domain := g.newDomain()
	ip := g.addrIn(g.net24In(pick(g.rng, g.hosting)))
	h := host{ip: ip}
	switch r := g.rng.Float64(); {
	case r < 0.80:
		h.name = "mail." + domain
	case r < 0.90:
		h.name = staticName(g.rng, ip) // a business line's generic name
	}
	switch r := g.rng.Float64(); {
	case r < 0.80:
		g.w.spf[domain] = &spfRecord{pass: []netip.Prefix{netip.PrefixFrom(ip, 32)},
			other: pick(g.rng, []auth.Result{auth.ResultSoftFail, auth.ResultFail, auth.ResultNeutral}), tempErr: 0.005}
	case r < 0.95: // no SPF record
	default: // a record that forgets the server: softfail
		g.w.spf[domain] = &spfRecord{other: auth.ResultSoftFail, tempErr: 0.005}
	}
	if g.rng.Float64() < 0.01 {
		g.w.listed[ip] = true // a blocklist's false positive
	}
	return &org{domain: domain, s: &sender{hosts: []host{h}, retry: g.queue()}}
}

// queue draws the MTA of a small server: Postfix, Exim or Exchange.
func (g *generator) queue() retrySchedule {
	switch r := g.rng.Float64(); {
	case r < 0.70:
		return postfixRetry{}
	case r < 0.95:
		return eximRetry{}
	default:
		return exchangeRetry{}
	}
}

// mailingLists: list servers sending each post to the site's subscribers,
// most with a VERP envelope sender per recipient (one transaction each),
// some with one sender for all (one transaction).
func (g *generator) mailingLists(n int) {
	type subscriber struct {
		rcpt  string
		since time.Time
	}
	type list struct {
		s    *sender
		from func(rcpt string) string // "" rcpt: the sender without VERP
		verp bool
		subs []subscriber
	}
	var lists []*list
	weights := make([]float64, 40)
	for i := range weights {
		proj := g.newDomain()
		name := word(g.rng)
		ip := g.addrIn(g.net24In(pick(g.rng, g.hosting)))
		server := "lists." + proj
		g.w.spf[server] = &spfRecord{pass: []netip.Prefix{netip.PrefixFrom(ip, 32)}, other: auth.ResultFail}
		l := &list{s: &sender{hosts: []host{{ip: ip, name: server}}, retry: g.queue()}, verp: true}
		rng := g.rng
		switch r := rng.Float64(); {
		case r < 0.45: // Mailman
			l.from = func(rcpt string) string { return name + "-bounces+" + verp(rcpt) + "@" + server }
		case r < 0.75: // ezmlm
			l.from = func(rcpt string) string {
				return fmt.Sprintf("%s-return-%d-%s@%s", name, rng.IntN(100000), verp(rcpt), server)
			}
		default:
			l.verp = false
			l.from = func(string) string { return name + "-owner@" + server }
		}
		subs := 1 + int(g.rng.ExpFloat64()*8)
		for _, rcpt := range g.someMailboxes(min(subs, len(g.mailboxes))) {
			since := g.start
			if g.rng.Float64() < 0.25 {
				since = g.start.Add(time.Duration(g.rng.Int64N(int64(g.end.Sub(g.start)))))
			}
			l.subs = append(l.subs, subscriber{rcpt: rcpt, since: since})
		}
		lists = append(lists, l)
		weights[i] = g.rng.ExpFloat64()
	}
	which := newWeightedPicker(weights)
	for sent := 0; sent < n; {
		t := g.start.Add(time.Duration(g.rng.Int64N(int64(g.end.Sub(g.start)))))
		l := lists[which.pick(g.rng)]
		var rcpts []string
		for _, s := range l.subs {
			if !s.since.After(t) {
				rcpts = append(rcpts, s.rcpt)
			}
		}
		if len(rcpts) == 0 {
			continue
		}
		if !l.verp {
			g.add(MailingList, t, l.from(""), domainOf(l.from("")), rcpts, l.s)
			sent++
			continue
		}
		for _, r := range rcpts {
			from := l.from(r)
			g.add(MailingList, t, from, domainOf(from), []string{r}, l.s)
			sent++
		}
	}
}

// domainOf is the domain of an address.
func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return addr
}
