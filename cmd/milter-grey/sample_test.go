package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// contrib/whitelist_clients, the starter client list, is enabled with the
// one line its header gives: that configuration passes check-config with
// no list line skipped, and every entry comes after a comment saying why.
func TestStarterClientList(t *testing.T) {
	const list = "../../contrib/whitelist_clients"
	data, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`(?m)^#\s+(whitelist_client_files = .*)$`).FindSubmatch(data)
	if line == nil {
		t.Fatal("the header does not give the configuration line")
	}
	abs, err := filepath.Abs(list)
	if err != nil {
		t.Fatal(err)
	}
	// The line as documented, with the installed path pointed at this file
	// and the optional .local at a file that does not exist.
	conf := strings.NewReplacer("/etc/milter-grey/whitelist_clients.local", filepath.Join(t.TempDir(), "whitelist_clients.local"),
		"/etc/milter-grey/whitelist_clients", abs).Replace(string(line[1]))
	path := writeFile(t, "milter-grey.toml", conf+"\n")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check-config", "-config", path}, &stdout, &stderr); code != 0 || !strings.HasSuffix(stdout.String(), path+": OK\n") {
		t.Errorf("check-config of %q: exit %d\nstdout: %s\nstderr: %s", conf, code, &stdout, &stderr)
	}

	entries, commented := 0, false
	for _, l := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(l, "#"):
			commented = true
		case strings.TrimSpace(l) == "":
			commented = false
		default:
			entries++
			if !commented {
				t.Errorf("entry %q has no comment above it saying why it is listed", l)
			}
		}
	}
	if entries == 0 {
		t.Error("no entries")
	}
}
