package accessmap

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/envelope"
	"github.com/milter-grey/milter-grey/testutil/testci"
)

// postmap runs Postfix's postmap(1) with a private configuration directory,
// or skips the test when Postfix is not installed.
func postmap(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	return runPostmap(t, "", args...)
}

// postmapStdin is postmap with stdin, and its stdout.
func postmapStdin(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, _ := runPostmap(t, stdin, args...)
	return out
}

func runPostmap(t *testing.T, stdin string, args ...string) (stdout, stderr string) {
	t.Helper()
	bin, err := exec.LookPath("postmap")
	if err != nil {
		for _, p := range []string{"/usr/sbin/postmap", "/usr/local/sbin/postmap"} {
			if _, err := os.Stat(p); err == nil {
				bin = p
				break
			}
		}
	}
	if bin == "" {
		testci.SkipOrFail(t, "postmap (Postfix) is not installed")
	}
	cfg := t.TempDir()
	mainCF := filepath.Join(cfg, "main.cf")
	writeFile(t, mainCF, "compatibility_level = 3.6\nmyhostname = accessmap.test\nmydomain = test\n")
	// Postfix waits until a fresh main.cf is a second old before it reads it.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(mainCF, old, old); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"-c", cfg}, args...)...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Stdin = strings.NewReader(stdin)
	if err := cmd.Run(); err != nil {
		t.Fatalf("postmap %v: %v\n%s", args, err, errOut.String())
	}
	return out.String(), errOut.String()
}

// Postfix's own reader is the reference for the text format: the keys and
// values accessmap reads are the ones postmap stores.
func TestParseAgreesWithPostmap(t *testing.T) {
	for _, name := range []string{"postmap-format", "nogreylist-senders"} {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("..", "testdata", "access", name))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), name)
			writeFile(t, path, string(src))

			tb, _, err := Load(DefaultOptions(), path)
			if err != nil {
				t.Fatal(err)
			}
			postmap(t, "hash:"+path)
			dump, _ := postmap(t, "-s", "hash:"+path)
			want := make(map[string]string)
			for line := range strings.Lines(dump) {
				key, value, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
				if !ok {
					t.Fatalf("postmap -s line %q", line)
				}
				want[key] = value
			}
			if got := entries(tb); !maps.Equal(got, want) {
				t.Errorf("accessmap read\n%q\npostmap stored\n%q", got, want)
			}
		})
	}
}

// The lines postmap skips with a warning are the lines accessmap skips,
// and the entries left are the ones postmap stores.
func TestParseErrorsAgreeWithPostmap(t *testing.T) {
	text := "a.test OK\nnovalue\nb.test OK\n\"unbalanced OK\n  \nc.test\n# c\n  \t\nd.test OK\n"
	path := filepath.Join(t.TempDir(), "bad")
	writeFile(t, path, text)

	_, stderr := postmap(t, "hash:"+path)
	var postmapLines []int
	for _, m := range regexp.MustCompile(`line (\d+): `).FindAllStringSubmatch(stderr, -1) {
		n, _ := strconv.Atoi(m[1])
		postmapLines = append(postmapLines, n)
	}

	tb, warnings, err := Load(DefaultOptions(), path)
	if err != nil {
		t.Fatal(err)
	}
	var ours []int
	for _, w := range warnings {
		if w.Skipped {
			ours = append(ours, w.Line)
		}
	}
	if len(postmapLines) == 0 || !slices.Equal(ours, postmapLines) {
		t.Errorf("accessmap skips lines %v, postmap skips lines %v\npostmap said:\n%s", ours, postmapLines, stderr)
	}
	dump, _ := postmap(t, "-s", "hash:"+path)
	want := make(map[string]string)
	for line := range strings.Lines(dump) {
		key, value, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
		want[key] = value
	}
	if got := entries(tb); !maps.Equal(got, want) {
		t.Errorf("accessmap kept\n%q\npostmap stored\n%q", got, want)
	}
}

// postmapHasType skips (or fails in CI) when this Postfix lacks a table
// type, such as pcre: without the postfix-pcre package.
func postmapHasType(t *testing.T, typ string) {
	t.Helper()
	out, _ := postmap(t, "-q", "x", "static:"+typ) // any working postmap
	if out == "" {
		t.Fatal("postmap -q x static:… printed nothing")
	}
	if typ == "regexp" {
		return // built in
	}
	dyn, err := os.ReadFile("/etc/postfix/dynamicmaps.cf")
	if err != nil || !regexp.MustCompile(`(?m)^`+typ+`\s`).Match(dyn) {
		testci.SkipOrFail(t, "Postfix has no %s: table type (Debian package postfix-%s)", typ, typ)
	}
}

// The pattern tables answer each address as `postmap -q` answers the key
// Postfix looks up for it: the same rule decides, with the same result
// ($number substitutions included), or no rule does.
func TestPatternTablesAgreeWithPostmap(t *testing.T) {
	addrs := []string{
		"postmaster@example.com", "PostMaster@Example.COM", "postmaster@example.com.evil.test",
		"alerts+db1@monitoring.example", "alerts@monitoring.example",
		"a@partner.test", "a@mx.partner.test", "a@notpartner.test",
		"Boss@Example.NET", "boss@example.net",
		"owner-x@lists.example", "dev-announce@lists.example", "bounce-announce@lists.example", "dev@lists.example",
		"news@shop.example", "noreply@shop.example",
		"substance@x.test", "num12345@subst.example", "ok@subst.example", "ko@subst.example", "oops@subst.example",
		"xy@subst.example", "y@subst.example",
		"123@numbers.example", "a.b@dots.example", "ab@dots.example",
		"extended.x@flags.example", `"a@b"@x.ungreedy.example`, "anchored@flags.example", "xanchored@flags.example",
		"comment@flags.example", `"john doe"@example.com`, "<>", "user@[192.0.2.1]",
	}
	opts := DefaultOptions()
	for _, typ := range []string{"regexp", "pcre"} {
		t.Run(typ, func(t *testing.T) {
			postmapHasType(t, typ)
			path := filepath.Join("..", "testdata", "access", "senders."+typ)
			tb, warnings, err := Load(opts, typ+":"+path)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range warnings {
				t.Logf("warning: %s", w)
			}
			var keys []string
			for _, a := range addrs {
				key, ok := opts.fullKey(envelope.Parse(a))
				if !ok {
					t.Fatalf("%q is never looked up", a)
				}
				keys = append(keys, key)
			}
			abs, err := filepath.Abs(path)
			if err != nil {
				t.Fatal(err)
			}
			out := postmapStdin(t, strings.Join(keys, "\n")+"\n", "-q", "-", typ+":"+abs)
			want := make(map[string]string)
			for line := range strings.Lines(out) {
				key, value, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
				if !ok {
					t.Fatalf("postmap -q line %q", line)
				}
				want[key] = value
			}
			matched := 0
			for i, a := range addrs {
				m, _ := tb.Lookup(envelope.Parse(a))
				postfix, found := want[keys[i]]
				switch {
				case found != (m.Key != "") || m.Action != postfix:
					t.Errorf("%s (key %q): milter-grey %q from %s, postmap %q (found %v)", a, keys[i], m.Action, m, postfix, found)
				case found:
					matched++
				}
			}
			if matched < len(addrs)/2 {
				t.Errorf("only %d of %d addresses matched a rule: the test proves little", matched, len(addrs))
			}
		})
	}
}
