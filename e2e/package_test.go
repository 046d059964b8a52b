package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-milter"

	"github.com/milter-grey/milter-grey/testutil/testci"
)

// The Debian package (packaging/, `make deb`) and the systemd unit
// (contrib/milter-grey.service), proven the way an admin meets them: the
// unit passes systemd-analyze, and the .deb installs with dpkg on a fresh
// Debian 12 root, serves with its installed configuration as its own user,
// and leaves the database behind when removed. The fresh root is a
// debootstrap chroot, so this machine's own packages are never touched.

const (
	// debSuite is the Debian release the package is installed on.
	debSuite = "bookworm"
	// debCacheEnv names another directory for the cached chroot image.
	debCacheEnv     = "MILTER_GREY_E2E_CACHE"
	debDefaultCache = "/var/cache/milter-grey-e2e"
	// debMirrorEnv overrides the mirror read from this machine's apt sources.
	debMirrorEnv = "MILTER_GREY_E2E_MIRROR"
	debBuildTime = 10 * time.Minute // packaging/build-deb.sh, a cold Go cache included
	debBootTime  = 15 * time.Minute // debootstrap, first run only
	debCmdTime   = 2 * time.Minute  // dpkg and friends in the chroot
	// debUnitExposure is the highest `systemd-analyze security` exposure
	// the unit may have, in tenths (the unit is at 1.4-1.5 of 10).
	debUnitExposure = 20
)

// debChrootPackages are added to debootstrap's minbase: adduser and procps
// because the package depends on them, systemd because a Debian 12 server
// has it (deb-systemd-helper enables the unit; systemd-analyze verifies the
// installed unit against the root's own units).
var debChrootPackages = []string{"adduser", "procps", "systemd"}

// debChrootEnv is the whole environment of commands run in the chroot.
var debChrootEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"LC_ALL=C", "HOME=/root", "DEBIAN_FRONTEND=noninteractive",
}

// TestSystemdUnitVerifies: contrib/milter-grey.service, exactly as shipped
// but for ExecStart's binary (built from this checkout, since
// /usr/sbin/milter-grey need not exist here), passes `systemd-analyze
// verify` without a warning, and its sandbox keeps the exposure that
// `systemd-analyze security` gives it low.
func TestSystemdUnitVerifies(t *testing.T) {
	t.Parallel()
	analyze := debRequireTool(t, "systemd-analyze", "systemd")
	unit, err := os.ReadFile("../contrib/milter-grey.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"User=milter-grey", "StateDirectory=milter-grey", "RuntimeDirectory=milter-grey",
		"ProtectSystem=strict", "NoNewPrivileges=yes", "Restart=on-failure",
		"ExecReload=/bin/kill -HUP $MAINPID", "StandardError=journal",
		"ExecStart=/usr/sbin/milter-grey -config /etc/milter-grey/milter-grey.toml",
	} {
		if !debHasLine(string(unit), want) {
			t.Errorf("contrib/milter-grey.service lacks the line %q", want)
		}
	}

	bin := buildDaemon(t)
	copyPath := filepath.Join(t.TempDir(), "milter-grey.service")
	copied := strings.Replace(string(unit), "ExecStart=/usr/sbin/milter-grey ", "ExecStart="+bin+" ", 1)
	if err := os.WriteFile(copyPath, []byte(copied), 0o644); err != nil {
		t.Fatal(err)
	}
	debVerifyUnit(t, analyze, copyPath)

	out, code := debRun(t, time.Minute, "", nil, analyze, "security", "--offline=true",
		fmt.Sprintf("--threshold=%d", debUnitExposure), copyPath)
	if code != 0 {
		t.Errorf("systemd-analyze security: exposure above %d.%d (exit %d):\n%s",
			debUnitExposure/10, debUnitExposure%10, code, out)
	} else if line, ok := lineWith(out, "Overall exposure level"); ok {
		t.Log(strings.TrimSpace(line))
	}
}

// debVerifyUnit runs `systemd-analyze verify` on a unit (extra arguments
// first, such as --root). It exits 0 on mere warnings (an unknown key, a bad
// value "ignored"), so any line that names the unit fails the test too.
func debVerifyUnit(t *testing.T, analyze, unit string, extra ...string) {
	t.Helper()
	args := append(append([]string{"verify"}, extra...), unit)
	out, code := debRun(t, time.Minute, "", nil, analyze, args...)
	var complaints []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "milter-grey.service") {
			complaints = append(complaints, line)
		}
	}
	if code != 0 || len(complaints) > 0 {
		t.Errorf("systemd-analyze %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
}

// TestDebianPackageInstallsServesAndRemoves builds the .deb with
// packaging/build-deb.sh and installs it with dpkg -i in a fresh Debian 12
// chroot: the system user and its 0700 state directory exist, the
// configuration and the starter client list are conffiles, check-config
// passes (also with the client list enabled), and the installed binary,
// run as milter-grey with the installed configuration (listen moved to a free
// port, DNS kept on loopback), greylists a new triplet. dpkg -r removes the binary and keeps
// the database, which a reinstall goes on using; dpkg --purge removes it.
func TestDebianPackageInstallsServesAndRemoves(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		testci.SkipOrFail(t, "installing the package in a chroot needs root")
	}
	requireTool(t, "dpkg-deb")
	chrootBin := requireTool(t, "chroot")
	analyze := debRequireTool(t, "systemd-analyze", "systemd")
	start := time.Now()
	phase := func(what string) {
		t.Logf("%-34s %6.1fs", what, time.Since(start).Seconds())
		start = time.Now()
	}

	deb := debBuild(t)
	debCheckArchive(t, deb)
	phase("built and inspected the .deb")

	root := debChroot(t)
	phase("fresh " + debSuite + " chroot ready")
	in := func(args ...string) (string, int) {
		t.Helper()
		return debRun(t, debCmdTime, "", debChrootEnv, chrootBin, append([]string{root}, args...)...)
	}
	must := func(args ...string) string {
		t.Helper()
		out, code := in(args...)
		if code != 0 {
			t.Fatalf("in the chroot, %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
		return out
	}
	if err := debCopyFile(deb, filepath.Join(root, "tmp", filepath.Base(deb))); err != nil {
		t.Fatal(err)
	}
	debInChroot := "/tmp/" + filepath.Base(deb)

	// Install.
	t.Logf("dpkg -i:\n%s", must("dpkg", "-i", debInChroot))
	if st := must("dpkg-query", "-W", "-f=${Status}", "milter-grey"); st != "install ok installed" {
		t.Fatalf("dpkg-query status %q after dpkg -i", st)
	}
	uid, gid := debCheckUser(t, must)
	debCheckStateDir(t, root, uid, gid)
	debCheckSameFile(t, filepath.Join(root, "etc/milter-grey/milter-grey.toml"), "../contrib/milter-grey.toml")
	debCheckSameFile(t, filepath.Join(root, "etc/milter-grey/whitelist_clients"), "../contrib/whitelist_clients")
	conffiles := must("dpkg-query", "-W", "-f=${Conffiles}", "milter-grey")
	for _, f := range []string{"/etc/milter-grey/milter-grey.toml", "/etc/milter-grey/whitelist_clients"} {
		if !strings.Contains(conffiles, f+" ") {
			t.Errorf("dpkg does not list %s as a conffile: %q", f, conffiles)
		}
	}
	debCheckSameFile(t, filepath.Join(root, "lib/systemd/system/milter-grey.service"), "../contrib/milter-grey.service")
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/milter-grey.service")
	if target, err := os.Readlink(wants); err != nil || target != "/lib/systemd/system/milter-grey.service" {
		t.Errorf("postinst did not enable the unit: %s -> %q (%v)", wants, target, err)
	}
	// The installed unit against the root's own systemd units and binary.
	debVerifyUnit(t, analyze, "milter-grey.service", "--root="+root)
	asUser := []string{"setpriv", "--reuid=milter-grey", "--regid=milter-grey", "--clear-groups", "--"}
	if out := must(append(asUser, "/usr/sbin/milter-grey", "check-config")...); !strings.Contains(out, "/etc/milter-grey/milter-grey.toml: OK") {
		t.Errorf("check-config of the installed configuration said:\n%s", out)
	}
	// The starter client list, enabled with the line README.Debian gives.
	listConf := filepath.Join(root, "etc/milter-grey/e2e-list.toml")
	if err := os.WriteFile(listConf, []byte(`whitelist_client_files = ["/etc/milter-grey/whitelist_clients", "?/etc/milter-grey/whitelist_clients.local"]`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := must(append(asUser, "/usr/sbin/milter-grey", "check-config", "-config", "/etc/milter-grey/e2e-list.toml")...); !strings.Contains(out, "/etc/milter-grey/e2e-list.toml: OK") {
		t.Errorf("check-config with the starter client list said:\n%s", out)
	}
	if err := os.Remove(listConf); err != nil {
		t.Fatal(err)
	}
	version := strings.TrimSpace(must("/usr/sbin/milter-grey", "version"))
	if sha, err := exec.Command("git", "-C", "..", "rev-parse", "--short=12", "HEAD").Output(); err == nil &&
		!strings.Contains(version, strings.TrimSpace(string(sha))) {
		t.Errorf("milter-grey version = %q, want the commit %s it was built from", version, sha)
	}
	phase("installed and checked")

	// Serve: the installed binary, as milter-grey, on the installed
	// configuration with listen and dns_server changed, greylists a new
	// triplet.
	env := envelope{
		ClientIP: "192.0.2.77",
		Helo:     "mx.sender.test",
		From:     "pkg-" + uniqueName() + "@sender.test",
		Rcpt:     "user@dest.test",
	}
	conf := filepath.Join(root, "etc/milter-grey/e2e.toml")
	installed, err := os.ReadFile(filepath.Join(root, "etc/milter-grey/milter-grey.toml"))
	if err != nil {
		t.Fatal(err)
	}
	serve := func(wantReason string) {
		t.Helper()
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		// As in the other tests, SPF asks a loopback address where no DNS
		// server runs, so no query leaves the machine (a DNS failure:
		// the triplet is keyed by the client network, as without SPF).
		top := fmt.Sprintf("# the installed milter-grey.toml, with listen moved and DNS kept local for the test\n"+
			"listen = %q\ndns_server = \"127.0.0.9:53\"\n", "inet:"+addr)
		if err := os.WriteFile(conf, append([]byte(top), installed...), 0o644); err != nil {
			t.Fatal(err)
		}
		d := debStartInChroot(t, chrootBin, root, addr, append(asUser, "/usr/sbin/milter-grey", "-config", "/etc/milter-grey/e2e.toml"))
		act, err := milterRcpt(addr, env)
		switch {
		case err != nil:
			t.Errorf("milter session with the installed daemon: %v", err)
		case act.Code != milter.ActReplyCode || act.SMTPCode != 451 || !strings.HasPrefix(act.SMTPText, "4.7.1 Greylisted"):
			t.Errorf("installed daemon answered %q %d %q to a new triplet from %s, want 451 4.7.1 Greylisted",
				rune(act.Code), act.SMTPCode, act.SMTPText, env.ClientIP)
		}
		line := waitForLine(t, "the installed daemon's log", d.log, 5*time.Second,
			"msg=decision", "action=greylist", "reason="+wantReason, "sender="+env.From)
		t.Logf("installed daemon: %s", line)
		d.stop(t)
		if err := os.Remove(conf); err != nil {
			t.Fatal(err)
		}
	}
	serve("new")
	db := debDatabaseFiles(t, root, uid)
	phase("served (451 new) and stopped")

	// Remove: the binary and the unit go; configuration, user and
	// database stay.
	t.Logf("dpkg -r:\n%s", must("dpkg", "-r", "milter-grey"))
	if st := must("dpkg-query", "-W", "-f=${Status}", "milter-grey"); st != "deinstall ok config-files" {
		t.Errorf("dpkg-query status %q after dpkg -r, want deinstall ok config-files", st)
	}
	for _, gone := range []string{"usr/sbin/milter-grey", "lib/systemd/system/milter-grey.service"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("/%s still there after dpkg -r (%v)", gone, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "etc/milter-grey/milter-grey.toml")); err != nil {
		t.Errorf("the conffile is gone after dpkg -r (%v); it stays until purge", err)
	}
	must("getent", "passwd", "milter-grey")
	debCheckStateDir(t, root, uid, gid)
	for _, f := range db {
		if _, err := os.Stat(filepath.Join(root, "var/lib/milter-grey", f)); err != nil {
			t.Errorf("database file %s lost by dpkg -r: %v", f, err)
		}
	}
	phase("removed, database kept")

	// Reinstall: the kept database still knows the triplet.
	must("dpkg", "-i", debInChroot)
	debCheckStateDir(t, root, uid, gid)
	serve("early")
	phase("reinstalled, triplet remembered")

	// Purge: configuration and database go, the user stays.
	must("dpkg", "--purge", "milter-grey")
	for _, gone := range []string{"var/lib/milter-grey", "etc/milter-grey", "etc/systemd/system/multi-user.target.wants/milter-grey.service"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("/%s still there after dpkg --purge (%v)", gone, err)
		}
	}
	must("getent", "passwd", "milter-grey")
	phase("purged")
}

// debBuild runs packaging/build-deb.sh into a temporary directory and
// returns the .deb it built.
func debBuild(t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "DEB_VERSION", "DEB_HOST_ARCH": // the script's knobs: defaults here
		default:
			env = append(env, kv)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), debBuildTime)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "packaging/build-deb.sh", out)
	cmd.Dir = ".."
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("packaging/build-deb.sh: %v\n%s", err, tail(stderr.String(), 40))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	deb := lines[len(lines)-1]
	if filepath.Dir(deb) != out || !strings.HasSuffix(deb, ".deb") {
		t.Fatalf("packaging/build-deb.sh printed %q, want a .deb in %s\n%s", deb, out, stderr.String())
	}
	t.Logf("packaging/build-deb.sh:\n%s", strings.TrimSpace(stderr.String()))
	return deb
}

// debCheckArchive checks the .deb's name, control fields and contents.
func debCheckArchive(t *testing.T, deb string) {
	t.Helper()
	archOut, code := debRun(t, time.Minute, "", nil, "dpkg", "--print-architecture")
	if code != 0 {
		t.Fatalf("dpkg --print-architecture: %s", archOut)
	}
	arch := strings.TrimSpace(archOut)
	fields := map[string]string{}
	for _, f := range []string{"Package", "Version", "Architecture", "Maintainer", "Depends", "Section", "Priority", "Description"} {
		v, code := debRun(t, time.Minute, "", nil, "dpkg-deb", "--field", deb, f)
		if code != 0 {
			t.Fatalf("dpkg-deb --field %s: %s", f, v)
		}
		fields[f] = strings.TrimSpace(v)
	}
	want := map[string]string{"Package": "milter-grey", "Architecture": arch, "Section": "mail", "Priority": "optional"}
	for k, v := range want {
		if fields[k] != v {
			t.Errorf("control field %s = %q, want %q", k, fields[k], v)
		}
	}
	for _, k := range []string{"Maintainer", "Description"} {
		if fields[k] == "" {
			t.Errorf("control field %s is empty", k)
		}
	}
	if !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`).MatchString(fields["Version"]) {
		t.Errorf("Version %q is not a Debian native version", fields["Version"])
	}
	if !strings.Contains(fields["Depends"], "adduser") {
		t.Errorf("Depends %q lacks adduser, which the postinst uses", fields["Depends"])
	}
	if name := fmt.Sprintf("milter-grey_%s_%s.deb", fields["Version"], arch); filepath.Base(deb) != name {
		t.Errorf("package file %s, want %s", filepath.Base(deb), name)
	}
	conffiles, code := debRun(t, time.Minute, "", nil, "dpkg-deb", "--info", deb, "conffiles")
	if want := "/etc/milter-grey/milter-grey.toml\n/etc/milter-grey/whitelist_clients"; code != 0 || strings.TrimSpace(conffiles) != want {
		t.Errorf("DEBIAN/conffiles = %q (exit %d), want %q", conffiles, code, want)
	}
	contents, code := debRun(t, time.Minute, "", nil, "dpkg-deb", "--contents", deb)
	if code != 0 {
		t.Fatalf("dpkg-deb --contents: %s", contents)
	}
	entries := map[string]string{} // path -> "mode owner"
	for _, line := range strings.Split(contents, "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 {
			entries[strings.TrimSuffix(f[5], "/")] = f[0] + " " + f[1]
		}
	}
	for path, attrs := range map[string]string{
		"./usr/sbin/milter-grey":                           "-rwxr-xr-x root/root",
		"./lib/systemd/system/milter-grey.service":         "-rw-r--r-- root/root",
		"./etc/milter-grey/milter-grey.toml":               "-rw-r--r-- root/root",
		"./etc/milter-grey/whitelist_clients":              "-rw-r--r-- root/root",
		"./usr/share/doc/milter-grey/copyright":            "-rw-r--r-- root/root",
		"./usr/share/doc/milter-grey/README.md":            "-rw-r--r-- root/root",
		"./usr/share/doc/milter-grey/logging.md":           "-rw-r--r-- root/root",
		"./usr/share/doc/milter-grey/examples/sendmail.mc": "-rw-r--r-- root/root",
		"./usr/share/man/man8/milter-grey.8.gz":            "-rw-r--r-- root/root",
		"./usr/share/man/man5/milter-grey.toml.5.gz":       "-rw-r--r-- root/root",
	} {
		if got, ok := entries[path]; !ok || got != attrs {
			t.Errorf("%s in the .deb: %q, want %q", path, got, attrs)
		}
	}
	// Shipped, /var/lib/milter-grey would be dpkg's to remove; the postinst
	// makes it instead.
	if _, ok := entries["./var/lib/milter-grey"]; ok {
		t.Errorf("the .deb ships /var/lib/milter-grey; dpkg -r would try to remove the database directory")
	}
}

// debCheckUser checks the system user and group milter-grey in the chroot
// and returns their ids.
func debCheckUser(t *testing.T, must func(...string) string) (uid, gid int) {
	t.Helper()
	pw := strings.Split(strings.TrimSpace(must("getent", "passwd", "milter-grey")), ":")
	gr := strings.Split(strings.TrimSpace(must("getent", "group", "milter-grey")), ":")
	if len(pw) != 7 || len(gr) < 3 {
		t.Fatalf("getent: passwd %q, group %q", pw, gr)
	}
	uid, _ = strconv.Atoi(pw[2])
	gid, _ = strconv.Atoi(gr[2])
	if uid == 0 || uid >= 1000 {
		t.Errorf("milter-grey has uid %d, want a system uid (1-999)", uid)
	}
	if pw[3] != gr[2] {
		t.Errorf("milter-grey's primary group is %s, want milter-grey (%s)", pw[3], gr[2])
	}
	if pw[5] != "/var/lib/milter-grey" || pw[6] != "/usr/sbin/nologin" {
		t.Errorf("milter-grey home %q shell %q, want /var/lib/milter-grey and /usr/sbin/nologin", pw[5], pw[6])
	}
	return uid, gid
}

// debCheckStateDir: /var/lib/milter-grey is a 0700 directory owned by the
// daemon's user and group.
func debCheckStateDir(t *testing.T, root string, uid, gid int) {
	t.Helper()
	fi, err := os.Stat(filepath.Join(root, "var/lib/milter-grey"))
	if err != nil {
		t.Fatalf("state directory: %v", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("/var/lib/milter-grey: %v owned by %d:%d, want a 0700 directory owned by %d:%d",
			fi.Mode(), st.Uid, st.Gid, uid, gid)
	}
}

// debDatabaseFiles returns the Badger files the daemon left in
// /var/lib/milter-grey; they must be there and belong to its user.
func debDatabaseFiles(t *testing.T, root string, uid int) []string {
	t.Helper()
	dir := filepath.Join(root, "var/lib/milter-grey")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	manifest := false
	for _, e := range entries {
		names = append(names, e.Name())
		manifest = manifest || e.Name() == "MANIFEST"
		if fi, err := e.Info(); err == nil && int(fi.Sys().(*syscall.Stat_t).Uid) != uid {
			t.Errorf("database file %s is owned by uid %d, want milter-grey (%d)", e.Name(), fi.Sys().(*syscall.Stat_t).Uid, uid)
		}
	}
	if !manifest {
		t.Fatalf("no Badger MANIFEST in /var/lib/milter-grey after serving: %v", names)
	}
	return names
}

// debCheckSameFile: an installed file is the one in the source tree.
func debCheckSameFile(t *testing.T, installed, source string) {
	t.Helper()
	a, err1 := os.ReadFile(installed)
	b, err2 := os.ReadFile(source)
	if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
		t.Errorf("installed %s differs from %s (%v, %v)", installed, source, err1, err2)
	}
}

// debDaemon is the installed daemon running in the chroot.
type debDaemon struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

func (d *debDaemon) log() string {
	b, _ := os.ReadFile(d.logPath)
	return string(b)
}

// debStartInChroot starts `chroot ROOT ARGS...` and waits until addr accepts
// connections. chroot and setpriv exec what they run, so the PID is the
// daemon's.
func debStartInChroot(t *testing.T, chrootBin, root, addr string, args []string) *debDaemon {
	t.Helper()
	d := &debDaemon{logPath: filepath.Join(t.TempDir(), "daemon.log"), done: make(chan struct{})}
	logf, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(chrootBin, append([]string{root}, args...)...)
	// As the unit runs it: a clean environment, GOMEMLIMIT set.
	d.cmd.Env = append(append([]string{}, debChrootEnv...), "GOMEMLIMIT=96MiB")
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	err = d.cmd.Start()
	logf.Close()
	if err != nil {
		t.Fatalf("start the installed milter-grey: %v", err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	exited := func() bool {
		select {
		case <-d.done:
			return true
		default:
			return false
		}
	}
	up := waitFor(daemonStartup, func() bool { return exited() || acceptsTCP(addr) })
	if exited() || !up {
		t.Fatalf("the installed milter-grey did not come up on %s (exited: %v, %v); log:\n%s", addr, exited(), d.err, tail(d.log(), 40))
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", d.cmd.Process.Pid)); strings.TrimSpace(string(comm)) != "milter-grey" {
		t.Errorf("pid %d runs %q, want milter-grey", d.cmd.Process.Pid, comm)
	}
	return d
}

// stop sends SIGTERM to the daemon's PID and wants a clean exit.
func (d *debDaemon) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(daemonStop):
		d.cmd.Process.Kill()
		<-d.done
		t.Fatalf("the installed milter-grey ignored SIGTERM for %v; log:\n%s", daemonStop, tail(d.log(), 20))
	}
	if d.err != nil {
		t.Errorf("the installed milter-grey exited with %v after SIGTERM; log:\n%s", d.err, tail(d.log(), 20))
	}
	waitForLine(t, "the installed daemon's log", d.log, time.Second, "milter-grey stopped")
}

// debChroot returns a fresh Debian root, extracted from the cached image, or
// made with debootstrap (and cached) on the first run. It is removed when
// the test ends, after anything mounted under it is unmounted.
func debChroot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	t.Cleanup(func() { debUnmountUnder(t, root) }) // runs before TempDir's removal
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}

	cache := os.Getenv(debCacheEnv)
	if cache == "" {
		cache = debDefaultCache
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(cache, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil { // another test run building it
		t.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	arch, _ := debRun(t, time.Minute, "", nil, "dpkg", "--print-architecture")
	image := filepath.Join(cache, fmt.Sprintf("%s-%s-minbase+%s.tar", debSuite, strings.TrimSpace(arch), strings.Join(debChrootPackages, ",")))
	if _, err := os.Stat(image); err == nil {
		if out, code := debRun(t, 5*time.Minute, "", nil, "tar", "-xpf", image, "--numeric-owner", "-C", root); code != 0 {
			t.Fatalf("extract %s: %s\n(delete it to have it made again)", image, out)
		}
		t.Logf("chroot from the cached image %s", image)
		return root
	}

	debootstrap := debRequireTool(t, "debootstrap", "debootstrap")
	mirror, from := debMirror()
	t.Logf("no cached image %s: debootstrap %s from %s (%s)", image, debSuite, mirror, from)
	out, code := debRun(t, debBootTime, "", nil, debootstrap, "--variant=minbase",
		"--include="+strings.Join(debChrootPackages, ","), debSuite, root, mirror)
	if code != 0 {
		testci.SkipOrFail(t, "debootstrap %s from %s (%s) failed, exit %d (no network to the mirror? set %s):\n%s",
			debSuite, mirror, from, code, debMirrorEnv, tail(out, 30))
	}
	// The downloaded .debs are not part of the system.
	debs, _ := filepath.Glob(filepath.Join(root, "var/cache/apt/archives/*.deb"))
	for _, f := range debs {
		os.Remove(f)
	}
	tmp := image + ".tmp"
	if out, code := debRun(t, 5*time.Minute, "", nil, "tar", "-cpf", tmp, "--numeric-owner", "-C", root, "."); code != 0 {
		os.Remove(tmp)
		t.Fatalf("cache the chroot: %s", out)
	}
	if err := os.Rename(tmp, image); err != nil {
		t.Fatal(err)
	}
	t.Logf("cached the chroot as %s", image)
	return root
}

// debMirror finds the Debian mirror this machine's apt uses: the first
// enabled "deb" source of the main archive (not -security) in
// /etc/apt/sources.list, sources.list.d/*.list or *.sources (deb822), one
// whose suites include debSuite if any. $MILTER_GREY_E2E_MIRROR overrides it.
func debMirror() (mirror, from string) {
	if m := os.Getenv(debMirrorEnv); m != "" {
		return m, "$" + debMirrorEnv
	}
	type source struct {
		uri, file string
		suites    []string
	}
	var sources []source
	add := func(file string, types, uris, suites []string) {
		hasDeb := false
		for _, ty := range types {
			hasDeb = hasDeb || ty == "deb"
		}
		for _, u := range uris {
			if hasDeb && (strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")) && !strings.Contains(u, "security") {
				sources = append(sources, source{strings.TrimSuffix(u, "/"), file, suites})
			}
		}
	}
	files := []string{"/etc/apt/sources.list"}
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	deb822, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	files = append(append(files, lists...), deb822...)
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		if strings.HasSuffix(file, ".sources") {
			for _, stanza := range regexp.MustCompile(`\n\s*\n`).Split(string(b), -1) {
				f := map[string][]string{}
				sc := bufio.NewScanner(strings.NewReader(stanza))
				for sc.Scan() {
					line := sc.Text()
					if strings.HasPrefix(line, "#") {
						continue
					}
					if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") {
						f[strings.ToLower(k)] = strings.Fields(v)
					}
				}
				if e := f["enabled"]; len(e) > 0 && e[0] == "no" {
					continue
				}
				add(file, f["types"], f["uris"], f["suites"])
			}
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = regexp.MustCompile(`\[[^]]*\]`).ReplaceAllString(line, "") // [arch=... signed-by=...]
			fields := strings.Fields(line)
			if len(fields) >= 3 {
				add(file, fields[:1], fields[1:2], fields[2:3])
			}
		}
	}
	for _, s := range sources {
		for _, suite := range s.suites {
			if suite == debSuite {
				return s.uri, s.file
			}
		}
	}
	for _, s := range sources {
		if strings.Contains(s.uri, "debian") {
			return s.uri, s.file
		}
	}
	return "http://deb.debian.org/debian", "no Debian source in apt's lists: the default"
}

// debUnmountUnder detaches whatever is mounted at or below dir (debootstrap
// mounts /proc and /sys while it runs and should undo it; a crash might
// not), deepest first, so that removing dir never reaches the host's.
func debUnmountUnder(t *testing.T, dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := debUnescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, mp := range points {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mp, err)
		}
	}
}

// debUnescapeMount undoes mountinfo's octal escapes (\040 for a space).
func debUnescapeMount(s string) string {
	return regexp.MustCompile(`\\[0-7]{3}`).ReplaceAllStringFunc(s, func(e string) string {
		n, _ := strconv.ParseUint(e[1:], 8, 8)
		return string([]byte{byte(n)})
	})
}

// debRequireTool finds a tool; when it is missing and we are root on
// Debian, it installs the package that has it (as e2e/install-deps.sh
// would). Otherwise the test is skipped, or fails under CI=true.
func debRequireTool(t *testing.T, tool, pkg string) string {
	t.Helper()
	if p := debFindTool(tool); p != "" {
		return p
	}
	if os.Geteuid() == 0 && debFindTool("apt-get") != "" {
		env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		install := []string{"install", "-y", "-qq", "--no-install-recommends", pkg}
		out, code := debRun(t, 10*time.Minute, "", env, "apt-get", install...)
		if code != 0 { // perhaps stale or missing package lists
			debRun(t, 10*time.Minute, "", env, "apt-get", "update", "-qq")
			out, code = debRun(t, 10*time.Minute, "", env, "apt-get", install...)
		}
		if p := debFindTool(tool); p != "" {
			t.Logf("installed the Debian package %s for %s", pkg, tool)
			return p
		}
		t.Logf("apt-get install %s: exit %d\n%s", pkg, code, tail(out, 20))
	}
	testci.SkipOrFail(t, "%s not found (Debian: apt-get install %s)", tool, pkg)
	return ""
}

// debFindTool looks a binary up in PATH and the sbin directories.
func debFindTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// debRun runs a command to completion within timeout and returns its
// combined output and exit code (-1 when it could not run or timed out).
// env nil inherits the test's environment.
func debRun(t *testing.T, timeout time.Duration, dir string, env []string, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out) + fmt.Sprintf("\n(%s timed out after %v)", name, timeout), -1
	}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		return string(out) + "\n" + err.Error(), -1
	}
	return string(out), 0
}

// debCopyFile copies a file's contents.
func debCopyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

// debHasLine tells whether text has a line equal to line.
func debHasLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}
