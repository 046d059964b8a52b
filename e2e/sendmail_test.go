package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/testutil/testci"
)

// A private Sendmail for the end-to-end tests. Installing Debian's sendmail
// would remove Postfix, so its packages (sendmail-bin, sendmail-base,
// sendmail-cf) are only downloaded and unpacked into a cache directory that
// survives the test run; m4 and the binary's shared libraries come from
// e2e/install-deps.sh. Each instance gets its own directory with a .cf built
// by m4, a daemon on 127.0.0.1 (and [::1]) in a private mount namespace that
// resolves host names from files only, and one mailer that writes every
// message to DIR/mail/<domain>/.

const (
	// sendmailCacheEnv overrides where the unpacked debs are kept.
	sendmailCacheEnv     = "MILTER_GREY_E2E_CACHE"
	sendmailCacheDefault = "/var/cache/milter-grey-e2e"
	sendmailStartup      = 20 * time.Second
	sendmailStop         = 10 * time.Second
)

// sendmail is one private Sendmail daemon.
type sendmail struct {
	dir   string
	port  int  // SMTP on 127.0.0.1 and, if ipv6, on [::1]
	ipv6  bool // a second daemon socket listens on [::1]:port
	cmd   *exec.Cmd
	done  chan struct{}
	err   error // cmd.Wait's result, valid after done
	mcTxt string
}

// startSendmail starts a private Sendmail whose INPUT_MAIL_FILTER is the one
// of contrib/sendmail.mc (the README's), with only its socket changed to
// milterAddr (host:port). It is stopped, by PID, and removed when the test
// ends.
func startSendmail(t *testing.T, milterAddr string) *sendmail {
	t.Helper()
	bin, cfDir, m4 := requireSendmail(t)
	filter := milterFilter(t, milterAddr)

	// Not t.TempDir: its parent is mode 0700, which the mailer (nobody)
	// cannot traverse.
	dir, err := os.MkdirTemp("", "e2e-sendmail-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o755))
	sm := &sendmail{dir: dir, port: freePort(t), done: make(chan struct{})}
	sm.ipv6 = loopback6Free(sm.port)

	uid, gid := lookupIDs(t, "nobody", "nogroup")
	for _, d := range []string{"etc", "ns", "mqueue", "mail"} {
		must(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	must(t, os.Chmod(filepath.Join(dir, "mqueue"), 0o700))
	must(t, os.Chown(filepath.Join(dir, "mail"), uid, gid))
	writeGuardFiles(t, filepath.Join(dir, "ns"))
	must(t, os.WriteFile(filepath.Join(dir, "etc", "service.switch"), []byte("hosts\tfiles\naliases\tfiles\n"), 0o644))

	daemon6 := "dnl no IPv6 loopback on this machine: no [::1] daemon"
	if sm.ipv6 {
		daemon6 = fmt.Sprintf("DAEMON_OPTIONS(`Port=%d, Addr=::1, Family=inet6, Name=MTA-e2e-v6')dnl", sm.port)
	}
	fill := strings.NewReplacer(
		"@DIR@", dir,
		"@CF@", cfDir,
		"@PORT@", strconv.Itoa(sm.port),
		"@DAEMON6@", daemon6,
		"@FILTER@", filter,
	)
	sm.mcTxt = fill.Replace(testdataText(t, "sendmail.mc.in"))
	mc := filepath.Join(dir, "etc", "sendmail.mc")
	must(t, os.WriteFile(mc, []byte(sm.mcTxt), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "etc", "deliver.sh"), []byte(fill.Replace(testdataText(t, "sendmail-deliver.sh.in"))), 0o755))

	// m4 sendmail.mc > sendmail.cf, as an admin rebuilds it; any warning
	// (a quoting mistake in the .mc, say) is an error here.
	cf, err := os.Create(sm.cfPath())
	if err != nil {
		t.Fatal(err)
	}
	var m4err strings.Builder
	m4cmd := exec.Command(m4, mc)
	m4cmd.Stdout, m4cmd.Stderr = cf, &m4err
	err = m4cmd.Run()
	cf.Close()
	if err != nil || m4err.Len() > 0 {
		t.Fatalf("m4 %s: %v\n%s\n.mc:\n%s", mc, err, m4err.String(), sm.mcTxt)
	}

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sendmail.mc:\n%s", sm.mcTxt)
			t.Logf("sendmail stdout/stderr:\n%s", tail(textOf(filepath.Join(dir, "daemon.out")), 30))
			t.Logf("sendmail SMTP transcript (-X %s, last lines):\n%s", sm.trafficPath(), tail(textOf(sm.trafficPath()), 60))
			t.Logf("delivered: %v", sm.deliveredFiles())
		}
		sm.stop(t)
	})
	sm.start(t, bin)
	return sm
}

// requireSendmail checks what a private Sendmail needs, fetching the
// packages if need be, and returns the sendmail binary, the cf directory
// and m4. Tests call it first, so that a machine without them skips before
// anything else starts.
func requireSendmail(t *testing.T) (bin, cfDir, m4 string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testci.SkipOrFail(t, "running a private Sendmail needs root")
	}
	m4 = requireTool(t, "m4")
	requireTool(t, "unshare")
	requireTool(t, "swaks")
	if !canUnshare() {
		// Without the guard Sendmail looks up this host's name in the
		// real DNS at start-up, and waits for it.
		testci.SkipOrFail(t, "unshare -m is not permitted here: cannot keep a private Sendmail away from DNS")
	}
	bin, cfDir = sendmailDist(t)
	return bin, cfDir, m4
}

// milterFilter returns contrib/sendmail.mc with the socket of its one
// INPUT_MAIL_FILTER line changed to milterAddr, and checks that the README
// shows the very same line.
func milterFilter(t *testing.T, milterAddr string) string {
	t.Helper()
	host, port, err := net.SplitHostPort(milterAddr)
	if err != nil {
		t.Fatalf("milter address %q: %v", milterAddr, err)
	}
	socket := "S=inet:" + port + "@" + host
	if strings.Contains(host, ":") {
		socket = "S=inet6:" + port + "@" + host
	}
	contrib := textOf(filepath.Join("..", "contrib", "sendmail.mc"))
	line, ok := onlyFilterLine(contrib)
	if !ok {
		t.Fatalf("contrib/sendmail.mc: want exactly one INPUT_MAIL_FILTER line, got:\n%s", contrib)
	}
	if readme, ok := onlyFilterLine(textOf(filepath.Join("..", "README.md"))); !ok || readme != line {
		t.Errorf("README.md's INPUT_MAIL_FILTER line %q differs from contrib/sendmail.mc's %q: the test proves only the latter", readme, line)
	}
	if !strings.Contains(line, "F=T") {
		t.Errorf("contrib/sendmail.mc: %q has no F=T (tempfail when the milter is unreachable)", line)
	}
	sockRE := regexp.MustCompile(`S=[^,']+`)
	if len(sockRE.FindAllString(line, -1)) != 1 {
		t.Fatalf("contrib/sendmail.mc: want one S= socket in %q", line)
	}
	return strings.Replace(contrib, line, sockRE.ReplaceAllLiteralString(line, socket), 1)
}

// onlyFilterLine returns the one line of text that starts with
// INPUT_MAIL_FILTER (surrounding blanks trimmed).
func onlyFilterLine(text string) (string, bool) {
	var found []string
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "INPUT_MAIL_FILTER(") {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		return "", false
	}
	return found[0], true
}

func (sm *sendmail) start(t *testing.T, bin string) {
	t.Helper()
	out, err := os.Create(filepath.Join(sm.dir, "daemon.out"))
	if err != nil {
		t.Fatal(err)
	}
	// -bD: the daemon stays in the foreground, so our child's PID is the
	// daemon's (unshare and sh exec it). -X: an SMTP transcript, since
	// Sendmail logs only to syslog, which this machine may lack.
	sm.cmd = dnsGuarded(filepath.Join(sm.dir, "ns"), bin, "-C", sm.cfPath(), "-bD", "-X", sm.trafficPath())
	sm.cmd.Dir = sm.dir
	sm.cmd.Stdout, sm.cmd.Stderr = out, out
	err = sm.cmd.Start()
	out.Close()
	if err != nil {
		t.Fatalf("start sendmail: %v", err)
	}
	go func() {
		sm.err = sm.cmd.Wait()
		close(sm.done)
	}()
	up := waitFor(sendmailStartup, func() bool {
		return sm.exited() || tcpListening(sm.port, false) && (!sm.ipv6 || tcpListening(sm.port, true))
	})
	switch {
	case sm.exited():
		t.Fatalf("sendmail exited during start-up (%v)", sm.err)
	case !up:
		t.Fatalf("sendmail (pid %d) does not listen on 127.0.0.1:%d (ipv6 %v) within %v", sm.cmd.Process.Pid, sm.port, sm.ipv6, sendmailStartup)
	}
	t.Logf("sendmail pid %d on 127.0.0.1:%d (and [::1]: %v), dir %s", sm.cmd.Process.Pid, sm.port, sm.ipv6, sm.dir)
}

func (sm *sendmail) exited() bool {
	select {
	case <-sm.done:
		return true
	default:
		return false
	}
}

// stop ends the daemon with SIGTERM (SIGKILL if it lingers), then any of its
// SMTP session or delivery processes still there, each by its PID.
func (sm *sendmail) stop(t *testing.T) {
	if sm.cmd == nil || sm.cmd.Process == nil || sm.exited() {
		return
	}
	pid := sm.cmd.Process.Pid
	kids := descendants(pid)
	sm.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-sm.done:
	case <-time.After(sendmailStop):
		t.Logf("sendmail %d still running %v after SIGTERM; killing it", pid, sendmailStop)
		sm.cmd.Process.Kill()
		<-sm.done
	}
	for _, k := range kids {
		if !alive(k) || !isSendmail(k) {
			continue
		}
		syscall.Kill(k, syscall.SIGTERM)
		if !waitFor(5*time.Second, func() bool { return !alive(k) }) {
			syscall.Kill(k, syscall.SIGKILL)
		}
	}
}

// Port is the SMTP port, on 127.0.0.1 and, when IPv6 is true, on [::1].
func (sm *sendmail) Port() int { return sm.port }

// IPv6 tells whether the instance also listens on [::1].
func (sm *sendmail) IPv6() bool { return sm.ipv6 }

func (sm *sendmail) cfPath() string      { return filepath.Join(sm.dir, "etc", "sendmail.cf") }
func (sm *sendmail) trafficPath() string { return filepath.Join(sm.dir, "traffic.log") }

// Traffic returns the SMTP transcript Sendmail wrote (-X) so far.
func (sm *sendmail) Traffic() string { return textOf(sm.trafficPath()) }

// deliveredFiles lists the finished messages, for every domain.
func (sm *sendmail) deliveredFiles() []string {
	files, _ := filepath.Glob(filepath.Join(sm.dir, "mail", "*", "*.eml"))
	sort.Strings(files)
	return files
}

// Delivered returns the messages delivered to domain (path -> content)
// that contain token.
func (sm *sendmail) Delivered(domain, token string) map[string]string {
	found := map[string]string{}
	files, _ := filepath.Glob(filepath.Join(sm.dir, "mail", domain, "*.eml"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), token) {
			found[f] = string(b)
		}
	}
	return found
}

// WaitDelivered waits until a message with token is delivered to domain and
// returns its path and content.
func (sm *sendmail) WaitDelivered(t testing.TB, domain, token string, timeout time.Duration) (path, content string) {
	t.Helper()
	if !waitFor(timeout, func() bool {
		for path, content = range sm.Delivered(domain, token) {
			return true
		}
		return false
	}) {
		t.Fatalf("no message with %q delivered to %s within %v; delivered: %v", token, filepath.Join(sm.dir, "mail", domain), timeout, sm.deliveredFiles())
	}
	return path, content
}

// dnsGuarded returns a command that runs name in a private mount namespace
// whose /etc/hosts, /etc/resolv.conf and /etc/nsswitch.conf are those of
// ns (writeGuardFiles): host names from files only, and a resolver on
// 127.0.0.9, where nothing listens. The network namespace is the same, so
// 127.0.0.1 is shared with the milter. unshare and sh exec name: the
// command's PID is name's.
func dnsGuarded(ns, name string, args ...string) *exec.Cmd {
	const script = `d=$1; shift
for f in hosts resolv.conf nsswitch.conf; do
	[ -e /etc/$f ] || continue
	mount --bind "$d/$f" "/etc/$f" || exit 111
done
exec "$@"`
	return exec.Command("unshare", append([]string{"-m", "--propagation", "private", "sh", "-c", script, "dns-guard", ns, name}, args...)...)
}

func writeGuardFiles(t *testing.T, ns string) {
	t.Helper()
	host, _ := os.Hostname()
	files := map[string]string{
		"hosts":         fmt.Sprintf("127.0.0.1\tlocalhost\n127.0.1.1\tmx.e2e.test %s\n::1\tlocalhost ip6-localhost ip6-loopback\n", host),
		"resolv.conf":   "nameserver 127.0.0.9\noptions attempts:1 timeout:1\n",
		"nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files\nnetworks: files\nprotocols: files\nservices: files\n",
	}
	for f, content := range files {
		must(t, os.WriteFile(filepath.Join(ns, f), []byte(content), 0o644))
	}
}

// tcpListening tells whether a socket listens on TCP port of 127.0.0.1 (or
// [::1] if v6). It reads /proc rather than connecting: a probe connection
// would be an SMTP session, and a milter session with it.
func tcpListening(port int, v6 bool) bool {
	file, want := "/proc/net/tcp", fmt.Sprintf("0100007F:%04X", port)
	if v6 {
		file, want = "/proc/net/tcp6", fmt.Sprintf("00000000000000000000000001000000:%04X", port)
	}
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 3 && fields[1] == want && fields[3] == "0A" { // 0A: LISTEN
			return true
		}
	}
	return false
}

// loopback6Free tells whether [::1]:port can be bound, i.e. the machine has
// IPv6 on loopback and nothing uses that port there.
func loopback6Free(port int) bool {
	l, err := net.Listen("tcp6", fmt.Sprintf("[::1]:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// descendants returns every process below pid, read from /proc.
func descendants(pid int) []int {
	children := map[int][]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// "pid (comm) S ppid ...": the fields after the last ')'.
		str := string(b)
		i := strings.LastIndexByte(str, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(str[i+1:])
		if len(f) < 2 {
			continue
		}
		p, _ := strconv.Atoi(strings.Fields(str)[0])
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// isSendmail tells whether pid runs the sendmail binary (it guards against
// a PID that was reused since we listed it).
func isSendmail(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && filepath.Base(strings.TrimSuffix(exe, " (deleted)")) == "sendmail"
}

func textOf(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func testdataText(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The unpacked Sendmail, shared by the tests of one run (and by later runs,
// through the cache directory).
var (
	sendmailDistMu   sync.Mutex
	sendmailDistRoot string
)

// sendmailDist returns the sendmail binary and the cf directory (m4 macros)
// of Debian's sendmail packages, unpacked into the cache directory, not
// installed. It downloads them once per version.
func sendmailDist(t *testing.T) (bin, cfDir string) {
	t.Helper()
	sendmailDistMu.Lock()
	defer sendmailDistMu.Unlock()
	if sendmailDistRoot == "" {
		root, err := prepareSendmailDist(t.Logf)
		if err != nil {
			testci.SkipOrFail(t, "no private Sendmail: %v", err)
		}
		sendmailDistRoot = root
	}
	bin = filepath.Join(sendmailDistRoot, "usr", "libexec", "sendmail", "sendmail")
	cfDir = filepath.Join(sendmailDistRoot, "usr", "share", "sendmail", "cf")
	// The libraries are installed by e2e/install-deps.sh, not with the debs.
	if out, err := exec.Command("ldd", bin).CombinedOutput(); err != nil || strings.Contains(string(out), "not found") {
		testci.SkipOrFail(t, "%s cannot run (%v): missing shared libraries, run e2e/install-deps.sh as root:\n%s", bin, err, out)
	}
	return bin, cfDir
}

var sendmailPackages = []string{"sendmail-bin", "sendmail-base", "sendmail-cf"}

// prepareSendmailDist makes sure CACHE/sendmail/VERSION/root holds the
// unpacked packages of apt's candidate VERSION and returns that root. An
// apt with no candidate, or whose lists are too old to download it, gets
// an apt-get update first (a fresh machine has no lists). A file lock
// keeps concurrent test binaries from fetching at the same time.
func prepareSendmailDist(logf func(string, ...any)) (string, error) {
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb", "ldd"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("%s not found: fetching Sendmail needs a Debian system", tool)
		}
	}
	cache := os.Getenv(sendmailCacheEnv)
	if cache == "" {
		cache = sendmailCacheDefault
	}
	base := filepath.Join(cache, "sendmail")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(base, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	complete := func(ver string) (string, bool) {
		dir := filepath.Join(base, ver)
		_, err := os.Stat(filepath.Join(dir, "complete"))
		return filepath.Join(dir, "root"), err == nil
	}
	updated := false
	update := func() error {
		if updated {
			return nil
		}
		updated = true
		logf("running apt-get update (needed to fetch %s)", strings.Join(sendmailPackages, ", "))
		return aptRun(5*time.Minute, "", "update", "-qq")
	}

	ver := aptCandidate("sendmail-bin")
	if ver == "" {
		if err := update(); err != nil {
			return "", err
		}
		ver = aptCandidate("sendmail-bin")
	}
	if ver == "" {
		return "", errors.New("apt knows no sendmail-bin version (apt-cache policy sendmail-bin), even after apt-get update")
	}
	if root, ok := complete(ver); ok {
		return root, nil
	}
	err = fetchSendmail(base, ver, logf)
	if err != nil && !updated {
		// The lists may name a version the archive no longer has.
		if uerr := update(); uerr != nil {
			return "", fmt.Errorf("%v; then %v", err, uerr)
		}
		if v := aptCandidate("sendmail-bin"); v != "" {
			ver = v
			if root, ok := complete(ver); ok {
				return root, nil
			}
			err = fetchSendmail(base, ver, logf)
		}
	}
	if err != nil {
		return "", err
	}
	root, _ := complete(ver)
	return root, nil
}

// fetchSendmail downloads the sendmail packages of version ver and unpacks
// them into base/ver/root, which appears whole or not at all.
func fetchSendmail(base, ver string, logf func(string, ...any)) error {
	start := time.Now()
	tmp, err := os.MkdirTemp(base, ".fetch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	debs, root := filepath.Join(tmp, "debs"), filepath.Join(tmp, "root")
	for _, d := range []string{debs, root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	args := []string{"download", "-q", "-o", "APT::Sandbox::User=root"}
	for _, p := range sendmailPackages {
		args = append(args, p+"="+ver)
	}
	if err := aptRun(5*time.Minute, debs, args...); err != nil {
		return err
	}
	files, _ := filepath.Glob(filepath.Join(debs, "*.deb"))
	if len(files) != len(sendmailPackages) {
		return fmt.Errorf("apt-get download %s: got %v", ver, files)
	}
	for _, f := range files {
		if out, err := exec.Command("dpkg-deb", "-x", f, root).CombinedOutput(); err != nil {
			return fmt.Errorf("dpkg-deb -x %s: %v\n%s", f, err, out)
		}
	}
	for _, want := range []string{"usr/libexec/sendmail/sendmail", "usr/share/sendmail/cf/m4/cf.m4"} {
		if _, err := os.Stat(filepath.Join(root, want)); err != nil {
			return fmt.Errorf("sendmail %s unpacked without %s", ver, want)
		}
	}
	if err := os.RemoveAll(debs); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, "complete"), []byte(ver+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	final := filepath.Join(base, ver)
	if err := os.RemoveAll(final); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	logf("unpacked %s %s into %s in %v (not installed)", strings.Join(sendmailPackages, ", "), ver, final, time.Since(start).Round(time.Millisecond))
	return nil
}

// aptCandidate returns the version apt would install of pkg, "" if none.
func aptCandidate(pkg string) string {
	out, err := exec.Command("apt-cache", "policy", pkg).Output()
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Candidate:"); ok {
			if v = strings.TrimSpace(v); v != "(none)" {
				return v
			}
		}
	}
	return ""
}

func aptRun(timeout time.Duration, dir string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get %s: %v\n%s", strings.Join(args, " "), err, tail(string(out), 20))
	}
	return nil
}

// Sendmail's reply to DATA: "250 2.0.0 QID Message accepted for delivery".
var sendmailQueued = regexp.MustCompile(`(?m)^<-\s+250 2\.0\.0 ([0-9A-Za-z]+) Message accepted for delivery`)

// sendViaSendmail sends one message through the private Sendmail, over
// IPv4 or, if v6, to [::1]; token goes into the subject and body.
func sendViaSendmail(t *testing.T, sm *sendmail, v6 bool, from, to, token string) (out string, exitCode int) {
	t.Helper()
	args := []string{
		"--helo", "mail.sender.test",
		"--from", from,
		"--to", to,
		"--header", "Subject: e2e " + token,
		"--body", "e2e message " + token,
	}
	if v6 {
		// swaks takes the last --server: this one replaces 127.0.0.1.
		args = append([]string{"--server", fmt.Sprintf("[::1]:%d", sm.Port())}, args...)
	}
	return swaks(t, sm.Port(), args...)
}

// expectSendmailAccepted checks that rcpt got 250 at RCPT TO and Sendmail
// took the message; it returns the queue ID.
func expectSendmailAccepted(t *testing.T, out string, exitCode int, rcpt string) string {
	t.Helper()
	if exitCode != swaksOK {
		t.Errorf("swaks exit %d, want %d", exitCode, swaksOK)
	}
	if r := rcptReplies(out)[rcpt]; !hasCode(r, "250") {
		t.Errorf("reply to RCPT TO:<%s> = %q, want 250", rcpt, r)
	}
	m := sendmailQueued.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("message not accepted: no '250 2.0.0 QID Message accepted for delivery' after DATA")
	}
	return m[1]
}

// The README's Sendmail set-up, end to end: the INPUT_MAIL_FILTER line of
// contrib/sendmail.mc, Sendmail's stock milter macros, a client greylisted
// at RCPT TO, refused again too early, delivered after the delay.
func TestSendmailGreylistsRetriesAndDelivers(t *testing.T) {
	t.Parallel()
	requireSendmail(t) // before starting anything
	// Sendmail connects to the milter from 127.0.0.1 and has no XCLIENT:
	// the client milter-grey sees is swaks on 127.0.0.1, so nothing may be
	// trusted (greyConfig trusts nothing).
	d := startDaemon(t, greyConfig(nil))
	sm := startSendmail(t, d.Addr)
	from, rcpt := newSender("sendmail"), "user@dest.test"
	var firstAt, firstDone time.Time

	if !t.Run("first attempt is greylisted at RCPT TO", func(t *testing.T) {
		firstAt = time.Now()
		out, code := sendViaSendmail(t, sm, false, from, rcpt, uniqueName())
		firstDone = time.Now()
		if n := expectGreylisted(t, out, code, rcpt); n < 1 || n > int(greyDelay/time.Second) {
			t.Errorf("reply asks to retry in %d seconds, want 1..%d (the delay)", n, int(greyDelay/time.Second))
		}
		line := d.WaitLog(t, 5*time.Second, "action=greylist", "reason=new", "client=127.0.0.1 ", "sender="+from)
		// Sendmail's stock envelope macros carry i, the queue ID.
		if !strings.Contains(line, " qid=") {
			t.Errorf("decision logged without qid (Sendmail's i macro): %s", line)
		}
	}) {
		return
	}

	if !t.Run("immediate retry is greylisted again", func(t *testing.T) {
		out, code := sendViaSendmail(t, sm, false, from, rcpt, uniqueName())
		if code != swaksAllRcptsBad && time.Since(firstAt) >= greyDelay {
			t.Fatalf("the retry came %v after the first attempt, not before the %v delay: machine too slow for this check",
				time.Since(firstAt).Round(time.Millisecond), greyDelay)
		}
		expectGreylisted(t, out, code, rcpt)
		d.WaitLog(t, 5*time.Second, "action=greylist", "reason=early", "client=127.0.0.1 ", "sender="+from)
	}) {
		return
	}

	t.Run("retry after the delay is delivered with X-Greylist", func(t *testing.T) {
		time.Sleep(time.Until(firstDone.Add(afterDelay)))
		token := uniqueName()
		out, code := sendViaSendmail(t, sm, false, from, rcpt, token)
		qid := expectSendmailAccepted(t, out, code, rcpt)
		_, msg := sm.WaitDelivered(t, "dest.test", token, 15*time.Second)
		if n := delayedSeconds(t, msg); n < int(greyDelay/time.Second) {
			t.Errorf("X-Greylist reports a delay of %d seconds, want at least %v", n, greyDelay)
		}
		if !strings.Contains(msg, "with ESMTP id "+qid) {
			t.Errorf("delivered message has no Received: ... with ESMTP id %s:\n%s", qid, msg)
		}
		d.WaitLog(t, 5*time.Second, "action=pass", "reason=retried", "client=127.0.0.1 ", "sender="+from, "qid="+qid)
	})
}

// Sendmail's IPv6 client. Sendmail passes the connect address in its own
// form, "IPv6:0:0:0:0:0:0:0:1", which go-milter cannot parse (it hands the
// milter a nil address), and its stock connect macros have no
// {client_addr}: the "_" macro, "localhost [IPv6:0:0:0:0:0:0:0:1]", is the
// only place left to find the client. The daemon must log ::1, key the
// triplet by it, and let the retry through.
func TestSendmailIPv6ClientIsGreylistedAndPasses(t *testing.T) {
	t.Parallel()
	requireSendmail(t) // before starting anything
	d := startDaemon(t, greyConfig(nil))
	sm := startSendmail(t, d.Addr)
	if !sm.IPv6() {
		testci.SkipOrFail(t, "no IPv6 on loopback ([::1]:%d cannot be bound)", sm.Port())
	}
	from, rcpt := newSender("smsix"), "user@dest.test"

	out, code := sendViaSendmail(t, sm, true, from, rcpt, uniqueName())
	firstDone := time.Now()
	expectGreylisted(t, out, code, rcpt)
	// Sendmail saw an IPv6 client, in its own notation.
	if !strings.Contains(out, "[IPv6:0:0:0:0:0:0:0:1]") {
		t.Fatalf("Sendmail did not greet the client as [IPv6:0:0:0:0:0:0:0:1]: not an IPv6 session?")
	}
	d.WaitLog(t, 5*time.Second, "action=greylist", "reason=new", "client=::1 ", "sender="+from)

	time.Sleep(time.Until(firstDone.Add(afterDelay)))
	token := uniqueName()
	out, code = sendViaSendmail(t, sm, true, from, rcpt, token)
	qid := expectSendmailAccepted(t, out, code, rcpt)
	_, msg := sm.WaitDelivered(t, "dest.test", token, 15*time.Second)
	delayedSeconds(t, msg)
	d.WaitLog(t, 5*time.Second, "action=pass", "reason=retried", "client=::1 ", "sender="+from, "qid="+qid)
}

// F=T, as the README promises: with the milter unreachable Sendmail answers
// with a temporary failure, and nothing is delivered.
func TestSendmailTempfailsWhenMilterIsDown(t *testing.T) {
	t.Parallel()
	requireSendmail(t) // before starting anything

	// Nothing listens on the milter's port.
	sm := startSendmail(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	token := uniqueName()
	out, code := sendViaSendmail(t, sm, false, newSender("smdown"), "user@dest.test", token)
	if code == swaksOK {
		t.Fatalf("message accepted with the milter down")
	}
	if !regexp.MustCompile(`(?m)^<\*\*\s+4\d\d `).MatchString(out) {
		t.Errorf("no 4xx reply with the milter down (swaks exit %d)", code)
	}
	time.Sleep(500 * time.Millisecond)
	if got := sm.Delivered("dest.test", token); len(got) > 0 {
		t.Errorf("delivered with the milter down: %v", got)
	}
}
