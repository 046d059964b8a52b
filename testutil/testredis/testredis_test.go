package testredis

import (
	"bufio"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// roundTrip sends one RESP command on a new connection and returns the
// first reply line.
func roundTrip(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c.Write(appendCommand(nil, args...)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func wantReply(t *testing.T, addr, want string, args ...string) {
	t.Helper()
	got, err := roundTrip(addr, args...)
	if err != nil || !strings.HasPrefix(got, want) {
		t.Fatalf("%v = %q, %v; want %q", args, got, err, want)
	}
}

func TestLifecycle(t *testing.T) {
	s := Start(t)
	if want := "redis://" + s.Addr() + "/0"; s.URL() != want {
		t.Errorf("URL = %q, want %q", s.URL(), want)
	}
	wantReply(t, s.Addr(), "+PONG", "PING")
	wantReply(t, s.Addr(), "+OK", "SET", "k", "v")
	if _, err := os.Stat(s.LogFile()); err != nil {
		t.Errorf("log file: %v", err)
	}

	s.Stop()
	if _, err := roundTrip(s.Addr(), "PING"); err == nil {
		t.Fatal("PING after Stop succeeded")
	}
	s.Stop() // twice is fine

	s.Restart()
	wantReply(t, s.Addr(), "+PONG", "PING")
	wantReply(t, s.Addr(), "$-1", "GET", "k") // a restarted server is empty

	s.Pause()
	_, err := roundTrip(s.Addr(), "PING")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("PING to a paused server = %v, want a timeout", err)
	}
	s.Resume()
	wantReply(t, s.Addr(), "+PONG", "PING")

	// Stop works on a paused server too (SIGTERM is held until SIGCONT).
	s.Pause()
	done := make(chan struct{})
	go func() { s.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Stop of a paused server hangs")
	}
}

func TestPassword(t *testing.T) {
	const pw = "s3cret/with:odd@chars"
	s := StartWithPassword(t, pw)
	if !strings.Contains(s.URL(), "s3cret") || s.Password() != pw {
		t.Errorf("URL %q / Password %q do not carry the password", s.URL(), s.Password())
	}
	wantReply(t, s.Addr(), "-NOAUTH", "PING")
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(appendCommand(appendCommand(nil, "AUTH", pw), "PING")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	for _, want := range []string{"+OK", "+PONG"} {
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, want) {
			t.Fatalf("reply %q, %v; want %q", line, err, want)
		}
	}
}

// TestParallelServers starts several servers at once: each gets its own
// port even when the port picks race.
func TestParallelServers(t *testing.T) {
	for i := range 4 {
		t.Run(string(rune('a'+i)), func(t *testing.T) {
			t.Parallel()
			s := Start(t)
			wantReply(t, s.Addr(), "+PONG", "PING")
		})
	}
}

func TestSkipsWithoutRedisServer(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("CI", "")
	var sub *testing.T
	t.Run("start", func(t *testing.T) {
		sub = t
		Start(t)
		t.Error("Start returned without redis-server")
	})
	if !sub.Skipped() {
		t.Error("Start without redis-server did not skip the test")
	}
}

func TestCluster(t *testing.T) {
	s := StartCluster(t)
	info, err := s.do("CLUSTER", "INFO")
	if err != nil || !strings.Contains(info, "cluster_state:ok") {
		t.Fatalf("CLUSTER INFO = %q, %v", info, err)
	}
	if _, err := s.do("SET", "k", "v"); err != nil {
		t.Errorf("SET on the cluster node: %v", err)
	}
	// nodes.conf survives a Restart: the slots stay assigned.
	s.Restart()
	if info, err := s.do("CLUSTER", "INFO"); err != nil || !strings.Contains(info, "cluster_state:ok") {
		t.Fatalf("CLUSTER INFO after Restart = %q, %v", info, err)
	}
}

func TestSentinel(t *testing.T) {
	m := StartWithPassword(t, "mpw")
	s := StartSentinel(t, m, "mymaster")
	want := "redis://" + s.Addr() + "/0?master_name=mymaster&password=mpw"
	if s.URL() != want {
		t.Errorf("URL = %q, want %q", s.URL(), want)
	}
	if reply, err := s.do("SENTINEL", "CKQUORUM", "mymaster"); err != nil || !strings.HasPrefix(reply, "OK") {
		t.Errorf("SENTINEL CKQUORUM = %q, %v", reply, err)
	}
}
