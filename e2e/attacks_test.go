package e2e

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/milter-grey/milter-grey/testutil/testdns"
)

// Attacks on the authenticated sender bypass, end to end: Postfix, the
// daemon with the admin's nogreylist-senders file verbatim ("example.com
// OK"), and a DNS server on loopback (see bypass_test.go for its records;
// the cases below add their own). Each attack is a first delivery
// attempt of a message whose envelope sender is on the list; each must
// be greylisted (451 at RCPT TO or after the content), never delivered,
// and the daemon must never log a bypass-* reason for it. One control
// case is a real aligned signature: it passes, so the harness can bypass
// at all and the attacks fail for the reason they test.
//
// Every case uses its own sender (so its own triplet and SPF cache
// entry). The cases run one after another because two of them change
// example.com's DNS for their duration.

// attackKeyDomains publish the test key at sel._domainkey.DOMAIN, in
// addition to example.com and attacker.test: look-alikes of example.com,
// and "com", a public suffix.
var attackKeyDomains = []string{"example.com.attacker.test", "examp1e.com", "example.co", "com"}

// attackMessage is a plain message from from with token in its subject
// and body; extra header fields come after From.
func attackMessage(from, token string, extra ...string) string {
	h := "From: Alice <" + from + ">\r\n"
	for _, e := range extra {
		h += e + "\r\n"
	}
	return h +
		"To: <" + bypassRcpt + ">\r\n" +
		"Subject: e2e attack " + token + "\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"Message-ID: <" + token + "@attack.test>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=us-ascii\r\n" +
		"\r\n" +
		"e2e message " + token + "\r\n" +
		"\r\n" +
		"Pay the attached invoice today.\r\n"
}

// attackSign signs msg with the test key as d=domain, relaxed/relaxed.
// keys are the header fields to sign (h=); nil signs every field present,
// each once.
func attackSign(t *testing.T, msg, domain string, keys []string) string {
	t.Helper()
	var b bytes.Buffer
	err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{
		Domain:                 domain,
		Selector:               "sel",
		Signer:                 bypassDKIMKey(),
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             keys,
	})
	if err != nil {
		t.Fatalf("dkim.Sign: %v", err)
	}
	return b.String()
}

// insertAfterFrom adds a header field right after the (first) From field.
func insertAfterFrom(t *testing.T, msg, field string) string {
	t.Helper()
	i := strings.Index(msg, "\r\nFrom: ")
	if i < 0 {
		t.Fatalf("no From field in:\n%s", msg)
	}
	end := strings.Index(msg[i+2:], "\r\n")
	return msg[:i+2+end+2] + field + "\r\n" + msg[i+2+end+2:]
}

// refusedFirstAttempt checks that a first attempt was greylisted: a 451 at
// RCPT TO (decided at once) or after the content (the recipient waited for
// DKIM), and no queue ID either way.
func refusedFirstAttempt(t *testing.T, out string, code int) {
	t.Helper()
	if qid := queueID(out); qid != "" {
		t.Fatalf("the message was queued as %s on its first attempt", qid)
	}
	if r := rcptReplies(out)[bypassRcpt]; greylistReply.MatchString(r) {
		if code != swaksAllRcptsBad {
			t.Errorf("swaks exit %d, want %d (RCPT TO refused)", code, swaksAllRcptsBad)
		}
		return
	}
	expectRefusedAfterData(t, out, code)
}

type attackCase struct {
	name   string
	client string // the connecting client, presented with XCLIENT
	// dns changes the DNS for this case only; it returns the undo.
	dns func(*testdns.Server) func()
	// message builds the message for sender from with token in it; nil
	// sends swaks' default message (no signature).
	message func(t *testing.T, from, token string) string
	// decision holds parts of the final decision line: the SPF and DKIM
	// verdicts that show the attack was evaluated as intended.
	decision []string
	bypass   bool // the control: passed by an aligned signature
}

func TestAttacksOnTheBypassAreGreylisted(t *testing.T) {
	t.Parallel()
	s := startBypassSite(t, nil)
	pub, err := x509.MarshalPKIXPublicKey(&bypassDKIMKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range attackKeyDomains {
		s.dns.SetTXT("sel._domainkey."+d, "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(pub))
	}
	s.d.WaitLog(t, 5*time.Second, "milter-grey started", "bypass_senders=1")

	signedBy := func(domain string, keys ...string) func(*testing.T, string, string) string {
		return func(t *testing.T, from, token string) string {
			return attackSign(t, attackMessage(from, token), domain, keys)
		}
	}
	const mallory = "From: Mallory <mallory@attacker.test>"
	cases := []attackCase{
		{
			name:     "control: valid signature by d=example.com is the proof that bypasses",
			client:   forgerIP,
			message:  signedBy("example.com"),
			decision: []string{"action=pass", "reason=bypass-dkim", "spf=fail", `dkim="pass d=example.com aligned=relaxed"`},
			bypass:   true,
		},
		{
			name:     "forged listed sender from an address SPF fails, no signature",
			client:   forgerIP,
			decision: []string{"spf=fail", "dkim=none"},
		},
		{
			name:     "valid signature by another domain",
			client:   forgerIP,
			message:  signedBy("attacker.test"),
			decision: []string{"spf=fail", `dkim="pass d=attacker.test aligned=no"`},
		},
		{
			// The attacker owns attacker.test and so every name under it.
			name:     "look-alike: d=example.com.attacker.test",
			client:   forgerIP,
			message:  signedBy("example.com.attacker.test"),
			decision: []string{"spf=fail", `dkim="pass d=example.com.attacker.test aligned=no"`},
		},
		{
			name:     "look-alike: d=examp1e.com",
			client:   forgerIP,
			message:  signedBy("examp1e.com"),
			decision: []string{"spf=fail", `dkim="pass d=examp1e.com aligned=no"`},
		},
		{
			name:     "look-alike: d=example.co",
			client:   forgerIP,
			message:  signedBy("example.co"),
			decision: []string{"spf=fail", `dkim="pass d=example.co aligned=no"`},
		},
		{
			// A valid example.com signature, then the body changed in the
			// data swaks sends: the body hash no longer matches.
			name:   "signature by d=example.com, body changed after signing",
			client: forgerIP,
			message: func(t *testing.T, from, token string) string {
				signed := attackSign(t, attackMessage(from, token), "example.com", nil)
				changed := strings.Replace(signed, "Pay the attached invoice today.", "Pay the attached invoice to IBAN XX00 today.", 1)
				if changed == signed {
					t.Fatal("the body was not changed")
				}
				return changed
			},
			decision: []string{"spf=fail", `dkim="fail d=example.com"`},
		},
		// Two From fields. The bypass never reads From: it asks whether a
		// valid signature's d= is aligned with the domain of the envelope
		// sender (MAIL FROM), the address the bypass file is looked up
		// with. A From field, one or two, can neither make a signature
		// valid nor change its d=, so it cannot forge that proof; what a
		// mail reader shows as the author is DMARC's question, not
		// greylisting's (RFC 6376 section 8.15). These cases show the
		// signature verdicts go-msgauth gives with two From fields, and
		// that only an aligned valid one (the last case) bypasses.
		{
			// The attacker signs both From fields (h= lists from twice).
			name:   "two From fields, both signed by d=attacker.test",
			client: forgerIP,
			message: func(t *testing.T, from, token string) string {
				return attackSign(t, attackMessage(from, token, mallory), "attacker.test", nil)
			},
			decision: []string{"spf=fail", `dkim="pass d=attacker.test aligned=no"`},
		},
		{
			// h= names From once; a verifier takes the last From field
			// (RFC 6376 section 5.4.2), now the added one: broken.
			name:   "two From fields, the second added below an example.com-signed one",
			client: forgerIP,
			message: func(t *testing.T, from, token string) string {
				return insertAfterFrom(t, attackSign(t, attackMessage(from, token), "example.com", nil), mallory)
			},
			decision: []string{"spf=fail", `dkim="fail d=example.com"`},
		},
		{
			// The signer over-signed From (h=from:from…, RFC 6376
			// section 8.15's advice): the added field breaks it wherever
			// it goes.
			name:   "two From fields, the second added above an over-signed example.com one",
			client: forgerIP,
			message: func(t *testing.T, from, token string) string {
				keys := []string{"From", "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"}
				return mallory + "\r\n" + attackSign(t, attackMessage(from, token), "example.com", keys)
			},
			decision: []string{"spf=fail", `dkim="fail d=example.com"`},
		},
		{
			name:     "d= a public suffix: d=com with a key at sel._domainkey.com",
			client:   forgerIP,
			message:  signedBy("com"),
			decision: []string{"spf=fail", `dkim="pass d=com aligned=no"`},
		},
		{
			// The listed domain's own record passes everyone; passing
			// for a documentation address too, it proves nothing.
			name:   "SPF +all record for the listed domain",
			client: forgerIP,
			dns: func(srv *testdns.Server) func() {
				srv.SetTXT("example.com", "v=spf1 +all")
				return func() { srv.SetTXT("example.com", "v=spf1 ip4:203.0.113.0/24 -all") }
			},
			decision: []string{"spf=pass(wide-open)", "dkim=none"},
		},
		{
			// From the address the record authorises, but the record
			// cannot be fetched (dns_timeout is 1s): not proven.
			name:   "listed sender with SPF temperror and no signature",
			client: authorisedIP,
			dns: func(srv *testdns.Server) func() {
				srv.SetModeFor("example.com", testdns.Drop)
				return func() { srv.SetModeFor("example.com", testdns.Normal) }
			},
			decision: []string{"spf=temperror", "dkim=none"},
		},
		{
			// h= names From once and the extra field is added above, so
			// the verifier reads the signed one and the example.com
			// signature stays valid; but readers see the added one
			// (RFC 6376 section 8.15), and RFC 5322 allows one From:
			// such a message proves nothing.
			name:   "two From fields, the second added above a valid example.com signature",
			client: forgerIP,
			message: func(t *testing.T, from, token string) string {
				return mallory + "\r\n" + attackSign(t, attackMessage(from, token), "example.com", nil)
			},
			decision: []string{"spf=fail", `dkim="pass d=example.com aligned=relaxed (not a proof: 2 From fields)"`},
		},
	}

	var greylisted []struct{ from, token string }
	for _, tc := range cases {
		ok := t.Run(tc.name, func(t *testing.T) {
			if tc.dns != nil {
				t.Cleanup(tc.dns(s.dns))
			}
			from, token := listedFrom(), uniqueName()
			var out string
			var code int
			if tc.message == nil {
				out, code = s.send(t, tc.client, from, token)
			} else {
				file := filepath.Join(t.TempDir(), "message.eml")
				must(t, os.WriteFile(file, []byte(tc.message(t, from, token)), 0o644))
				out, code = swaks(t, s.pf.Port(),
					"--xclient-addr", tc.client,
					"--helo", "mail.sender.test",
					"--from", from,
					"--to", bypassRcpt,
					"--data", file)
			}
			if tc.bypass {
				expectAccepted(t, out, code, bypassRcpt)
				s.d.WaitLog(t, 5*time.Second, append([]string{"msg=decision", from}, tc.decision...)...)
				s.pf.WaitDelivered(t, token, 10*time.Second)
				return
			}
			greylisted = append(greylisted, struct{ from, token string }{from, token})
			refusedFirstAttempt(t, out, code)
			s.d.WaitLog(t, 5*time.Second, append([]string{"msg=decision", "action=greylist", "reason=new", from}, tc.decision...)...)
			if line, found := lineWith(s.d.Log(), "reason=bypass", from); found {
				t.Errorf("the daemon bypassed greylisting: %s", line)
			}
		})
		if !ok && tc.bypass {
			t.Fatal("the control case failed: the harness cannot bypass, so the attack cases prove nothing")
		}
	}

	// Nothing refused was delivered after all, and the log never said
	// bypass for any of those senders.
	time.Sleep(time.Second)
	log := s.d.Log()
	for _, g := range greylisted {
		if d := s.pf.Delivered(g.token); len(d) > 0 {
			t.Errorf("the message of %s was delivered: %v", g.from, d)
		}
		if line, found := lineWith(log, "reason=bypass", g.from); found {
			t.Errorf("bypass logged for an attack: %s", line)
		}
	}
	for _, bad := range []string{"panic", "level=ERROR"} {
		if line, found := lineWith(log, bad); found {
			t.Errorf("daemon log has %q: %s", bad, line)
		}
	}
}
