package e2e

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/testutil/testci"
)

// workDir lives as long as the test binary; it holds the daemon built once
// for all tests (see buildDaemon).
var workDir string

// debianPackage names the package that provides a tool, for the skip message.
var debianPackage = map[string]string{
	"postfix":    "postfix",
	"swaks":      "swaks",
	"miltertest": "miltertest",
	"unshare":    "util-linux",
	"db_dump":    "db-util",
}

// requireTool returns the path of the named binary. It also looks in the sbin
// directories, which are often missing from a non-login PATH.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	pkg := debianPackage[name]
	if pkg == "" {
		pkg = name
	}
	testci.SkipOrFail(t, "%s not found (Debian: apt-get install %s)", name, pkg)
	return ""
}

// requireRoot: a private Postfix instance has to start as root.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testci.SkipOrFail(t, "running a private Postfix instance needs root")
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pick a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// pollEvery is how often the bounded waits below look again.
const pollEvery = 50 * time.Millisecond

// waitFor polls cond until it holds or timeout passes; it reports which.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollEvery)
	}
}

// acceptsTCP tells whether something accepts connections on addr now.
func acceptsTCP(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// lineWith returns the first line of text that contains every one of parts.
func lineWith(text string, parts ...string) (string, bool) {
	for _, line := range strings.Split(text, "\n") {
		ok := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok {
			return line, true
		}
	}
	return "", false
}

// waitForLine polls read() for a line containing all parts, failing the test
// with the tail of the text when none shows up in time.
func waitForLine(t testing.TB, what string, read func() string, timeout time.Duration, parts ...string) string {
	t.Helper()
	var line string
	if waitFor(timeout, func() bool {
		var ok bool
		line, ok = lineWith(read(), parts...)
		return ok
	}) {
		return line
	}
	t.Fatalf("no line with %q in %s after %v; last lines:\n%s", parts, what, timeout, tail(read(), 40))
	return ""
}

// tail returns the last n lines of text.
func tail(text string, n int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// uniqueName returns 12 random lower-case letters. Letters only: the daemon
// normalises digit runs (VERP) and extensions in sender addresses, so names
// made unique by numbers alone could share one greylist triplet.
func uniqueName() string {
	b := make([]byte, 12)
	rand.Read(b)
	for i := range b {
		b[i] = 'a' + b[i]%26
	}
	return string(b)
}

// setting is one "key = value" line of a configuration file (Postfix's
// main.cf and the daemon's TOML share that shape). value is written as is.
type setting struct{ key, value string }

// renderSettings writes base with the values of extra substituted, then the
// keys of extra that base lacks, in sorted order. Each key appears once: TOML
// rejects duplicate keys and Postfix warns about them.
func renderSettings(base []setting, extra map[string]string) string {
	var b strings.Builder
	seen := map[string]bool{}
	for _, s := range base {
		v := s.value
		if x, ok := extra[s.key]; ok {
			v = x
			seen[s.key] = true
		}
		fmt.Fprintf(&b, "%s = %s\n", s.key, v)
	}
	var rest []string
	for k := range extra {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		fmt.Fprintf(&b, "%s = %s\n", k, extra[k])
	}
	return b.String()
}
