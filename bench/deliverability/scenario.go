package main

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/milter-grey/milter-grey/auth"
)

// message is one message as its sender first tries it: a transaction with
// one or more recipients, retried by its sender while some are deferred.
type message struct {
	class  Class
	at     time.Time // the first attempt
	from   string    // the envelope sender
	helo   string
	rcpts  []string
	sender *sender
}

// scenario is a replayable stretch of a site's inbound mail: the messages,
// in order of first attempt, and the DNS they are judged by. Messages
// first tried in [from, to) are counted; the earlier ones only fill the
// store, as a site's history does.
type scenario struct {
	world    world
	msgs     []message
	from, to time.Time
	// seed seeds the per-message draws of the replay (retry waits, the
	// pool server a retry comes from), which every policy shares.
	seed uint64
}

// Sizes are the knobs of a generated scenario.
type Sizes struct {
	Messages  int           // messages first tried in the measured period
	Mailboxes int           // the site's mailboxes
	Period    time.Duration // the measured period
	Warmup    time.Duration // simulated before it and not counted
	Seed      uint64
}

// DefaultSizes: a month of about 100,000 messages to 1,000 mailboxes,
// after a month of history.
func DefaultSizes() Sizes {
	return Sizes{Messages: 100_000, Mailboxes: 1000, Period: 30 * day, Warmup: 30 * day, Seed: 1}
}

// epoch is when generated scenarios start (a fixed date keeps runs
// identical).
func epoch() time.Time { return time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC) }

// siteDomain is the receiving site's mail domain.
const siteDomain = "dest.test"

// generator builds a scenario from the sender models (senders.go).
type generator struct {
	rng        *rand.Rand
	sizes      Sizes
	start, end time.Time
	w          world
	msgs       []message

	used      map[netip.Addr]bool
	next16    int            // the next unused 10.N.0.0/16
	hosting   []netip.Prefix // hosting providers' /16s: small servers, snowshoe, hosted bots
	mailboxes []string
	popular   *rand.Zipf  // mailbox index: some mailboxes get much more mail
	ps        []*provider // the big mailbox providers
	serial    int         // of made-up domains
	// thirdParties are domains spam forges that belong to no sender of
	// the model.
	thirdParties []string
}

// generate builds the scenario of sizes: the same sizes always give the
// same scenario.
func generate(sizes Sizes) *scenario {
	rng := rand.New(rand.NewPCG(sizes.Seed, 0x6d696c746572))
	g := &generator{
		rng:   rng,
		sizes: sizes,
		start: epoch(),
		end:   epoch().Add(sizes.Warmup + sizes.Period),
		w:     newWorld(),
		used:  make(map[netip.Addr]bool),
	}
	for i := range sizes.Mailboxes {
		g.mailboxes = append(g.mailboxes, mailboxName(i))
	}
	g.popular = rand.NewZipf(rng, 1.2, 4, uint64(len(g.mailboxes)-1))
	for range 24 {
		g.hosting = append(g.hosting, g.net16())
	}
	// The site's own domain: its SPF record authorises its own servers
	// only, so spam forging it fails.
	g.w.spf[siteDomain] = &spfRecord{pass: []netip.Prefix{netip.MustParsePrefix("10.255.255.0/24")}, other: auth.ResultFail}

	g.ps = g.providers()
	g.bigProviders(g.count(BigProvider))
	g.espMail(g.count(Notification), g.count(OneTimeCode))
	g.selfHosted(g.count(SelfHosted))
	g.mailingLists(g.count(MailingList))
	g.residentialBots(g.count(ResidentialBot))
	g.hostedBots(g.count(HostedBot))
	g.dkimReplay(g.count(DKIMReplay))
	g.snowshoe(g.count(Snowshoe))

	slices.SortStableFunc(g.msgs, func(a, b message) int { return a.at.Compare(b.at) })
	return &scenario{
		world: g.w,
		msgs:  g.msgs,
		from:  g.start.Add(sizes.Warmup),
		to:    g.end,
		seed:  sizes.Seed,
	}
}

// count is the number of messages of class c over the whole run (warm-up
// included), at the rate of the measured period.
func (g *generator) count(c Class) int {
	perPeriod := c.share() * float64(g.sizes.Messages)
	return int(perPeriod * float64(g.sizes.Warmup+g.sizes.Period) / float64(g.sizes.Period))
}

// times returns n instants spread evenly at random over the run, in order.
func (g *generator) times(n int) []time.Time {
	span := int64(g.end.Sub(g.start))
	ts := make([]time.Time, n)
	for i := range ts {
		ts[i] = g.start.Add(time.Duration(g.rng.Int64N(span)))
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	return ts
}

// thread draws whom the next message of a class is between, the
// correspondence pattern of legitimate mail: with probability fresh a new
// correspondence starts (-1); otherwise an earlier message's correspondence
// is repeated, picked uniformly among the earlier messages, so that
// correspondences that were busy stay busy.
func (g *generator) thread(history []int, fresh float64) int {
	if len(history) == 0 || g.rng.Float64() < fresh {
		return -1
	}
	return history[g.rng.IntN(len(history))]
}

// mailbox draws a recipient of the site, the busy ones more often.
func (g *generator) mailbox() string { return g.mailboxes[g.popular.Uint64()] }

// mailboxes draws n distinct recipients of the site.
func (g *generator) someMailboxes(n int) []string {
	rcpts := make([]string, 0, n)
	for len(rcpts) < n {
		r := g.mailbox()
		if !slices.Contains(rcpts, r) {
			rcpts = append(rcpts, r)
		}
	}
	return rcpts
}

// newDomain makes up a registered domain that no other sender of the run
// has.
func (g *generator) newDomain() string {
	g.serial++
	return fmt.Sprintf("%s%d.example", word(g.rng), g.serial)
}

// net16 returns an unused 10.N.0.0/16 for one sender's infrastructure.
func (g *generator) net16() netip.Prefix {
	p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(g.next16), 0, 0}), 16)
	g.next16++
	if g.next16 > 254 { // 10.255/16 is the site's
		panic("generator: out of /16 networks") // a fixed number of pools: a bug, not input
	}
	return p
}

// addrIn returns an unused address of p, not its network or broadcast
// address.
func (g *generator) addrIn(p netip.Prefix) netip.Addr {
	base := p.Masked().Addr().As4()
	span := uint32(1) << (32 - p.Bits())
	b := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	for {
		n := b + 1 + g.rng.Uint32N(span-2)
		if n&0xff == 0 || n&0xff == 0xff {
			continue
		}
		ip := netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
		if !g.used[ip] {
			g.used[ip] = true
			return ip
		}
	}
}

// net24In returns a random /24 of p.
func (g *generator) net24In(p netip.Prefix) netip.Prefix {
	a := p.Masked().Addr().As4()
	if p.Bits() <= 16 {
		a[2] = byte(g.rng.IntN(256))
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{a[0], a[1], a[2], 0}), 24)
}

// pool builds the servers of a large sender: perNet servers in each of n24
// /24s of each of n16 fresh /16s, named by name. It returns the servers and
// the /16s, which its SPF record authorises.
func (g *generator) pool(n16, n24, perNet int, name func(i int, ip netip.Addr) string) ([]host, []netip.Prefix) {
	var hosts []host
	var nets []netip.Prefix
	for range n16 {
		p16 := g.net16()
		nets = append(nets, p16)
		seen := map[netip.Prefix]bool{}
		for len(seen) < n24 {
			p24 := g.net24In(p16)
			if seen[p24] {
				continue
			}
			seen[p24] = true
			for range perNet {
				ip := g.addrIn(p24)
				hosts = append(hosts, host{ip: ip, name: name(len(hosts), ip)})
			}
		}
	}
	return hosts, nets
}

// add appends a message.
func (g *generator) add(c Class, at time.Time, from, helo string, rcpts []string, s *sender) {
	g.msgs = append(g.msgs, message{class: c, at: at, from: from, helo: helo, rcpts: rcpts, sender: s})
}

// pick returns a random element of xs.
func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

// zipfPicker draws indexes below n, low ones much more often (the popular
// services).
type zipfPicker struct{ z *rand.Zipf }

func newZipfPicker(rng *rand.Rand, n int) zipfPicker {
	return zipfPicker{rand.NewZipf(rng, 1.1, 2, uint64(n-1))}
}

func (p zipfPicker) next() int { return int(p.z.Uint64()) }

// weightedPicker draws indexes in proportion to weights.
type weightedPicker struct{ cum []float64 }

func newWeightedPicker(weights []float64) weightedPicker {
	cum := make([]float64, len(weights))
	sum := 0.0
	for i, w := range weights {
		sum += w
		cum[i] = sum
	}
	return weightedPicker{cum}
}

func (p weightedPicker) pick(rng *rand.Rand) int {
	r := rng.Float64() * p.cum[len(p.cum)-1]
	i, _ := slices.BinarySearch(p.cum, r)
	return min(i, len(p.cum)-1)
}
