package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/testutil/testci"
)

// What Debian's postgrey package installs (e2e/install-deps.sh installs it).
const (
	postgreyBin        = "/usr/sbin/postgrey"
	postgreyClients    = "/etc/postgrey/whitelist_clients"
	postgreyRecipients = "/etc/postgrey/whitelist_recipients"
)

// requirePostgrey: the tests that compare milter-grey with Postgrey need
// Debian's postgrey package, its program and its lists.
func requirePostgrey(t testing.TB) {
	t.Helper()
	for _, p := range []string{postgreyBin, postgreyClients, postgreyRecipients} {
		if _, err := os.Stat(p); err != nil {
			testci.SkipOrFail(t, "Debian's postgrey package: %v (e2e/install-deps.sh installs it)", err)
		}
	}
}

// postgrey is a private Postgrey, the Postfix policy server milter-grey
// replaces: on a free loopback port, its database in a directory of its
// own, asked over Postfix's policy delegation protocol as smtpd asks it.
type postgrey struct {
	Addr  string
	DBDir string // its --dbdir
	cmd   *exec.Cmd
	done  chan struct{}
	log   string
	conn  net.Conn
	r     *bufio.Reader
}

// startPostgrey starts postgrey with args added to those the harness owns
// (--inet, --dbdir, --user, --group) and connects to it. It is stopped
// when the test ends. As root it runs as nobody, as Debian runs it as a
// user of its own; otherwise as the current user.
func startPostgrey(t *testing.T, args ...string) *postgrey {
	t.Helper()
	requirePostgrey(t)
	account, err := postgreyAccount()
	if err != nil {
		t.Fatal(err)
	}
	// Not under t.TempDir(): its parents are private to root, and postgrey
	// runs as nobody.
	dbdir, err := os.MkdirTemp("", "e2e-postgrey-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dbdir) })
	if err := os.Chown(dbdir, account.uid, account.gid); err != nil {
		t.Fatal(err)
	}
	p := &postgrey{
		Addr:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		DBDir: dbdir,
		log:   filepath.Join(t.TempDir(), "postgrey.log"),
		done:  make(chan struct{}),
	}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(postgreyBin, append([]string{"--inet=" + p.Addr, "--dbdir=" + dbdir,
		"--user=" + account.user, "--group=" + account.group}, args...)...)
	p.cmd.Dir = dbdir
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	err = p.cmd.Start()
	logf.Close()
	if err != nil {
		t.Fatalf("start postgrey: %v", err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })

	exited := func() bool {
		select {
		case <-p.done:
			return true
		default:
			return false
		}
	}
	// Only once postgrey says it binds is the port its own: a free port
	// can be taken by anything on the host until then.
	bound := "Binding to TCP port " + p.Addr[strings.LastIndexByte(p.Addr, ':')+1:]
	up := func() bool { return strings.Contains(p.Log(), bound) && acceptsTCP(p.Addr) }
	if !waitFor(20*time.Second, func() bool { return exited() || up() }) || exited() {
		t.Fatalf("postgrey did not come up on %s; log:\n%s", p.Addr, tail(p.Log(), 40))
	}
	if p.conn, err = net.DialTimeout("tcp", p.Addr, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.r = bufio.NewReader(p.conn)
	return p
}

type postgreyUser struct {
	user, group string
	uid, gid    int
}

func postgreyAccount() (postgreyUser, error) {
	u, err := user.Current()
	if os.Geteuid() == 0 {
		u, err = user.Lookup("nobody")
	}
	if err != nil {
		return postgreyUser{}, err
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		return postgreyUser{}, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return postgreyUser{user: u.Username, group: g.Name, uid: uid, gid: gid}, nil
}

// Log returns what postgrey wrote: one line per decision, with its reason.
func (p *postgrey) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// Whitelisted asks postgrey about one recipient of one client, as Postfix
// does at RCPT TO, and reports whether it lets the recipient through now
// (DUNNO) rather than greylisting it (DEFER_IF_PERMIT). clientName is the
// name Postfix verified, or "" for none. The sender should be new, so that
// only a whitelist can let it through.
func (p *postgrey) Whitelisted(t testing.TB, clientIP, clientName, sender, rcpt string) bool {
	t.Helper()
	action := p.Action(t, clientIP, clientName, sender, rcpt)
	switch {
	case action == "DUNNO":
		return true
	case strings.HasPrefix(action, "DEFER_IF_PERMIT "):
		return false
	}
	t.Fatalf("postgrey answered action=%q to %s %s %s %s", action, clientIP, clientName, sender, rcpt)
	return false
}

// Action asks postgrey about one recipient of one client, as Postfix does
// at RCPT TO, and returns its action: DUNNO, DEFER_IF_PERMIT with its
// text, or PREPEND X-Greylist: … for a triplet retried after the delay.
func (p *postgrey) Action(t testing.TB, clientIP, clientName, sender, rcpt string) string {
	t.Helper()
	if clientName == "" {
		clientName = "unknown"
	}
	req := "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n" +
		"client_address=" + clientIP + "\nclient_name=" + clientName + "\nreverse_client_name=" + clientName +
		"\nhelo_name=mail.sender.test\nsender=" + sender + "\nrecipient=" + rcpt + "\n\n"
	p.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.conn.Write([]byte(req)); err != nil {
		t.Fatalf("postgrey: %v", err)
	}
	var action string
	for {
		line, err := p.r.ReadString('\n')
		if err != nil {
			t.Fatalf("postgrey's answer: %v; log:\n%s", err, tail(p.Log(), 20))
		}
		line = strings.TrimSpace(line)
		if line == "" {
			break
		}
		if v, ok := strings.CutPrefix(line, "action="); ok {
			action = v
		}
	}
	return action
}

// stop ends postgrey with SIGTERM. Net::Server acts on a signal only when
// its select loop wakes up, so the connection is closed after the signal,
// and new ones are opened while postgrey lingers.
func (p *postgrey) stop(t *testing.T) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	if p.conn != nil {
		p.conn.Close()
	}
	exited := waitFor(10*time.Second, func() bool {
		select {
		case <-p.done:
			return true
		default:
			acceptsTCP(p.Addr)
			return false
		}
	})
	if !exited {
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("postgrey ignored SIGTERM for 10s; killed it")
	}
	if t.Failed() {
		t.Logf("postgrey log (last lines):\n%s", tail(p.Log(), 30))
	}
}
