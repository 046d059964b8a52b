package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// swaksDataRefused is swaks' exit code when the server refuses the message
// after its content.
const swaksDataRefused = 26

// afterDataReply finds the server's reply to the end of the message content.
var afterDataReply = regexp.MustCompile(`(?m)^ *<\*\* +(4\d\d .*)$`)

// The null sender (bounces, DSNs, other servers' address verification) is
// decided after the envelope: a probe that never sends DATA must get 250 at
// RCPT TO, or the sender's server would take our recipient for invalid. A
// real bounce is greylisted for the whole message, after its content.
func TestNullSenderIsGreylistedAfterDataNotAtRcpt(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, greyConfig(nil))
	pf := startPostfix(t, d.Addr, nil)
	rcpt := "bounce-" + uniqueName() + "@dest.test"

	t.Run("address verification probe gets 250 at RCPT", func(t *testing.T) {
		out, code := swaks(t, pf.Port(), "--xclient-addr", "203.0.113.44", "--helo", "mail.sender.test",
			"--from", "<>", "--to", rcpt, "--quit-after", "RCPT")
		if code != swaksOK {
			t.Fatalf("swaks exit %d, want %d", code, swaksOK)
		}
		if r := rcptReplies(out)[rcpt]; !hasCode(r, "250") {
			t.Fatalf("reply to RCPT TO = %q, want 250", r)
		}
		if strings.Contains(d.Log(), rcpt) {
			t.Fatalf("a probe without DATA was decided:\n%s", d.Log())
		}
	})

	var firstDone time.Time
	t.Run("bounce is greylisted after its content", func(t *testing.T) {
		out, code := swaks(t, pf.Port(), "--xclient-addr", "203.0.113.44", "--helo", "mail.sender.test",
			"--from", "<>", "--to", rcpt, "--header", "Subject: bounce "+uniqueName())
		firstDone = time.Now()
		if code != swaksDataRefused {
			t.Fatalf("swaks exit %d, want %d (refused after DATA)\n%s", code, swaksDataRefused, out)
		}
		if r := rcptReplies(out)[rcpt]; !hasCode(r, "250") {
			t.Errorf("reply to RCPT TO = %q, want 250 (decided after the envelope)", r)
		}
		m := afterDataReply.FindStringSubmatch(out)
		if m == nil || !greylistReply.MatchString(m[1]) {
			t.Fatalf("no greylisting reply after the content:\n%s", out)
		}
		d.WaitLog(t, 5*time.Second, "action=greylist", "reason=new", "sender=<>", rcpt)
	})

	t.Run("bounce retried after the delay is delivered", func(t *testing.T) {
		time.Sleep(time.Until(firstDone.Add(afterDelay)))
		token := uniqueName()
		out, code := swaks(t, pf.Port(), "--xclient-addr", "203.0.113.44", "--helo", "mail.sender.test",
			"--from", "<>", "--to", rcpt, "--header", "Subject: bounce "+token, "--body", "bounce "+token)
		expectAccepted(t, out, code, rcpt)
		_, msg := pf.WaitDelivered(t, token, 10*time.Second)
		delayedSeconds(t, msg)
		d.WaitLog(t, 5*time.Second, "action=pass", "reason=retried", "sender=<>")
	})
}
