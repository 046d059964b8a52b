package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-milter"

	"github.com/milter-grey/milter-grey/testutil/testredis"
)

// The scenarios of a site whose MX hosts share one Redis (store =
// "redis://…"): a sender greylisted by one host passes its retry at
// another, two hosts never both call a triplet new, an outage of Redis
// follows on_error and heals by itself, and copy-store moves a site from
// Badger to Redis without greylisting its correspondents again. Each test
// runs its own redis-server (testutil/testredis) on loopback.

// redisConfig is greyConfig for a daemon whose store is the Redis server r,
// its keys under prefix, with extra keys set or overridden.
func redisConfig(r *testredis.Server, prefix string, extra map[string]string) string {
	keys := map[string]string{
		"store":        strconv.Quote(r.URL()),
		"redis_prefix": strconv.Quote(prefix),
	}
	for k, v := range extra {
		keys[k] = v
	}
	return greyConfig(keys)
}

// newPrefix returns a redis_prefix unique to this run.
func newPrefix() string { return "e2e-" + uniqueName() + ":" }

// actionText says what the MTA makes of a milter's answer at RCPT TO:
// "continue" (the recipient is accepted), or the SMTP reply it sends, such
// as "451 4.7.1 Greylisted, please try again in 2 seconds".
func actionText(act *milter.Action) string {
	switch act.Code {
	case milter.ActContinue:
		return "continue"
	case milter.ActAccept:
		return "accept"
	case milter.ActReplyCode:
		return fmt.Sprintf("%d %s", act.SMTPCode, act.SMTPText)
	}
	return fmt.Sprintf("action %q", rune(act.Code))
}

// The reply of on_error = "tempfail" while the store fails.
var storeErrorReply = regexp.MustCompile(`^451 4\.3\.0 `)

// ask sends one envelope to the daemon with go-milter's client and returns
// actionText of its answer at RCPT TO; no answer fails the test.
func ask(t *testing.T, d *daemon, env envelope) string {
	t.Helper()
	act, err := milterRcpt(d.Addr, env)
	if err != nil {
		t.Fatalf("milter session %+v with %s: %v\nlog:\n%s", env, d.Addr, err, tail(d.Log(), 20))
	}
	return actionText(act)
}

// freshEnvelope is a triplet nobody has seen: a sender unique to this run.
func freshEnvelope(tag string) envelope {
	return envelope{ClientIP: "203.0.113.7", Helo: "mail.sender.test", From: newSender(tag), Rcpt: "user@dest.test"}
}

// logFields splits a text-format log line (key=value, values with spaces
// quoted) into its fields; the first of a repeated key wins.
func logFields(line string) map[string]string {
	f := map[string]string{}
	for {
		line = strings.TrimLeft(line, " ")
		k, rest, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \"") {
			return f
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return f
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		if _, dup := f[k]; !dup {
			f[k] = v
		}
		line = rest
	}
}

// decisions returns the fields of every decision line of a daemon log.
func decisions(log string) []map[string]string {
	var out []map[string]string
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "msg=decision ") {
			continue
		}
		if f := logFields(line); f["msg"] == "decision" {
			out = append(out, f)
		}
	}
	return out
}

// countLines counts the lines of text that contain s.
func countLines(text, s string) int {
	n := 0
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// running fails the test if the daemon's process has exited.
func running(t *testing.T, d *daemon) {
	t.Helper()
	if r := d.current(); r == nil || r.exited() {
		t.Fatalf("milter-grey is no longer running; log:\n%s", tail(d.Log(), 40))
	}
}

// Two MX hosts of one domain, each with its own Postfix and its own
// milter-grey, share one Redis. A sending server that is greylisted by mx1
// and retries at mx2 (as it will: MX hosts are tried in turn) is let
// through by mx2, which knows how long it waited; from then on mx1 knows
// the triplet too.
func TestTwoMXHostsShareOneRedis(t *testing.T) {
	t.Parallel()
	rdb := testredis.Start(t)
	prefix := newPrefix()
	mx1 := startDaemon(t, redisConfig(rdb, prefix, map[string]string{"hostname": `"mx1.e2e.test"`}))
	mx2 := startDaemon(t, redisConfig(rdb, prefix, map[string]string{"hostname": `"mx2.e2e.test"`}))
	pf1 := startPostfix(t, mx1.Addr, map[string]string{"myhostname": "mx1.e2e.test"})
	pf2 := startPostfix(t, mx2.Addr, map[string]string{"myhostname": "mx2.e2e.test"})
	client, from, rcpt := "203.0.113.7", newSender("twomx"), "user@dest.test"
	var firstDone time.Time

	if !t.Run("first attempt at mx1 is greylisted", func(t *testing.T) {
		out, code := sendMail(t, pf1, client, from, rcpt, uniqueName())
		firstDone = time.Now()
		expectGreylisted(t, out, code, rcpt)
		mx1.WaitLog(t, 5*time.Second, "action=greylist", "reason=new", from)
	}) {
		return
	}

	if !t.Run("retry at mx2 after the delay is delivered, with mx2's X-Greylist", func(t *testing.T) {
		time.Sleep(time.Until(firstDone.Add(afterDelay)))
		token := uniqueName()
		out, code := sendMail(t, pf2, client, from, rcpt, token)
		expectAccepted(t, out, code, rcpt)
		_, msg := pf2.WaitDelivered(t, token, 10*time.Second)
		xg := header(t, msg, "X-Greylist")
		m := regexp.MustCompile(`^delayed (\d+) seconds by milter-grey on mx2\.e2e\.test$`).FindStringSubmatch(xg)
		if m == nil {
			t.Fatalf("X-Greylist: %q, want \"delayed N seconds by milter-grey on mx2.e2e.test\"", xg)
		}
		if n, _ := strconv.Atoi(m[1]); n < int(greyDelay/time.Second) {
			t.Errorf("X-Greylist reports a delay of %d seconds, want at least %v (the wait since mx1's 451)", n, greyDelay)
		}
		mx2.WaitLog(t, 5*time.Second, "action=pass", "reason=retried", from)
		// mx2 learnt the triplet from Redis: it never saw it as new.
		if line, ok := lineWith(mx2.Log(), "reason=new", from); ok {
			t.Errorf("mx2 greylisted the triplet as new although mx1 had: %s", line)
		}
	}) {
		return
	}

	t.Run("next message at mx1 passes at once: the triplet is known", func(t *testing.T) {
		token := uniqueName()
		out, code := sendMail(t, pf1, client, from, rcpt, token)
		expectAccepted(t, out, code, rcpt)
		_, msg := pf1.WaitDelivered(t, token, 10*time.Second)
		if xg := header(t, msg, "X-Greylist"); xg != "" {
			t.Errorf("X-Greylist: %q on a message that was not delayed", xg)
		}
		mx1.WaitLog(t, 5*time.Second, "action=pass", "reason=known", from)
	})
}

// Many sessions on two hosts race for the same fresh triplets. Redis
// decides each triplet once: exactly one session in all sees it as new
// (the others early), and after the delay exactly one retry is the one that
// passes it (the others find it known).
func TestTwoDaemonsDecideTheSameTripletsOnce(t *testing.T) {
	t.Parallel()
	const (
		triplets = 20
		workers  = 16 // concurrent sessions per daemon
		rounds   = 3  // each worker sends every triplet this many times before the delay
		// Long enough for all of the first phase (triplets*workers*rounds
		// sessions on each daemon) to come before it.
		delay = 10 * time.Second
	)
	rdb := testredis.Start(t)
	prefix := newPrefix()
	extra := map[string]string{"delay": strconv.Quote(delay.String())}
	daemons := []*daemon{
		startDaemon(t, redisConfig(rdb, prefix, extra)),
		startDaemon(t, redisConfig(rdb, prefix, extra)),
	}
	envs := make([]envelope, triplets)
	bySender := map[string]int{}
	for i := range envs {
		envs[i] = freshEnvelope("race")
		bySender[envs[i].From] = i
	}

	// blast sends every triplet, in the same order, from workers sessions
	// on each daemon at once, times over, and returns the answers that
	// want rejects.
	blast := func(times int, want func(string) bool) (bad []string) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, d := range daemons {
			for range workers {
				wg.Go(func() {
					for range times {
						for _, env := range envs {
							act, err := milterRcpt(d.Addr, env)
							got := ""
							if err != nil {
								got = "error: " + err.Error()
							} else {
								got = actionText(act)
							}
							if !want(got) {
								mu.Lock()
								bad = append(bad, fmt.Sprintf("%s from %s: %s", d.Addr, env.From, got))
								mu.Unlock()
							}
						}
					}
				})
			}
		}
		wg.Wait()
		return bad
	}

	// reasons counts, per triplet, the decisions of both daemons by
	// reason, once the logs hold want of them.
	reasons := func(want int) []map[string]int {
		var counts []map[string]int
		waitFor(5*time.Second, func() bool {
			counts = make([]map[string]int, triplets)
			for i := range counts {
				counts[i] = map[string]int{}
			}
			n := 0
			for _, d := range daemons {
				for _, f := range decisions(d.Log()) {
					if i, ok := bySender[f["sender"]]; ok {
						counts[i][f["reason"]]++
						n++
					}
				}
			}
			return n >= want
		})
		return counts
	}
	report := func(bad []string) {
		t.Helper()
		for i, b := range bad {
			if i == 10 {
				t.Errorf("… and %d more", len(bad)-i)
				break
			}
			t.Error(b)
		}
	}
	perTriplet := 2 * workers

	if !t.Run("before the delay every session is greylisted and one per triplet is new", func(t *testing.T) {
		start := time.Now()
		bad := blast(rounds, greylistReply.MatchString)
		took := time.Since(start)
		t.Logf("%d sessions in %v", len(daemons)*workers*rounds*triplets, took.Round(time.Millisecond))
		if len(bad) > 0 && took >= delay {
			t.Fatalf("the sessions took %v, longer than the %v delay: machine too slow for this check", took, delay)
		}
		report(bad)
		for i, c := range reasons(triplets * perTriplet * rounds) {
			if c["new"] != 1 || c["early"] != perTriplet*rounds-1 || len(c) != 2 {
				t.Errorf("triplet of %s: decisions by reason %v across both daemons, want new:1 early:%d",
					envs[i].From, c, perTriplet*rounds-1)
			}
		}
	}) {
		return
	}
	firstDone := time.Now() // every triplet's first sighting is before this

	t.Run("after the delay every retry passes and one per triplet is the retried one", func(t *testing.T) {
		time.Sleep(time.Until(firstDone.Add(delay + 500*time.Millisecond)))
		report(blast(1, func(got string) bool { return got == "continue" }))
		for i, c := range reasons(triplets * perTriplet * (rounds + 1)) {
			if c["retried"] != 1 || c["known"] != perTriplet-1 || len(c) != 4 {
				t.Errorf("triplet of %s: decisions by reason %v across both daemons, want new:1 early:%d retried:1 known:%d",
					envs[i].From, c, perTriplet*rounds-1, perTriplet-1)
			}
		}
	})
}

// When Redis goes away, decisions follow on_error, the daemon keeps
// answering and says so once; when Redis is back, greylisting resumes by
// itself.
func TestRedisOutageFollowsOnErrorAndRecovers(t *testing.T) {
	t.Parallel()
	t.Run("on_error accept: mail passes during the outage", func(t *testing.T) {
		t.Parallel()
		testRedisOutage(t, "accept")
	})
	t.Run("on_error tempfail: 451 4.3.0 during the outage", func(t *testing.T) {
		t.Parallel()
		testRedisOutage(t, "tempfail")
	})
	t.Run("a hung Redis still gets an answer to the MTA in time", func(t *testing.T) {
		t.Parallel()
		testRedisHung(t)
	})
}

func testRedisOutage(t *testing.T, onError string) {
	const during = 20 // decisions sent while Redis is down
	rdb := testredis.Start(t)
	d := startDaemon(t, redisConfig(rdb, newPrefix(), map[string]string{"on_error": strconv.Quote(onError)}))
	pf := startPostfix(t, d.Addr, nil)
	// The answer to a fresh triplet while the store fails.
	wantDuring, duringAction := "continue", "action=pass"
	okDuring := func(got string) bool { return got == "continue" }
	if onError == "tempfail" {
		wantDuring, duringAction = storeErrorReply.String(), "action=greylist"
		okDuring = storeErrorReply.MatchString
	}

	if !t.Run("greylisting works", func(t *testing.T) {
		env := freshEnvelope("up")
		if got := ask(t, d, env); !greylistReply.MatchString(got) {
			t.Fatalf("fresh triplet answered %q, want %q", got, greylistReply)
		}
		d.WaitLog(t, 5*time.Second, "action=greylist", "reason=new", env.From)
	}) {
		return
	}

	rdb.Stop()
	if !t.Run("while Redis is down decisions follow on_error and the outage is logged once", func(t *testing.T) {
		for range during {
			env := freshEnvelope("down")
			if got := ask(t, d, env); !okDuring(got) {
				t.Errorf("with Redis down, %s answered %q, want %q (on_error = %q)", env.From, got, wantDuring, onError)
			}
		}
		// And through Postfix, as the sending server sees it.
		from, token := newSender("downpf"), uniqueName()
		out, code := sendMail(t, pf, "203.0.113.7", from, "user@dest.test", token)
		if onError == "tempfail" {
			if r := rcptReplies(out)["user@dest.test"]; !storeErrorReply.MatchString(r) {
				t.Errorf("reply to RCPT TO = %q, want %q", r, storeErrorReply)
			}
		} else {
			expectAccepted(t, out, code, "user@dest.test")
			pf.WaitDelivered(t, token, 10*time.Second)
		}
		d.WaitLog(t, 5*time.Second, duringAction, "reason=store-error", from)

		running(t, d)
		log := d.Log()
		if n := countLines(log, "store failing"); n != 1 {
			t.Errorf("%d \"store failing\" lines for one outage of %d decisions, want 1", n, during+1)
		}
		n := 0
		for _, f := range decisions(log) {
			if f["reason"] == "store-error" {
				n++
			}
		}
		if n != during+1 {
			t.Errorf("%d decisions logged with reason=store-error, want %d", n, during+1)
		}
	}) {
		return
	}

	rdb.Restart() // empty: persistence is off
	t.Run("when Redis is back greylisting resumes without a restart of milter-grey", func(t *testing.T) {
		var last string
		if !waitFor(15*time.Second, func() bool {
			last = ask(t, d, freshEnvelope("back"))
			return greylistReply.MatchString(last)
		}) {
			t.Fatalf("15s after Redis came back a fresh triplet still gets %q, want %q", last, greylistReply)
		}
		running(t, d)
		line := d.WaitLog(t, 5*time.Second, "store recovered")
		log := d.Log()
		if n := countLines(log, "store recovered"); n != 1 {
			t.Errorf("%d \"store recovered\" lines, want 1", n)
		}
		if n := countLines(log, "store failing"); n != 1 {
			t.Errorf("%d \"store failing\" lines, want 1 (one outage)", n)
		}
		failed := 0
		for _, f := range decisions(log) {
			if f["reason"] == "store-error" {
				failed++
			}
		}
		if got := logFields(line)["failed_decisions"]; got != strconv.Itoa(failed) {
			t.Errorf("store recovered reports failed_decisions=%s, but %d decisions were logged with reason=store-error:\n%s", got, failed, line)
		}
		d.mu.Lock()
		runs := d.runs
		d.mu.Unlock()
		if runs != 1 {
			t.Errorf("milter-grey was started %d times, want 1", runs)
		}
	})
}

// A Redis that hangs (SIGSTOP: the kernel accepts connections, nothing
// answers) must not hold up the MTA: the decision fails after the store's
// timeouts, well within the milter timeouts, and passes (on_error accept).
func testRedisHung(t *testing.T) {
	rdb := testredis.Start(t)
	d := startDaemon(t, redisConfig(rdb, newPrefix(), nil))
	if got := ask(t, d, freshEnvelope("up")); !greylistReply.MatchString(got) {
		t.Fatalf("fresh triplet answered %q, want %q", got, greylistReply)
	}

	rdb.Pause()
	resumed := false
	defer func() {
		if !resumed {
			rdb.Resume()
		}
	}()
	env := freshEnvelope("hung")
	start := time.Now()
	// go-milter's client gives up after 10 s without a reply; Postfix's
	// milter_command_timeout is 30 s by default.
	act, err := milterRcpt(d.Addr, env)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("with Redis hung, no answer from milter-grey after %v: %v\nlog:\n%s", took.Round(time.Millisecond), err, tail(d.Log(), 20))
	}
	t.Logf("answer with Redis hung after %v", took.Round(time.Millisecond))
	if got := actionText(act); got != "continue" {
		t.Errorf("with Redis hung, %s answered %q, want continue (on_error = accept)", env.From, got)
	}
	d.WaitLog(t, 5*time.Second, "action=pass", "reason=store-error", env.From)
	d.WaitLog(t, 5*time.Second, "store failing")
	running(t, d)

	rdb.Resume()
	resumed = true
	var last string
	if !waitFor(15*time.Second, func() bool {
		last = ask(t, d, freshEnvelope("resumed"))
		return greylistReply.MatchString(last)
	}) {
		t.Fatalf("15s after Redis resumed a fresh triplet still gets %q, want %q", last, greylistReply)
	}
	d.WaitLog(t, 5*time.Second, "store recovered")
	if n := countLines(d.Log(), "store failing"); n != 1 {
		t.Errorf("%d \"store failing\" lines, want 1", n)
	}
}

// A site moves from Badger to Redis: stop milter-grey, copy the store with
// `milter-grey copy-store`, start it on Redis. Correspondents it already
// knew pass at once; nobody is greylisted again.
func TestCopyStoreMovesASiteToRedis(t *testing.T) {
	t.Parallel()
	rdb := testredis.Start(t)
	prefix := newPrefix()
	// redis_prefix is set from the start: copy-store reads it from the
	// configuration it is given.
	old := startDaemon(t, greyConfig(map[string]string{"redis_prefix": strconv.Quote(prefix)}))
	env := freshEnvelope("move")

	if !t.Run("on Badger the triplet is greylisted, then passes its retry", func(t *testing.T) {
		if got := ask(t, old, env); !greylistReply.MatchString(got) {
			t.Fatalf("first attempt answered %q, want %q", got, greylistReply)
		}
		firstDone := time.Now()
		time.Sleep(time.Until(firstDone.Add(afterDelay)))
		if got := ask(t, old, env); got != "continue" {
			t.Fatalf("retry after the delay answered %q, want continue", got)
		}
		old.WaitLog(t, 5*time.Second, "action=pass", "reason=retried", env.From)
	}) {
		return
	}

	if !t.Run("milter-grey stops and copy-store copies Badger to Redis", func(t *testing.T) {
		old.stop(t)
		old.WaitLog(t, 5*time.Second, "milter-grey stopped")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		args := []string{"copy-store", "-config", old.config, "-from", old.Store, "-to", rdb.URL()}
		out, err := exec.CommandContext(ctx, buildDaemon(t), args...).CombinedOutput()
		t.Logf("milter-grey %s:\n%s", strings.Join(args, " "), indent(string(out)))
		if err != nil {
			t.Fatalf("copy-store: %v", err)
		}
		m := regexp.MustCompile(`(?m)^copied (\d+) records from `).FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("copy-store printed no \"copied N records\" line")
		}
		if n, _ := strconv.Atoi(m[1]); n < 1 {
			t.Fatalf("copy-store copied %d records, want at least the passed triplet", n)
		}
	}) {
		return
	}

	t.Run("on Redis the triplet is known and passes at once", func(t *testing.T) {
		moved := startDaemon(t, redisConfig(rdb, prefix, nil))
		if got := ask(t, moved, env); got != "continue" {
			t.Fatalf("after the move, the known triplet answered %q, want continue", got)
		}
		moved.WaitLog(t, 5*time.Second, "action=pass", "reason=known", env.From)
		if line, ok := lineWith(moved.Log(), "reason=new"); ok {
			t.Errorf("greylisted as new after the move: %s", line)
		}
	})
}
