package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/milter-grey/milter-grey/testutil/testdns"
)

// The authenticated sender bypass, end to end: Postfix and the daemon, with
// the admin's nogreylist-senders file verbatim ("example.com OK") and a DNS
// server on loopback that publishes
//
//	example.com  SPF v=spf1 ip4:203.0.113.0/24 -all, DKIM key sel._domainkey
//	example.net  SPF v=spf1 ip4:198.51.100.0/24 ip4:203.0.113.0/24 -all (a pool of two networks)
//	attacker.test DKIM key sel._domainkey
//
// Clients are presented to Postfix with XCLIENT.
const (
	bypassListSource = "../testdata/access/nogreylist-senders"
	authorisedIP     = "203.0.113.7" // in example.com's SPF record
	forgerIP         = "192.0.2.200" // in no record of example.com
	poolIP1          = "198.51.100.10"
	poolIP2          = "203.0.113.50" // the same record as poolIP1, another /24
	bypassRcpt       = "user@dest.test"
)

var bypassDKIMKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// bypassSite is one MX: a DNS server, the daemon with the bypass list, and
// Postfix in front of it.
type bypassSite struct {
	dns  *testdns.Server
	d    *daemon
	pf   *postfix
	list string // the bypass file the daemon reads: a copy of the admin's
}

// startBypassSite starts a site; extra sets or overrides daemon settings.
func startBypassSite(t *testing.T, extra map[string]string) *bypassSite {
	t.Helper()
	requireRoot(t) // before starting anything
	srv := testdns.Start(t)
	srv.SetTXT("example.com", "v=spf1 ip4:203.0.113.0/24 -all")
	srv.SetTXT("example.net", "v=spf1 ip4:198.51.100.0/24 ip4:203.0.113.0/24 -all")
	for _, d := range []string{"example.com", "attacker.test"} {
		srv.SetTXT("sel._domainkey."+d, "v=DKIM1; k=rsa; p="+dkimPublicKey(t))
	}

	content, err := os.ReadFile(bypassListSource)
	if err != nil {
		t.Fatal(err)
	}
	list := filepath.Join(t.TempDir(), "nogreylist-senders")
	must(t, os.WriteFile(list, content, 0o644))

	cfg := map[string]string{
		"dns_server":          strconv.Quote(srv.Addr()),
		"dns_timeout":         `"1s"`,
		"bypass_sender_files": "[" + strconv.Quote(list) + "]",
	}
	for k, v := range extra {
		cfg[k] = v
	}
	d := startDaemon(t, greyConfig(cfg))
	return &bypassSite{dns: srv, d: d, pf: startPostfix(t, d.Addr, nil), list: list}
}

func listedFrom() string { return "alice-" + uniqueName() + "@example.com" }

// send sends swaks' default message with token in it from client.
func (s *bypassSite) send(t *testing.T, client, from, token string) (string, int) {
	t.Helper()
	return sendMail(t, s.pf, client, from, bypassRcpt, token)
}

// sendSigned sends a message signed by domain d from client to the site's
// recipient (see sendSignedMessage).
func (s *bypassSite) sendSigned(t *testing.T, client, from, d, token string) (string, int) {
	t.Helper()
	return sendSignedMessage(t, s.pf.Port(), client, from, bypassRcpt, d, token)
}

// dkimPublicKey is the p= of the tests' DKIM key, for a sel._domainkey
// record.
func dkimPublicKey(t *testing.T) string {
	t.Helper()
	pub, err := x509.MarshalPKIXPublicKey(&bypassDKIMKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(pub)
}

// sendSignedMessage sends through the Postfix on port a message from
// client, signed by domain d with selector sel (c=simple/simple, every
// header field signed, one of them written without a space after the
// colon), with token in its subject and body.
func sendSignedMessage(t *testing.T, port int, client, from, to, d, token string) (string, int) {
	t.Helper()
	msg := "From: Alice <" + from + ">\r\n" +
		"To: <" + to + ">\r\n" +
		"Subject: e2e bypass " + token + ",\r\n" +
		"\tsigned by " + d + "\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"Message-ID: <" + token + "@example.com>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=us-ascii\r\n" +
		"X-Tight:no space after this colon\r\n" +
		"\r\n" +
		"e2e message " + token + "\r\n" +
		"\r\n" +
		"A second paragraph, so the body is more than one line.\r\n"
	var b bytes.Buffer
	err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{
		Domain:                 d,
		Selector:               "sel",
		Signer:                 bypassDKIMKey(),
		HeaderCanonicalization: dkim.CanonicalizationSimple,
		BodyCanonicalization:   dkim.CanonicalizationSimple,
	})
	if err != nil {
		t.Fatalf("dkim.Sign: %v", err)
	}
	file := filepath.Join(t.TempDir(), "signed.eml")
	must(t, os.WriteFile(file, b.Bytes(), 0o644))
	return swaks(t, port,
		"--xclient-addr", client,
		"--helo", "mail.sender.test",
		"--from", from,
		"--to", to,
		"--data", file)
}

// verifyDelivered checks that the delivered copy still carries a valid
// signature by d: neither Postfix nor the milter touched the signed fields.
func (s *bypassSite) verifyDelivered(t *testing.T, msg, d string) {
	t.Helper()
	raw := strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n") // maildir files end lines in LF
	r := s.dns.Resolver()
	verifs, err := dkim.VerifyWithOptions(strings.NewReader(raw), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return r.LookupTXT(ctx, name+".")
		},
	})
	if err != nil {
		t.Fatalf("verify delivered copy: %v", err)
	}
	if len(verifs) != 1 || verifs[0].Err != nil || verifs[0].Domain != d {
		for _, v := range verifs {
			t.Logf("signature d=%s: %v", v.Domain, v.Err)
		}
		t.Fatalf("delivered copy: %d signatures, want one valid by d=%s:\n%s", len(verifs), d, msg)
	}
}

// expectRefusedAfterData checks the designed answer to a message whose
// recipient waited for end of message: 250 at RCPT TO, then the greylisting
// reply after the content.
func expectRefusedAfterData(t *testing.T, out string, code int) {
	t.Helper()
	if r := rcptReplies(out)[bypassRcpt]; !hasCode(r, "250") {
		t.Errorf("reply to RCPT TO = %q, want 250 (decided at end of message)", r)
	}
	m := afterDataReply.FindStringSubmatch(out)
	if m == nil || !greylistReply.MatchString(m[1]) {
		t.Fatalf("no greylisting reply after the content (swaks exit %d):\n%s", code, out)
	}
	if code != swaksDataRefused {
		t.Errorf("swaks exit %d, want %d (refused after DATA)", code, swaksDataRefused)
	}
}

// (1) A listed sender from an address its domain's SPF authorises passes
// at once and is delivered with a note saying how it was proven.
func TestBypassListedSenderFromSPFAuthorisedIPPassesAtOnce(t *testing.T) {
	t.Parallel()
	s := startBypassSite(t, nil)
	// The admin's file, verbatim, loads as its one entry.
	s.d.WaitLog(t, 5*time.Second, "milter-grey started", "bypass_senders=1")
	from, token := listedFrom(), uniqueName()

	out, code := s.send(t, authorisedIP, from, token)
	expectAccepted(t, out, code, bypassRcpt)
	s.d.WaitLog(t, 5*time.Second, "action=pass", "reason=bypass-spf", "spf=pass", "example.com OK", from)
	_, msg := s.pf.WaitDelivered(t, token, 10*time.Second)
	if xg, want := header(t, msg, "X-Greylist"), "not delayed, sender proven (spf=pass) by milter-grey on mx.e2e.test"; xg != want {
		t.Errorf("X-Greylist: %q, want %q", xg, want)
	}
}

// (2) The same sender from an address SPF does not authorise, without a
// signature, is greylisted. Its recipient waits for end of message (DKIM
// might still prove the sender), so the 451 comes after the content.
func TestBypassForgedListedSenderWithoutDKIMIsGreylisted(t *testing.T) {
	t.Parallel()
	s := startBypassSite(t, nil)
	from := listedFrom()

	out, code := s.send(t, forgerIP, from, uniqueName())
	expectRefusedAfterData(t, out, code)
	s.d.WaitLog(t, 5*time.Second, "action=defer", "reason=pending-dkim", "spf=fail", from)
	s.d.WaitLog(t, 5*time.Second, "action=greylist", "reason=new", "spf=fail", "dkim=none", "key=\"t:192.0.2.0/24 "+from, from)
	s.pf.WaitMaillog(t, 5*time.Second, "milter-reject: END-OF-MESSAGE", "4.7.1 Greylisted", from)
}

// (3) The same forged-looking sender, but the message carries a valid
// signature by d=example.com: accepted at end of message, delivered
// intact.
func TestBypassListedSenderWithAlignedDKIMIsDelivered(t *testing.T) {
	t.Parallel()
	s := startBypassSite(t, nil)
	from, token := listedFrom(), uniqueName()

	out, code := s.sendSigned(t, forgerIP, from, "example.com", token)
	expectAccepted(t, out, code, bypassRcpt)
	s.d.WaitLog(t, 5*time.Second, "action=pass", "reason=bypass-dkim", "spf=fail", `dkim="pass d=example.com aligned=relaxed"`, from)
	_, msg := s.pf.WaitDelivered(t, token, 10*time.Second)
	want := "not delayed, sender proven (dkim=pass d=example.com aligned=relaxed) by milter-grey on mx.e2e.test"
	if xg := header(t, msg, "X-Greylist"); xg != want {
		t.Errorf("X-Greylist: %q, want %q", xg, want)
	}
	s.verifyDelivered(t, msg, "example.com")
}

// A pcre: table, as a Postfix site keeps for check_sender_access, works as
// the access(5) file does: its listed sender passes when SPF proves it, a
// forger of it is greylisted, and the log names the rule.
func TestBypassPCRETableListedSenderPassesForgerIsGreylisted(t *testing.T) {
	t.Parallel()
	table := filepath.Join(t.TempDir(), "nogreylist-senders.pcre")
	must(t, os.WriteFile(table, []byte("# senders that skip greylisting\n/^noreply@/ DUNNO\n/@example\\.com$/ OK\n"), 0o644))
	s := startBypassSite(t, map[string]string{"bypass_sender_files": "[" + strconv.Quote("pcre:"+table) + "]"})
	s.d.WaitLog(t, 5*time.Second, "milter-grey started", "bypass_senders=2")

	from, token := listedFrom(), uniqueName()
	out, code := s.send(t, authorisedIP, from, token)
	expectAccepted(t, out, code, bypassRcpt)
	s.d.WaitLog(t, 5*time.Second, "action=pass", "reason=bypass-spf", "spf=pass", table+`:3 /@example\\.com$/ OK`, from)
	s.pf.WaitDelivered(t, token, 10*time.Second)

	forged := listedFrom()
	out, code = s.send(t, forgerIP, forged, uniqueName())
	expectRefusedAfterData(t, out, code)
	s.d.WaitLog(t, 5*time.Second, "action=greylist", "reason=new", "spf=fail", forged)

	// DUNNO stops the lookup: this sender is greylisted at RCPT TO even
	// from an authorised address, as a check_sender_access would leave it.
	out, _ = s.send(t, authorisedIP, "noreply@example.com", uniqueName())
	if r := rcptReplies(out)[bypassRcpt]; !greylistReply.MatchString(r) {
		t.Errorf("reply to RCPT TO for noreply@ = %q, want the greylisting reply", r)
	}
}

// Lines of a pcre: table that cannot be loaded do not stop the daemon nor
// the mail: a bypass rule Go's regexp cannot match is left out alone, an
// exception after the listed rule takes the rest of the file with it (so
// that nothing it stops gets through), and the listed sender still passes.
func TestBypassTableWithBadLinesStillWorks(t *testing.T) {
	t.Parallel()
	table := filepath.Join(t.TempDir(), "nogreylist-senders.pcre")
	must(t, os.WriteFile(table, []byte("# senders that skip greylisting\n"+
		"/^(?!bounce@)news@example\\.net$/ OK\n"+
		"/@example\\.com$/ OK\n"+
		"/^(?!x)ceo@example\\.org$/ DUNNO\n"+
		"/@example\\.org$/ OK\n"), 0o644))
	s := startBypassSite(t, map[string]string{"bypass_sender_files": "[" + strconv.Quote("pcre:"+table) + "]"})
	s.d.WaitLog(t, 5*time.Second, "bypass list line skipped", table+":2: ", "lookahead")
	s.d.WaitLog(t, 5*time.Second, "bypass list line skipped", table+":4: ", "the rest of the file is left out")
	s.d.WaitLog(t, 5*time.Second, "milter-grey started", "bypass_senders=1")

	from, token := listedFrom(), uniqueName()
	out, code := s.send(t, authorisedIP, from, token)
	expectAccepted(t, out, code, bypassRcpt)
	s.d.WaitLog(t, 5*time.Second, "action=pass", "reason=bypass-spf", table+`:3 /@example\\.com$/ OK`, from)
}

// (4) A valid signature by another domain proves nothing about the
// sender: greylisted.
func TestBypassDKIMOfAnotherDomainIsGreylisted(t *testing.T) {
	t.Parallel()
	s := startBypassSite(t, nil)
	from := listedFrom()

	out, code := s.sendSigned(t, forgerIP, from, "attacker.test", uniqueName())
	expectRefusedAfterData(t, out, code)
	s.d.WaitLog(t, 5*time.Second, "action=greylist", "reason=new", `dkim="pass d=attacker.test aligned=no"`, from)
}

// (5) A sender not on the list whose SPF passes is keyed by its domain: it
// is greylisted once, and its retry from another network of the same
// record is accepted.
func TestSPFPassingSenderRetriesFromAnotherNetworkOfItsRecord(t *testing.T) {
	t.Parallel()
	s := startBypassSite(t, nil)
	from := "pool-" + uniqueName() + "@example.net"
	key := "key=\"t:spf:example.net " + from + " " + bypassRcpt + "\""

	out, code := s.send(t, poolIP1, from, uniqueName())
	firstDone := time.Now()
	expectGreylisted(t, out, code, bypassRcpt)
	s.d.WaitLog(t, 5*time.Second, "action=greylist", "reason=new", "spf=pass", key)

	time.Sleep(time.Until(firstDone.Add(afterDelay)))
	token := uniqueName()
	out, code = s.send(t, poolIP2, from, token)
	expectAccepted(t, out, code, bypassRcpt)
	s.d.WaitLog(t, 5*time.Second, "action=pass", "reason=retried", "client="+poolIP2, key)
	_, msg := s.pf.WaitDelivered(t, token, 10*time.Second)
	delayedSeconds(t, msg)
}

// (6) With DNS down nothing is proven: listed senders are greylisted like
// everyone else, the log says why, and nothing breaks. When DNS answers
// again, the bypass works again (no failure was remembered).
func TestBypassWithDNSDownGreylistsListedSenders(t *testing.T) {
	t.Parallel()
	// Each DNS timeout costs a second here: a delay longer than the test
	// keeps the second attempt early.
	s := startBypassSite(t, map[string]string{"delay": `"1h"`})
	s.dns.SetMode(testdns.Drop)
	from := listedFrom()

	out, code := s.send(t, authorisedIP, from, uniqueName())
	expectRefusedAfterData(t, out, code)
	s.d.WaitLog(t, 5*time.Second, "action=greylist", "reason=new", "spf=temperror", "dkim=none", from)

	out, code = s.sendSigned(t, authorisedIP, from, "example.com", uniqueName())
	expectRefusedAfterData(t, out, code)
	s.d.WaitLog(t, 5*time.Second, "action=greylist", "reason=early", "spf=temperror", `dkim="temperror d=example.com"`, from)

	s.dns.SetMode(testdns.Normal)
	token := uniqueName()
	out, code = s.send(t, authorisedIP, from, token)
	expectAccepted(t, out, code, bypassRcpt)
	s.d.WaitLog(t, 5*time.Second, "action=pass", "reason=bypass-spf", "spf=pass", from)
	s.pf.WaitDelivered(t, token, 10*time.Second)
	for _, bad := range []string{"panic", "level=ERROR"} {
		if line, ok := lineWith(s.d.Log(), bad); ok {
			t.Errorf("daemon log has %q: %s", bad, line)
		}
	}
}

// removeListedDomain rewrites the bypass file without its one entry, as an
// admin would edit it.
func (s *bypassSite) removeListedDomain(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(s.list)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), "example.com OK\n", "", 1)
	if edited == string(b) {
		t.Fatal("no \"example.com OK\" line in the bypass file")
	}
	must(t, os.WriteFile(s.list, []byte(edited), 0o644))
}

// expectNoLongerBypassed checks that scenario (1) is now greylisted at
// RCPT TO like any sender SPF proves (keyed by its domain).
func (s *bypassSite) expectNoLongerBypassed(t *testing.T) {
	t.Helper()
	from := listedFrom()
	out, code := s.send(t, authorisedIP, from, uniqueName())
	expectGreylisted(t, out, code, bypassRcpt)
	s.d.WaitLog(t, 5*time.Second, "action=greylist", "reason=new", "spf=pass", "key=\"t:spf:example.com "+from)
}

// Editing the bypass file takes effect within reload_interval, without a
// signal.
func TestBypassListChangeIsReloaded(t *testing.T) {
	t.Parallel()
	s := startBypassSite(t, map[string]string{"reload_interval": `"1s"`})
	from := listedFrom()
	out, code := s.send(t, authorisedIP, from, uniqueName())
	expectAccepted(t, out, code, bypassRcpt)
	s.d.WaitLog(t, 5*time.Second, "reason=bypass-spf", from)

	s.removeListedDomain(t)
	s.d.WaitLog(t, 10*time.Second, "list files changed; reloading")
	s.d.WaitLog(t, 5*time.Second, "lists reloaded", "bypass_senders=0")
	s.expectNoLongerBypassed(t)
}

// SIGHUP reloads the bypass file at once (here with the change check off).
func TestBypassListReloadedOnSIGHUP(t *testing.T) {
	t.Parallel()
	s := startBypassSite(t, map[string]string{"reload_interval": `"0s"`})
	from := listedFrom()
	out, code := s.send(t, authorisedIP, from, uniqueName())
	expectAccepted(t, out, code, bypassRcpt)
	s.d.WaitLog(t, 5*time.Second, "reason=bypass-spf", from)

	s.removeListedDomain(t)
	// Without the signal the edit is not seen.
	time.Sleep(1500 * time.Millisecond)
	if strings.Contains(s.d.Log(), "lists reloaded") {
		t.Fatalf("lists reloaded without SIGHUP while reload_interval is 0:\n%s", s.d.Log())
	}
	r := s.d.current()
	if err := r.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.d.WaitLog(t, 5*time.Second, "lists reloaded", "bypass_senders=0")
	s.expectNoLongerBypassed(t)
}

// A bypass file that a reload names (here: the first one, added to a
// configuration that had none) is watched for changes from then on.
func TestBypassFileAddedBySIGHUPIsWatchedForChanges(t *testing.T) {
	t.Parallel()
	s := startBypassSite(t, map[string]string{"bypass_sender_files": "[]", "reload_interval": `"1s"`})
	s.d.WaitLog(t, 5*time.Second, "milter-grey started", "bypass_senders=0")

	conf, err := os.ReadFile(s.d.config)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(conf), "bypass_sender_files = []", "bypass_sender_files = ["+strconv.Quote(s.list)+"]", 1)
	if edited == string(conf) {
		t.Fatalf("no empty bypass_sender_files in the configuration:\n%s", conf)
	}
	must(t, os.WriteFile(s.d.config, []byte(edited), 0o644))
	if err := s.d.current().cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.d.WaitLog(t, 5*time.Second, "lists reloaded", "bypass_senders=1")
	from := listedFrom()
	out, code := s.send(t, authorisedIP, from, uniqueName())
	expectAccepted(t, out, code, bypassRcpt)
	s.d.WaitLog(t, 5*time.Second, "reason=bypass-spf", from)

	s.removeListedDomain(t)
	s.d.WaitLog(t, 10*time.Second, "list files changed; reloading")
	s.d.WaitLog(t, 5*time.Second, "lists reloaded", "bypass_senders=0")
	s.expectNoLongerBypassed(t)
}
