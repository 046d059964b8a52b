package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/milter-grey/milter-grey/admin"
	"github.com/milter-grey/milter-grey/config"
)

// adminDaemon starts a daemon whose admin API listens on a unix socket,
// named in its configuration file; it returns the daemon and the file.
func adminDaemon(t *testing.T, extra string) (*testDaemon, string) {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(socketDir(t), "admin.sock")
	path := writeDaemonConfig(t, dir, "inet:127.0.0.1:0",
		"admin_listen = "+strconv.Quote("unix:"+sock)+"\n"+
			// Nothing answers DNS here: SPF fails at once, triplets
			// are keyed by the client network.
			"dns_server = \"127.0.0.1:9\"\n"+extra)
	c, err := config.Load(path, false)
	if err != nil {
		t.Fatal(err)
	}
	return startDaemon(t, c), path
}

// milterGrey runs the command line args and returns its exit code and
// outputs.
func milterGrey(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// mustRun runs args, which must succeed, and returns stdout.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := milterGrey(t, args...)
	if code != 0 {
		t.Fatalf("milter-grey %q: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	return out
}

const (
	keyBob   = "t:192.0.2.0/24 alice@sender.example bob@example.net"
	keyCarol = "t:192.0.2.0/24 alice@sender.example carol@example.net"
)

// Each admin command, through run() as an admin types it, against a daemon
// serving milter sessions.
func TestAdminCommandsAgainstARunningDaemon(t *testing.T) {
	d, cfg := adminDaemon(t, "")
	wantGreylisted(t, d.rcpt(t, "<alice@sender.example>", "<bob@example.net>"), "300")

	t.Run("list prints a table", func(t *testing.T) {
		out := mustRun(t, "list", "-config", cfg)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 || !regexp.MustCompile(`^KEY +STATE +FIRST +LAST +COUNT +EXPIRES$`).MatchString(lines[0]) {
			t.Fatalf("list:\n%s", out)
		}
		if !strings.HasPrefix(lines[1], keyBob+"  pending  ") || !strings.Contains(lines[1], "  1  ") {
			t.Errorf("row %q", lines[1])
		}
		// Columns are aligned: STATE starts where the key's column ends.
		if strings.Index(lines[0], "STATE") != strings.Index(lines[1], "pending") {
			t.Errorf("columns not aligned:\n%s", out)
		}
	})
	t.Run("flags may come before the command, and filter", func(t *testing.T) {
		out := mustRun(t, "-config", cfg, "-json", "list", "-state", "pending", "-client", "192.0.2.99")
		var e admin.Entry
		if err := json.Unmarshal([]byte(out), &e); err != nil || e.Key != keyBob || e.State != "pending" {
			t.Errorf("list -json: %q (%v)", out, err)
		}
		if out := mustRun(t, "list", "-config", cfg, "-sender", "other.example"); strings.Count(out, "\n") != 1 {
			t.Errorf("a filter matching nothing prints the header only:\n%s", out)
		}
	})
	t.Run("show", func(t *testing.T) {
		// The key unquoted, in three arguments, works too.
		out := mustRun(t, "show", "-config", cfg, "t:192.0.2.0/24", "alice@sender.example", "bob@example.net")
		for _, want := range []string{"key:     " + keyBob, "state:   pending", "sender:  alice@sender.example", "count:   1", "expires: "} {
			if !strings.Contains(out, want) {
				t.Errorf("show lacks %q:\n%s", want, out)
			}
		}
		code, _, errOut := milterGrey(t, "show", "-config", cfg, "t:absent a b")
		if code != 1 || !strings.Contains(errOut, `no record "t:absent a b"`) {
			t.Errorf("show of an absent key: %d %q", code, errOut)
		}
	})
	t.Run("explain says what the daemon then does", func(t *testing.T) {
		out := mustRun(t, "explain", "-config", cfg, "-client", "192.0.2.10", "-helo", "mail.sender.example",
			"-from", "<alice@sender.example>", "-to", "<bob@example.net>")
		for _, want := range []string{"action:   greylist", "reason:   early", "key:      " + keyBob, "spf:      temperror", "retry in: ", "record:   pending"} {
			if !strings.Contains(out, want) {
				t.Errorf("explain lacks %q:\n%s", want, out)
			}
		}
		before := len(d.log.String())
		wantGreylisted(t, d.rcpt(t, "<alice@sender.example>", "<bob@example.net>"), "300")
		if !strings.Contains(d.log.String()[before:], "action=greylist reason=early") {
			t.Errorf("the daemon did not decide greylist/early:\n%s", d.log.String()[before:])
		}
	})
	t.Run("pass lets the next mail through", func(t *testing.T) {
		out := mustRun(t, "pass", "-config", cfg, "-client", "192.0.2.10", "-sender", "Alice@Sender.Example", "-rcpt", "carol+x@example.net")
		if !strings.HasPrefix(out, "passed "+keyCarol+" (until ") {
			t.Errorf("pass: %q", out)
		}
		if a := d.rcpt(t, "<alice@sender.example>", "<carol@example.net>"); a.Code != gomilter.ActContinue {
			t.Errorf("after pass: %q %d %q, want continue", a.Code, a.SMTPCode, a.SMTPText)
		}
		if !strings.Contains(d.log.String(), "action=pass reason=known") {
			t.Errorf("no pass/known decision:\n%s", d.log)
		}
	})
	t.Run("stats", func(t *testing.T) {
		out := mustRun(t, "stats", "-config", cfg)
		for _, want := range []string{"pending 1, passed 1, never-retried 0", "store:     up", "sessions:  "} {
			if !strings.Contains(out, want) {
				t.Errorf("stats lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("never-retried is empty while the window is open", func(t *testing.T) {
		if out := mustRun(t, "never-retried", "-config", cfg); strings.Count(out, "\n") != 1 {
			t.Errorf("never-retried:\n%s", out)
		}
	})
	t.Run("dump, delete all, restore", func(t *testing.T) {
		dump := mustRun(t, "dump", "-config", cfg)
		if n := strings.Count(dump, "\n"); n != 2 {
			t.Fatalf("dump has %d lines:\n%s", n, dump)
		}
		if code, _, errOut := milterGrey(t, "delete", "-config", cfg); code != 2 || !strings.Contains(errOut, "-all deletes every record") {
			t.Errorf("delete without a filter: %d %q", code, errOut)
		}
		if out := mustRun(t, "delete", "-config", cfg, "-all"); out != "deleted 2 records\n" {
			t.Errorf("delete -all: %q", out)
		}
		if out := mustRun(t, "list", "-config", cfg); strings.Count(out, "\n") != 1 {
			t.Errorf("records left:\n%s", out)
		}
		file := filepath.Join(t.TempDir(), "dump.jsonl")
		os.WriteFile(file, []byte(dump), 0o600)
		if out := mustRun(t, "restore", "-config", cfg, file); out != "restored 2 records\n" {
			t.Errorf("restore: %q", out)
		}
		if again := mustRun(t, "dump", "-config", cfg); withoutTTL(t, again) != withoutTTL(t, dump) {
			t.Errorf("dump after restore differs:\n%s\nwas\n%s", again, dump)
		}
	})
	t.Run("delete by key and by filter", func(t *testing.T) {
		if out := mustRun(t, "delete", "-config", cfg, keyCarol); out != "deleted "+keyCarol+"\n" {
			t.Errorf("delete KEY: %q", out)
		}
		if code, _, errOut := milterGrey(t, "delete", "-config", cfg, keyCarol); code != 1 || !strings.Contains(errOut, "no record") {
			t.Errorf("delete of an absent key: %d %q", code, errOut)
		}
		if out := mustRun(t, "delete", "-config", cfg, "-rcpt", "bob@example.net"); out != "deleted 1 records\n" {
			t.Errorf("delete -rcpt: %q", out)
		}
	})
}

// withoutTTL sorts a dump's lines and drops their lifetimes, which change
// as time passes.
func withoutTTL(t *testing.T, dump string) string {
	t.Helper()
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(dump))
	for sc.Scan() {
		var e admin.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("dump line %q: %v", sc.Text(), err)
		}
		if e.TTLSeconds <= 0 {
			t.Errorf("%s: ttl_seconds %d", e.Key, e.TTLSeconds)
		}
		e.TTLSeconds, e.Expires = 0, nil
		b, _ := json.Marshal(e)
		lines = append(lines, string(b))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestAdminCommandErrors(t *testing.T) {
	noAdmin := writeFile(t, "milter-grey.toml", "hostname = \"mx.test\"\n")
	absentSock := filepath.Join(socketDir(t), "admin.sock")
	down := writeFile(t, "milter-grey.toml", "admin_listen = "+strconv.Quote("unix:"+absentSock)+"\n")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"admin_listen off", []string{"list", "-config", noAdmin}, 1,
			"admin_listen is not set in " + noAdmin + "; the admin commands need it"},
		{"daemon not running", []string{"stats", "-config", down}, 1, "(is milter-grey running, with admin_listen"},
		{"daemon not running on TCP", []string{"stats", "-admin", "127.0.0.1:1"}, 1, "connection refused"},
		{"show without a key", []string{"show", "-config", down}, 2, "show needs a KEY"},
		{"delete with a key and a filter", []string{"delete", "-config", down, "-client", "192.0.2.1", "t:x a b"}, 2, "not both"},
		{"delete -all with a filter", []string{"delete", "-config", down, "-all", "-client", "192.0.2.1"}, 2, "takes no filter"},
		{"pass without a recipient", []string{"pass", "-config", down, "-client", "192.0.2.1"}, 2, "pass needs -client and -rcpt"},
		{"explain without a client", []string{"explain", "-config", down, "-to", "a@b"}, 2, "explain needs -client"},
		{"a flag of another command", []string{"stats", "-config", down, "-client", "x"}, 2, "flag provided but not defined: -client"},
		{"list takes no argument", []string{"list", "-config", down, "extra"}, 2, `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := milterGrey(t, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errOut, tc.code, tc.stderr)
			}
		})
	}
}

// The metrics after a scripted set of decisions count exactly those.
func TestMetricsCountTheDecisionsMade(t *testing.T) {
	c := daemonConfig(t, t.TempDir(), "admin_listen = \"inet:127.0.0.1:0\"\n"+
		"whitelist_recipients = [\"postmaster@\"]\ndns_server = \"127.0.0.1:9\"\n")
	d := startDaemon(t, c)
	base := "http://" + d.adminLn.Addr().String()

	want := map[string]int{}
	decide := func(from, to, action, reason string) {
		t.Helper()
		d.rcpt(t, from, to)
		want[`action="`+action+`",reason="`+reason+`"`]++
	}
	decide("<a@one.example>", "<x@example.net>", "greylist", "new")
	decide("<b@two.example>", "<x@example.net>", "greylist", "new")
	decide("<a@one.example>", "<x@example.net>", "greylist", "early")
	decide("<a@one.example>", "<x@example.net>", "greylist", "early")
	decide("<c@three.example>", "<postmaster@example.net>", "pass", "rcpt-whitelist")
	d.reload()

	text := httpGet(t, base+"/metrics", http.StatusOK)
	got := map[string]int{}
	total := 0
	for _, m := range regexp.MustCompile(`(?m)^milter_grey_decisions_total\{(.*)\} (\d+)$`).FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(m[2])
		got[m[1]] = n
		total += n
	}
	if decisions := strings.Count(d.log.String(), "msg=decision"); total != decisions || total != 5 {
		t.Errorf("decisions_total sums to %d; the log has %d decision lines, the script made 5", total, decisions)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("decisions_total{%s} = %d, want %d", k, got[k], n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("series %v, want %v", got, want)
	}
	for _, line := range []string{
		`milter_grey_spf_results_total{result="temperror"} 4`, // the greylisted ones needed SPF (key_by_spf_domain)
		`milter_grey_list_reloads_total{result="ok"} 1`,
		`milter_grey_store_up 1`,
		`milter_grey_sessions_open `,
		`milter_grey_never_retried_total 0`,
		// Under greylist = "suspicious" a new triplet is stepped twice,
		// once to learn it is new (nothing written) and once to write it
		// as greylisted or passed: 2 new × 2 + 2 early × 1.
		`milter_grey_store_operations_total{op="update",result="ok"} 6`,
		// The new ones needed SPF, which DNS could not answer.
		`milter_grey_triggers_total{action="greylist",trigger="dns-failure"} 2`,
		`milter_grey_build_info{goversion="`,
		`milter_grey_dns_seconds_count `,
		`milter_grey_store_operation_seconds_bucket{op="update",le="`,
	} {
		if !strings.Contains(text, line) {
			t.Errorf("metrics lack %q", line)
		}
	}
	if body := httpGet(t, base+"/healthz", http.StatusOK); body != "ok\n" {
		t.Errorf("healthz: %q", body)
	}
}

func httpGet(t *testing.T, url string, status int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %d, want %d\n%s", url, resp.StatusCode, status, b)
	}
	return string(b)
}

// In dry-run mode a new triplet is recorded but not refused.
func TestDryRunRecordsButNeverRefuses(t *testing.T) {
	d, cfg := adminDaemon(t, "dry_run = true\n")
	for i := range 2 {
		if a := d.rcpt(t, "<alice@sender.example>", "<bob@example.net>"); a.Code != gomilter.ActContinue {
			t.Errorf("attempt %d: %q %d %q, want continue", i+1, a.Code, a.SMTPCode, a.SMTPText)
		}
	}
	for _, want := range []string{"action=greylist reason=new", "action=greylist reason=early"} {
		if line, ok := lineWith(d.log.String(), want); !ok || !strings.Contains(line, "dry_run=true") {
			t.Errorf("no %q line with dry_run=true:\n%s", want, d.log)
		}
	}
	out := mustRun(t, "list", "-config", cfg, "-state", "pending")
	if !strings.Contains(out, keyBob) || !strings.Contains(out, "  2  ") {
		t.Errorf("the triplet is not recorded as pending with 2 attempts:\n%s", out)
	}
	if !strings.Contains(d.log.String(), "dry_run=true") || !strings.Contains(d.log.String(), "nothing is refused") {
		t.Errorf("the start is not logged as dry run:\n%s", d.log)
	}
}

func lineWith(text, part string) (string, bool) {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, part) {
			return l, true
		}
	}
	return "", false
}

// A triplet not retried within its window is counted once, and listed.
func TestNeverRetriedTripletsAreCountedOnce(t *testing.T) {
	d, cfg := adminDaemon(t, "delay = \"1s\"\nretry_window = \"2s\"\n")
	wantGreylisted(t, d.rcpt(t, "<alice@sender.example>", "<bob@example.net>"), "1")
	ctx := context.Background()
	if n, err := d.countNeverRetried(ctx); err != nil || n != 0 {
		t.Fatalf("inside the window: %d, %v", n, err)
	}
	time.Sleep(2100 * time.Millisecond) // the retry window, not a timing assertion
	if n, err := d.countNeverRetried(ctx); err != nil || n != 1 {
		t.Errorf("past the window: %d, %v; want 1", n, err)
	}
	if n, err := d.countNeverRetried(ctx); err != nil || n != 0 {
		t.Errorf("next scan: %d, %v; want 0 (counted once)", n, err)
	}
	out := mustRun(t, "never-retried", "-config", cfg)
	if !strings.Contains(out, keyBob+"  never-retried") {
		t.Errorf("never-retried:\n%s", out)
	}
	if !strings.Contains(mustRun(t, "stats", "-config", cfg), "never-retried 1") {
		t.Error("stats do not count it")
	}
	if !strings.Contains(d.log.String(), `msg="never-retried triplets" count=1`) {
		t.Errorf("not logged:\n%s", d.log)
	}
}

// The admin socket goes away with the daemon.
func TestAdminSocketClosesWithTheDaemon(t *testing.T) {
	d, cfg := adminDaemon(t, "")
	mustRun(t, "stats", "-config", cfg)
	sock := strings.TrimPrefix(d.cfg.AdminListen, "unix:")
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("admin socket: %v %v, want mode 0660 (socket_mode)", fi, err)
	}
	d.stopNow(t)
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("admin socket left after stop: %v", err)
	}
	if code, _, errOut := milterGrey(t, "stats", "-config", cfg); code != 1 || !strings.Contains(errOut, "is milter-grey running") {
		t.Errorf("stats after stop: %d %q", code, errOut)
	}
}
