package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	daemonPkg     = "github.com/milter-grey/milter-grey/cmd/milter-grey"
	daemonStartup = 10 * time.Second // until the milter port accepts connections
	daemonStop    = 10 * time.Second // after SIGTERM, before SIGKILL
)

var (
	buildOnce sync.Once
	daemonBin string
	buildErr  error
)

// buildDaemon builds cmd/milter-grey once per test binary, from the module
// this checkout holds, and fails the test clearly if that does not compile.
func buildDaemon(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		bin := filepath.Join(workDir, "milter-grey")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, daemonPkg)
		cmd.Dir = ".." // the module root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build %s: %v\n%s", daemonPkg, err, out)
			return
		}
		daemonBin = bin
	})
	if buildErr != nil {
		t.Fatalf("cannot build the daemon under test: %v", buildErr)
	}
	return daemonBin
}

// daemon is one milter-grey under test: its config, store and logs live in a
// temporary directory; it listens on a free loopback port.
type daemon struct {
	Addr   string // host:port of the milter socket, for Postfix and clients
	Port   int
	Dir    string
	Store  string // the store directory, or what cfg's store key names; it survives Kill9 and Restart
	bin    string
	config string

	mu   sync.Mutex
	runs int
	cur  *run
}

// run is one process of the daemon.
type run struct {
	cmd    *exec.Cmd
	log    string
	done   chan struct{} // closed when the process has been reaped
	err    error         // cmd.Wait's result, valid after done
	exitOK atomic.Bool   // we stopped it, or its exit was already reported
}

// startDaemon writes cfg into a config file, prefixed with the listen
// setting the harness owns (cfg must not set it) and, unless cfg sets store
// itself (a Redis URL, say), a store directory of its own; it starts the
// daemon and waits until its milter port accepts connections. It is stopped
// when the test ends.
func startDaemon(t *testing.T, cfg string) *daemon {
	t.Helper()
	bin := buildDaemon(t)
	dir := t.TempDir()
	port := freePort(t)
	d := &daemon{
		Addr:   fmt.Sprintf("127.0.0.1:%d", port),
		Port:   port,
		Dir:    dir,
		Store:  filepath.Join(dir, "store"),
		bin:    bin,
		config: filepath.Join(dir, "milter-grey.toml"),
	}
	conf := fmt.Sprintf("listen = %q\n", "inet:"+d.Addr)
	if spec, ok := configString(cfg, "store"); ok {
		d.Store = spec
	} else {
		conf += fmt.Sprintf("store = %q\n", d.Store)
	}
	conf += cfg
	if err := os.WriteFile(d.config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("milter-grey config %s:\n%s", d.config, conf)
			logs, _ := filepath.Glob(filepath.Join(d.Dir, "daemon-*.log")) // one per run
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("milter-grey log (%s, last lines):\n%s", l, tail(string(b), 60))
			}
		}
	})
	d.start(t)
	return d
}

// Restart starts the daemon again with the same config and store, after
// Kill9 (or a crash); it fails the test if the old process still runs.
func (d *daemon) Restart(t *testing.T) {
	t.Helper()
	if r := d.current(); r != nil && !r.exited() {
		t.Fatalf("Restart: milter-grey (pid %d) is still running", r.cmd.Process.Pid)
	}
	d.start(t)
}

func (d *daemon) start(t *testing.T) {
	t.Helper()
	d.mu.Lock()
	d.runs++
	logPath := filepath.Join(d.Dir, fmt.Sprintf("daemon-%d.log", d.runs))
	d.mu.Unlock()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(d.bin, "-config", d.config)
	cmd.Dir = d.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Start()
	logf.Close() // the child has its own copy
	if err != nil {
		t.Fatalf("start milter-grey: %v", err)
	}
	r := &run{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		r.err = cmd.Wait()
		close(r.done)
	}()
	d.mu.Lock()
	d.cur = r
	d.mu.Unlock()

	up := waitFor(daemonStartup, func() bool { return r.exited() || acceptsTCP(d.Addr) })
	switch {
	case r.exited():
		r.exitOK.Store(true)
		t.Fatalf("milter-grey exited during start-up (%v); log:\n%s", r.err, tail(d.Log(), 40))
	case !up:
		t.Fatalf("milter-grey did not accept connections on %s within %v; log:\n%s", d.Addr, daemonStartup, tail(d.Log(), 40))
	}
}

func (d *daemon) current() *run {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// Kill9 kills the running daemon with SIGKILL, as a crash or an OOM kill
// would, and returns once the process is gone. Safe to call from any
// goroutine (it does not touch testing.T).
func (d *daemon) Kill9() error {
	r := d.current()
	if r == nil || r.exited() {
		return errors.New("Kill9: milter-grey is not running")
	}
	r.exitOK.Store(true)
	if err := r.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("Kill9: %w", err)
	}
	select {
	case <-r.done:
		return nil
	case <-time.After(daemonStop):
		return fmt.Errorf("Kill9: pid %d still there %v after SIGKILL", r.cmd.Process.Pid, daemonStop)
	}
}

// stop ends the current process with SIGTERM, then SIGKILL if it lingers.
// A daemon that exited by itself, or ignored SIGTERM, fails the test.
func (d *daemon) stop(t *testing.T) {
	r := d.current()
	if r == nil {
		return
	}
	if r.exited() {
		if !r.exitOK.Load() {
			t.Errorf("milter-grey exited on its own during the test (%v)", r.err)
		}
		return
	}
	r.exitOK.Store(true)
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
		if r.err != nil {
			t.Logf("milter-grey after SIGTERM: %v", r.err)
		}
	case <-time.After(daemonStop):
		r.cmd.Process.Kill()
		<-r.done
		t.Errorf("milter-grey ignored SIGTERM for %v; killed it", daemonStop)
	}
}

func (d *daemon) logPath() string {
	if r := d.current(); r != nil {
		return r.log
	}
	return ""
}

// Log returns what the current (latest) process wrote to stdout and stderr.
func (d *daemon) Log() string {
	b, _ := os.ReadFile(d.logPath())
	return string(b)
}

// WaitLog waits for a line of the current process's log containing every
// one of parts, and returns it.
func (d *daemon) WaitLog(t testing.TB, timeout time.Duration, parts ...string) string {
	t.Helper()
	return waitForLine(t, "the milter-grey log", d.Log, timeout, parts...)
}

// configString returns the value of a top-level key = "string" line of a
// TOML text (as greyConfig writes them), and whether there is one.
func configString(cfg, key string) (string, bool) {
	for _, line := range strings.Split(cfg, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) != key {
			continue
		}
		if s, err := strconv.Unquote(strings.TrimSpace(v)); err == nil {
			return s, true
		}
		return strings.TrimSpace(v), true
	}
	return "", false
}
