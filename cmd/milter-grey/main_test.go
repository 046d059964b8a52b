package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// fullConfig is testdata/config/full.toml, where every key differs from
// its default (the config package tests what it says).
const fullConfig = "../../testdata/config/full.toml"

// writeFile writes text to name in a new temporary directory.
func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRun(t *testing.T) {
	bad := writeFile(t, "bad.toml", "# a typo\nlisten = \"inet:127.0.0.1:10091\"\ndelya = \"5m\"\n")
	missing := filepath.Join(t.TempDir(), "absent.toml")
	badList := writeFile(t, "clients", "192.0.2\n# a comment\n10\n")
	withBadList := writeFile(t, "badlist.toml", "whitelist_client_files = ["+strconv.Quote(badList)+"]\n")
	badBypass := writeFile(t, "bypass", "partner.test OK\nnovalue\n")
	withBadBypass := writeFile(t, "badbypass.toml", "bypass_sender_files = ["+strconv.Quote(badBypass)+"]\n")
	absentLocal := filepath.Join(t.TempDir(), "clients.local")
	withAbsentLocal := writeFile(t, "local.toml", "whitelist_client_files = [\"?"+absentLocal+"\"]\n")
	missingList := filepath.Join(t.TempDir(), "absent-list")
	withMissingList := writeFile(t, "lists.toml", "whitelist_client_files = ["+strconv.Quote(missingList)+"]\n")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string   // a prefix of stdout ("" means empty)
		stderr []string // substrings of stderr (nil means empty)
	}{
		{
			name: "check-config of a good file says OK",
			args: []string{"check-config", "-config", fullConfig},
			code: 0, stdout: fullConfig + ": OK\n",
		},
		{
			name: "check-config of a bad file names file, line and key",
			args: []string{"check-config", "-config", bad},
			code: 1, stderr: []string{"milter-grey: " + bad + ":3: delya: unknown key"},
		},
		{
			name: "check-config of a missing explicit file fails",
			args: []string{"check-config", "-config", missing},
			code: 1, stderr: []string{missing, "no such file"},
		},
		{
			name: "check-config fails on a list line that serve would skip",
			args: []string{"check-config", "-config", withBadList},
			code: 1, stderr: []string{badList + `:3: bad IP address "10"`, "serve skips this line", "1 list line(s) cannot be parsed"},
		},
		{
			name: "check-config fails on a bypass line that serve would skip",
			args: []string{"check-config", "-config", withBadBypass},
			code: 1, stderr: []string{badBypass + `:2: "novalue" has no value`, "(line skipped)", "1 list line(s) cannot be parsed"},
		},
		{
			name: "check-config accepts an absent optional list file and says so",
			args: []string{"check-config", "-config", withAbsentLocal},
			code: 0, stdout: absentLocal + ": optional list file absent; skipped\n" + withAbsentLocal + ": OK\n",
		},
		{
			name: "check-config reads the list files",
			args: []string{"check-config", "-config", withMissingList},
			code: 1, stderr: []string{"milter-grey: whitelist_client_files (from " + withMissingList + "): ", missingList, "no such file"},
		},
		{
			name: "serve with a bad file fails before starting",
			args: []string{"serve", "-config", bad},
			code: 1, stderr: []string{bad + ":3: delya: unknown key"},
		},
		{
			name: "serve is the default command",
			args: []string{"-config", bad},
			code: 1, stderr: []string{bad + ":3: delya: unknown key"},
		},
		{
			name: "version",
			args: []string{"version"},
			code: 0, stdout: "milter-grey ",
		},
		{
			name: "an unknown command is a usage error",
			args: []string{"frobnicate"},
			code: 2, stderr: []string{`unknown command "frobnicate"`, "usage: milter-grey"},
		},
		{
			name: "an extra argument is a usage error",
			args: []string{"check-config", "-config", fullConfig, "extra"},
			code: 2, stderr: []string{`unexpected argument "extra"`, "usage: milter-grey"},
		},
		{
			name: "an unknown flag is a usage error",
			args: []string{"check-config", "-nope"},
			code: 2, stderr: []string{"-nope", "usage: milter-grey"},
		},
		{
			name: "-h prints the usage and succeeds",
			args: []string{"-h"},
			code: 0, stderr: []string{"usage: milter-grey", "-config"},
		},
		{
			name: "-h after a command prints the usage and succeeds",
			args: []string{"check-config", "-h"},
			code: 0, stderr: []string{"usage: milter-grey"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("run(%q) = %d, want %d\nstdout: %s\nstderr: %s", tc.args, code, tc.code, &stdout, &stderr)
			}
			if (tc.stdout == "" && stdout.Len() > 0) || !strings.HasPrefix(stdout.String(), tc.stdout) {
				t.Errorf("stdout %q, want it to start with %q", &stdout, tc.stdout)
			}
			if tc.stderr == nil && stderr.Len() > 0 {
				t.Errorf("stderr %q, want nothing", &stderr)
			}
			for _, want := range tc.stderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr %q lacks %q", &stderr, want)
				}
			}
		})
	}
}

// Every flag a command takes is in its usage line (-config and -admin are
// in the flags common to the commands).
func TestUsageListsEveryFlag(t *testing.T) {
	for _, c := range commands() {
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.flags(fs, &options{})
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name == "config" || f.Name == "admin" {
				return
			}
			if !regexp.MustCompile(`(^|[ \[(|])-` + f.Name + `\b`).MatchString(c.usage) {
				t.Errorf("%s: usage %q does not show -%s", c.name, c.usage, f.Name)
			}
		})
	}
}

// The flags a usage line shows outside brackets are the ones the command
// insists on: without any one of them it is a usage error (2), with just
// them it goes on to ask the daemon (1 here: nothing listens).
func TestUsageRequiredFlagsAreRequired(t *testing.T) {
	values := map[string]string{"IP": "192.0.2.7", "ADDR": "bob@example.net"}
	noDaemon := "unix:" + filepath.Join(t.TempDir(), "none.sock")
	for _, name := range []string{"explain", "pass"} {
		var cmd *command
		for _, c := range commands() {
			if c.name == name {
				cmd = c
			}
		}
		// The first alternative, brackets removed: the required flags.
		alt, _, _ := strings.Cut(cmd.usage, " | ")
		alt = regexp.MustCompile(`\[[^\]]*\]`).ReplaceAllString(alt, "")
		var required [][2]string
		for _, m := range regexp.MustCompile(`-([a-z]+) ([A-Z]+)`).FindAllStringSubmatch(alt, -1) {
			required = append(required, [2]string{m[1], values[m[2]]})
		}
		if len(required) < 2 {
			t.Fatalf("%s: usage %q: found only %v required", name, cmd.usage, required)
		}
		args := func(skip string) []string {
			a := []string{name, "-admin", noDaemon}
			for _, r := range required {
				if r[0] != skip {
					a = append(a, "-"+r[0], r[1])
				}
			}
			return a
		}
		t.Run(name+" with the required flags", func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(args(""), &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "is milter-grey running") {
				t.Errorf("run(%q) = %d, %s; want 1, asking whether the daemon runs", args(""), code, &stderr)
			}
		})
		for _, r := range required {
			t.Run(name+" without -"+r[0], func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				if code := run(args(r[0]), &stdout, &stderr); code != 2 {
					t.Errorf("run(%q) = %d, want 2 (a usage error)\nstderr: %s", args(r[0]), code, &stderr)
				}
			})
		}
	}
}

// milter-grey(8) documents every command and every flag.
func TestManPageDocumentsEveryCommandAndFlag(t *testing.T) {
	page, err := os.ReadFile("../../docs/man/milter-grey.8.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(page)
	for _, c := range commands() {
		if !strings.Contains(text, "**"+c.name+"**") {
			t.Errorf("milter-grey(8) does not document the command %s (as **%s**)", c.name, c.name)
		}
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.flags(fs, &options{})
		fs.VisitAll(func(f *flag.Flag) {
			if !strings.Contains(text, "**-"+f.Name+"**") {
				t.Errorf("milter-grey(8) does not document -%s of %s (as **-%s**)", f.Name, c.name, f.Name)
			}
		})
	}
}
