// Package testredis starts a real redis-server for tests.
//
// Each Server is a child process of the test binary (not daemonized, so its
// PID is ours to signal) listening on a free 127.0.0.1 port, with no
// persistence and its log file and working directory in t.TempDir(). It is
// stopped when the test ends. Stop, Restart, Pause and Resume let tests
// simulate a Redis outage (connection refused) and a Redis that hangs
// (accepts connections, never answers). StartWithPassword requires AUTH;
// StartCluster runs a one-node Redis Cluster; StartSentinel runs a Sentinel
// for a Server.
//
// When redis-server is not on PATH, Start skips the test, or fails it when
// the CI environment variable is "true", so CI cannot silently lose the
// integration tests. If the test binary is killed (a -timeout panic) the
// cleanup does not run and the server outlives it; it holds no data.
//
// It is a test helper (testutil/): only tests import it.
package testredis

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/testutil/testci"
)

const (
	// readyTimeout bounds the wait for a new server to answer PING.
	readyTimeout = 5 * time.Second
	// clusterTimeout bounds the wait for a cluster node to be ok: Redis
	// keeps a master that just started out of service for 2 s
	// (CLUSTER_WRITABLE_DELAY), and a loaded machine adds to that.
	clusterTimeout = 10 * time.Second
	// replyTimeout bounds each command testredis itself sends.
	replyTimeout = 2 * time.Second
	// stopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 5 * time.Second
	// startAttempts bounds the retries when the chosen port is taken
	// between picking it and redis-server binding it.
	startAttempts = 5
)

// Server is a running (or stopped, or paused) redis-server. Its methods are
// safe for concurrent use; Restart, Pause and Resume fail the test when
// they cannot do their job, so call them from the test's goroutine.
type Server struct {
	t        testing.TB
	bin      string
	dir      string
	logFile  string
	port     int
	password string
	cluster  bool // a one-node Redis Cluster holding every slot
	// For a Sentinel: the master it monitors and the name it knows it by.
	master     *Server
	masterName string

	mu      sync.Mutex
	cmd     *exec.Cmd     // nil while stopped
	exited  chan struct{} // closed when cmd has been waited for
	waitErr error         // cmd.Wait's result, valid once exited is closed
}

// Start starts a redis-server for the test and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, "", false)
}

// StartWithPassword is Start with --requirepass password: clients must
// authenticate (URL includes the password).
func StartWithPassword(t testing.TB, password string) *Server {
	t.Helper()
	if password == "" {
		t.Fatal("testredis: StartWithPassword with an empty password")
	}
	return start(t, password, false)
}

// StartCluster starts a redis-server in cluster mode as a one-node Redis
// Cluster that serves all 16384 slots, for code that talks Cluster
// (CLUSTER SLOTS, per-node SCAN). It announces 127.0.0.1.
func StartCluster(t testing.TB) *Server {
	t.Helper()
	return start(t, "", true)
}

// StartSentinel starts a Redis Sentinel monitoring master under name
// (quorum 1, with master's password if it has one). Its URL is the
// Sentinel URL go-redis takes: redis://127.0.0.1:port/0?master_name=name,
// plus &password= for a master with a password.
func StartSentinel(t testing.TB, master *Server, name string) *Server {
	t.Helper()
	s := newServer(t, "", false)
	s.master, s.masterName = master, name
	return s.startOnFreePort()
}

func start(t testing.TB, password string, cluster bool) *Server {
	t.Helper()
	return newServer(t, password, cluster).startOnFreePort()
}

// newServer checks that redis-server is installed (or skips the test) and
// prepares a Server; it stops it when the test ends.
func newServer(t testing.TB, password string, cluster bool) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		testci.SkipOrFail(t, "testredis: redis-server not found on PATH (%v); install it (Debian: apt-get install redis-server) to run this test", err)
	}
	dir := t.TempDir()
	s := &Server{t: t, bin: bin, dir: dir, logFile: filepath.Join(dir, "redis.log"), password: password, cluster: cluster}
	// Registered after t.TempDir, so it runs before the directory goes.
	t.Cleanup(s.Stop)
	return s
}

// startOnFreePort launches the server on a free port, retrying with
// another port when it loses the race for one.
func (s *Server) startOnFreePort() *Server {
	t := s.t
	t.Helper()
	var lastErr error
	for range startAttempts {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testredis: pick a port: %v", err)
		}
		s.port = port
		err = s.launch()
		if err == nil {
			return s
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	t.Fatalf("testredis: %v", lastErr)
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port is the server's TCP port; it stays the same across Restart.
func (s *Server) Port() int { return s.port }

// Password is the password given to StartWithPassword, or "".
func (s *Server) Password() string { return s.password }

// URL is redis://127.0.0.1:port/0, with the password as userinfo
// (redis://:password@…) for a server started with StartWithPassword.
func (s *Server) URL() string {
	u := url.URL{Scheme: "redis", Host: s.Addr(), Path: "/0"}
	if s.password != "" {
		u.User = url.UserPassword("", s.password)
	}
	if s.master != nil {
		q := url.Values{"master_name": {s.masterName}}
		if s.master.password != "" {
			q.Set("password", s.master.password)
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// LogFile is the path of the server's log file, for failure messages.
func (s *Server) LogFile() string { return s.logFile }

// Stop stops the server: SIGTERM (and SIGCONT, in case it is paused), then
// SIGKILL if it has not exited within a few seconds. Stopping a stopped
// server does nothing. The data is gone: a Restart starts empty.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	p := s.cmd.Process
	_ = p.Signal(syscall.SIGTERM)
	// A stopped process keeps SIGTERM pending until it is continued.
	_ = p.Signal(syscall.SIGCONT)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		s.t.Logf("testredis: redis-server pid %d ignored SIGTERM for %v; killing it", p.Pid, stopTimeout)
		_ = p.Kill()
		<-s.exited
	}
	s.cmd, s.exited = nil, nil
}

// Restart stops the server if it runs and starts a new, empty one on the
// same port, waiting until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
	var err error
	// The old listener is closed; a retry covers a slow release of the port
	// (redis-server sets SO_REUSEADDR, so TIME_WAIT does not matter).
	for range startAttempts {
		if err = s.launchLocked(); err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("testredis: restart: %v", err)
	}
}

// Pause stops the process with SIGSTOP: connections are still accepted by
// the kernel but nothing is answered, as with a hung Redis.
func (s *Server) Pause() {
	s.t.Helper()
	s.signal("pause", syscall.SIGSTOP)
}

// Resume continues a paused server with SIGCONT.
func (s *Server) Resume() {
	s.t.Helper()
	s.signal("resume", syscall.SIGCONT)
}

func (s *Server) signal(what string, sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.t.Fatalf("testredis: %s: server is stopped", what)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("testredis: %s pid %d: %v", what, s.cmd.Process.Pid, err)
	}
}

// errAddrInUse marks a start that lost the race for its port.
var errAddrInUse = errors.New("port already in use")

func (s *Server) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.launchLocked()
}

// launchLocked starts redis-server on s.port and waits until it answers
// PING. On failure the process is gone and the error holds its log tail.
func (s *Server) launchLocked() error {
	var args []string
	if s.master != nil {
		// Sentinel rewrites its configuration file: a fresh one each time.
		conf := filepath.Join(s.dir, "sentinel.conf")
		text := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1\n", s.masterName, s.master.port)
		if s.master.password != "" {
			text += fmt.Sprintf("sentinel auth-pass %s %s\n", s.masterName, s.master.password)
		}
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return err
		}
		args = append(args, conf, "--sentinel")
	}
	args = append(args,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--dir", s.dir,
		"--logfile", s.logFile,
	)
	if s.password != "" {
		args = append(args, "--requirepass", s.password)
	}
	if s.cluster {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(s.dir, "nodes.conf"),
			"--cluster-announce-ip", "127.0.0.1")
	}
	cmd := exec.Command(s.bin, args...)
	// Output goes to the log file; anything printed before it is opened
	// (a bad argument) goes to the test's stderr.
	cmd.Stdout, cmd.Stderr = nil, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		s.waitErr = err // read only after exited is closed
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited

	err := s.waitReady(exited)
	if err == nil && s.cluster {
		err = s.setupCluster()
	}
	if err == nil {
		return nil
	}
	// Not ready: make sure it is gone before reporting.
	_ = cmd.Process.Kill()
	<-exited
	s.cmd, s.exited = nil, nil
	tail := s.logTail()
	if strings.Contains(tail, "Address already in use") {
		return fmt.Errorf("port %d: %w", s.port, errAddrInUse)
	}
	return fmt.Errorf("redis-server on port %d: %v; log %s:\n%s", s.port, err, s.logFile, tail)
}

// waitReady polls PING until the server answers, it exits, or readyTimeout.
func (s *Server) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("exited before answering PING (%v)", s.waitErr)
		default:
		}
		if lastErr = s.ping(); lastErr == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no answer to PING within %v: %v", readyTimeout, lastErr)
}

// ping sends PING on a new connection and expects PONG.
func (s *Server) ping() error {
	reply, err := s.do("PING")
	if err == nil && reply != "PONG" {
		err = fmt.Errorf("PING answered %q", reply)
	}
	return err
}

// setupCluster assigns every slot to the node (unless nodes.conf from
// before a Restart already did) and waits for the cluster to be ok.
func (s *Server) setupCluster() error {
	info, err := s.do("CLUSTER", "INFO")
	if err != nil {
		return err
	}
	if !strings.Contains(info, "cluster_slots_assigned:16384") {
		if _, err := s.do("CLUSTER", "ADDSLOTSRANGE", "0", "16383"); err != nil {
			return fmt.Errorf("CLUSTER ADDSLOTSRANGE: %w", err)
		}
	}
	deadline := time.Now().Add(clusterTimeout)
	for time.Now().Before(deadline) {
		if info, err = s.do("CLUSTER", "INFO"); err == nil && strings.Contains(info, "cluster_state:ok") {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("cluster not ok within %v: %v %q", clusterTimeout, err, info)
}

// do sends one command (after AUTH, if the server has a password) on a
// new connection and returns the reply: the text of a simple string,
// integer or bulk string; a Redis error reply is an error.
func (s *Server) do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", s.Addr(), replyTimeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(replyTimeout))
	var req []byte
	if s.password != "" {
		req = appendCommand(req, "AUTH", s.password)
	}
	req = appendCommand(req, args...)
	if _, err := c.Write(req); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	if s.password != "" {
		if _, err := readReply(r); err != nil {
			return "", fmt.Errorf("AUTH: %w", err)
		}
	}
	return readReply(r)
}

// readReply reads a RESP simple string, error, integer or bulk string.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("bulk reply %q", line)
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		return string(b[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// appendCommand appends a RESP array of bulk strings.
func appendCommand(b []byte, args ...string) []byte {
	b = fmt.Appendf(b, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b
}

// logTail returns the last lines of the server's log.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logFile)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// freePort asks the kernel for a free port on 127.0.0.1. Another process
// may take it before redis-server binds it; Start retries then.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
