package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// swaks exit codes (swaks(1), EXIT CODES).
const (
	swaksOK          = 0
	swaksAllRcptsBad = 24 // every RCPT TO was rejected
)

// swaks runs swaks against smtpd on 127.0.0.1:port and returns its
// transcript and exit code. The transcript is logged (visible with -v or on
// failure).
func swaks(t testing.TB, port int, args ...string) (out string, exitCode int) {
	t.Helper()
	bin := requireTool(t, "swaks")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append([]string{"--server", fmt.Sprintf("127.0.0.1:%d", port), "--timeout", "20"}, args...)
	b, err := exec.CommandContext(ctx, bin, full...).CombinedOutput()
	out = string(b)
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("swaks %s: no answer within 60s\n%s", strings.Join(args, " "), out)
	case errors.As(err, &ee):
		exitCode = ee.ExitCode()
	case err != nil:
		t.Fatalf("swaks: %v", err)
	}
	t.Logf("swaks %s -> exit %d\n%s", strings.Join(args, " "), exitCode, indent(out))
	return out, exitCode
}

// rcptReplies maps each recipient of a swaks transcript to the server's
// reply to its RCPT TO, e.g. "451 4.7.1 Greylisted ...". swaks prints the
// command as " -> RCPT TO:<x>" and the reply as "<-  250 ..." (accepted) or
// "<** 451 ..." (rejected); lines of a multi-line reply are joined by "\n".
func rcptReplies(out string) map[string]string {
	replies := map[string]string{}
	rcpt := ""
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimRight(line, "\r")
		if m := rcptCmd.FindStringSubmatch(line); m != nil {
			rcpt = m[1]
			continue
		}
		if rcpt == "" {
			continue
		}
		m := serverLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if replies[rcpt] != "" {
			replies[rcpt] += "\n"
		}
		replies[rcpt] += m[1]
		if m[2] != "-" { // the last line of the reply
			rcpt = ""
		}
	}
	return replies
}

var (
	rcptCmd    = regexp.MustCompile(`^\s*-> RCPT TO:<([^>]*)>`)
	serverLine = regexp.MustCompile(`^<(?:-|\*\*)\s+(\d{3}([- ]?).*)$`)
	queuedAs   = regexp.MustCompile(`(?m)^<-\s+250 .*queued as ([0-9A-Za-z]+)`)
)

// queueID returns the Postfix queue ID from the reply to DATA ("" if the
// message was not queued).
func queueID(out string) string {
	if m := queuedAs.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return ""
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// hasCode tells whether an SMTP reply carries the given status code.
func hasCode(reply, code string) bool {
	return strings.HasPrefix(reply, code+" ") || strings.HasPrefix(reply, code+"-")
}
