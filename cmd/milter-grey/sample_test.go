package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// The sample configuration documents every key with its default: with each
// "#key = value" line uncommented it must load and equal the defaults.
func TestSampleConfigDocumentsEveryKeyWithItsDefault(t *testing.T) {
	data, err := os.ReadFile("../../contrib/milter-grey.toml")
	if err != nil {
		t.Fatal(err)
	}
	setting := regexp.MustCompile(`(?m)^#([a-z0-9_]+ = .*)$`)
	keys := setting.FindAllSubmatch(data, -1)
	uncommented := setting.ReplaceAll(data, []byte("$1"))
	path := filepath.Join(t.TempDir(), "sample.toml")
	if err := os.WriteFile(path, uncommented, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := loadConfig(path, false)
	if err != nil {
		t.Fatalf("sample with settings uncommented: %v", err)
	}
	want := defaultConfig()
	want.path = path
	got.data, got.present = nil, false // how it was read, not what it says
	// Empty lists in the file decode as empty, not nil.
	for _, l := range []*[]string{&want.WhitelistClients, &want.WhitelistClientFiles, &want.WhitelistRecipients,
		&want.WhitelistRecipientFiles, &want.NeverAutoWhitelist, &want.NeverAutoWhitelistFiles, &want.BypassSenderFiles} {
		*l = []string{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sample values differ from defaults:\n got %+v\nwant %+v", got, want)
	}
	// Every key of the config struct is in the sample.
	documented := map[string]bool{}
	for _, k := range keys {
		documented[regexp.MustCompile(`^[a-z0-9_]+`).FindString(string(k[1]))] = true
	}
	ct := reflect.TypeOf(config{})
	for i := 0; i < ct.NumField(); i++ {
		if tag := ct.Field(i).Tag.Get("toml"); tag != "" && !documented[tag] {
			t.Errorf("key %s is not in contrib/milter-grey.toml", tag)
		}
	}
}

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
