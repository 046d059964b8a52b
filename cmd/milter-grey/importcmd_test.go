package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	gomilter "github.com/emersion/go-milter"

	"github.com/milter-grey/milter-grey/admin"
)

// mgDumpfile writes a milter-greylist dumpfile, as its dump.c lays it out,
// with a triplet of 192.0.2.7 auto-whitelisted until tomorrow, one whose
// retry milter-greylist accepts in 28 minutes (first seen 2 minutes ago,
// under its default 30-minute delay), and a line it could not have written.
func mgDumpfile(t *testing.T, now time.Time) string {
	t.Helper()
	line := func(from, rcpt string, at time.Time, auto string) string {
		return fmt.Sprintf("192.0.2.7\t%s\t%s\t%d %s# %s\n", from, rcpt, at.Unix(), auto, at.Format("2006-01-02 15:04:05"))
	}
	return writeFile(t, "greylist.db", "#\n# stored tuples\n#\n"+
		line("<alice@sender.example>", "<bob@example.net>", now.Add(23*time.Hour), "AUTO ")+
		line("<carol@sender.example>", "<bob@example.net>", now.Add(28*time.Minute), "")+
		"192.0.2.7 <dave@sender.example>\n")
}

var retryIn = regexp.MustCompile(`^4\.7\.1 Greylisted, please try again in (\d+) seconds$`)

// An import through run() as an admin types it, against a running daemon:
// the passed triplet passes at once, the pending one waits for the delay
// counted from its first attempt, and a second import changes nothing.
func TestImportMilterGreylistIntoARunningDaemon(t *testing.T) {
	d, cfg := adminDaemon(t, "")
	file := mgDumpfile(t, time.Now())

	code, out, errOut := milterGrey(t, "import", "-config", cfg, "milter-greylist", file)
	if code != 0 {
		t.Fatalf("import: exit %d\n%s%s", code, out, errOut)
	}
	// Each triplet also under spf:sender.example (key_by_spf_domain).
	if !strings.Contains(out, "read 3 entries: 4 records (passed 2, pending 2, clients 0; keyed by SPF domain 2); skipped 1 (malformed 1)") ||
		!strings.Contains(out, "written 4, unchanged 0") {
		t.Errorf("import summary:\n%s", out)
	}
	if !strings.Contains(errOut, "skipped "+file+":6: malformed: ") {
		t.Errorf("no report of the bad line:\n%s", errOut)
	}

	if a := d.rcpt(t, "<alice@sender.example>", "<bob@example.net>"); a.Code != gomilter.ActContinue {
		t.Errorf("imported passed triplet: %q %d %q, want continue", a.Code, a.SMTPCode, a.SMTPText)
	}
	a := d.rcpt(t, "<carol@sender.example>", "<bob@example.net>")
	m := retryIn.FindStringSubmatch(a.SMTPText)
	if a.SMTPCode != 451 || m == nil {
		t.Fatalf("imported pending triplet: %q %d %q, want 451", a.Code, a.SMTPCode, a.SMTPText)
	}
	// The daemon's 300 s delay counts from the first attempt, 2 minutes
	// before the import, not from now.
	if n, _ := strconv.Atoi(m[1]); n > 181 || n < 120 {
		t.Errorf("retry in %d seconds, want about 180 (300 from a first attempt 120 s ago)", n)
	}

	code, out, errOut = milterGrey(t, "import", "-config", cfg, "milter-greylist", file)
	if code != 0 || !strings.Contains(out, "written 0, unchanged 4") {
		t.Errorf("second import: exit %d\n%s%s", code, out, errOut)
	}
}

// A dry run prints the records it would write, in the dump format with
// -json, then the summary, and writes nothing.
func TestImportDryRunWritesNothing(t *testing.T) {
	_, cfg := adminDaemon(t, "key_by_spf_domain = false\n")
	file := mgDumpfile(t, time.Now())

	out := mustRun(t, "import", "-config", cfg, "-dry-run", "-json", "milter-greylist", file)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("dry run printed %d lines, want 2 records and the summary:\n%s", len(lines), out)
	}
	want := map[string]string{
		"t:192.0.2.0/24 alice@sender.example bob@example.net": admin.StatePassed,
		"t:192.0.2.0/24 carol@sender.example bob@example.net": admin.StatePending,
	}
	for _, l := range lines[:2] {
		var e admin.Entry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		if want[e.Key] != e.State || e.TTLSeconds <= 0 {
			t.Errorf("record %+v", e)
		}
	}
	var sum struct {
		Summary struct {
			Records int  `json:"records"`
			Skipped int  `json:"skipped"`
			DryRun  bool `json:"dry_run"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(lines[2]), &sum); err != nil || sum.Summary.Records != 2 || sum.Summary.Skipped != 1 || !sum.Summary.DryRun {
		t.Errorf("summary line %q: %+v, %v", lines[2], sum, err)
	}
	if got := mustRun(t, "list", "-config", cfg, "-json"); got != "" {
		t.Errorf("the dry run wrote:\n%s", got)
	}
}

func TestImportErrors(t *testing.T) {
	cfg := writeFile(t, "milter-grey.toml", "admin_listen = \"unix:/nonexistent/admin.sock\"\n")
	for _, c := range []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"no source", []string{"import", "-config", cfg}, 2, "import needs postgrey or milter-greylist"},
		{"an unknown source", []string{"import", "-config", cfg, "sqlgrey", "x"}, 2, "import needs postgrey or milter-greylist"},
		{"no file", []string{"import", "-config", cfg, "postgrey"}, 2, "then the files to read"},
		{"a file that is not there", []string{"import", "-config", cfg, "milter-greylist", "/nonexistent/greylist.db"}, 1, "/nonexistent/greylist.db: no such file"},
		{"a directory that is not Postgrey's", []string{"import", "-config", cfg, "postgrey", t.TempDir()}, 1, "not a Postgrey database directory"},
		{"a bad -delay", []string{"import", "-config", cfg, "-delay", "soon", "postgrey", "x"}, 2, "bad duration"},
		{"a bad -ipv4cidr", []string{"import", "-config", cfg, "-ipv4cidr", "33", "postgrey", "x"}, 2, "out of range"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := milterGrey(t, c.args...)
			if code != c.code || !strings.Contains(errOut, c.err) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errOut, c.code, c.err)
			}
		})
	}
	t.Run("no db_dump: the error names Debian's package", func(t *testing.T) {
		db := writeFile(t, "postgrey.db", "")
		t.Setenv("PATH", t.TempDir())
		code, _, errOut := milterGrey(t, "import", "-config", cfg, "postgrey", db)
		if code != 1 || !strings.Contains(errOut, "reading "+db+": db_dump not found: install Debian's db-util package") {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
	})
	t.Run("the daemon down: the error asks whether it runs", func(t *testing.T) {
		code, out, errOut := milterGrey(t, "import", "-config", cfg, "milter-greylist", mgDumpfile(t, time.Now()))
		if code != 1 || !strings.Contains(errOut, "is milter-grey running") {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
		if !strings.Contains(out, "read 3 entries") || !strings.Contains(out, "written 0, unchanged 0") {
			t.Errorf("no summary after the failure:\n%s", out)
		}
	})
}
