package main

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/milter-grey/milter-grey/config"
	"github.com/milter-grey/milter-grey/greylist/badgerstore"
	"github.com/milter-grey/milter-grey/testutil/testlog"
)

// testDaemon is a daemon started on a configuration file in a temporary
// directory, with its store there and its socket on a free loopback port.
type testDaemon struct {
	*daemon
	log     *testlog.Buffer
	network string // of addr: "tcp" or "unix"
	addr    string
	stopped bool
}

// writeDaemonConfig writes the configuration file of a test daemon in dir
// (its store lives there too, so that a restart finds it), with extra
// lines from line 5 on, and returns its path.
func writeDaemonConfig(t *testing.T, dir, listen, extra string) string {
	t.Helper()
	path := filepath.Join(dir, "milter-grey.toml")
	text := "listen = " + strconv.Quote(listen) + "\n" +
		"store = " + strconv.Quote(filepath.Join(dir, "db")) + "\n" +
		"shutdown_timeout = \"5s\"\n" +
		"hostname = \"mx.test\"\n" + extra
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// daemonConfig is the loaded configuration of a test daemon listening on a
// free loopback port.
func daemonConfig(t *testing.T, dir, extra string) *config.Config {
	t.Helper()
	c, err := config.Load(writeDaemonConfig(t, dir, "inet:127.0.0.1:0", extra), false)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func startDaemon(t *testing.T, c *config.Config) *testDaemon {
	t.Helper()
	buf := &testlog.Buffer{}
	d, err := start(c, slog.New(slog.NewTextHandler(buf, nil)))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	td := &testDaemon{daemon: d, log: buf, network: d.ln.Addr().Network(), addr: d.ln.Addr().String()}
	t.Cleanup(func() {
		if !td.stopped {
			td.stop()
		}
	})
	// Wait until the daemon serves: one milter handshake. A stop before
	// the serving goroutine has registered its listener with go-milter
	// leaves the listener open (milter.Server.Serve/Shutdown race).
	td.session(t).Close()
	return td
}

func (td *testDaemon) stopNow(t *testing.T) {
	t.Helper()
	td.stopped = true
	if err := td.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if !strings.Contains(td.log.String(), "msg=\"milter-grey stopped\"") {
		t.Errorf("no stop line in the log:\n%s", td.log)
	}
}

func (td *testDaemon) session(t *testing.T) *gomilter.ClientSession {
	t.Helper()
	c := gomilter.NewClientWithOptions(td.network, td.addr, gomilter.ClientOptions{
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
		// A subset of what go-milter's server offers (docs/libraries.md).
		ActionMask: gomilter.OptAddHeader | gomilter.OptChangeHeader,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatalf("milter session: %v", err)
	}
	return s
}

// rcpt runs one SMTP transaction from 192.0.2.10 up to one recipient and
// returns the milter's answer to it.
func (td *testDaemon) rcpt(t *testing.T, from, to string) *gomilter.Action {
	t.Helper()
	s := td.session(t)
	defer s.Close()
	for _, step := range []struct {
		name string
		f    func() (*gomilter.Action, error)
	}{
		{"connect", func() (*gomilter.Action, error) {
			return s.Conn("mail.sender.example", gomilter.FamilyInet, 25, "192.0.2.10")
		}},
		{"helo", func() (*gomilter.Action, error) { return s.Helo("mail.sender.example") }},
		{"mail", func() (*gomilter.Action, error) { return s.Mail(from, nil) }},
	} {
		a, err := step.f()
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if a.Code != gomilter.ActContinue {
			t.Fatalf("%s: action %q", step.name, a.Code)
		}
	}
	a, err := s.Rcpt(to, nil)
	if err != nil {
		t.Fatalf("rcpt: %v", err)
	}
	return a
}

func wantGreylisted(t *testing.T, a *gomilter.Action, retryIn string) {
	t.Helper()
	want := "4.7.1 Greylisted, please try again in " + retryIn + " seconds"
	if a.Code != gomilter.ActReplyCode || a.SMTPCode != 451 || a.SMTPText != want {
		t.Errorf("got %q %d %q, want 451 %q", a.Code, a.SMTPCode, a.SMTPText, want)
	}
}

func TestDaemonKeepsTripletsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	c := daemonConfig(t, dir, "delay = \"1s\"\nretry_window = \"1h\"\n")

	d := startDaemon(t, c)
	wantGreylisted(t, d.rcpt(t, "<alice@sender.example>", "<bob@example.net>"), "1")
	if log := d.log.String(); !strings.Contains(log, "msg=decision client=192.0.2.10 ") || !strings.Contains(log, " action=greylist reason=new rcpt=bob@example.net ") {
		t.Errorf("no greylist decision in the log:\n%s", d.log)
	}
	if !strings.Contains(d.log.String(), "msg=\"milter-grey started\"") {
		t.Errorf("no start line in the log:\n%s", d.log)
	}
	d.stopNow(t)

	// The store is closed: a new daemon opens it and knows the triplet.
	d = startDaemon(t, c)
	time.Sleep(time.Duration(c.Delay)) // the greylist delay, not a timing assertion
	if a := d.rcpt(t, "<alice@sender.example>", "<bob@example.net>"); a.Code != gomilter.ActContinue {
		t.Errorf("retry after the delay: got %q %d %q, want continue", a.Code, a.SMTPCode, a.SMTPText)
	}
	if !strings.Contains(d.log.String(), "action=pass reason=retried") {
		t.Errorf("the retry did not pass as retried:\n%s", d.log)
	}
	// A triplet never seen is still greylisted.
	wantGreylisted(t, d.rcpt(t, "<alice@sender.example>", "<carol@example.net>"), "1")
	d.stopNow(t)
}

// On a unix socket the daemon serves with the configured mode, and a clean
// stop removes the socket so that the next start finds the path free.
func TestDaemonOnUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(socketDir(t), "milter.sock")
	c, err := config.Load(writeDaemonConfig(t, dir, "unix:"+sock, "socket_mode = \"0600\"\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range []struct{ name, reason string }{
		{"first start: a new triplet", "reason=new"},
		{"restart: the same triplet retried early", "reason=early"},
	} {
		t.Run(run.name, func(t *testing.T) {
			d := startDaemon(t, c)
			if d.network != "unix" {
				t.Fatalf("listening on %s %s", d.network, d.addr)
			}
			if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("socket: %v, %v; want mode 0600", fi.Mode(), err)
			}
			a := d.rcpt(t, "<alice@sender.example>", "<bob@example.net>")
			if a.Code != gomilter.ActReplyCode || a.SMTPCode != 451 {
				t.Errorf("got %q %d %q, want 451", a.Code, a.SMTPCode, a.SMTPText)
			}
			if !strings.Contains(d.log.String(), "action=greylist "+run.reason) {
				t.Errorf("no greylist %s in the log:\n%s", run.reason, d.log)
			}
			d.stopNow(t)
			if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket left after stop: %v", err)
			}
		})
	}
}

func TestSecondDaemonOnTheSameStoreIsRefused(t *testing.T) {
	dir := t.TempDir()
	startDaemon(t, daemonConfig(t, dir, ""))
	d, err := start(daemonConfig(t, dir, ""), slog.New(slog.DiscardHandler))
	if err == nil {
		d.stop()
		t.Fatal("a second daemon opened the same store")
	}
	if !errors.Is(err, badgerstore.ErrLocked) {
		t.Errorf("error %v should wrap badgerstore.ErrLocked", err)
	}
}

func TestDaemonThatCannotListenReleasesItsStore(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	c, err := config.Load(writeDaemonConfig(t, dir, "inet:"+busy.Addr().String(), ""), false)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := start(c, slog.New(slog.DiscardHandler)); err == nil {
		d.stop()
		t.Fatal("start on a port in use succeeded")
	}
	// The store was closed on the way out: it opens again.
	startDaemon(t, daemonConfig(t, dir, ""))
}

func TestReloadSwapsListsAndKeepsThemWhenBroken(t *testing.T) {
	dir := t.TempDir()
	c := daemonConfig(t, dir, "whitelist_recipients = [\"vip@\"]\n")
	d := startDaemon(t, c)
	rewrite := func(extra string) {
		t.Helper()
		writeDaemonConfig(t, dir, "inet:127.0.0.1:0", extra) // as an admin edits it
	}
	matches := func(rcpt string) bool {
		_, ok := d.engine.Lists().Recipients.Match(rcpt)
		return ok
	}

	for _, step := range []struct {
		name   string
		config string // "" keeps the file as it is
		vip    bool   // vip@x is whitelisted afterwards
		boss   bool   // boss@x is whitelisted afterwards
		logs   []string
	}{
		{name: "the lists of the file are in force at start", vip: true, boss: false},
		{
			name:   "reload adds a recipient",
			config: "whitelist_recipients = [\"vip@\", \"boss@\"]\n",
			vip:    true, boss: true,
			logs: []string{"msg=\"lists reloaded\"", "whitelist_recipients=2"},
		},
		{
			name:   "a bad CIDR keeps the lists in force",
			config: "whitelist_recipients = [\"vip@\", \"boss@\"]\ntrusted_networks = [\"10.0.0.0/33\"]\n",
			vip:    true, boss: true,
			logs: []string{"level=ERROR msg=\"reload failed; keeping the lists in force\"", c.Path() + ":6: trusted_networks: bad CIDR"},
		},
		{
			name:   "an unknown key keeps the lists in force",
			config: "whitelist_recipients = [\"vip@\"]\ndelya = \"5m\"\n",
			vip:    true, boss: true,
			logs: []string{c.Path() + ":6: delya: unknown key"},
		},
		{
			name:   "a missing list file keeps the lists in force",
			config: "whitelist_recipient_files = [" + strconv.Quote(filepath.Join(dir, "absent")) + "]\n",
			vip:    true, boss: true,
			logs: []string{"reload failed", filepath.Join(dir, "absent")},
		},
		{
			name:   "a bad line in a list file is skipped with a warning; the rest reloads",
			config: "whitelist_recipient_files = [" + strconv.Quote(writeFile(t, "rcpts", "boss@\n@ # a typo\n")) + "]\n",
			vip:    false, boss: true,
			logs: []string{"level=WARN msg=\"list line skipped\"", "rcpts:2", "value=@", "msg=\"lists reloaded\""},
		},
		{
			name: "a bad line in a bypass table is skipped with a warning; the rest reloads",
			config: "whitelist_recipients = [\"boss@\"]\nbypass_sender_files = [" +
				strconv.Quote(writeFile(t, "bypass", "partner.test OK\nnovalue\n")) + "]\n",
			vip: false, boss: true,
			logs: []string{"level=WARN msg=\"bypass list line skipped\"", "bypass:2: ", "(line skipped)", "msg=\"lists reloaded\"", "bypass_senders=1"},
		},
		{
			name:   "a fixed file is taken again",
			config: "whitelist_recipients = [\"boss@\"]\n",
			vip:    false, boss: true,
			logs: []string{"whitelist_recipients=1"},
		},
	} {
		t.Run(step.name, func(t *testing.T) {
			before := len(d.log.String())
			if step.config != "" {
				rewrite(step.config)
				d.reload()
			}
			if got := matches("vip@x"); got != step.vip {
				t.Errorf("vip@x whitelisted: %v, want %v", got, step.vip)
			}
			if got := matches("boss@x"); got != step.boss {
				t.Errorf("boss@x whitelisted: %v, want %v", got, step.boss)
			}
			logged := d.log.String()[before:]
			for _, want := range step.logs {
				if !strings.Contains(logged, want) {
					t.Errorf("log lacks %q:\n%s", want, logged)
				}
			}
		})
	}

	// The reloaded list decides: a whitelisted recipient passes at once.
	if a := d.rcpt(t, "<alice@sender.example>", "<boss@example.net>"); a.Code != gomilter.ActContinue {
		t.Errorf("boss@ after reload: got %q %d %q, want continue", a.Code, a.SMTPCode, a.SMTPText)
	}
	if !strings.Contains(d.log.String(), "reason=rcpt-whitelist") {
		t.Errorf("no rcpt-whitelist decision in the log:\n%s", d.log)
	}
}

// An optional list file that is absent is skipped with an info line, and
// watched: creating it reloads the lists, as editing a list file does, and
// edits of the other files are still seen while it is absent.
func TestOptionalListFileIsWatched(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "whitelist_recipients")
	local := filepath.Join(dir, "whitelist_recipients.local")
	write := func(path, text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(present, "vip@\n")
	d := startDaemon(t, daemonConfig(t, dir, "whitelist_recipient_files = ["+strconv.Quote(present)+", \"?"+local+"\"]\n"))
	if !strings.Contains(d.log.String(), "msg=\"optional list file absent; skipped\" file="+local) {
		t.Errorf("no info line for the absent file:\n%s", d.log)
	}
	for _, step := range []struct {
		name string
		path string
		text string
		rcpt string
	}{
		{"an edit of the other file while the optional one is absent", present, "vip@\nceo@\n", "ceo@x"},
		{"the optional file is created", local, "boss@\n", "boss@x"},
	} {
		t.Run(step.name, func(t *testing.T) {
			if d.listsChanged() {
				t.Fatal("lists changed without a change")
			}
			write(step.path, step.text)
			if !d.listsChanged() {
				t.Fatal("the change went unnoticed")
			}
			d.reload()
			if _, ok := d.engine.Lists().Recipients.Match(step.rcpt); !ok {
				t.Errorf("%s is not whitelisted after the reload:\n%s", step.rcpt, d.log)
			}
		})
	}
}

// Each load reads each list file once: none at config.Load, one read at
// start, one at each reload, one in check-config.
func TestListFilesAreReadOncePerLoad(t *testing.T) {
	dir := t.TempDir()
	var extra string
	var paths []string
	for _, l := range []struct{ key, text string }{
		{"whitelist_client_files", "mail.example.com\n"},
		{"whitelist_recipient_files", "vip@\n"},
		{"never_auto_whitelist_files", "192.0.2.0/24\n"},
		{"bypass_sender_files", "alice@sender.example OK\n"},
	} {
		p := filepath.Join(dir, l.key)
		if err := os.WriteFile(p, []byte(l.text), 0o644); err != nil {
			t.Fatal(err)
		}
		extra += l.key + " = [" + strconv.Quote(p) + "]\n"
		paths = append(paths, p)
	}
	path := writeDaemonConfig(t, dir, "inet:127.0.0.1:0", extra)
	opens := countOpens(t, paths...)
	wantOpens := func(step string, want int) {
		t.Helper()
		for p, n := range opens.take(t) {
			if n != want {
				t.Errorf("%s: %s opened %d times, want %d", step, filepath.Base(p), n, want)
			}
		}
	}

	c, err := config.Load(path, false)
	if err != nil {
		t.Fatal(err)
	}
	wantOpens("config.Load", 0)
	d := startDaemon(t, c)
	wantOpens("start", 1)
	d.reload()
	if !strings.Contains(d.log.String(), "msg=\"lists reloaded\"") {
		t.Fatalf("the reload failed:\n%s", d.log)
	}
	wantOpens("reload", 1)
	if code, out, errOut := milterGrey(t, "check-config", "-config", path); code != 0 {
		t.Fatalf("check-config: exit %d\n%s%s", code, out, errOut)
	}
	wantOpens("check-config", 1)
}
