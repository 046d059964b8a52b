package e2e

import (
	"context"
	"fmt"
	"net/mail"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The domain whose mail the private Postfix delivers, into one maildir.
const destDomain = "dest.test"

// postfix is a private Postfix instance: its configuration, queue, logs and
// the delivered mail all live in one directory; smtpd listens on a free port
// of 127.0.0.1 and nothing it accepts ever leaves the machine.
type postfix struct {
	dir  string
	etc  string
	port int
	bin  string
}

// startPostfix starts a private Postfix whose smtpd uses the milter at
// milterAddr (host:port; "" means no milter). extra sets or overrides main.cf
// parameters. The instance is stopped and removed when the test ends.
func startPostfix(t *testing.T, milterAddr string, extra map[string]string) *postfix {
	t.Helper()
	requireRoot(t)
	bin := requireTool(t, "postfix")

	// Not t.TempDir: its parent is mode 0700, which postfix and nobody
	// cannot traverse, and its long name would crowd Postfix's socket paths.
	dir, err := os.MkdirTemp("", "e2e-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &postfix{dir: dir, etc: filepath.Join(dir, "etc"), port: freePort(t), bin: bin}

	uid, gid := lookupIDs(t, "nobody", "nogroup")
	for _, d := range []string{p.etc, filepath.Join(dir, "spool"), filepath.Join(dir, "mail")} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.Chmod(dir, 0o755))
	// virtual(8) delivers as nobody.
	must(t, os.Chown(filepath.Join(dir, "mail"), uid, gid))
	must(t, os.WriteFile(filepath.Join(p.etc, "main.cf"), []byte(p.mainCF(milterAddr, uid, gid, extra)), 0o644))
	must(t, os.WriteFile(filepath.Join(p.etc, "master.cf"), []byte(p.masterCF()), 0o644))

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("postfix maillog (%s, last lines):\n%s", p.maillogPath(), tail(p.Maillog(), 60))
		}
		p.stop(t)
	})
	p.start(t)
	return p
}

func (p *postfix) mainCF(milterAddr string, uid, gid int, extra map[string]string) string {
	milters := ""
	if milterAddr != "" {
		milters = "inet:" + milterAddr
	}
	base := []setting{
		{"compatibility_level", "3.6"},
		{"config_directory", p.etc},
		{"queue_directory", filepath.Join(p.dir, "spool")},
		{"data_directory", filepath.Join(p.dir, "data")},
		{"mail_owner", "postfix"},
		{"setgid_group", "postdrop"},
		// No syslog needed: Postfix's own postlogd writes the log here.
		{"maillog_file", p.maillogPath()},
		{"maillog_file_prefixes", p.dir},
		{"myhostname", "mx.e2e.test"},
		{"mydomain", "e2e.test"},
		{"myorigin", "$myhostname"},
		{"smtpd_banner", "$myhostname ESMTP e2e"},
		{"inet_interfaces", "127.0.0.1"},
		{"inet_protocols", "all"},
		{"mynetworks", "127.0.0.0/8"},
		{"biff", "no"},
		{"append_dot_mydomain", "no"},
		{"readme_directory", "no"},
		{"alias_maps", ""},
		{"alias_database", ""},
		{"mydestination", ""},
		{"notify_classes", ""},
		// Every address @dest.test goes to one maildir, DIR/mail/dest.test/;
		// the Delivered-To: header tells the recipients apart.
		{"virtual_mailbox_domains", destDomain},
		{"virtual_mailbox_base", filepath.Join(p.dir, "mail")},
		{"virtual_mailbox_maps", "static:" + destDomain + "/"},
		{"virtual_uid_maps", fmt.Sprintf("static:%d", uid)},
		{"virtual_gid_maps", fmt.Sprintf("static:%d", gid)},
		// Mail for anywhere else would use these, which master.cf runs as
		// error(8): nothing ever leaves this machine.
		{"default_transport", "smtp"},
		{"relay_transport", "relay"},
		// The milter under test, wired the way an admin would.
		{"smtpd_milters", milters},
		{"non_smtpd_milters", ""},
		{"milter_protocol", "6"},
		{"milter_default_action", "tempfail"},
		{"milter_connect_timeout", "10s"},
		{"milter_command_timeout", "10s"},
		{"milter_content_timeout", "30s"},
		{"milter_connect_macros", "j {daemon_name} {daemon_addr} v _ {client_addr} {client_name} {client_ptr} {client_port}"},
		{"milter_mail_macros", "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}"},
		{"milter_rcpt_macros", "i {rcpt_addr} {rcpt_host} {rcpt_mailer}"},
		// Test clients on loopback present other client addresses with
		// XCLIENT (swaks --xclient-addr); no reverse lookups for them.
		{"smtpd_authorized_xclient_hosts", "127.0.0.0/8"},
		{"smtpd_peername_lookup", "no"},
	}
	return "# Private Postfix instance of milter-grey's e2e tests. Loopback only.\n" +
		renderSettings(base, extra)
}

func (p *postfix) masterCF() string {
	// No chroot: the instance directory is the whole world of this Postfix.
	return fmt.Sprintf(`# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:%d inet n - n - - smtpd
pickup     unix  n - n 60   1 pickup
cleanup    unix  n - n -    0 cleanup
qmgr       unix  n - n 300  1 qmgr
rewrite    unix  - - n -    - trivial-rewrite
bounce     unix  - - n -    0 bounce
defer      unix  - - n -    0 bounce
trace      unix  - - n -    0 bounce
verify     unix  - - n -    1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -    - proxymap
proxywrite unix  - - n -    1 proxymap
showq      unix  n - n -    - showq
error      unix  - - n -    - error
retry      unix  - - n -    - error
discard    unix  - - n -    - discard
local      unix  - n n -    - local
virtual    unix  - n n -    - virtual
anvil      unix  - - n -    1 anvil
scache     unix  - - n -    1 scache
postlog    unix-dgram n - n - 1 postlogd
smtp       unix  - - n -    - error
relay      unix  - - n -    - error
`, p.port)
}

func (p *postfix) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := p.guarded(ctx, t, p.bin, "-c", p.etc, "start")
	startLog := filepath.Join(p.dir, "start.log")
	out, err := os.Create(startLog)
	if err != nil {
		t.Fatal(err)
	}
	// A file, not a pipe: the master daemon may inherit it and never close it.
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	out.Close()
	if err != nil {
		b, _ := os.ReadFile(startLog)
		t.Fatalf("postfix start: %v\n%s\nmaillog:\n%s", err, b, tail(p.Maillog(), 30))
	}
	addr := fmt.Sprintf("127.0.0.1:%d", p.port)
	if !waitFor(15*time.Second, func() bool { return acceptsTCP(addr) }) {
		t.Fatalf("postfix smtpd does not accept connections on %s; maillog:\n%s", addr, tail(p.Maillog(), 30))
	}
}

// guarded returns a command that runs name in a private mount namespace in
// which /etc/hosts, /etc/resolv.conf and /etc/nsswitch.conf are the
// instance's own: hosts from files only and a resolver on 127.0.0.9, where
// nothing listens, so Postfix can neither wait for nor leak to real DNS.
// The network namespace stays the same: 127.0.0.1 is shared with the tests.
func (p *postfix) guarded(ctx context.Context, t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	if !canUnshare() {
		t.Logf("WARNING: unshare -m is not permitted here; Postfix runs without the DNS guard")
		return exec.CommandContext(ctx, name, args...)
	}
	ns := filepath.Join(p.dir, "ns")
	must(t, os.MkdirAll(ns, 0o755))
	host, _ := os.Hostname()
	files := map[string]string{
		"hosts":         fmt.Sprintf("127.0.0.1\tlocalhost\n127.0.1.1\tmx.e2e.test %s\n::1\tlocalhost ip6-localhost ip6-loopback\n", host),
		"resolv.conf":   "nameserver 127.0.0.9\noptions attempts:1 timeout:1\n",
		"nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files\nnetworks: files\nprotocols: files\nservices: files\n",
	}
	for f, content := range files {
		must(t, os.WriteFile(filepath.Join(ns, f), []byte(content), 0o644))
	}
	// A missing /etc file cannot be a mount point; glibc then uses its
	// defaults, which is as private as it gets.
	const script = `d=$1; shift
for f in hosts resolv.conf nsswitch.conf; do
	[ -e /etc/$f ] || continue
	mount --bind "$d/$f" "/etc/$f" || exit 111
done
exec "$@"`
	return exec.CommandContext(ctx, "unshare", append([]string{"-m", "--propagation", "private", "sh", "-c", script, "dns-guard", ns, name}, args...)...)
}

var canUnshare = sync.OnceValue(func() bool {
	if _, err := exec.LookPath("unshare"); err != nil {
		return false
	}
	return exec.Command("unshare", "-m", "--propagation", "private", "true").Run() == nil
})

// stop runs "postfix stop", then kills this instance's master if it lingers.
func (p *postfix) stop(t *testing.T) {
	pid := p.masterPID()
	if pid == 0 {
		return
	}
	cmd := exec.Command(p.bin, "-c", p.etc, "stop")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Logf("postfix stop: %v\n%s", err, out)
	}
	if waitFor(10*time.Second, func() bool { return !alive(pid) }) {
		return
	}
	t.Logf("postfix master %d still running after postfix stop; killing it", pid)
	syscall.Kill(pid, syscall.SIGKILL)
	waitFor(5*time.Second, func() bool { return !alive(pid) })
}

// masterPID is the PID of this instance's master, 0 if none runs.
func (p *postfix) masterPID() int {
	b, err := os.ReadFile(filepath.Join(p.dir, "spool", "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 || !alive(pid) {
		return 0
	}
	return pid
}

// Port is smtpd's TCP port on 127.0.0.1.
func (p *postfix) Port() int { return p.port }

// Maildir is where mail for any address @dest.test is delivered.
func (p *postfix) Maildir() string { return filepath.Join(p.dir, "mail", destDomain) }

func (p *postfix) maillogPath() string { return filepath.Join(p.dir, "maillog") }

// Maillog returns Postfix's log so far.
func (p *postfix) Maillog() string {
	b, _ := os.ReadFile(p.maillogPath())
	return string(b)
}

// WaitMaillog waits for a maillog line containing every one of parts.
func (p *postfix) WaitMaillog(t testing.TB, timeout time.Duration, parts ...string) string {
	t.Helper()
	return waitForLine(t, "the Postfix maillog", p.Maillog, timeout, parts...)
}

// Delivered returns the delivered messages (path -> content) that contain token.
func (p *postfix) Delivered(token string) map[string]string {
	found := map[string]string{}
	files, _ := filepath.Glob(filepath.Join(p.Maildir(), "new", "*"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), token) {
			found[f] = string(b)
		}
	}
	return found
}

// WaitDelivered waits until a message containing token is in the maildir and
// returns its path and content.
func (p *postfix) WaitDelivered(t testing.TB, token string, timeout time.Duration) (path, content string) {
	t.Helper()
	if !waitFor(timeout, func() bool {
		for path, content = range p.Delivered(token) {
			return true
		}
		return false
	}) {
		t.Fatalf("no message with %q delivered to %s within %v; maillog:\n%s", token, p.Maildir(), timeout, tail(p.Maillog(), 30))
	}
	return path, content
}

func lookupIDs(t *testing.T, userName, groupName string) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(userName)
	if err != nil {
		t.Fatalf("user %s: %v", userName, err)
	}
	g, err := user.LookupGroup(groupName)
	if err != nil {
		t.Fatalf("group %s: %v", groupName, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(g.Gid)
	return uid, gid
}

// alive tells whether pid runs; a zombie (no reaper in some containers)
// counts as gone.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// header returns the (unfolded) value of the first header field called name
// in a delivered message, "" if it has none.
func header(t testing.TB, msg, name string) string {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(msg))
	if err != nil {
		t.Fatalf("parse delivered message: %v\n%s", err, msg)
	}
	return m.Header.Get(name)
}
