package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-milter"
)

// adminSocket returns a unix socket path for a daemon's admin API, in a
// directory of its own with a short name (socket paths are limited to about
// 100 bytes).
func adminSocket(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "e2e-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "admin.sock")
}

// admin runs an admin command of the built binary against d, as an admin
// would type it: milter-grey COMMAND -config FILE ARGS...; stdin feeds
// restore.
func (d *daemon) admin(t *testing.T, stdin []byte, command string, args ...string) (stdout, stderr string, exitCode int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.bin, append([]string{command, "-config", d.config}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("milter-grey %s: no answer within 30s", command)
	case errors.As(err, &ee):
		exitCode = ee.ExitCode()
	case err != nil:
		t.Fatalf("milter-grey %s: %v", command, err)
	}
	t.Logf("milter-grey %s %s -> exit %d\n%s%s", command, strings.Join(args, " "), exitCode, indent(out.String()), indent(errOut.String()))
	return out.String(), errOut.String(), exitCode
}

// mustAdmin runs an admin command that must succeed and returns its output.
func (d *daemon) mustAdmin(t *testing.T, stdin []byte, command string, args ...string) string {
	t.Helper()
	out, errOut, code := d.admin(t, stdin, command, args...)
	if code != 0 {
		t.Fatalf("milter-grey %s %q: exit %d: %s", command, args, code, errOut)
	}
	return out
}

// adminEntry is the part of a JSON line of list or dump the tests read.
type adminEntry struct {
	Key        string `json:"key"`
	State      string `json:"state"`
	Count      int    `json:"count"`
	TTLSeconds int64  `json:"ttl_seconds"`
}

func parseEntries(t *testing.T, jsonLines string) []adminEntry {
	t.Helper()
	var es []adminEntry
	for _, l := range strings.Split(strings.TrimSpace(jsonLines), "\n") {
		if l == "" {
			continue
		}
		var e adminEntry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("JSON line %q: %v", l, err)
		}
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].Key < es[j].Key })
	return es
}

// The admin commands of the installed binary, against a running daemon:
// what an admin does to look at and steer the greylist.
func TestAdminCommandsAgainstTheRunningDaemon(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, greyConfig(map[string]string{
		"admin_listen": strconv.Quote("unix:" + adminSocket(t)),
		"delay":        `"5m"`,
	}))
	from := newSender("admin")
	env := envelope{ClientIP: "203.0.113.7", Helo: "mail.sender.test", From: "<" + from + ">", Rcpt: "<user@dest.test>"}
	key := "t:203.0.113.0/24 " + from + " user@dest.test"
	passedKey := "t:203.0.113.0/24 " + from + " boss@dest.test"

	if act, err := milterRcpt(d.Addr, env); err != nil || act.Code != milter.ActReplyCode || act.SMTPCode != 451 {
		t.Fatalf("first attempt: %+v, %v; want 451", act, err)
	}

	t.Run("list shows the triplet pending", func(t *testing.T) {
		out := d.mustAdmin(t, nil, "list")
		if !strings.HasPrefix(out, "KEY ") || !strings.Contains(out, key+"  pending  ") {
			t.Errorf("list:\n%s", out)
		}
		es := parseEntries(t, d.mustAdmin(t, nil, "list", "-json", "-sender", from))
		if len(es) != 1 || es[0].Key != key || es[0].State != "pending" || es[0].Count != 1 {
			t.Errorf("list -json -sender: %+v", es)
		}
	})
	t.Run("show", func(t *testing.T) {
		out := d.mustAdmin(t, nil, "show", key)
		if !strings.Contains(out, "state:   pending") || !strings.Contains(out, "client:  203.0.113.0/24") {
			t.Errorf("show:\n%s", out)
		}
	})
	t.Run("explain agrees with the daemon's next decision", func(t *testing.T) {
		out := d.mustAdmin(t, nil, "explain", "-client", "203.0.113.7", "-helo", env.Helo, "-from", env.From, "-to", env.Rcpt)
		if !strings.Contains(out, "action:   greylist") || !strings.Contains(out, "reason:   early") || !strings.Contains(out, "key:      "+key) {
			t.Errorf("explain:\n%s", out)
		}
		act, err := milterRcpt(d.Addr, env)
		if err != nil || act.SMTPCode != 451 {
			t.Fatalf("second attempt: %+v, %v; want 451", act, err)
		}
		d.WaitLog(t, 5*time.Second, "action=greylist", "reason=early", from)
	})
	t.Run("pass lets the triplet through at once", func(t *testing.T) {
		out := d.mustAdmin(t, nil, "pass", "-client", "203.0.113.7", "-sender", from, "-rcpt", "boss@dest.test")
		if !strings.HasPrefix(out, "passed "+passedKey) {
			t.Errorf("pass: %q", out)
		}
		boss := env
		boss.Rcpt = "<boss@dest.test>"
		act, err := milterRcpt(d.Addr, boss)
		if err != nil || act.Code != milter.ActContinue {
			t.Fatalf("after pass: %+v, %v; want continue", act, err)
		}
		d.WaitLog(t, 5*time.Second, "action=pass", "reason=known", "boss@dest.test")
	})
	t.Run("stats", func(t *testing.T) {
		out := d.mustAdmin(t, nil, "stats")
		if !strings.Contains(out, "pending 1, passed 1, never-retried 0") || !strings.Contains(out, "store:     up") {
			t.Errorf("stats:\n%s", out)
		}
	})
	t.Run("dump, delete everything, restore: the same database", func(t *testing.T) {
		dump := d.mustAdmin(t, nil, "dump")
		before := parseEntries(t, dump)
		if len(before) != 2 {
			t.Fatalf("dump: %+v", before)
		}
		if out := d.mustAdmin(t, nil, "delete", "-all"); out != "deleted 2 records\n" {
			t.Errorf("delete -all: %q", out)
		}
		if out := d.mustAdmin(t, nil, "list"); strings.Count(out, "\n") != 1 {
			t.Errorf("left after delete -all:\n%s", out)
		}
		if out := d.mustAdmin(t, []byte(dump), "restore"); out != "restored 2 records\n" {
			t.Errorf("restore: %q", out)
		}
		after := parseEntries(t, d.mustAdmin(t, nil, "dump"))
		if len(after) != len(before) {
			t.Fatalf("after restore: %+v, before %+v", after, before)
		}
		for i := range before {
			b, a := before[i], after[i]
			if a.Key != b.Key || a.State != b.State || a.Count != b.Count || a.TTLSeconds > b.TTLSeconds+2 || a.TTLSeconds < b.TTLSeconds-5 {
				t.Errorf("restored %+v, dumped %+v", a, b)
			}
		}
		// The restored triplet is still pending, with its two attempts.
		if act, err := milterRcpt(d.Addr, env); err != nil || act.SMTPCode != 451 {
			t.Errorf("after restore: %+v, %v; want 451 early", act, err)
		}
		d.WaitLog(t, 5*time.Second, "action=greylist", "reason=early", "user@dest.test")
	})
	t.Run("delete one record", func(t *testing.T) {
		if out := d.mustAdmin(t, nil, "delete", key); out != "deleted "+key+"\n" {
			t.Errorf("delete: %q", out)
		}
		if _, errOut, code := d.admin(t, nil, "show", key); code != 1 || !strings.Contains(errOut, "no record") {
			t.Errorf("show after delete: exit %d, %q", code, errOut)
		}
	})
}

func TestAdminCommandsNeedAdminListen(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, greyConfig(nil))
	_, errOut, code := d.admin(t, nil, "list")
	if code != 1 || !strings.Contains(errOut, "admin_listen is not set in "+d.config+"; the admin commands need it") {
		t.Errorf("list without admin_listen: exit %d, %q", code, errOut)
	}
}

// Dry-run (learning) mode through Postfix: the first attempt of a new
// triplet is delivered, never refused, while the database learns the
// triplet and the log says what would have happened.
func TestDryRunThroughPostfixNeverRefusesButRecords(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, greyConfig(map[string]string{
		"dry_run":      "true",
		"admin_listen": strconv.Quote("unix:" + adminSocket(t)),
	}))
	pf := startPostfix(t, d.Addr, nil)
	from, rcpt := newSender("dryrun"), "user@dest.test"

	for i, want := range []string{"reason=new", "reason=early"} {
		token := uniqueName()
		out, code := sendMail(t, pf, "203.0.113.7", from, rcpt, token)
		expectAccepted(t, out, code, rcpt)
		_, msg := pf.WaitDelivered(t, token, 10*time.Second)
		if xg := header(t, msg, "X-Greylist"); xg != "" {
			t.Errorf("attempt %d: X-Greylist %q on a message that was not delayed", i+1, xg)
		}
		d.WaitLog(t, 5*time.Second, "action=greylist", want, from, "dry_run=true")
	}
	if strings.Contains(pf.Maillog(), "milter-reject") {
		t.Errorf("Postfix refused something:\n%s", tail(pf.Maillog(), 20))
	}
	es := parseEntries(t, d.mustAdmin(t, nil, "list", "-json", "-sender", from))
	if len(es) != 1 || es[0].Key != "t:203.0.113.0/24 "+from+" "+rcpt || es[0].State != "pending" || es[0].Count != 2 {
		t.Errorf("the database should hold the triplet pending after 2 attempts: %+v", es)
	}
	if !strings.Contains(d.Log(), "dry_run=true") || !strings.Contains(d.Log(), "nothing is refused") {
		t.Errorf("the start line does not say dry_run:\n%s", tail(d.Log(), 20))
	}
}
