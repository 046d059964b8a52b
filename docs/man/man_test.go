// Package man holds the Markdown sources of milter-grey's manual pages,
// milter-grey(8) and milter-grey.toml(5), which `make man` turns into roff
// with go-md2man. Its tests render each page as the build does and check it
// with man-db, and keep the configuration page in step with the sample
// configuration, contrib/milter-grey.toml.
package man

import (
	"bytes"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/milter-grey/milter-grey/testutil/testci"
)

// render builds a page with `go tool go-md2man`, as `make man` does, and
// returns the roff file; go-md2man's warnings fail the test.
func render(t *testing.T, page string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), page)
	cmd := exec.Command("go", "tool", "go-md2man", "-in", page+".md", "-out", out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go tool go-md2man %s.md: %v\n%s", page, err, &stderr)
	}
	if stderr.Len() > 0 {
		t.Errorf("go-md2man %s.md: %s", page, &stderr)
	}
	return out
}

// Each page renders, and man-db formats it at 80 columns without a warning
// from groff, with the sections a reader of that section expects.
func TestPagesRenderWithoutWarnings(t *testing.T) {
	manBin, err := exec.LookPath("man")
	if err != nil {
		testci.SkipOrFail(t, "man not found (Debian: apt-get install man-db)")
	}
	for _, tc := range []struct {
		page     string
		sections []string
	}{
		{"milter-grey.8", []string{"NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "OPTIONS", "SIGNALS", "FILES", "EXIT STATUS", "SEE ALSO"}},
		{"milter-grey.toml.5", []string{"NAME", "SYNOPSIS", "DESCRIPTION", "THE MILTER SOCKET", "LOGGING", "FILES", "SEE ALSO"}},
	} {
		t.Run(tc.page, func(t *testing.T) {
			roff := render(t, tc.page)
			cmd := exec.Command(manBin, "--warnings", "-l", roff)
			cmd.Env = append(os.Environ(), "MANWIDTH=80", "MAN_DISABLE_SECCOMP=1", "LC_ALL=C.UTF-8")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("man -l %s: %v\n%s", tc.page, err, &stderr)
			}
			if stderr.Len() > 0 {
				t.Errorf("man --warnings -l %s:\n%s", tc.page, &stderr)
			}
			text := stdout.String()
			name, section := strings.TrimSuffix(tc.page, filepath.Ext(tc.page)), filepath.Ext(tc.page)[1:]
			if want := name + "(" + section + ")"; !strings.HasPrefix(text, want) {
				t.Errorf("the page starts %q, want its title %s", firstLine(text), want)
			}
			for _, s := range tc.sections {
				if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(s) + `$`).MatchString(text) {
					t.Errorf("no section %s", s)
				}
			}
		})
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// settings decodes "key = value" pairs into their values.
func settings(t *testing.T, what string, pairs [][]string) map[string]any {
	t.Helper()
	got := make(map[string]any)
	for _, p := range pairs {
		var v map[string]any
		if _, err := toml.Decode(p[1]+" = "+p[2], &v); err != nil {
			t.Fatalf("%s: %s = %s: %v", what, p[1], p[2], err)
		}
		if _, dup := got[p[1]]; dup {
			t.Errorf("%s: %s twice", what, p[1])
		}
		got[p[1]] = v[p[1]]
	}
	return got
}

// milter-grey.toml(5) documents every key of the sample configuration
// (which a test of the daemon keeps equal to its defaults), with the
// sample's value as its default, and no key the sample lacks.
func TestConfigPageDocumentsEverySampleKey(t *testing.T) {
	sample, err := os.ReadFile("../../contrib/milter-grey.toml")
	if err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile("milter-grey.toml.5.md")
	if err != nil {
		t.Fatal(err)
	}
	// A setting is a key with its value as TOML text: "#key = value" in
	// the sample, "**key** = `value`" in the page.
	sampleSetting := regexp.MustCompile(`(?m)^#([a-z0-9_]+) = (.*)$`)
	pageSetting := regexp.MustCompile("(?m)^\\*\\*([a-z0-9_]+)\\*\\* = `(.*)`$")
	want := settings(t, "contrib/milter-grey.toml", sampleSetting.FindAllStringSubmatch(string(sample), -1))
	got := settings(t, "milter-grey.toml.5.md", pageSetting.FindAllStringSubmatch(string(page), -1))
	if len(want) < 40 {
		t.Fatalf("only %d keys in the sample: its format changed?", len(want))
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if v, ok := got[k]; !ok {
			t.Errorf("%s is in the sample but not in milter-grey.toml(5) (as **%s** = `VALUE`)", k, k)
		} else if !reflect.DeepEqual(v, want[k]) {
			t.Errorf("%s: milter-grey.toml(5) gives the default %#v, the sample %#v", k, v, want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("milter-grey.toml(5) documents %s, which the sample configuration lacks", k)
		}
	}
}
