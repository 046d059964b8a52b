package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/testutil/testdns"
)

// Selective greylisting (greylist = "suspicious") and learned domain
// trust, end to end: Postfix and the daemon, clients presented with
// XCLIENT (address, and the forward-confirmed name Postfix hands to the
// milter), and a DNS server on loopback that publishes
//
//	good.e2e.test   SPF v=spf1 ip4:198.51.100.0/24 ip4:203.0.113.0/24 -all
//	bl.e2e.test     a DNS blocklist listing 198.51.100.13
//	wl.e2e.test     a DNS allowlist listing 192.0.2.14
const (
	selCleanIP    = "198.51.100.10" // mx.good.e2e.test, in the SPF record
	selNoNameIP   = "198.51.100.11"
	selDynamicIP  = "198.51.100.12"
	selListedIP   = "198.51.100.13" // on the blocklist
	selAllowedIP  = "192.0.2.14"    // on the allowlist, no name
	selOtherNetIP = "203.0.113.21"  // the SPF record's other /24
	selForgerIP   = "192.0.2.99"    // in no record
	selRcpt       = "user@dest.test"
)

type selectiveSite struct {
	dns *testdns.Server
	d   *daemon
	pf  *postfix
}

func startSelectiveSite(t *testing.T, extra map[string]string) *selectiveSite {
	t.Helper()
	requireRoot(t)
	srv := testdns.Start(t)
	srv.SetTXT("good.e2e.test", "v=spf1 ip4:198.51.100.0/24 ip4:203.0.113.0/24 -all")
	srv.SetA("13.100.51.198.bl.e2e.test", "127.0.0.2")
	srv.SetA("14.2.0.192.wl.e2e.test", "127.0.0.2")
	cfg := map[string]string{
		"dns_server":  strconv.Quote(srv.Addr()),
		"dns_timeout": `"1s"`,
		"dnsbl_zones": `["bl.e2e.test"]`,
		"dnswl_zones": `["wl.e2e.test"]`,
	}
	for k, v := range extra {
		cfg[k] = v
	}
	d := startDaemon(t, greyConfig(cfg))
	return &selectiveSite{dns: srv, d: d, pf: startPostfix(t, d.Addr, nil)}
}

// send sends a message from client (its forward-confirmed name, or "" for
// none) and returns swaks' output and exit code.
func (s *selectiveSite) send(t *testing.T, client, name, from, token string) (string, int) {
	t.Helper()
	args := []string{"--xclient-addr", client}
	if name != "" {
		args = append(args, "--xclient-name", name)
	}
	args = append(args,
		"--helo", "mail.good.e2e.test",
		"--from", from,
		"--to", selRcpt,
		"--header", "Subject: e2e "+token,
		"--body", "e2e message "+token)
	return swaks(t, s.pf.Port(), args...)
}

func goodSender() string { return "news-" + uniqueName() + "@good.e2e.test" }

// With greylist = "suspicious", a new triplet waits only when a trigger
// holds; the others pass at once and are recorded.
func TestSuspiciousScopeThroughPostfix(t *testing.T) {
	t.Parallel()
	s := startSelectiveSite(t, map[string]string{"greylist": `"suspicious"`})

	t.Run("FCrDNS, SPF pass, not listed: accepted at once and recorded", func(t *testing.T) {
		from := goodSender()
		out, code := s.send(t, selCleanIP, "mx.good.e2e.test", from, uniqueName())
		expectAccepted(t, out, code, selRcpt)
		s.d.WaitLog(t, 5*time.Second, "action=pass", "reason=not-suspicious", from)
		// Recorded as passed: its next message is known.
		out, code = s.send(t, selCleanIP, "mx.good.e2e.test", from, uniqueName())
		expectAccepted(t, out, code, selRcpt)
		s.d.WaitLog(t, 5*time.Second, "action=pass", "reason=known", from)
	})
	t.Run("no FCrDNS: greylisted", func(t *testing.T) {
		from := goodSender()
		out, code := s.send(t, selNoNameIP, "", from, uniqueName())
		expectGreylisted(t, out, code, selRcpt)
		s.d.WaitLog(t, 5*time.Second, "action=greylist", "reason=new", "trigger=no-fcrdns", from)
	})
	t.Run("a dynamic-looking name: greylisted", func(t *testing.T) {
		from := goodSender()
		out, code := s.send(t, selDynamicIP, "dyn-198-51-100-12.pool.isp.test", from, uniqueName())
		expectGreylisted(t, out, code, selRcpt)
		s.d.WaitLog(t, 5*time.Second, "action=greylist", "trigger=dynamic-name", from)
	})
	t.Run("on the blocklist, with FCrDNS and SPF pass: greylisted", func(t *testing.T) {
		from := goodSender()
		out, code := s.send(t, selListedIP, "mx2.good.e2e.test", from, uniqueName())
		expectGreylisted(t, out, code, selRcpt)
		s.d.WaitLog(t, 5*time.Second, "action=greylist", "trigger=dnsbl:bl.e2e.test", "spf=pass", from)
	})
	t.Run("on the allowlist, without FCrDNS: accepted", func(t *testing.T) {
		from := "someone-" + uniqueName() + "@elsewhere.test"
		out, code := s.send(t, selAllowedIP, "", from, uniqueName())
		expectAccepted(t, out, code, selRcpt)
		s.d.WaitLog(t, 5*time.Second, "action=pass", "reason=dnswl", "match=wl.e2e.test", from)
	})
	t.Run("a token sender retried with a new token after the delay: accepted", func(t *testing.T) {
		// Amazon SES's shape: a message id and a UUID before the domain.
		first := "0102018c3b1e5a7f-3c8e1b2a-9d4e-4f1a-8b7c-2e5d6f7a8b9c-000000@ses.e2e.test"
		retry := "010201a7d9e3b6c0-9a8b7c6d-1e2f-4a3b-9c8d-7e6f5a4b3c2d-000000@ses.e2e.test"
		out, code := s.send(t, selNoNameIP, "", first, uniqueName())
		expectGreylisted(t, out, code, selRcpt)
		time.Sleep(afterDelay)
		out, code = s.send(t, selNoNameIP, "", retry, uniqueName())
		expectAccepted(t, out, code, selRcpt)
		s.d.WaitLog(t, 5*time.Second, "action=pass", "reason=retried", retry)
	})
	// Last: it breaks DNS for the site.
	t.Run("DNS down: greylisted as everyone, within dns_timeout", func(t *testing.T) {
		s.dns.SetMode(testdns.Drop)
		from := goodSender()
		start := time.Now()
		out, code := s.send(t, selCleanIP, "mx.good.e2e.test", from, uniqueName())
		took := time.Since(start)
		expectGreylisted(t, out, code, selRcpt)
		s.d.WaitLog(t, 5*time.Second, "action=greylist", "trigger=dns-failure", from)
		// The DNS lists and SPF each wait at most dns_timeout (1s); the
		// whole session stays far from Postfix's milter timeouts.
		if took > 8*time.Second {
			t.Errorf("the session took %v with DNS down", took)
		}
	})
}

// Learned domain trust: a domain proven by SPF that has retried to this
// site passes at once from any server its record authorises; nothing else
// gains from it.
func TestDomainTrustThroughPostfix(t *testing.T) {
	t.Parallel()
	// Under greylist = "everyone" every new triplet waits, so what trust
	// changes shows (under "suspicious" a proven domain's mail servers
	// pass anyway; trust then spares its servers that trip a trigger).
	s := startSelectiveSite(t, map[string]string{"greylist": `"everyone"`,
		"admin_listen": strconv.Quote("unix:" + adminSocket(t))})
	pub := dkimPublicKey(t)
	s.dns.SetTXT("sel._domainkey.good.e2e.test", "v=DKIM1; k=rsa; p="+pub)

	// Not trusted yet: a sender of the domain from its other network waits.
	out, code := s.send(t, selOtherNetIP, "mx3.good.e2e.test", goodSender(), uniqueName())
	expectGreylisted(t, out, code, selRcpt)

	// One pass (domain_trust's default): a new triplet, retried after the
	// delay, from one server of the record.
	from := goodSender()
	out, code = s.send(t, selCleanIP, "mx.good.e2e.test", from, uniqueName())
	expectGreylisted(t, out, code, selRcpt)
	time.Sleep(afterDelay)
	out, code = s.send(t, selCleanIP, "mx.good.e2e.test", from, uniqueName())
	expectAccepted(t, out, code, selRcpt)
	if got := s.d.mustAdmin(t, nil, "show", "d:good.e2e.test"); !strings.Contains(got, "trusted") {
		t.Fatalf("after the pass: %s", got)
	}

	t.Run("a new sender of the domain from its other network passes at once", func(t *testing.T) {
		from := goodSender()
		out, code := s.send(t, selOtherNetIP, "mx3.good.e2e.test", from, uniqueName())
		expectAccepted(t, out, code, selRcpt)
		s.d.WaitLog(t, 5*time.Second, "action=pass", "reason=trusted-domain", "match=good.e2e.test", "spf=pass", from)
	})
	t.Run("a forged sender of the domain is greylisted", func(t *testing.T) {
		from := goodSender()
		out, code := s.send(t, selForgerIP, "mx.forger.test", from, uniqueName())
		expectGreylisted(t, out, code, selRcpt)
		s.d.WaitLog(t, 5*time.Second, "action=greylist", "reason=new", "spf=fail", from)
	})
	t.Run("a replayed DKIM-signed message of the domain is greylisted", func(t *testing.T) {
		from := goodSender()
		out, code := sendSignedMessage(t, s.pf.Port(), selForgerIP, from, selRcpt, "good.e2e.test", uniqueName())
		expectGreylisted(t, out, code, selRcpt)
		s.d.WaitLog(t, 5*time.Second, "action=greylist", "reason=new", from)
	})
	t.Run("after delete, the domain's next new triplet is greylisted", func(t *testing.T) {
		s.d.mustAdmin(t, nil, "delete", "d:good.e2e.test")
		from := goodSender()
		out, code := s.send(t, selOtherNetIP, "mx3.good.e2e.test", from, uniqueName())
		expectGreylisted(t, out, code, selRcpt)
	})
}

// Under the defaults (greylist = "suspicious", domain_trust = 1), trust is
// what spares a proven domain's servers that trip a trigger: once one of
// them passed after the delay, another one without a forward-confirmed
// name passes at once, from the record's other /24; one with a dynamic
// name does not.
func TestDomainTrustUnderTheDefaultsThroughPostfix(t *testing.T) {
	t.Parallel()
	s := startSelectiveSite(t, nil)

	from := goodSender()
	out, code := s.send(t, selNoNameIP, "", from, uniqueName())
	expectGreylisted(t, out, code, selRcpt)
	s.d.WaitLog(t, 5*time.Second, "action=greylist", "trigger=no-fcrdns", from)
	// Its other server, not trusted yet, waits too.
	other := goodSender()
	out, code = s.send(t, "203.0.113.22", "", other, uniqueName())
	expectGreylisted(t, out, code, selRcpt)

	time.Sleep(afterDelay)
	out, code = s.send(t, selNoNameIP, "", from, uniqueName())
	expectAccepted(t, out, code, selRcpt)
	s.d.WaitLog(t, 5*time.Second, "action=pass", "reason=retried", from)

	next := goodSender()
	out, code = s.send(t, "203.0.113.23", "", next, uniqueName())
	expectAccepted(t, out, code, selRcpt)
	s.d.WaitLog(t, 5*time.Second, "action=pass", "reason=trusted-domain", "match=good.e2e.test", next)

	// A client with a dynamic name gets nothing from the trust, even where
	// the domain's record authorises it.
	dyn := goodSender()
	out, code = s.send(t, selDynamicIP, "dyn-198-51-100-12.pool.isp.test", dyn, uniqueName())
	expectGreylisted(t, out, code, selRcpt)
	s.d.WaitLog(t, 5*time.Second, "action=greylist", "trigger=dynamic-name", dyn)
}
