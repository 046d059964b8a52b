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

	"github.com/milter-grey/milter-grey/internal/testci"
)

// postmap runs Postfix's postmap(1) with a private configuration directory,
// or skips the test when Postfix is not installed.
func postmap(t *testing.T, args ...string) (stdout, stderr string) {
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

// The lines postmap skips with a warning are the lines accessmap refuses.
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

	_, _, err := Load(DefaultOptions(), path)
	if err == nil {
		t.Fatal("Load succeeded")
	}
	var ours []int
	for _, line := range strings.Split(err.Error(), "\n") {
		_, rest, _ := strings.Cut(line, path+":")
		n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ':')])
		ours = append(ours, n)
	}
	if len(postmapLines) == 0 || !slices.Equal(ours, postmapLines) {
		t.Errorf("accessmap refuses lines %v, postmap skips lines %v\npostmap said:\n%s", ours, postmapLines, stderr)
	}
}
