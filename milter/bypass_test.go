package milter

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/milter-grey/milter-grey/accessmap"
	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/greylist/badgerstore"
	"github.com/milter-grey/milter-grey/testutil/testdns"
	"github.com/milter-grey/milter-grey/testutil/testlog"
)

// The admin's file, verbatim: "example.com OK" and comments.
const bypassFile = "../testdata/access/nogreylist-senders"

// Addresses of the scenarios. example.com's SPF authorises 192.0.2.0/24
// only; example.net's authorises two networks of its sending pool.
const (
	spfAuthorised   = "192.0.2.25"   // in example.com's SPF record
	spfUnauthorised = "198.51.100.7" // not in it
	poolFirst       = "198.51.100.10"
	poolSecond      = "203.0.113.20" // another /24 of example.net's record
	listedSender    = "alice@example.com"
	rcptA           = "bob@rcpt.example"
	rcptB           = "carol@rcpt.example"
)

// bypassKey is the DKIM key of every signer, generated once per test
// binary (RSA generation is slow under the race detector).
var bypassKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

type bypassFixture struct {
	*fixture
	dns *testdns.Server
}

type bypassSetup struct {
	noKeyBySPF bool // key_by_spf_domain = false
	strict     bool // dkim_alignment = "strict"
	noHeader   bool // add_header = false
	spfTimeout time.Duration
}

// newBypassFixture serves a milter wired as the daemon wires it for
// bypass_sender_files: SPF and DKIM through a real DNS server on loopback,
// the verbatim admin file as the bypass list, keys by SPF domain, and a
// fake clock for the engine.
func newBypassFixture(t *testing.T, setup bypassSetup) *bypassFixture {
	t.Helper()
	srv := testdns.Start(t)
	srv.SetTXT("example.com", "v=spf1 ip4:192.0.2.0/24 -all")
	srv.SetTXT("example.net", "v=spf1 ip4:198.51.100.0/24 ip4:203.0.113.0/24 -all")
	// A listed subdomain (parent_domain_matches_subdomains) whose record
	// authorises the whole Internet.
	srv.SetTXT("wide.example.com", "v=spf1 +all")
	pub, err := x509.MarshalPKIXPublicKey(&bypassKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"example.com", "mail.example.com", "attacker.test"} {
		srv.SetTXT("sel._domainkey."+d, "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(pub))
	}

	table, warnings, err := accessmap.Load(accessmap.DefaultOptions(), bypassFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 || table.Len() != 1 {
		t.Fatalf("the verbatim file loads as %d entries with warnings %v, want 1 entry and none", table.Len(), warnings)
	}

	store, err := badgerstore.Open("", badgerstore.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{clock: &clock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}, log: &testlog.Buffer{}, store: store}
	log := slog.New(slog.NewTextHandler(f.log, nil))
	timeout := setup.spfTimeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	resolver := srv.Resolver()
	f.engine = greylist.New(store, greylist.Config{
		Policy:          greylist.Policy{Delay: delay},
		KeyBySPFDomain:  !setup.noKeyBySPF,
		SPF:             auth.NewSPF(resolver, auth.SPFOptions{Timeout: timeout, Now: f.clock.Now}),
		StrictAlignment: setup.strict,
		Now:             f.clock.Now,
		Logger:          log,
	})
	f.engine.SetLists(&greylist.Lists{Bypass: table})
	cfg := Config{
		Engine:      f.engine,
		AddHeader:   !setup.noHeader,
		Hostname:    "mx.test",
		Log:         log,
		DKIMTimeout: timeout,
		NewDKIM: func() *auth.DKIMVerifier {
			return auth.NewDKIMVerifier(resolver, auth.DKIMOptions{Timeout: timeout, LeadingSpaceKept: true})
		},
	}
	f.addr = serve(t, cfg, store)
	return &bypassFixture{fixture: f, dns: srv}
}

// session opens an SMTP session from ip and starts a message from sender.
func (f *bypassFixture) session(t *testing.T, ip, sender string) *mta {
	t.Helper()
	m := f.connect(t, gomilter.FamilyInet, "["+ip+"]", ip)
	m.mail(sender)
	return m
}

// bypassMessage is a message as a sender's MTA would write it: a header
// field without a space after the colon, one with a tab, a folded one.
func bypassMessage(from, to string) string {
	return "From: Alice <" + from + ">\r\n" +
		"To: " + to + "\r\n" +
		"Subject: greylisting bypass,\r\n" +
		"\tfolded over two lines\r\n" +
		"Date: Sat, 28 Nov 2026 12:00:00 +0000\r\n" +
		"Message-ID: <bypass-1@example.com>\r\n" +
		"X-Tight:no space after the colon\r\n" +
		"X-Tab:\ta tab after the colon\r\n" +
		"\r\n" +
		"Hello Bob,\r\n" +
		"\r\n" +
		"this message may be signed.\r\n"
}

// signedBy signs msg for domain d with selector "sel" and the given
// canonicalization for header and body.
func signedBy(t *testing.T, msg, d string, can dkim.Canonicalization) string {
	t.Helper()
	var b bytes.Buffer
	err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{
		Domain:                 d,
		Selector:               "sel",
		Signer:                 bypassKey(),
		HeaderCanonicalization: can,
		BodyCanonicalization:   can,
	})
	if err != nil {
		t.Fatalf("dkim.Sign: %v", err)
	}
	return b.String()
}

// postfixFields splits a message as Postfix hands it to a milter that
// negotiated SMFIP_HDR_LEADSPC (milter8.c): per header field the name, and
// the value as it follows the colon with its leading white space kept and
// folded lines joined by "\n" (Postfix keeps header lines without CR). The
// body is sent with CRLF line ends.
func postfixFields(t *testing.T, raw string) (fields [][2]string, body string) {
	t.Helper()
	hdr, body, ok := strings.Cut(raw, "\r\n\r\n")
	if !ok {
		t.Fatal("message without header/body separator")
	}
	for _, line := range strings.Split(hdr, "\r\n") {
		if line[0] == ' ' || line[0] == '\t' {
			fields[len(fields)-1][1] += "\n" + line
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("bad header line %q", line)
		}
		fields = append(fields, [2]string{name, value})
	}
	return fields, body
}

// sendMessage sends a message's content as Postfix would (the body in two
// chunks, so that it streams) and returns the header modifications, the
// final action and the stage at which the milter ended the message:
// "header 1" (the first field), "eoh", "body" or "eom".
func (m *mta) sendMessage(raw string) (mods []gomilter.ModifyAction, final *gomilter.Action, stage string) {
	m.t.Helper()
	if !m.s.ProtocolOption(gomilter.OptHeaderLeadingSpace) {
		m.t.Fatal("the milter did not negotiate SMFIP_HDR_LEADSPC: Postfix would strip the space after each colon")
	}
	fields, body := postfixFields(m.t, raw)
	for i, f := range fields {
		if a := m.act(m.s.HeaderField(f[0], f[1])); a.Code != gomilter.ActContinue {
			return nil, a, fmt.Sprintf("header %d", i+1)
		}
	}
	if a := m.act(m.s.HeaderEnd()); a.Code != gomilter.ActContinue {
		return nil, a, "eoh"
	}
	half := len(body) / 2
	for _, chunk := range []string{body[:half], body[half:]} {
		if a := m.act(m.s.BodyChunk([]byte(chunk))); a.Code != gomilter.ActContinue {
			return nil, a, "body"
		}
	}
	mods, final, err := m.s.End()
	m.must(err)
	return mods, final, "eom"
}

// acceptedAtEOM asserts a message accepted at end of message and returns its
// X-Greylist header ("" if none).
func (m *mta) acceptedAtEOM(raw string) string {
	m.t.Helper()
	mods, final, stage := m.sendMessage(raw)
	if final.Code != gomilter.ActAccept || stage != "eom" {
		m.t.Fatalf("message ended at %s with %q (%d %s), want accept at eom", stage, final.Code, final.SMTPCode, final.SMTPText)
	}
	return xGreylist(mods)
}

// refusedAtEOM asserts the message was greylisted at end of message, with the
// greylisting reply.
func (m *mta) refusedAtEOM(raw string) {
	m.t.Helper()
	_, final, stage := m.sendMessage(raw)
	if stage != "eom" || final.Code != gomilter.ActReplyCode || final.SMTPCode != 451 ||
		!strings.HasPrefix(final.SMTPText, "4.7.1 Greylisted, please try again in ") {
		m.t.Fatalf("message ended at %s with %q (%d %q), want 451 4.7.1 Greylisted at eom", stage, final.Code, final.SMTPCode, final.SMTPText)
	}
}

// bypassDecisions parses the decision lines of a text log into key=value maps.
func bypassDecisions(t *testing.T, log string) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, " msg=decision ") {
			continue
		}
		out = append(out, bypassLogFields(t, line))
	}
	return out
}

// bypassLogFields splits one slog text line into its fields, unquoting values.
func bypassLogFields(t *testing.T, line string) map[string]string {
	t.Helper()
	f := map[string]string{}
	for s := strings.TrimSpace(line); s != ""; s = strings.TrimLeft(s, " ") {
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			t.Fatalf("bad log line %q", line)
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				t.Fatalf("bad quoting in log line %q: %v", line, err)
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
			rest = " " + rest
		}
		f[k] = v
		s = rest
	}
	return f
}

// decisionFor returns the only decision logged for rcpt with the given
// reason, failing the test if there is not exactly one.
func (f *bypassFixture) decisionFor(t *testing.T, rcpt, reason string) map[string]string {
	t.Helper()
	var found []map[string]string
	for _, d := range bypassDecisions(t, f.log.String()) {
		if d["rcpt"] == rcpt && d["reason"] == reason {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d decisions for %s with reason=%s, want 1; log:\n%s", len(found), rcpt, reason, f.log.String())
	}
	return found[0]
}

// wantDecision checks fields of a decision.
func wantDecision(t *testing.T, d map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if d[k] != v {
			t.Errorf("decision %s=%q, want %q (decision %v)", k, d[k], v, d)
		}
	}
}

func TestBypassSPFPassPassesAtRcptWithNote(t *testing.T) {
	f := newBypassFixture(t, bypassSetup{})
	m := f.session(t, spfAuthorised, listedSender)
	m.passes(rcptA)
	d := f.decisionFor(t, rcptA, "bypass-spf")
	wantDecision(t, d, map[string]string{
		"action": "pass", "spf": "pass", "sender": listedSender,
		"match": bypassFile + ":23 example.com OK",
	})
	if _, ok := d["key"]; ok {
		t.Errorf("a bypassed recipient has a triplet key: %v", d)
	}
	// The message streams to the end (the note is added there) and is not
	// verified: nothing is pending.
	xg := m.acceptedAtEOM(signedBy(t, bypassMessage(listedSender, rcptA), "attacker.test", dkim.CanonicalizationRelaxed))
	if want := "not delayed, sender proven (spf=pass) by milter-grey on mx.test"; xg != want {
		t.Errorf("X-Greylist = %q, want %q", xg, want)
	}
	if n := len(bypassDecisions(t, f.log.String())); n != 1 {
		t.Errorf("%d decisions, want 1 (the one at RCPT):\n%s", n, f.log.String())
	}
}

func TestBypassDKIMAlignedSignatureAcceptsListedSenderThatSPFFails(t *testing.T) {
	for _, can := range []dkim.Canonicalization{dkim.CanonicalizationSimple, dkim.CanonicalizationRelaxed} {
		t.Run("c="+string(can), func(t *testing.T) {
			f := newBypassFixture(t, bypassSetup{})
			m := f.session(t, spfUnauthorised, listedSender)
			m.passes(rcptA) // pending: 250 at RCPT, decided at end of message
			wantDecision(t, f.decisionFor(t, rcptA, "pending-dkim"), map[string]string{"action": "defer", "spf": "fail"})

			xg := m.acceptedAtEOM(signedBy(t, bypassMessage(listedSender, rcptA), "example.com", can))
			if want := "not delayed, sender proven (dkim=pass d=example.com aligned=relaxed) by milter-grey on mx.test"; xg != want {
				t.Errorf("X-Greylist = %q, want %q", xg, want)
			}
			d := f.decisionFor(t, rcptA, "bypass-dkim")
			wantDecision(t, d, map[string]string{
				"action": "pass", "spf": "fail", "dkim": "pass d=example.com aligned=relaxed",
				"match": bypassFile + ":23 example.com OK",
			})
			// Nothing was written for the triplet.
			key := greylist.TripletKey("198.51.100.0/24", listedSender, rcptA)
			if _, _, err := f.store.Get(context.Background(), key); err == nil {
				t.Errorf("triplet %q recorded for a message DKIM proved", key)
			}
		})
	}
}

func TestBypassDKIMRelaxedAlignmentOfSubdomainSigner(t *testing.T) {
	msg := bypassMessage(listedSender, rcptA)
	t.Run("relaxed accepts d=mail.example.com", func(t *testing.T) {
		f := newBypassFixture(t, bypassSetup{})
		m := f.session(t, spfUnauthorised, listedSender)
		m.passes(rcptA)
		m.acceptedAtEOM(signedBy(t, msg, "mail.example.com", dkim.CanonicalizationRelaxed))
		wantDecision(t, f.decisionFor(t, rcptA, "bypass-dkim"), map[string]string{"dkim": "pass d=mail.example.com aligned=relaxed"})
	})
	t.Run("strict refuses d=mail.example.com", func(t *testing.T) {
		f := newBypassFixture(t, bypassSetup{strict: true})
		m := f.session(t, spfUnauthorised, listedSender)
		m.passes(rcptA)
		m.refusedAtEOM(signedBy(t, msg, "mail.example.com", dkim.CanonicalizationRelaxed))
		wantDecision(t, f.decisionFor(t, rcptA, "new"), map[string]string{"action": "greylist", "dkim": "pass d=mail.example.com aligned=no"})
	})
	t.Run("strict accepts d=example.com", func(t *testing.T) {
		f := newBypassFixture(t, bypassSetup{strict: true})
		m := f.session(t, spfUnauthorised, listedSender)
		m.passes(rcptA)
		m.acceptedAtEOM(signedBy(t, msg, "example.com", dkim.CanonicalizationRelaxed))
		wantDecision(t, f.decisionFor(t, rcptA, "bypass-dkim"), map[string]string{"dkim": "pass d=example.com aligned=strict"})
	})
}

func TestBypassDKIMOfAnotherDomainIsGreylisted(t *testing.T) {
	f := newBypassFixture(t, bypassSetup{})
	m := f.session(t, spfUnauthorised, listedSender)
	m.passes(rcptA)
	m.refusedAtEOM(signedBy(t, bypassMessage(listedSender, rcptA), "attacker.test", dkim.CanonicalizationRelaxed))
	wantDecision(t, f.decisionFor(t, rcptA, "new"), map[string]string{
		"action": "greylist", "spf": "fail", "dkim": "pass d=attacker.test aligned=no",
		"key": "t:198.51.100.0/24 alice@example.com bob@rcpt.example",
	})

	// The session goes on: the next message on the connection is decided
	// on the same client, and the triplet is now early.
	f.clock.Add(time.Minute)
	m.mail(listedSender)
	m.passes(rcptA)
	m.refusedAtEOM(signedBy(t, bypassMessage(listedSender, rcptA), "attacker.test", dkim.CanonicalizationRelaxed))
	wantDecision(t, f.decisionFor(t, rcptA, "early"), map[string]string{"client": spfUnauthorised})
}

func TestBypassDKIMBodyAlteredAfterSigningIsGreylisted(t *testing.T) {
	f := newBypassFixture(t, bypassSetup{})
	m := f.session(t, spfUnauthorised, listedSender)
	m.passes(rcptA)
	raw := signedBy(t, bypassMessage(listedSender, rcptA), "example.com", dkim.CanonicalizationRelaxed)
	raw = strings.Replace(raw, "this message may be signed.", "this message WAS signed....", 1)
	m.refusedAtEOM(raw)
	d := f.decisionFor(t, rcptA, "new")
	if !strings.HasPrefix(d["dkim"], "fail d=example.com") {
		t.Errorf("dkim=%q, want fail d=example.com", d["dkim"])
	}
}

func TestBypassDKIMUnsignedMessageIsGreylisted(t *testing.T) {
	f := newBypassFixture(t, bypassSetup{})
	m := f.session(t, spfUnauthorised, listedSender)
	m.passes(rcptA)
	m.refusedAtEOM(bypassMessage(listedSender, rcptA))
	wantDecision(t, f.decisionFor(t, rcptA, "new"), map[string]string{"action": "greylist", "spf": "fail", "dkim": "none"})
}

// Pending recipients share the message's fate: one reply at end of
// message, and each triplet is recorded so that a retry passes.
func TestBypassDKIMTwoPendingRecipientsOneReplyBothRecorded(t *testing.T) {
	f := newBypassFixture(t, bypassSetup{})
	m := f.session(t, spfUnauthorised, listedSender)
	m.passes(rcptA)
	m.passes(rcptB)
	m.refusedAtEOM(bypassMessage(listedSender, rcptA))
	for _, rcpt := range []string{rcptA, rcptB} {
		d := f.decisionFor(t, rcpt, "new")
		key := greylist.TripletKey("198.51.100.0/24", listedSender, rcpt)
		wantDecision(t, d, map[string]string{"key": key, "dkim": "none"})
		if _, _, err := f.store.Get(context.Background(), key); err != nil {
			t.Errorf("triplet %q not recorded: %v", key, err)
		}
	}

	// Retried after the delay, both pass and the message carries the
	// delay note.
	f.clock.Add(delay + time.Second)
	m2 := f.session(t, spfUnauthorised, listedSender)
	m2.passes(rcptA)
	m2.passes(rcptB)
	if xg, want := m2.acceptedAtEOM(bypassMessage(listedSender, rcptA)), "delayed 301 seconds by milter-grey on mx.test"; xg != want {
		t.Errorf("X-Greylist = %q, want %q", xg, want)
	}
	f.decisionFor(t, rcptA, "retried")
	f.decisionFor(t, rcptB, "retried")
}

func TestBypassSPFWideOpenRecordIsNotProof(t *testing.T) {
	f := newBypassFixture(t, bypassSetup{})
	sender := "carol@wide.example.com" // listed through its parent example.com
	m := f.session(t, "198.51.100.99", sender)
	m.passes(rcptA)
	wantDecision(t, f.decisionFor(t, rcptA, "pending-dkim"), map[string]string{"spf": "pass(wide-open)"})
	m.refusedAtEOM(bypassMessage(sender, rcptA))
	// Not keyed by the domain either: the record proves nothing.
	wantDecision(t, f.decisionFor(t, rcptA, "new"), map[string]string{
		"spf": "pass(wide-open)", "key": "t:198.51.100.0/24 carol@wide.example.com bob@rcpt.example",
	})
}

func TestBypassSPFTempErrorIsNotProof(t *testing.T) {
	f := newBypassFixture(t, bypassSetup{spfTimeout: 500 * time.Millisecond})
	f.dns.SetMode(testdns.Drop)
	m := f.session(t, spfAuthorised, listedSender)
	start := time.Now()
	m.passes(rcptA)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("RCPT took %v with DNS down, want about the SPF timeout", took)
	}
	wantDecision(t, f.decisionFor(t, rcptA, "pending-dkim"), map[string]string{"spf": "temperror"})
	m.refusedAtEOM(bypassMessage(listedSender, rcptA))
	wantDecision(t, f.decisionFor(t, rcptA, "new"), map[string]string{
		"action": "greylist", "spf": "temperror", "dkim": "none",
		"key": "t:192.0.2.0/24 alice@example.com bob@rcpt.example",
	})

	// A signed message gets no further: its key cannot be fetched.
	m.mail(listedSender)
	m.passes(rcptB)
	m.refusedAtEOM(signedBy(t, bypassMessage(listedSender, rcptB), "example.com", dkim.CanonicalizationRelaxed))
	if d := f.decisionFor(t, rcptB, "new"); !strings.HasPrefix(d["dkim"], "temperror d=example.com") {
		t.Errorf("dkim=%q with DNS down, want temperror d=example.com", d["dkim"])
	}
}

// A sender not on the list whose SPF passes is keyed by its domain: the
// retry may come from any server of its record.
func TestSPFDomainKeyLetsRetryComeFromAnotherNetwork(t *testing.T) {
	const sender = "dave@example.net"
	t.Run("key_by_spf_domain on", func(t *testing.T) {
		f := newBypassFixture(t, bypassSetup{})
		m := f.session(t, poolFirst, sender)
		m.greylisted(rcptA)
		d := f.decisionFor(t, rcptA, "new")
		if !strings.HasPrefix(d["key"], "t:spf:example.net ") || d["spf"] != "pass" {
			t.Fatalf("key=%q spf=%q, want a key starting with \"t:spf:example.net \" and spf=pass", d["key"], d["spf"])
		}

		f.clock.Add(delay + time.Second)
		m2 := f.session(t, poolSecond, sender)
		m2.passes(rcptA)
		wantDecision(t, f.decisionFor(t, rcptA, "retried"), map[string]string{
			"client": poolSecond, "key": "t:spf:example.net dave@example.net bob@rcpt.example",
		})
		if xg := m2.acceptedAtEOM(bypassMessage(sender, rcptA)); xg != "delayed 301 seconds by milter-grey on mx.test" {
			t.Errorf("X-Greylist = %q", xg)
		}
	})
	t.Run("key_by_spf_domain off", func(t *testing.T) {
		f := newBypassFixture(t, bypassSetup{noKeyBySPF: true})
		m := f.session(t, poolFirst, sender)
		m.greylisted(rcptA)
		f.clock.Add(delay + time.Second)
		m2 := f.session(t, poolSecond, sender)
		m2.greylisted(rcptA)
		var keys []string
		for _, d := range bypassDecisions(t, f.log.String()) {
			if d["reason"] != "new" {
				t.Errorf("decision reason=%s, want new: %v", d["reason"], d)
			}
			keys = append(keys, d["key"])
		}
		want := []string{"t:198.51.100.0/24 dave@example.net bob@rcpt.example", "t:203.0.113.0/24 dave@example.net bob@rcpt.example"}
		if strings.Join(keys, "|") != strings.Join(want, "|") {
			t.Errorf("keys %q, want %q", keys, want)
		}
	})
}

// A message with nothing left to decide and no header to add is accepted
// at its first header: the MTA stops streaming it. One with a pending
// recipient streams to the end.
func TestBypassNothingPendingIsAcceptedAtFirstHeader(t *testing.T) {
	f := newBypassFixture(t, bypassSetup{noHeader: true})
	m := f.session(t, spfAuthorised, listedSender)
	m.passes(rcptA)
	_, final, stage := m.sendMessage(bypassMessage(listedSender, rcptA))
	if final.Code != gomilter.ActAccept || stage != "header 1" {
		t.Errorf("bypassed message ended at %s with %q, want accept at header 1", stage, final.Code)
	}

	m2 := f.session(t, spfUnauthorised, listedSender)
	m2.passes(rcptA)
	if xg := m2.acceptedAtEOM(signedBy(t, bypassMessage(listedSender, rcptA), "example.com", dkim.CanonicalizationSimple)); xg != "" {
		t.Errorf("X-Greylist %q with add_header off", xg)
	}
}

// Pending messages that end with an abort (the client gave up, or the MTA
// refused them for another reason) leave no DKIM goroutine behind.
func TestBypassDKIMAbortedMessagesLeaveNoGoroutine(t *testing.T) {
	f := newBypassFixture(t, bypassSetup{})
	raw := signedBy(t, bypassMessage(listedSender, rcptA), "example.com", dkim.CanonicalizationRelaxed)
	fields, body := postfixFields(t, raw)

	// Warm up: the first session starts the long-lived goroutines.
	warm := f.session(t, spfUnauthorised, listedSender)
	warm.passes(rcptA)
	warm.acceptedAtEOM(raw)
	base := goroutinesSettled()

	const n = 20
	for i := range n {
		c := gomilter.NewClientWithOptions("tcp", f.addr, gomilter.ClientOptions{
			ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, ActionMask: gomilter.OptAddHeader,
		})
		s, err := c.Session()
		if err != nil {
			t.Fatal(err)
		}
		m := &mta{t: t, s: s}
		m.want("connect", m.act(s.Conn("["+spfUnauthorised+"]", gomilter.FamilyInet, 25, spfUnauthorised)), gomilter.ActContinue)
		m.want("helo", m.act(s.Helo("mail.sender.example")), gomilter.ActContinue)
		// Two messages per connection: one aborted after its header, one
		// in the middle of its body.
		for j, stop := range []string{"eoh", "body"} {
			m.mail(listedSender)
			m.passes(fmt.Sprintf("user%d-%d@rcpt.example", i, j))
			for _, fl := range fields {
				m.want("header", m.act(s.HeaderField(fl[0], fl[1])), gomilter.ActContinue)
			}
			m.want("eoh", m.act(s.HeaderEnd()), gomilter.ActContinue)
			if stop == "body" {
				m.want("body", m.act(s.BodyChunk([]byte(body[:len(body)/2]))), gomilter.ActContinue)
			}
			m.must(s.Abort())
		}
		m.must(s.Close()) // abort and quit, as Postfix at the end of a session
	}
	if got := strings.Count(f.log.String(), "reason=pending-dkim"); got != 2*n+1 {
		t.Fatalf("%d pending decisions, want %d", got, 2*n+1)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines after %d aborted pending messages, want <= %d:\n%s", runtime.NumGoroutine(), 2*n, base, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// goroutinesSettled returns the goroutine count once it stops changing.
func goroutinesSettled() int {
	n := runtime.NumGoroutine()
	for range 100 {
		time.Sleep(10 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			return n
		}
		n = m
	}
	return n
}

// An MTA that drops the connection in the middle of a pending message
// sends no abort: closing the connection must still end the verifier.
func TestBypassDKIMDroppedConnectionLeavesNoGoroutine(t *testing.T) {
	f := newBypassFixture(t, bypassSetup{})
	raw := signedBy(t, bypassMessage(listedSender, rcptA), "example.com", dkim.CanonicalizationRelaxed)
	fields, body := postfixFields(t, raw)
	warm := f.session(t, spfUnauthorised, listedSender)
	warm.passes(rcptA)
	warm.acceptedAtEOM(raw)
	base := goroutinesSettled()

	const n = 10
	for i := range n {
		c, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatal(err)
		}
		go io.Copy(io.Discard, c)
		c.Write(optneg())
		c.Write(packet('C', []byte("["+spfUnauthorised+"]\x004"), []byte{0, 25}, []byte(spfUnauthorised+"\x00")))
		c.Write(packet('M', []byte("<"+listedSender+">\x00")))
		c.Write(packet('R', []byte(fmt.Sprintf("<drop%d@rcpt.example>\x00", i))))
		for _, fl := range fields {
			c.Write(packet('L', []byte(fl[0]+"\x00"+fl[1]+"\x00")))
		}
		c.Write(packet('N'))
		c.Write(packet('B', []byte(body[:len(body)/2])))
		// Wait until the message is pending, then drop the socket: no
		// abort, no quit.
		for j := 0; j < 500 && strings.Count(f.log.String(), fmt.Sprintf("drop%d@", i)) == 0; j++ {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // let the header and body packets arrive
		c.Close()
	}
	if got := strings.Count(f.log.String(), "reason=pending-dkim"); got != n+1 {
		t.Fatalf("%d pending decisions, want %d", got, n+1)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines after %d dropped pending messages, want <= %d:\n%s", runtime.NumGoroutine(), n, base, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
