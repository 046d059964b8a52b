package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// importDelay is milter-grey's greylist delay in the import scenarios:
// long enough to stop the old daemon, import its database and send a
// message before a triplet it saw first passes.
const importDelay = 8 * time.Second

// importSetup starts milter-grey, with an admin socket for the import,
// and a Postfix in front of it.
func importSetup(t *testing.T) (*daemon, *postfix) {
	t.Helper()
	d := startDaemon(t, greyConfig(map[string]string{
		"delay":        strconv.Quote(importDelay.String()),
		"admin_listen": strconv.Quote("unix:" + adminSocket(t)),
	}))
	return d, startPostfix(t, d.Addr, nil)
}

// checkImported sends through Postfix, from client, a message of a
// triplet the old daemon had passed and one it had seen once, at
// firstAttempt: the first passes at once; the second is greylisted, its
// delay counted from firstAttempt, and passes at its retry after it.
func checkImported(t *testing.T, d *daemon, pf *postfix, client, passedFrom, pendingFrom, rcpt string, firstAttempt time.Time) {
	t.Helper()
	t.Run("the triplet that had passed passes at once", func(t *testing.T) {
		out, code := sendMail(t, pf, client, passedFrom, rcpt, uniqueName())
		expectAccepted(t, out, code, rcpt)
		d.WaitLog(t, 5*time.Second, "action=pass", "reason=known", passedFrom)
	})
	t.Run("the triplet seen once waits for the delay from its first attempt", func(t *testing.T) {
		// At least 2 s after the first attempt: a reply counted from
		// now would ask for the whole delay.
		time.Sleep(time.Until(firstAttempt.Add(2 * time.Second)))
		out, code := sendMail(t, pf, client, pendingFrom, rcpt, uniqueName())
		if time.Since(firstAttempt) >= importDelay {
			t.Fatalf("sent %v after the first attempt, past the %v delay: machine too slow for this check",
				time.Since(firstAttempt).Round(time.Millisecond), importDelay)
		}
		n := expectGreylisted(t, out, code, rcpt)
		if n >= int(importDelay/time.Second) {
			t.Errorf("reply asks to retry in %d seconds, the whole %v delay: not counted from the first attempt", n, importDelay)
		}
		// "early", not "new": the store knew the triplet.
		d.WaitLog(t, 5*time.Second, "action=greylist", "reason=early", pendingFrom)
	})
	t.Run("its retry after the delay is accepted", func(t *testing.T) {
		time.Sleep(time.Until(firstAttempt.Add(importDelay + time.Second)))
		token := uniqueName()
		out, code := sendMail(t, pf, client, pendingFrom, rcpt, token)
		expectAccepted(t, out, code, rcpt)
		_, msg := pf.WaitDelivered(t, token, 10*time.Second)
		if n := delayedSeconds(t, msg); n < int(importDelay/time.Second) {
			t.Errorf("X-Greylist reports a delay of %d seconds, want at least %v from the first attempt", n, importDelay)
		}
		d.WaitLog(t, 5*time.Second, "action=pass", "reason=retried", pendingFrom)
	})
}

// Postgrey from Debian's package greylists two triplets through the policy
// protocol, one retried after its delay; milter-grey imports its database
// and keeps both where Postgrey left them. Postfix sends from another host
// of the client's /24, and to the recipient without the extension Postgrey
// saw: milter-grey keys both as Postgrey's entries map to.
func TestImportFromPostgreyKeepsCorrespondents(t *testing.T) {
	t.Parallel()
	requireTool(t, "db_dump")
	d, pf := importSetup(t)
	pg := startPostgrey(t, "--delay=1")
	passedFrom, pendingFrom := newSender("pgpassed"), newSender("pgpending")

	if a := pg.Action(t, "198.51.100.20", "", passedFrom, "User+Lists@Dest.Test"); !strings.HasPrefix(a, "DEFER_IF_PERMIT") {
		t.Fatalf("postgrey, first attempt: %q, want DEFER_IF_PERMIT", a)
	}
	time.Sleep(2 * time.Second) // Postgrey's --delay=1, in whole seconds
	if a := pg.Action(t, "198.51.100.20", "", passedFrom, "User+Lists@Dest.Test"); !strings.HasPrefix(a, "PREPEND X-Greylist: delayed") {
		t.Fatalf("postgrey, retry: %q, want it passed with its header", a)
	}
	firstAttempt := time.Now()
	if a := pg.Action(t, "198.51.100.20", "", pendingFrom, "user@dest.test"); !strings.HasPrefix(a, "DEFER_IF_PERMIT") {
		t.Fatalf("postgrey, first attempt: %q, want DEFER_IF_PERMIT", a)
	}
	pg.stop(t)

	out := d.mustAdmin(t, nil, "import", "-delay", "1", "postgrey", pg.DBDir)
	// Two triplets (each twice: also under spf:sender.test) and the
	// client's count of one pass.
	if !strings.Contains(out, "read 3 entries: 5 records (passed 2, pending 2, clients 1; keyed by SPF domain 2); skipped 0") ||
		!strings.Contains(out, "written 5, unchanged 0") {
		t.Fatalf("import summary:\n%s", out)
	}
	checkImported(t, d, pf, "198.51.100.21", passedFrom, pendingFrom, "user@dest.test", firstAttempt)
}

// milter-greylist is not packaged by Debian: its dumpfile is written here
// as its documentation and dump.c lay it out (a line per triplet, the time
// its retry is accepted, or "AUTO" and the time its auto-whitelisting
// ends), with milter-greylist's default 30-minute delay.
func TestImportFromMilterGreylistKeepsCorrespondents(t *testing.T) {
	t.Parallel()
	d, pf := importSetup(t)
	passedFrom, pendingFrom := newSender("mgpassed"), newSender("mgpending")
	firstAttempt := time.Now()
	line := func(from string, at time.Time, auto string) string {
		return fmt.Sprintf("198.51.100.20\t<%s>\t<user@dest.test>\t%d %s# %s\n", from, at.Unix(), auto, at.Format("2006-01-02 15:04:05"))
	}
	dump := filepath.Join(t.TempDir(), "greylist.db")
	must(t, os.WriteFile(dump, []byte("#\n# milter-greylist databases\n#\n\n#\n# stored tuples\n#\n"+
		line(passedFrom, firstAttempt.Add(20*time.Hour), "AUTO ")+
		// Accepted 30 minutes after the first attempt.
		line(pendingFrom, firstAttempt.Add(30*time.Minute), "")+
		"#\n# Summary: 2 records, 1 greylisted, 1 whitelisted\n#\n"), 0o644))

	out := d.mustAdmin(t, nil, "import", "milter-greylist", dump)
	if !strings.Contains(out, "read 2 entries: 4 records (passed 2, pending 2, clients 0; keyed by SPF domain 2); skipped 0") ||
		!strings.Contains(out, "written 4, unchanged 0") {
		t.Fatalf("import summary:\n%s", out)
	}
	checkImported(t, d, pf, "198.51.100.21", passedFrom, pendingFrom, "user@dest.test", firstAttempt)
}
