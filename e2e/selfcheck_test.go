package e2e

import (
	"testing"
	"time"
)

// TestHarnessPostfixDelivers checks the harness itself, without any milter:
// the private Postfix accepts a message from swaks and delivers it to the
// maildir. When this fails, the greylisting tests prove nothing.
func TestHarnessPostfixDelivers(t *testing.T) {
	t.Parallel()
	pf := startPostfix(t, "", nil)
	token := uniqueName()

	out, code := swaks(t, pf.Port(),
		"--helo", "client.sender.test",
		"--from", "harness-"+token+"@sender.test",
		"--to", "user@dest.test",
		"--header", "Subject: harness "+token)
	if code != swaksOK {
		t.Fatalf("swaks exit %d, want %d", code, swaksOK)
	}
	if r := rcptReplies(out)["user@dest.test"]; !hasCode(r, "250") {
		t.Errorf("reply to RCPT TO = %q, want 250", r)
	}
	qid := queueID(out)
	if qid == "" {
		t.Fatalf("no 'queued as' in the reply to DATA")
	}

	_, msg := pf.WaitDelivered(t, token, 10*time.Second)
	if h := header(t, msg, "Delivered-To"); h != "user@dest.test" {
		t.Errorf("Delivered-To = %q, want user@dest.test", h)
	}
	pf.WaitMaillog(t, 5*time.Second, qid, "to=<user@dest.test>", "status=sent (delivered to maildir)")
}
