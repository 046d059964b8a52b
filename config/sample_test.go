package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"
)

// The sample configuration documents every key with its default: with each
// "#key = value" line uncommented it must load and equal the defaults.
func TestSampleConfigDocumentsEveryKeyWithItsDefault(t *testing.T) {
	data, err := os.ReadFile("../contrib/milter-grey.toml")
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
	got, err := Load(path, false)
	if err != nil {
		t.Fatalf("sample with settings uncommented: %v", err)
	}
	want := Default()
	want.path = path
	got.data, got.present = nil, false // how it was read, not what it says
	// Empty lists in the file decode as empty, not nil.
	for _, l := range []*[]string{&want.WhitelistClients, &want.WhitelistClientFiles, &want.WhitelistRecipients,
		&want.WhitelistRecipientFiles, &want.NeverAutoWhitelist, &want.NeverAutoWhitelistFiles, &want.BypassSenderFiles,
		&want.DNSBLZones, &want.DNSWLZones, &want.NeverTrustDomains, &want.NeverTrustDomainFiles} {
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
	ct := reflect.TypeOf(Config{})
	for i := 0; i < ct.NumField(); i++ {
		if tag := ct.Field(i).Tag.Get("toml"); tag != "" && !documented[tag] {
			t.Errorf("key %s is not in contrib/milter-grey.toml", tag)
		}
	}
}
