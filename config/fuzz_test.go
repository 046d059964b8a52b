package config

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// FuzzConfig: any bytes as a configuration file load or fail without a
// panic, and every error names the file, so that an admin knows where to
// look. A file that loads is valid when validated again, and its lists and
// accounts load or fail with an error that names it.
func FuzzConfig(f *testing.F) {
	// The full configuration and the sample with every setting
	// uncommented (all the defaults), without their comments: the
	// fuzzer minimises every new input it keeps, in time quadratic in
	// its length.
	comments := regexp.MustCompile(`(?m)^(#.*)?\n`)
	for _, p := range []string{fullConfig, "../contrib/milter-grey.toml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		b = regexp.MustCompile(`(?m)^#([a-z0-9_]+ = .*)$`).ReplaceAll(b, []byte("$1"))
		f.Add(comments.ReplaceAll(b, nil))
	}
	for _, s := range []string{
		"",
		"delay = \"5m\"\nretry_window = \"4m\"\n",
		"[greylist]\ndelay = \"5m\"\n",
		"delay = 300\n",
		"delay = \"2d-1h\"\n",
		"max_age = \"99999999w\"\n",
		"ipv4_mask = 33\n",
		"listen = \"inet:[::1]:10091\"\nadmin_listen = \"inet:10091@::1\"\n",
		"admin_listen = \"inet:192.0.2.1:10092\"\n",
		"trusted_networks = [\"10.0.0.0/33\"]\n",
		"whitelist_clients = [\"/(/\"]\n",
		"whitelist_recipient_files = [\"milter-grey.toml\"]\n",
		"bypass_sender_files = [\"hash:milter-grey.toml\"]\n",
		"user = \"nobody\"\ngroup = \"nogroup\"\nsocket_group = \"x y\"\n",
		"\"delay\" = \"5m\"\n'retry_window' = \"1h\"\n",
		"a.b.c = 1\n",
		"delay = \"5m\"\ndelay = \"6m\"\n",
		"greylist_reply = \"451 4.7.1 {seconds}\"\n",
		"store = \"redis://u:p@127.0.0.1:6379/0\"\n",
		"dns_server = \"[::1]\"\n",
		"x = \"\\uD800\"\n",
		"log_level = \"\"\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "milter-grey.toml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if namesFilesElsewhere(data, path, dir) {
			// A list file outside the directory could be a device or a
			// pipe (/dev/stdin), which would block the fuzzer, not the
			// code under test.
			t.Skip()
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path, false)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("the error does not name the file %s: %v\nfile:\n%q", path, err, data)
			}
			return
		}
		if err := c.validate(); err != nil {
			t.Fatalf("loaded, then invalid: %v", err)
		}
		if !c.SameExceptLists(c) {
			t.Fatal("a configuration differs from itself")
		}
		// Load checked the inline entries: without list files the
		// lists build, and an error in a list file names the
		// configuration too.
		if _, _, err := c.LoadLists(); err != nil {
			if len(c.ListFiles()) == 0 {
				t.Fatalf("loaded, but its lists do not build: %v", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("the lists error does not name the file %s: %v", path, err)
			}
		}
		if _, _, err := c.LookupAccounts(); err != nil && !strings.Contains(err.Error(), path) {
			t.Fatalf("the accounts error does not name the file %s: %v", path, err)
		}
	})
}

// namesFilesElsewhere reports whether a configuration that decodes names
// list files outside dir.
func namesFilesElsewhere(data []byte, path, dir string) bool {
	c := Default()
	c.path = path
	if _, err := toml.NewDecoder(bytes.NewReader(data)).Decode(c); err != nil {
		return false // Load fails: LoadLists is not called
	}
	c.resolvePaths()
	for _, p := range c.ListFiles() {
		_, p = splitTableType(p)
		if rel, err := filepath.Rel(dir, p); err != nil || !filepath.IsLocal(rel) {
			return true
		}
	}
	return false
}
