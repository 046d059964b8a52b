package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// makeInstall runs `make install` of this checkout with DESTDIR and PREFIX.
func makeInstall(t *testing.T, destdir, prefix string) string {
	t.Helper()
	requireTool(t, "make")
	out, code := debRun(t, 10*time.Minute, "..", os.Environ(), "make", "--no-print-directory", "install",
		"DESTDIR="+destdir, "PREFIX="+prefix)
	if code != 0 {
		t.Fatalf("make install DESTDIR=%s PREFIX=%s: exit %d\n%s", destdir, prefix, code, out)
	}
	return out
}

// TestMakeInstall: `make install` puts the binary and the manual pages
// under PREFIX and the unit where systemd looks, with ExecStart naming the
// installed binary; it installs the sample configuration once and never
// overwrites an existing one; with DESTDIR it does not create the system
// user, and says so.
func TestMakeInstall(t *testing.T) {
	sample, err := os.ReadFile("../contrib/milter-grey.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		prefix, unit, execStart string
	}{
		{"/usr/local", "usr/local/lib/systemd/system/milter-grey.service", "ExecStart=/usr/local/sbin/milter-grey -config /etc/milter-grey/milter-grey.toml"},
		{"/usr", "lib/systemd/system/milter-grey.service", "ExecStart=/usr/sbin/milter-grey -config /etc/milter-grey/milter-grey.toml"},
	} {
		t.Run("PREFIX="+tc.prefix, func(t *testing.T) {
			dest := t.TempDir()
			out := makeInstall(t, dest, tc.prefix)
			for _, f := range []struct {
				path string
				mode os.FileMode
			}{
				{tc.prefix + "/sbin/milter-grey", 0o755},
				{tc.prefix + "/share/man/man8/milter-grey.8", 0o644},
				{tc.prefix + "/share/man/man5/milter-grey.toml.5", 0o644},
				{"/" + tc.unit, 0o644},
				{"/etc/milter-grey/milter-grey.toml", 0o644},
			} {
				fi, err := os.Stat(filepath.Join(dest, f.path))
				if err != nil || fi.Mode().Perm() != f.mode {
					t.Errorf("%s: %v, mode %v; want mode %v", f.path, err, fi, f.mode)
				}
			}
			unit, err := os.ReadFile(filepath.Join(dest, tc.unit))
			if err != nil {
				t.Fatal(err)
			}
			if !debHasLine(string(unit), tc.execStart) {
				t.Errorf("the installed unit lacks %q:\n%s", tc.execStart, unit)
			}
			if c, _ := os.ReadFile(filepath.Join(dest, "etc/milter-grey/milter-grey.toml")); string(c) != string(sample) {
				t.Errorf("the installed configuration is not contrib/milter-grey.toml")
			}
			if !strings.Contains(out, "DESTDIR is set, so the system user milter-grey was not created") {
				t.Errorf("make install with DESTDIR does not say the user was not created:\n%s", out)
			}

			// The admin's edits survive a second install.
			conf := filepath.Join(dest, "etc/milter-grey/milter-grey.toml")
			edited := "listen = \"unix:/run/milter-grey/milter.sock\"\n"
			if err := os.WriteFile(conf, []byte(edited), 0o640); err != nil {
				t.Fatal(err)
			}
			out = makeInstall(t, dest, tc.prefix)
			if c, _ := os.ReadFile(conf); string(c) != edited {
				t.Errorf("a second make install changed the configuration to:\n%s", c)
			}
			if !strings.Contains(out, "kept the existing "+conf) {
				t.Errorf("the second make install does not say it kept the configuration:\n%s", out)
			}
		})
	}
}

// TestInstallUserScript: packaging/install-user.sh, run as root on a
// system without the user, creates the system user and group milter-grey
// as the unit needs them (no login shell, home /var/lib/milter-grey), and
// is quiet the second time. It runs in a private mount namespace on a copy
// of /etc, so this machine's accounts are never touched.
func TestInstallUserScript(t *testing.T) {
	requireRoot(t)
	requireTool(t, "unshare")
	if !canUnshare() {
		t.Skip("unshare -m is not permitted here")
	}
	for _, tool := range []string{"useradd", "groupadd"} {
		requireTool(t, tool)
	}
	if exec.Command("getent", "passwd", "milter-grey").Run() == nil {
		t.Skip("this machine already has the user milter-grey")
	}
	etc := t.TempDir()
	script := `set -e
cp -a /etc/. "$1"
mount --bind "$1" /etc
getent passwd milter-grey >/dev/null && { echo "the copy of /etc already has milter-grey"; exit 3; }
sh packaging/install-user.sh
echo "second run:"
sh packaging/install-user.sh
echo "passwd: $(getent passwd milter-grey)"
echo "group: $(getent group milter-grey)"`
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script, "install-user", etc)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "DESTDIR=", "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("install-user.sh in a private /etc: %v\n%s", err, out)
	}
	text := string(out)
	first, second, _ := strings.Cut(text, "second run:\n")
	if !strings.Contains(first, "created the system user milter-grey") {
		t.Errorf("the first run does not say it created the user:\n%s", text)
	}
	if strings.Contains(second, "created") {
		t.Errorf("the second run created the user again:\n%s", text)
	}
	passwd, _ := lineWith(text, "passwd: ")
	fields := strings.Split(strings.TrimPrefix(strings.TrimSpace(passwd), "passwd: "), ":")
	if len(fields) != 7 || fields[0] != "milter-grey" || fields[5] != "/var/lib/milter-grey" || fields[6] != "/usr/sbin/nologin" {
		t.Errorf("passwd entry %q, want milter-grey with home /var/lib/milter-grey and /usr/sbin/nologin", passwd)
	}
	if group, _ := lineWith(text, "group: "); len(fields) == 7 && !strings.HasPrefix(strings.TrimSpace(group), "group: milter-grey:x:"+fields[3]+":") {
		t.Errorf("group entry %q, want milter-grey with gid %s (the user's primary group)", group, fields[3])
	}
	if exec.Command("getent", "passwd", "milter-grey").Run() == nil {
		t.Errorf("this machine's /etc/passwd has milter-grey after the test")
	}
}
