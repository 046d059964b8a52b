package main

import (
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/config"
)

// syslogd is a syslog daemon for one test: a unixgram socket that keeps
// each datagram.
type syslogd struct {
	t    *testing.T
	conn *net.UnixConn
	path string
}

func newSyslogd(t *testing.T) *syslogd {
	t.Helper()
	path := filepath.Join(socketDir(t), "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &syslogd{t: t, conn: conn, path: path}
}

// next returns the next message received; the deadline only guards
// against a hang.
func (s *syslogd) next() string {
	s.t.Helper()
	buf := make([]byte, 64<<10)
	s.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := s.conn.Read(buf)
	if err != nil {
		s.t.Fatalf("syslog: %v", err)
	}
	return string(buf[:n])
}

func syslogLogger(t *testing.T, d *syslogd, format, level string) *slog.Logger {
	t.Helper()
	c := config.Default()
	c.LogOutput = "syslog"
	c.LogFormat = format
	c.LogLevel = level
	log, closer, err := newLogger(c, d.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closer.Close() })
	return log
}

// Syslog lines carry the mail facility and the record's severity, so that
// syslog routes them to mail.log and priority filters work.
func TestSyslogPriorityFollowsLevel(t *testing.T) {
	d := newSyslogd(t)
	log := syslogLogger(t, d, "text", "debug")
	for _, tc := range []struct {
		name   string
		level  slog.Level
		prefix string // <facility*8 + severity>, mail = 2
	}{
		{"info is mail.info", slog.LevelInfo, "<22>"},
		{"warn is mail.warning", slog.LevelWarn, "<20>"},
		{"error is mail.err", slog.LevelError, "<19>"},
		{"debug is mail.debug", slog.LevelDebug, "<23>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log.Log(t.Context(), tc.level, "decision", "action", "greylist", "reason", "new")
			msg := d.next()
			if !strings.HasPrefix(msg, tc.prefix) {
				t.Errorf("priority: %q does not start with %s", msg, tc.prefix)
			}
			if !strings.Contains(msg, " milter-grey[") {
				t.Errorf("tag: %q has no milter-grey tag", msg)
			}
			if !strings.Contains(msg, "msg=decision action=greylist reason=new") {
				t.Errorf("text: %q", msg)
			}
			if strings.Contains(msg, "time=") {
				t.Errorf("%q: syslog stamps its own time, the line should not", msg)
			}
		})
	}
}

func TestSyslogKeepsSeverityThroughWith(t *testing.T) {
	d := newSyslogd(t)
	log := syslogLogger(t, d, "text", "info").With("component", "badger")
	log.Warn("compaction slow")
	msg := d.next()
	if !strings.HasPrefix(msg, "<20>") || !strings.Contains(msg, "component=badger") {
		t.Errorf("got %q, want <20> and component=badger", msg)
	}
}

func TestSyslogDropsRecordsBelowLogLevel(t *testing.T) {
	d := newSyslogd(t)
	log := syslogLogger(t, d, "text", "warn")
	log.Info("decision", "n", 1)
	log.Warn("store failing", "n", 2)
	if msg := d.next(); !strings.HasPrefix(msg, "<20>") || !strings.Contains(msg, "n=2") {
		t.Errorf("first message %q, want the warning only", msg)
	}
}

func TestSyslogJSON(t *testing.T) {
	d := newSyslogd(t)
	log := syslogLogger(t, d, "json", "info")
	log.Info("decision", "action", "pass", "reason", "retried")
	msg := d.next()
	if !strings.HasPrefix(msg, "<22>") {
		t.Errorf("%q does not start with <22>", msg)
	}
	_, body, ok := strings.Cut(msg, "]: ")
	if !ok {
		t.Fatalf("no syslog header in %q", msg)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if rec["msg"] != "decision" || rec["action"] != "pass" || rec["reason"] != "retried" {
		t.Errorf("record %v", rec)
	}
	if _, ok := rec["time"]; ok {
		t.Errorf("record %v has a time", rec)
	}
}

func TestNewLoggerErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*config.Config)
		addr string
		text string
	}{
		{"a bad level", func(c *config.Config) { c.LogLevel = "loud" }, "", `"loud"`},
		{"a bad facility", func(c *config.Config) { c.LogOutput, c.SyslogFacility = "syslog", "local9" }, "", `"local9"`},
		{"no syslog daemon", func(c *config.Config) { c.LogOutput = "syslog" }, "/nonexistent/log", "syslog"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			tc.mod(c)
			_, _, err := newLogger(c, tc.addr)
			if err == nil || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("newLogger: %v, want an error saying %s", err, tc.text)
			}
		})
	}
}

// The stderr formats, read back through a file in place of os.Stderr
// (newLogger takes os.Stderr when it is called; no test runs in parallel).
func TestStderrFormats(t *testing.T) {
	for _, tc := range []struct {
		name, format string
		check        func(t *testing.T, line string)
	}{
		{"text is key=value with a time", "text", func(t *testing.T, line string) {
			if !strings.HasPrefix(line, "time=") || !strings.Contains(line, " level=INFO msg=decision action=greylist rcpt=bob@example.net") {
				t.Errorf("line %q", line)
			}
		}},
		{"json is one object per line", "json", func(t *testing.T, line string) {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			if rec["level"] != "INFO" || rec["msg"] != "decision" || rec["action"] != "greylist" || rec["time"] == nil {
				t.Errorf("record %v", rec)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			saved := os.Stderr
			os.Stderr = f
			c := config.Default()
			c.LogFormat = tc.format
			log, closer, err := newLogger(c, "")
			os.Stderr = saved
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("not at info")
			log.Info("decision", "action", "greylist", "rcpt", "bob@example.net")
			if err := closer.Close(); err != nil {
				t.Errorf("closing a stderr logger: %v", err)
			}
			b, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			if len(lines) != 1 {
				t.Fatalf("want one line (debug is below info), got %q", b)
			}
			tc.check(t, lines[0])
		})
	}
}

// syslog_facility sets the facility of every line: the PRI of an info
// line is facility*8 + 6, with the facility numbers of RFC 5424.
func TestSyslogFacility(t *testing.T) {
	for _, tc := range []struct {
		facility string
		prefix   string
	}{
		{"mail", "<22>"},   // 2
		{"daemon", "<30>"}, // 3
		{"user", "<14>"},   // 1
		{"local0", "<134>"},
		{"local5", "<174>"},
		{"local7", "<190>"},
	} {
		t.Run(tc.facility, func(t *testing.T) {
			d := newSyslogd(t)
			c := config.Default()
			c.LogOutput = "syslog"
			c.SyslogFacility = tc.facility
			log, closer, err := newLogger(c, d.path)
			if err != nil {
				t.Fatal(err)
			}
			defer closer.Close()
			log.Info("decision", "action", "pass")
			if msg := d.next(); !strings.HasPrefix(msg, tc.prefix) {
				t.Errorf("%q does not start with %s", msg, tc.prefix)
			}
		})
	}
}
