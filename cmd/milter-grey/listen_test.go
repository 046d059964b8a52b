package main

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/milter-grey/milter-grey/config"
)

func TestParseListen(t *testing.T) {
	for _, tc := range []struct {
		name, spec       string
		network, address string
	}{
		{"inet HOST:PORT (Postfix)", "inet:127.0.0.1:10091", "tcp", "127.0.0.1:10091"},
		{"inet PORT@HOST (Sendmail)", "inet:10091@127.0.0.1", "tcp", "127.0.0.1:10091"},
		{"inet with a host name", "inet:localhost:10091", "tcp", "localhost:10091"},
		{"inet6 in brackets", "inet6:[::1]:10091", "tcp", "[::1]:10091"},
		{"inet6 PORT@HOST (Sendmail)", "inet6:10091@::1", "tcp", "[::1]:10091"},
		{"inet6 PORT@[HOST]", "inet6:10091@[::1]", "tcp", "[::1]:10091"},
		{"unix socket", "unix:/run/x.sock", "unix", "/run/x.sock"},
		{"local is unix (Sendmail)", "local:/run/x.sock", "unix", "/run/x.sock"},
		{"inet without a host is every address", "inet::10091", "tcp", ":10091"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			network, address, err := parseListen(tc.spec)
			if err != nil {
				t.Fatalf("parseListen(%q): %v", tc.spec, err)
			}
			if network != tc.network || address != tc.address {
				t.Errorf("parseListen(%q) = %q, %q; want %q, %q", tc.spec, network, address, tc.network, tc.address)
			}
		})
	}
}

func TestParseListenErrors(t *testing.T) {
	for _, tc := range []struct {
		name, spec, text string
	}{
		{"no kind", "127.0.0.1", "want inet:HOST:PORT"},
		{"relative unix path", "unix:run/x.sock", "absolute"},
		{"relative local path", "local:x.sock", "absolute"},
		{"empty unix path", "unix:", "absolute"},
		{"port not a number", "inet:127.0.0.1:smtp", `bad port "smtp"`},
		{"port out of range", "inet:127.0.0.1:65536", `bad port "65536"`},
		{"negative port", "inet:127.0.0.1:-1", `bad port "-1"`},
		{"empty port", "inet:127.0.0.1:", `bad port ""`},
		{"empty Sendmail port", "inet:@127.0.0.1", `bad port ""`},
		{"no port", "inet:127.0.0.1", "missing port"},
		{"a bare port is not Sendmail's form", "inet:10091", "missing port"},
		{"unknown kind", "tcp:127.0.0.1:10091", `unknown socket type "tcp"`},
		{"kinds are lower case", "INET:127.0.0.1:10091", `unknown socket type "INET"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			network, address, err := parseListen(tc.spec)
			if err == nil {
				t.Fatalf("parseListen(%q) = %q, %q; want an error", tc.spec, network, address)
			}
			if !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), tc.spec) {
				t.Errorf("error %q should quote %q and say %q", err, tc.spec, tc.text)
			}
		})
	}
}

func TestIsLoopback(t *testing.T) {
	for _, tc := range []struct {
		name, address string
		want          bool
	}{
		{"IPv4 loopback", "127.0.0.1:10091", true},
		{"all of 127/8", "127.0.0.2:10091", true},
		{"IPv6 loopback", "[::1]:10091", true},
		{"localhost", "localhost:10091", true},
		{"every IPv4 address", "0.0.0.0:10091", false},
		{"every IPv6 address", "[::]:10091", false},
		{"every address", ":10091", false},
		{"a public address", "192.0.2.1:10091", false},
		{"a host name other than localhost", "mx.example.net:10091", false},
		{"no port", "127.0.0.1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isLoopback(tc.address); got != tc.want {
				t.Errorf("isLoopback(%q) = %v, want %v", tc.address, got, tc.want)
			}
		})
	}
}

// Nothing here binds a public address: listen must refuse before it binds.
func TestListenRefusesPublicAddressWithoutAllowPublic(t *testing.T) {
	for _, spec := range []string{"inet:0.0.0.0:0", "inet6:[::]:0", "inet::0", "inet:0@"} {
		t.Run(spec, func(t *testing.T) {
			c := config.Default()
			c.Listen = spec
			ln, err := listen(c)
			if err == nil {
				ln.Close()
				t.Fatalf("listen(%q) succeeded without allow_public_listen", spec)
			}
			if !strings.Contains(err.Error(), "allow_public_listen") {
				t.Errorf("error %q should point to allow_public_listen", err)
			}
		})
	}
}

func TestListenOnLoopback(t *testing.T) {
	for _, tc := range []struct {
		name        string
		allowPublic bool
	}{
		{"loopback needs no allow_public_listen", false},
		{"allow_public_listen allows loopback too", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			c.Listen = "inet:127.0.0.1:0"
			c.AllowPublic = tc.allowPublic
			ln, err := listen(c)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if a, ok := ln.Addr().(*net.TCPAddr); !ok || !a.IP.IsLoopback() || a.Port == 0 {
				t.Errorf("listening on %v", ln.Addr())
			}
		})
	}
}

// socketDir is a short temporary directory: a unix socket path must fit
// in 108 bytes, which t.TempDir's long names may not.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func listenUnix(t *testing.T, path, mode string) (net.Listener, error) {
	t.Helper()
	c := config.Default()
	c.Listen = "unix:" + path
	c.SocketMode = mode
	return listen(c)
}

func TestUnixSocketGetsSocketMode(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode string
		want fs.FileMode
	}{
		{"0600: the MTA runs as the milter's user", "0600", 0o600},
		{"0660: the MTA is in the milter's group (default)", "0660", 0o660},
		{"0666: anyone on the host", "0666", 0o666},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(socketDir(t), "milter.sock")
			ln, err := listenUnix(t, path, tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&fs.ModeSocket == 0 {
				t.Errorf("%s is %v, not a socket", path, fi.Mode())
			}
			if got := fi.Mode().Perm(); got != tc.want {
				t.Errorf("mode %v, want %v", got, tc.want)
			}
		})
	}
}

func TestUnixSocketLeftByACrashIsReplaced(t *testing.T) {
	path := filepath.Join(socketDir(t), "milter.sock")
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	// A crashed daemon leaves its socket file behind, with nobody on it.
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}

	ln, err := listenUnix(t, path, "0660")
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the new socket does not answer: %v", err)
	}
	c.Close()
}

func TestUnixSocketInUseIsRefused(t *testing.T) {
	path := filepath.Join(socketDir(t), "milter.sock")
	live, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()

	ln, err := listenUnix(t, path, "0660")
	if err == nil {
		ln.Close()
		t.Fatal("listen took over a socket another process listens on")
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "listening") {
		t.Errorf("error %q should name %s and say it is in use", err, path)
	}
	// The live socket is untouched.
	go func() {
		if c, err := live.Accept(); err == nil {
			c.Close()
		}
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the live socket was broken: %v", err)
	}
	c.Close()
}

func TestRegularFileAtSocketPathIsRefused(t *testing.T) {
	path := filepath.Join(socketDir(t), "milter.sock")
	if err := os.WriteFile(path, []byte("not a socket"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := listenUnix(t, path, "0660")
	if err == nil {
		ln.Close()
		t.Fatal("listen replaced a regular file")
	}
	if !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("error %q should say the path is not a socket", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "not a socket" {
		t.Errorf("the file was changed: %q, %v", b, err)
	}
}
