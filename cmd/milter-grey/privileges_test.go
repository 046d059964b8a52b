package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
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

	"github.com/milter-grey/milter-grey/config"
	"github.com/milter-grey/milter-grey/testutil/testci"
	"github.com/milter-grey/milter-grey/testutil/testlog"
)

// The unprivileged account of these tests: Debian's nobody:nogroup.
const (
	testUser  = "nobody"
	testGroup = "nogroup"
)

// testIDs resolves testUser and testGroup, or skips (fails under CI=true).
func testIDs(t *testing.T) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(testUser)
	if err != nil {
		testci.SkipOrFail(t, "no user %s: %v", testUser, err)
	}
	g, err := user.LookupGroup(testGroup)
	if err != nil {
		testci.SkipOrFail(t, "no group %s: %v", testGroup, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(g.Gid)
	return uid, gid
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testci.SkipOrFail(t, "needs root: it changes owners and users")
	}
}

// publicDir is a new directory everyone may traverse (t.TempDir's parent
// is 0700, which the dropped daemon could not enter).
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mg-priv-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestExposureOfListenAddresses(t *testing.T) {
	for _, tc := range []struct {
		address     string
		allowPublic bool
		wantErr     bool
		wantWarning bool
	}{
		{"127.0.0.1:10091", false, false, false},
		{"[::1]:10091", false, false, false},
		{"localhost:10091", false, false, false},
		{"[::ffff:127.0.0.1]:10091", false, false, false}, // bound as 127.0.0.1
		{"127.0.0.1:10091", true, false, false},
		{"0.0.0.0:10091", false, true, false},
		{"[::]:10091", false, true, false},
		{":10091", false, true, false},
		{"192.0.2.1:10091", false, true, false},
		{"0.0.0.0:10091", true, false, true},
		{"[2001:db8::1]:10091", true, false, true},
	} {
		t.Run(fmt.Sprintf("%s allow_public_listen=%v", tc.address, tc.allowPublic), func(t *testing.T) {
			c := config.Default()
			c.AllowPublic = tc.allowPublic
			warning, err := exposure(c, "listen", tc.address, milterExposure)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want an error: %v", err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "allow_public_listen") {
				t.Errorf("error %q should name allow_public_listen", err)
			}
			if (warning != "") != tc.wantWarning {
				t.Fatalf("warning = %q, want one: %v", warning, tc.wantWarning)
			}
			if warning != "" && (!strings.Contains(warning, tc.address) || !strings.Contains(warning, "firewall")) {
				t.Errorf("warning %q should name the address and the firewall", warning)
			}
		})
	}
}

// The warning reaches the daemon's log, for the milter and the admin
// listener. A test must not bind a public address, so listenTCP binds a
// loopback port instead of the public one asked for.
func TestPublicListenIsLoggedAsAWarning(t *testing.T) {
	var asked []string
	listenTCP = func(address string) (net.Listener, error) {
		asked = append(asked, address)
		return net.Listen("tcp", "127.0.0.1:0")
	}
	t.Cleanup(func() { listenTCP = func(address string) (net.Listener, error) { return net.Listen("tcp", address) } })

	dir := t.TempDir()
	c := daemonConfig(t, dir, "allow_public_listen = true\nadmin_listen = \"inet:0.0.0.0:10092\"\n")
	c.Listen = "inet:0.0.0.0:10091"
	d := startDaemon(t, c)
	d.stopNow(t)
	if len(asked) != 2 || asked[0] != "0.0.0.0:10091" || asked[1] != "0.0.0.0:10092" {
		t.Fatalf("bound %q, want the two public addresses", asked)
	}
	for _, want := range []string{
		`level=WARN msg="listen 0.0.0.0:10091 is not a loopback address (allow_public_listen = true): anyone who reaches it can use the milter; make sure a firewall protects it" key=listen`,
		`level=WARN msg="admin_listen 0.0.0.0:10092 is not a loopback address (allow_public_listen = true): anyone who reaches it can read the greylist and the metrics; make sure a firewall protects it" key=admin_listen`,
	} {
		if !strings.Contains(d.log.String(), want) {
			t.Errorf("no warning %s in the log:\n%s", want, d.log)
		}
	}

	// On loopback, no warning even with allow_public_listen.
	listenTCP = func(address string) (net.Listener, error) { return net.Listen("tcp", address) }
	d = startDaemon(t, daemonConfig(t, t.TempDir(), "allow_public_listen = true\n"))
	d.stopNow(t)
	if strings.Contains(d.log.String(), "not a loopback address") {
		t.Errorf("warned about a loopback address:\n%s", d.log)
	}
}

func TestPreparePrivileges(t *testing.T) {
	uid, gid := testIDs(t)
	for _, tc := range []struct {
		name       string
		user       string
		group      string
		euid, egid int
		wantDrop   bool
		wantErr    string // in the error; "" for none
		wantWarn   string // in the log; "" for no warning
	}{
		{"root without user warns", "", "", 0, 0, false, "", "running as root; set user"},
		{"a user without user: nothing to do", "", "", 1000, 1000, false, "", ""},
		{"root with user drops", testUser, "", 0, 0, true, "", ""},
		{"root with user and group drops", testUser, testGroup, 0, 0, true, "", ""},
		{"root with a numeric user drops", strconv.Itoa(uid), "", 0, 0, true, "", ""},
		{"already that user (systemd User=)", testUser, "", uid, gid, false, "", ""},
		{"already that user and group", testUser, testGroup, uid, gid, false, "", ""},
		{"another user cannot become user", testUser, "", uid + 1, gid, false, "only root can change user", ""},
		{"that user with another group", testUser, testGroup, uid, gid + 1, false, "only root can change group", ""},
		{"an unknown user", "no-such-user-mg", "", 0, 0, false, `user: no such user "no-such-user-mg"`, ""},
		{"an unknown user, not root", "no-such-user-mg", "", 1000, 1000, false, "no such user", ""},
		{"an unknown group", testUser, "no-such-group-mg", 0, 0, false, `group: no such group "no-such-group-mg"`, ""},
		{"user root is no drop, and warned", "root", "", 0, 0, false, "", "user names root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := ""
			if tc.user != "" {
				text += "user = " + strconv.Quote(tc.user) + "\n"
			}
			if tc.group != "" {
				text += "group = " + strconv.Quote(tc.group) + "\n"
			}
			path := writeFile(t, "milter-grey.toml", text)
			c, err := config.Load(path, false)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			p, err := preparePrivileges(c, tc.euid, tc.egid, slog.New(slog.NewTextHandler(&buf, nil)))
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("no error, want %q", tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), path+":") {
					t.Errorf("error %q should start with %s: and say %q", err, path, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (p.drop != nil) != tc.wantDrop {
				t.Errorf("drop = %+v, want a drop: %v", p.drop, tc.wantDrop)
			}
			if tc.wantDrop && (p.drop.UID != uid || p.drop.GID != gid || p.sockUID != uid) {
				t.Errorf("drop to %+v (sockets to uid %d), want uid %d gid %d", p.drop, p.sockUID, uid, gid)
			}
			if !tc.wantDrop && p.sockUID != -1 {
				t.Errorf("sockets given to uid %d without a drop", p.sockUID)
			}
			if got := buf.String(); tc.wantWarn == "" && got != "" {
				t.Errorf("logged %q, want nothing", got)
			} else if !strings.Contains(got, tc.wantWarn) || (tc.wantWarn != "" && !strings.Contains(got, "level=WARN")) {
				t.Errorf("logged %q, want a warning %q", got, tc.wantWarn)
			}
		})
	}
}

// check-config resolves the accounts, which config.Load does not.
func TestCheckConfigResolvesAccounts(t *testing.T) {
	path := writeFile(t, "milter-grey.toml", "# x\nsocket_group = \"no-such-group-mg\"\n")
	var out, errOut bytes.Buffer
	if code := run([]string{"check-config", "-config", path}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), path+":2: socket_group: ") {
		t.Errorf("check-config: exit %d, stderr %q; want 1 naming %s:2: socket_group", code, errOut.String(), path)
	}
}

// Unix sockets, the milter's and the admin's, get socket_mode and the
// owner and group of the privileges.
func TestUnixSocketGetsOwnerAndGroup(t *testing.T) {
	requireRoot(t)
	uid, gid := testIDs(t)
	dir := publicDir(t)
	c := config.Default()
	c.SocketMode = "0660"
	for _, key := range []string{"listen", "admin_listen"} {
		t.Run(key, func(t *testing.T) {
			path := filepath.Join(dir, key+".sock")
			ln, err := listenSpec(c, "unix:"+path, key, milterExposure, &privileges{sockUID: uid, sockGID: gid}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o660 || int(st.Uid) != uid || int(st.Gid) != gid {
				t.Errorf("socket %v uid %d gid %d, want a socket 0660 uid %d gid %d", fi.Mode(), st.Uid, st.Gid, uid, gid)
			}
		})
	}
	t.Run("socket_group only keeps the owner", func(t *testing.T) {
		path := filepath.Join(dir, "group-only.sock")
		ln, err := listenSpec(c, "unix:"+path, "listen", milterExposure, &privileges{sockUID: -1, sockGID: gid}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		fi, _ := os.Lstat(path)
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != os.Geteuid() || int(st.Gid) != gid {
			t.Errorf("socket uid %d gid %d, want uid %d gid %d", st.Uid, st.Gid, os.Geteuid(), gid)
		}
	})
}

func TestPrepareStoreForTheDroppedUser(t *testing.T) {
	requireRoot(t)
	uid, gid := testIDs(t)
	p := &privileges{drop: &config.Account{Name: testUser, UID: uid, GID: gid, Groups: []int{gid}}}
	owner := func(t *testing.T, path string) (int, int) {
		t.Helper()
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		return int(st.Uid), int(st.Gid)
	}
	t.Run("a missing directory is created for the user", func(t *testing.T) {
		dir := filepath.Join(publicDir(t), "db")
		if err := p.prepareStore(dir); err != nil {
			t.Fatal(err)
		}
		if u, g := owner(t, dir); u != uid || g != gid {
			t.Errorf("created uid %d gid %d, want %d %d", u, g, uid, gid)
		}
		if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
			t.Errorf("mode %v, want 0700", fi.Mode().Perm())
		}
	})
	t.Run("badger: prefix", func(t *testing.T) {
		dir := filepath.Join(publicDir(t), "db")
		if err := p.prepareStore("badger:" + dir); err != nil {
			t.Fatal(err)
		}
		if u, _ := owner(t, dir); u != uid {
			t.Errorf("created uid %d, want %d", u, uid)
		}
	})
	t.Run("the user's directory and files are fine", func(t *testing.T) {
		dir := filepath.Join(publicDir(t), "db")
		must(t, os.Mkdir(dir, 0o700))
		must(t, os.WriteFile(filepath.Join(dir, "MANIFEST"), nil, 0o600))
		must(t, os.Lchown(dir, uid, gid))
		must(t, os.Lchown(filepath.Join(dir, "MANIFEST"), uid, gid))
		if err := p.prepareStore(dir); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("an existing root directory is refused, not chowned", func(t *testing.T) {
		dir := filepath.Join(publicDir(t), "db")
		must(t, os.Mkdir(dir, 0o700))
		err := p.prepareStore(dir)
		if err == nil || !strings.Contains(err.Error(), "chown -R "+testUser+": "+dir) {
			t.Errorf("error %v, want one that says chown -R %s: %s", err, testUser, dir)
		}
		if u, _ := owner(t, dir); u != 0 {
			t.Errorf("the directory was given to uid %d", u)
		}
	})
	t.Run("a root file in the user's directory is refused", func(t *testing.T) {
		dir := filepath.Join(publicDir(t), "db")
		must(t, os.Mkdir(dir, 0o700))
		must(t, os.Lchown(dir, uid, gid))
		vlog := filepath.Join(dir, "000001.vlog")
		must(t, os.WriteFile(vlog, nil, 0o600))
		err := p.prepareStore(dir)
		if err == nil || !strings.Contains(err.Error(), vlog) || !strings.Contains(err.Error(), "chown -R") {
			t.Errorf("error %v, want one naming %s and chown -R", err, vlog)
		}
	})
	t.Run("a missing parent is an error, not created", func(t *testing.T) {
		parent := filepath.Join(publicDir(t), "srv")
		err := p.prepareStore(filepath.Join(parent, "db"))
		if err == nil || !strings.Contains(err.Error(), "parent directory does not exist") {
			t.Errorf("error %v, want one about the parent", err)
		}
		if _, err := os.Stat(parent); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the parent was created: %v", err)
		}
	})
	t.Run("a file is not a store", func(t *testing.T) {
		file := filepath.Join(publicDir(t), "db")
		must(t, os.WriteFile(file, nil, 0o600))
		if err := p.prepareStore(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Errorf("error %v, want not a directory", err)
		}
	})
	t.Run("redis needs nothing", func(t *testing.T) {
		if err := p.prepareStore("redis://127.0.0.1:1/0"); err != nil {
			t.Error(err)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// daemonBinary builds this command once, into a directory every user may
// traverse.
func daemonBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mg-bin-")
		if err != nil {
			binErr = err
			return
		}
		os.Chmod(dir, 0o755)
		bin := filepath.Join(dir, "milter-grey")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		binPath = bin
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// process is the daemon binary running on a configuration.
type process struct {
	cmd  *exec.Cmd
	out  *testlog.Buffer
	done chan struct{}
	err  error
}

func startProcess(t *testing.T, config string, cred *syscall.Credential) *process {
	t.Helper()
	p := &process{out: &testlog.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(daemonBinary(t), "-config", config)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Dir = "/"
	if cred != nil {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("milter-grey output:\n%s", p.out)
		}
	})
	return p
}

// exit waits for the process to end by itself and returns its status.
func (p *process) exit(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("milter-grey still runs; output:\n%s", p.out)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return 0
}

func (p *process) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exit(t); code != 0 {
		t.Errorf("exit %d after SIGTERM; output:\n%s", code, p.out)
	}
}

// waitLog waits for a line of the output that holds every part.
func (p *process) waitLog(t *testing.T, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, line := range strings.Split(p.out.String(), "\n") {
			ok := true
			for _, part := range parts {
				ok = ok && strings.Contains(line, part)
			}
			if ok {
				return line
			}
		}
		select {
		case <-p.done:
			t.Fatalf("milter-grey exited (%v) without logging %q:\n%s", p.err, parts, p.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line with %q in:\n%s", parts, p.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// procStatus returns the Uid:, Gid:, Groups: and CapEff: lines of a process.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			m[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return m
}

// freeLoopbackPort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// writePrivConfig writes a configuration every user may read.
func writePrivConfig(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "milter-grey.toml")
	must(t, os.WriteFile(path, []byte(text), 0o644))
	return path
}

// Started as root with user = "nobody", the daemon gives its sockets and
// a new store to nobody, then runs as nobody (every uid and gid, no
// capability left), serves, stops cleanly, and starts again on the store
// it made.
func TestPrivilegeDropAsRoot(t *testing.T) {
	requireRoot(t)
	uid, gid := testIDs(t)
	dir := publicDir(t)
	store := filepath.Join(dir, "db")
	adminSock := filepath.Join(dir, "admin.sock")
	addr := fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t))
	config := writePrivConfig(t, dir, fmt.Sprintf(`listen = %q
admin_listen = %q
store = %q
user = %q
socket_group = %q
socket_mode = "0660"
hostname = "mx.test"
trusted_networks = []
dns_server = "127.0.0.9:53"
`, "inet:"+addr, "unix:"+adminSock, store, testUser, testGroup))

	for run := 1; run <= 2; run++ {
		t.Run(fmt.Sprintf("start %d", run), func(t *testing.T) {
			p := startProcess(t, config, nil)
			p.waitLog(t, "dropped privileges", "user="+testUser, "uid="+strconv.Itoa(uid))
			p.waitLog(t, "milter-grey started", "uid="+strconv.Itoa(uid))
			if strings.Contains(p.out.String(), "running as root") {
				t.Errorf("warned about root although it dropped:\n%s", p.out)
			}

			st := procStatus(t, p.cmd.Process.Pid)
			t.Logf("/proc/%d/status: Uid: %s, Gid: %s, Groups: %s, CapEff: %s", p.cmd.Process.Pid, st["Uid"], st["Gid"], st["Groups"], st["CapEff"])
			ids := func(id int) string { s := strconv.Itoa(id); return s + " " + s + " " + s + " " + s }
			if st["Uid"] != ids(uid) || st["Gid"] != ids(gid) {
				t.Errorf("/proc status Uid: %q Gid: %q, want %q and %q (real, effective, saved, fs)", st["Uid"], st["Gid"], ids(uid), ids(gid))
			}
			if st["Groups"] != strconv.Itoa(gid) {
				t.Errorf("Groups: %q, want %d only (root's groups dropped)", st["Groups"], gid)
			}
			for _, cap := range []string{"CapEff", "CapPrm"} {
				if st[cap] != "0000000000000000" {
					t.Errorf("%s: %s, want none", cap, st[cap])
				}
			}
			// Every thread, not only the main one.
			tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", p.cmd.Process.Pid))
			for _, task := range tasks {
				b, _ := os.ReadFile(task)
				for _, line := range strings.Split(string(b), "\n") {
					if k, v, _ := strings.Cut(line, ":"); k == "Uid" && strings.Join(strings.Fields(v), " ") != ids(uid) {
						t.Errorf("%s: Uid: %s", task, v)
					}
				}
			}

			// The store and the admin socket belong to nobody.
			for _, path := range []string{store, adminSock} {
				fi, err := os.Lstat(path)
				if err != nil {
					t.Fatal(err)
				}
				s := fi.Sys().(*syscall.Stat_t)
				if int(s.Uid) != uid {
					t.Errorf("%s: uid %d, want %d", path, s.Uid, uid)
				}
			}
			fi, _ := os.Lstat(adminSock)
			if s := fi.Sys().(*syscall.Stat_t); int(s.Gid) != gid || fi.Mode().Perm() != 0o660 {
				t.Errorf("admin socket gid %d mode %v, want gid %d mode 0660", s.Gid, fi.Mode().Perm(), gid)
			}
			files, _ := os.ReadDir(store)
			for _, f := range files {
				fi, _ := f.Info()
				if s := fi.Sys().(*syscall.Stat_t); int(s.Uid) != uid {
					t.Errorf("store file %s: uid %d, want %d", f.Name(), s.Uid, uid)
				}
			}

			// It serves: a go-milter session, a new triplet, then early.
			reason := []string{"", "reason=new", "reason=early"}[run]
			if a := (&testDaemon{network: "tcp", addr: addr}).rcpt(t, "<alice@sender.example>", "<bob@example.net>"); a.SMTPCode != 451 {
				t.Errorf("got %q %d %q, want 451", a.Code, a.SMTPCode, a.SMTPText)
			}
			p.waitLog(t, "action=greylist", reason)
			p.stop(t)
			if !strings.Contains(p.out.String(), "milter-grey stopped") {
				t.Errorf("no clean stop:\n%s", p.out)
			}
		})
	}
}

// What the daemon refuses to do, with a message that says why.
func TestPrivilegeRefusals(t *testing.T) {
	requireRoot(t)
	uid, gid := testIDs(t)
	for _, tc := range []struct {
		name   string
		user   string
		asUser bool // start as nobody instead of root
		store  func(t *testing.T, dir string) string
		want   []string
	}{
		{name: "root with an unknown user", user: "no-such-user-mg",
			want: []string{"CONFIG:4: user: no such user \"no-such-user-mg\""}},
		{name: "not root, user names someone else", user: "daemon", asUser: true,
			want: []string{"CONFIG:4: user: \"daemon\" is uid 1", "only root can change user"}},
		{name: "root, the store exists and is root's", user: testUser,
			store: func(t *testing.T, dir string) string {
				db := filepath.Join(dir, "db")
				must(t, os.Mkdir(db, 0o700))
				return db
			},
			want: []string{"owned by uid 0", "chown -R " + testUser + ": ", "does not change the owner"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := publicDir(t)
			store := filepath.Join(dir, "db")
			if tc.store != nil {
				store = tc.store(t, dir)
			}
			sock := filepath.Join(dir, "milter.sock")
			config := writePrivConfig(t, dir, fmt.Sprintf("# refused\nlisten = %q\nstore = %q\nuser = %q\n", "unix:"+sock, store, tc.user))
			var cred *syscall.Credential
			if tc.asUser {
				cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
			}
			p := startProcess(t, config, cred)
			if code := p.exit(t); code != 1 {
				t.Fatalf("exit %d, want 1; output:\n%s", code, p.out)
			}
			out := p.out.String()
			for _, w := range tc.want {
				if w = strings.ReplaceAll(w, "CONFIG", config); !strings.Contains(out, w) {
					t.Errorf("output does not say %q:\n%s", w, out)
				}
			}
			// Nothing was left listening or half made.
			if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("socket left behind: %v", err)
			}
			if tc.store == nil {
				if _, err := os.Stat(store); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("store created by a refused start: %v", err)
				}
			}
		})
	}
}

// The list files are read as the daemon's user, after the privilege drop,
// and once. The list file is a named pipe: the daemon's open of it waits
// for the test's, and its read for the text the test writes, so while it
// reads, the test looks at who it is. A second read would wait forever:
// the test opens the pipe once.
func TestListFilesAreReadOnceAfterThePrivilegeDrop(t *testing.T) {
	requireRoot(t)
	uid, _ := testIDs(t)
	dir := publicDir(t)
	fifo := filepath.Join(dir, "whitelist_clients")
	must(t, syscall.Mkfifo(fifo, 0o644))
	must(t, os.Chmod(fifo, 0o644)) // whatever the umask: nobody may read it
	config := writePrivConfig(t, dir, fmt.Sprintf(`listen = %q
store = %q
user = %q
whitelist_client_files = [%q]
reload_interval = "0s"
dns_server = "127.0.0.9:53"
`, fmt.Sprintf("inet:127.0.0.1:%d", freeLoopbackPort(t)), filepath.Join(dir, "db"), testUser, fifo))

	opened := make(chan *os.File, 1)
	go func() {
		defer close(opened)
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			opened <- w
		}
	}()
	t.Cleanup(func() {
		// A reader that comes and goes ends the open above if the
		// daemon never came.
		if r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			r.Close()
		}
		for w := range opened {
			w.Close()
		}
	})

	p := startProcess(t, config, nil)
	select {
	case w := <-opened:
		st := procStatus(t, p.cmd.Process.Pid)
		want := strings.TrimSpace(strings.Repeat(strconv.Itoa(uid)+" ", 4)) // real, effective, saved, fs
		if st["Uid"] != want {
			t.Errorf("the daemon reads its list file as Uid: %s, want %s (%s, after the drop)", st["Uid"], want, testUser)
		}
		if _, err := w.WriteString("mail.example.com\n"); err != nil {
			t.Fatal(err)
		}
		w.Close()
	case <-p.done:
		t.Fatalf("milter-grey exited (%v) before it read its list file", p.err)
	case <-time.After(20 * time.Second):
		t.Fatal("milter-grey did not read its list file")
	}
	p.waitLog(t, "milter-grey started", "whitelist_clients=1", "uid="+strconv.Itoa(uid))
	p.stop(t)
}
