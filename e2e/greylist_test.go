package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-milter"
)

// greyDelay is every scenario's greylist delay: long enough to tell an early
// retry from a late one, short enough to wait for.
const greyDelay = 2 * time.Second

// afterDelay is when a retry is surely late: the delay plus a margin for the
// time between our clock and the daemon's record.
const afterDelay = greyDelay + 500*time.Millisecond

// greyConfig is the daemon configuration of the scenarios, with extra keys
// set or overridden (values in TOML syntax).
func greyConfig(extra map[string]string) string {
	return renderSettings([]setting{
		{"delay", strconv.Quote(greyDelay.String())},
		{"retry_window", `"2d"`},
		{"max_age", `"35d"`},
		// Postfix itself connects from 127.0.0.1 and the test clients are
		// presented with XCLIENT: trust no network unless a test says so.
		{"trusted_networks", "[]"},
		{"add_header", "true"},
		{"hostname", `"mx.e2e.test"`},
		{"greylist_reply", `"451 4.7.1 Greylisted, please try again in {seconds} seconds"`},
		{"log_format", `"text"`},
		// SPF keys are on by default; nothing answers DNS here, so the
		// lookups fail at once and triplets are keyed by the client.
		{"dns_server", `"127.0.0.9:53"`},
	}, extra)
}

// newSender returns a sender address unique to this run, so that reruns
// against a kept store, and tests among themselves, never share a triplet.
func newSender(tag string) string { return tag + "-" + uniqueName() + "@sender.test" }

// sendMail sends one message through Postfix from client (presented with
// XCLIENT: an IPv4 literal or "IPV6:..."), to one or more comma-separated
// recipients, with token in the subject and body to find the delivered copy.
func sendMail(t *testing.T, pf *postfix, client, from, to, token string) (out string, exitCode int) {
	t.Helper()
	return swaks(t, pf.Port(),
		"--xclient-addr", client,
		"--helo", "mail.sender.test",
		"--from", from,
		"--to", to,
		"--header", "Subject: e2e "+token,
		"--body", "e2e message "+token)
}

var (
	greylistReply = regexp.MustCompile(`^451 4\.7\.1 Greylisted, please try again in (\d+) seconds$`)
	delayedHeader = regexp.MustCompile(`^delayed (\d+) seconds by milter-grey on mx\.e2e\.test\b`)
)

// expectGreylisted checks that the only recipient of a swaks run was
// greylisted at RCPT TO, and returns the seconds the reply asks to wait.
func expectGreylisted(t *testing.T, out string, exitCode int, rcpt string) int {
	t.Helper()
	if exitCode != swaksAllRcptsBad {
		t.Errorf("swaks exit %d, want %d (RCPT TO rejected)", exitCode, swaksAllRcptsBad)
	}
	return retryIn(t, rcptReplies(out)[rcpt])
}

// retryIn parses a greylisting reply and returns its number of seconds.
func retryIn(t *testing.T, reply string) int {
	t.Helper()
	m := greylistReply.FindStringSubmatch(reply)
	if m == nil {
		t.Fatalf("reply to RCPT TO = %q, want %q", reply, greylistReply)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// expectAccepted checks that every listed recipient got 250 at RCPT TO and
// the message was queued; it returns the queue ID.
func expectAccepted(t *testing.T, out string, exitCode int, rcpts ...string) string {
	t.Helper()
	if exitCode != swaksOK {
		t.Errorf("swaks exit %d, want %d", exitCode, swaksOK)
	}
	replies := rcptReplies(out)
	for _, r := range rcpts {
		if !hasCode(replies[r], "250") {
			t.Errorf("reply to RCPT TO:<%s> = %q, want 250", r, replies[r])
		}
	}
	qid := queueID(out)
	if qid == "" {
		t.Fatalf("message not queued: no 'queued as' after DATA")
	}
	return qid
}

// delayedSeconds checks a delivered message's X-Greylist header and returns
// the delay it reports.
func delayedSeconds(t *testing.T, msg string) int {
	t.Helper()
	xg := header(t, msg, "X-Greylist")
	m := delayedHeader.FindStringSubmatch(xg)
	if m == nil {
		t.Fatalf("X-Greylist: %q, want %q", xg, delayedHeader)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestFirstAttemptIsGreylistedAtRcpt(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, greyConfig(nil))
	pf := startPostfix(t, d.Addr, nil)
	from := newSender("first")

	out, code := sendMail(t, pf, "203.0.113.7", from, "user@dest.test", uniqueName())
	if n := expectGreylisted(t, out, code, "user@dest.test"); n < 1 || n > int(greyDelay/time.Second) {
		t.Errorf("reply asks to retry in %d seconds, want 1..%d (the delay)", n, int(greyDelay/time.Second))
	}
	// Rejected by the milter at RCPT, as the admin sees it in the maillog.
	pf.WaitMaillog(t, 5*time.Second, "milter-reject: RCPT", "451 4.7.1", from)
	d.WaitLog(t, 5*time.Second, "action=greylist", "reason=new", from)
}

func TestRetryAfterDelayIsDelivered(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, greyConfig(nil))
	pf := startPostfix(t, d.Addr, nil)
	from, rcpt := newSender("retry"), "user@dest.test"
	var firstAt, firstDone time.Time

	if !t.Run("first attempt is greylisted", func(t *testing.T) {
		firstAt = time.Now()
		out, code := sendMail(t, pf, "203.0.113.7", from, rcpt, uniqueName())
		firstDone = time.Now()
		expectGreylisted(t, out, code, rcpt)
	}) {
		return
	}

	if !t.Run("early retry is greylisted again", func(t *testing.T) {
		out, code := sendMail(t, pf, "203.0.113.7", from, rcpt, uniqueName())
		if code != swaksAllRcptsBad && time.Since(firstAt) >= greyDelay {
			t.Fatalf("the retry came %v after the first attempt, not before the %v delay: machine too slow for this check",
				time.Since(firstAt).Round(time.Millisecond), greyDelay)
		}
		expectGreylisted(t, out, code, rcpt)
		d.WaitLog(t, 5*time.Second, "action=greylist", "reason=early", from)
	}) {
		return
	}

	if !t.Run("retry after the delay is delivered with X-Greylist", func(t *testing.T) {
		time.Sleep(time.Until(firstDone.Add(afterDelay)))
		token := uniqueName()
		out, code := sendMail(t, pf, "203.0.113.7", from, rcpt, token)
		expectAccepted(t, out, code, rcpt)
		_, msg := pf.WaitDelivered(t, token, 10*time.Second)
		if n := delayedSeconds(t, msg); n < int(greyDelay/time.Second) {
			t.Errorf("X-Greylist reports a delay of %d seconds, want at least %v", n, greyDelay)
		}
		d.WaitLog(t, 5*time.Second, "action=pass", "reason=retried", from)
	}) {
		return
	}

	t.Run("next message of the triplet is delivered at once without X-Greylist", func(t *testing.T) {
		token := uniqueName()
		out, code := sendMail(t, pf, "203.0.113.7", from, rcpt, token)
		expectAccepted(t, out, code, rcpt)
		_, msg := pf.WaitDelivered(t, token, 10*time.Second)
		if xg := header(t, msg, "X-Greylist"); xg != "" {
			t.Errorf("X-Greylist: %q on a message that was not delayed", xg)
		}
		d.WaitLog(t, 5*time.Second, "action=pass", "reason=known", from)
	})
}

func TestWhitelistedRecipientPassesAtOnce(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, greyConfig(map[string]string{
		"whitelist_recipients": `["postmaster@dest.test", "vip@"]`,
	}))
	pf := startPostfix(t, d.Addr, nil)
	from := newSender("wlrcpt")

	// Greylisting is on for other recipients...
	out, code := sendMail(t, pf, "203.0.113.7", from, "user@dest.test", uniqueName())
	expectGreylisted(t, out, code, "user@dest.test")

	// ...but whitelisted ones (by address, and by local part "vip@") get
	// the very first attempt.
	token := uniqueName()
	out, code = sendMail(t, pf, "203.0.113.7", from, "postmaster@dest.test,vip@dest.test", token)
	expectAccepted(t, out, code, "postmaster@dest.test", "vip@dest.test")
	pf.WaitDelivered(t, token, 10*time.Second)
	d.WaitLog(t, 5*time.Second, "action=pass", "reason=rcpt-whitelist", from)
}

func TestTrustedClientPassesAtOnce(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, greyConfig(map[string]string{
		"trusted_networks": `["192.0.2.0/24"]`,
	}))
	pf := startPostfix(t, d.Addr, nil)
	from := newSender("trusted")

	// An untrusted client is greylisted...
	out, code := sendMail(t, pf, "203.0.113.7", from, "user@dest.test", uniqueName())
	expectGreylisted(t, out, code, "user@dest.test")

	// ...a client in a trusted network is not.
	token := uniqueName()
	out, code = sendMail(t, pf, "192.0.2.10", from, "user@dest.test", token)
	expectAccepted(t, out, code, "user@dest.test")
	pf.WaitDelivered(t, token, 10*time.Second)
	d.WaitLog(t, 5*time.Second, "action=pass", "reason=trusted", from)
}

func TestWhitelistedClientPassesAtOnce(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, greyConfig(map[string]string{
		"whitelist_clients": `["198.51.100.0/24"]`,
	}))
	pf := startPostfix(t, d.Addr, nil)
	from := newSender("wlclient")

	// A client not on the list is greylisted...
	out, code := sendMail(t, pf, "203.0.113.7", from, "user@dest.test", uniqueName())
	expectGreylisted(t, out, code, "user@dest.test")

	// ...a whitelisted one is not.
	token := uniqueName()
	out, code = sendMail(t, pf, "198.51.100.20", from, "user@dest.test", token)
	expectAccepted(t, out, code, "user@dest.test")
	pf.WaitDelivered(t, token, 10*time.Second)
	d.WaitLog(t, 5*time.Second, "action=pass", "reason=client-whitelist", from)
}

// One message, two recipients: greylisting answers each RCPT TO on its own,
// so the whitelisted recipient gets the message now and the sender's MTA
// retries only for the other one.
func TestMixedRecipientsAreDecidedPerRecipient(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, greyConfig(map[string]string{
		"whitelist_recipients": `["postmaster@dest.test"]`,
	}))
	pf := startPostfix(t, d.Addr, nil)
	from, token := newSender("mixed"), uniqueName()

	out, code := sendMail(t, pf, "203.0.113.7", from, "user@dest.test,postmaster@dest.test", token)
	replies := rcptReplies(out)
	if !greylistReply.MatchString(replies["user@dest.test"]) {
		t.Errorf("reply to RCPT TO:<user@dest.test> = %q, want %q", replies["user@dest.test"], greylistReply)
	}
	qid := expectAccepted(t, out, code, "postmaster@dest.test")

	_, msg := pf.WaitDelivered(t, token, 10*time.Second)
	if to := header(t, msg, "Delivered-To"); to != "postmaster@dest.test" {
		t.Errorf("Delivered-To: %q, want postmaster@dest.test", to)
	}
	if xg := header(t, msg, "X-Greylist"); xg != "" {
		t.Errorf("X-Greylist: %q on a message that was not delayed", xg)
	}
	// Once Postfix is done with the message, postmaster's is the only copy.
	pf.WaitMaillog(t, 10*time.Second, qid+": removed")
	if n := len(pf.Delivered(token)); n != 1 {
		t.Errorf("%d copies delivered, want 1 (postmaster only)", n)
	}
}

// An IPv6 client is keyed by its /64, so a retry from another address of
// the same network passes.
func TestIPv6ClientIsGreylistedAndPasses(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, greyConfig(nil))
	pf := startPostfix(t, d.Addr, nil)
	from, rcpt := newSender("ipsix"), "user@dest.test"

	out, code := sendMail(t, pf, "IPV6:2001:db8::7", from, rcpt, uniqueName())
	firstDone := time.Now()
	expectGreylisted(t, out, code, rcpt)

	time.Sleep(time.Until(firstDone.Add(afterDelay)))
	token := uniqueName()
	out, code = sendMail(t, pf, "IPV6:2001:db8::8", from, rcpt, token)
	expectAccepted(t, out, code, rcpt)
	_, msg := pf.WaitDelivered(t, token, 10*time.Second)
	delayedSeconds(t, msg)
}

// The same cycle over the bare milter protocol, from OpenDKIM's miltertest:
// an MTA simulator that shares no code with Postfix or go-milter.
func TestMiltertestGreylistScenario(t *testing.T) {
	t.Parallel()
	requireTool(t, "miltertest") // before starting anything
	d := startDaemon(t, greyConfig(nil))

	out, err := miltertest(t, "testdata/grey.lua", map[string]string{
		"MILTER":   fmt.Sprintf("inet:%d@127.0.0.1", d.Port),
		"DELAY":    strconv.Itoa(int(greyDelay / time.Second)),
		"FROM":     newSender("mt"),
		"HOSTNAME": "mx.e2e.test",
	})
	if err != nil || !strings.Contains(out, "grey.lua: PASS") {
		t.Fatalf("testdata/grey.lua failed (%v); see the miltertest output above", err)
	}
}

// A greylisting reply promises the sender that a retry after the delay will
// pass. The record behind that promise must be on disk before the reply
// leaves, or a crash turns the retry into a fresh "new" triplet. This test
// kills the daemon with SIGKILL in the middle of a stream of decisions and
// checks that every triplet answered before the kill passes after a restart.
//
// Not parallel: it loads the machine on purpose, and the other scenarios
// time their retries against the delay.
func TestKill9KeepsEveryAnsweredTriplet(t *testing.T) {
	d := startDaemon(t, greyConfig(nil))

	type answered struct {
		env envelope
		at  time.Time
	}
	var (
		mu       sync.Mutex
		got      []answered
		problems []string
		killing  atomic.Bool
		wg       sync.WaitGroup
	)
	// Several MTAs at once, each session a new triplet, until the daemon dies.
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !killing.Load() {
				env := envelope{ClientIP: fmt.Sprintf("203.0.113.%d", 10+w), Helo: "mail.sender.test",
					From: newSender("crash"), Rcpt: "user@dest.test"}
				act, err := milterRcpt(d.Addr, env)
				mu.Lock()
				switch {
				case err != nil:
					if !killing.Load() {
						problems = append(problems, fmt.Sprintf("%+v: %v", env, err))
					}
				case act.Code == milter.ActReplyCode && act.SMTPCode == 451:
					got = append(got, answered{env, time.Now()})
				default:
					problems = append(problems, fmt.Sprintf("%+v: first sighting answered %q %d %q, want 451", env, rune(act.Code), act.SMTPCode, act.SMTPText))
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	if !waitFor(20*time.Second, func() bool { return count() >= 300 }) {
		t.Logf("only %d decisions in 20s before the kill", count())
	}
	killing.Store(true)
	if err := d.Kill9(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, p := range problems {
		t.Errorf("before the kill: %s", p)
	}
	if len(got) == 0 {
		t.Fatal("no greylisting reply received before the kill: nothing to check")
	}
	t.Logf("%d triplets answered 451 before kill -9", len(got))

	d.Restart(t)
	// got is in reply order: wait until the last one is past the delay.
	time.Sleep(time.Until(got[len(got)-1].at.Add(afterDelay)))

	lost := 0
	for _, a := range got {
		act, err := milterRcpt(d.Addr, a.env)
		switch {
		case err != nil:
			t.Fatalf("retry of %+v after restart: %v", a.env, err)
		case act.Code != milter.ActContinue && act.Code != milter.ActAccept:
			if lost++; lost <= 5 {
				t.Errorf("retry of %+v after restart answered %q %d %q, want continue: the record was lost",
					a.env, rune(act.Code), act.SMTPCode, act.SMTPText)
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d answered triplets lost by kill -9", lost, len(got))
	}
	// The store came back by itself, without complaint.
	for _, bad := range []string{"corrupt", "checksum", "panic"} {
		if line, ok := lineWith(strings.ToLower(d.Log()), bad); ok {
			t.Errorf("daemon log after restart mentions %q: %s", bad, line)
		}
	}
}
