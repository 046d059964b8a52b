package main

import (
	"context"
	"errors"
	"hash/fnv"
	"net/netip"
	"strings"
	"time"

	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/envelope"
)

// host is one sending server as the receiving MTA sees it.
type host struct {
	ip   netip.Addr
	name string // the forward-confirmed host name, "" without FCrDNS
}

// sender is how one sender's MTA (or spamware) behaves: the servers its
// attempts come from and when it retries.
type sender struct {
	hosts []host
	// rotate: each retry comes from another server of hosts (a pool);
	// otherwise from the server of the first attempt.
	rotate bool
	retry  retrySchedule
}

// world is what DNS says: the SPF records of the sender domains and the
// clients a DNS blocklist lists. Everything in it comes from the model.
type world struct {
	spf    map[string]*spfRecord // by lower-case domain
	listed map[netip.Addr]bool   // by the DNS blocklist
}

// spfRecord is a domain's SPF policy, as its evaluation turns out.
type spfRecord struct {
	pass []netip.Prefix // the networks the record authorises
	// other is the result for any other client: fail (-all), softfail
	// (~all) or neutral (?all).
	other auth.Result
	// tempErr is the share of evaluations that fail on DNS (temperror).
	tempErr float64
}

func newWorld() world {
	return world{spf: make(map[string]*spfRecord), listed: make(map[netip.Addr]bool)}
}

// dnsblZone is the blocklist's zone as decision lines name it.
const dnsblZone = "dnsbl.test"

// spfChecker is a greylist.SPFChecker answering from the world. A
// temperror is drawn from a hash of the question and the time, so a run
// is reproducible and a retry may get another answer.
type spfChecker struct {
	w   *world
	now func() time.Time
}

func (c spfChecker) Check(_ context.Context, ip netip.Addr, helo string, from envelope.Address) auth.SPFResult {
	domain := from.LowerDomain()
	if from.IsNull() {
		domain = strings.ToLower(helo)
	}
	rec := c.w.spf[domain]
	switch {
	case domain == "" || rec == nil:
		return auth.SPFResult{Result: auth.ResultNone, Domain: domain}
	case rec.tempErr > 0 && chance(rec.tempErr, ip.String(), from.Raw(), c.now()):
		return auth.SPFResult{Result: auth.ResultTempError, Domain: domain, Err: errors.New("synthetic DNS timeout")}
	}
	for _, p := range rec.pass {
		if p.Contains(ip) {
			return auth.SPFResult{Result: auth.ResultPass, Domain: domain}
		}
	}
	return auth.SPFResult{Result: rec.other, Domain: domain}
}

// blocklist is a greylist.DNSList for the world's DNS blocklist; a small
// share of its lookups fail, as real ones time out now and then.
type blocklist struct {
	w       *world
	now     func() time.Time
	failure float64
}

func (b blocklist) Listed(_ context.Context, ip netip.Addr) (string, bool, error) {
	if b.failure > 0 && chance(b.failure, ip.String(), dnsblZone, b.now()) {
		return "", false, errors.New("synthetic DNS timeout")
	}
	if b.w.listed[ip] {
		return dnsblZone, true, nil
	}
	return "", false, nil
}

// chance reports, for a share p in [0, 1], whether the question (its
// parts and the time) falls in that share, by a hash: the same question
// at the same time always gets the same answer.
func chance(p float64, a, b string, t time.Time) bool {
	h := fnv.New64a()
	h.Write([]byte(a))
	h.Write([]byte{0})
	h.Write([]byte(b))
	var ts [8]byte
	n := t.UnixNano()
	for i := range ts {
		ts[i] = byte(n >> (8 * i))
	}
	h.Write(ts[:])
	return float64(h.Sum64()%1_000_000) < p*1_000_000
}
