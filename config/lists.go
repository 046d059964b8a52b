package config

import (
	"fmt"
	"os"

	"github.com/milter-grey/milter-grey/accessmap"
	"github.com/milter-grey/milter-grey/dnslist"
	"github.com/milter-grey/milter-grey/greylist"
)

// ListFiles are every list file the configuration names, for change
// detection: an optional file is watched too, so that creating it reloads.
func (c *Config) ListFiles() []string {
	var all []string
	for _, l := range [][]string{c.WhitelistClientFiles, c.WhitelistRecipientFiles, c.NeverAutoWhitelistFiles} {
		for _, name := range l {
			path, _ := greylist.ListFilePath(name)
			all = append(all, path)
		}
	}
	for _, name := range c.NeverTrustDomainFiles {
		path, _ := greylist.ListFilePath(name)
		all = append(all, path)
	}
	if c.DynamicNameFile != "" {
		all = append(all, c.DynamicNameFile)
	}
	return append(all, c.BypassSenderFiles...)
}

// parseZones parses dnsbl_zones or dnswl_zones.
func parseZones(zones []string) ([]dnslist.Zone, error) {
	var out []dnslist.Zone
	for _, s := range zones {
		z, err := dnslist.ParseZone(s)
		if err != nil {
			return nil, err
		}
		out = append(out, z)
	}
	return out, nil
}

// Zones returns the DNS blocklists and allowlists (validated at load).
func (c *Config) Zones() (block, allow []dnslist.Zone) {
	block, _ = parseZones(c.DNSBLZones)
	allow, _ = parseZones(c.DNSWLZones)
	return block, allow
}

// ListNotes is what loading the lists found that does not stop them from
// loading but that the admin must be told.
type ListNotes struct {
	Bypass []accessmap.Warning // bypass entries that bypass nothing (REJECT, …), lines skipped
	Lists  greylist.ListReport // list lines skipped, optional files absent
}

// inlineLists builds the exemption lists from the entries written in the
// configuration file itself. It does no I/O: validate calls it. Errors
// name the key and the entry.
func (c *Config) inlineLists() (*greylist.Lists, error) {
	l := &greylist.Lists{
		Trusted:            &greylist.Networks{},
		Clients:            &greylist.ClientList{},
		Recipients:         &greylist.RecipientList{},
		NeverAutoWhitelist: &greylist.ClientList{},
		NeverTrustDomains:  &greylist.DomainList{},
		DynamicNames:       greylist.DefaultNamePatterns(),
	}
	for _, in := range []struct {
		key     string
		entries []string
		add     func(string) error
	}{
		{"trusted_networks", c.TrustedNetworks, l.Trusted.Add},
		{"whitelist_clients", c.WhitelistClients, l.Clients.Add},
		{"whitelist_recipients", c.WhitelistRecipients, l.Recipients.Add},
		{"never_auto_whitelist", c.NeverAutoWhitelist, l.NeverAutoWhitelist.Add},
		{"never_trust_domains", c.NeverTrustDomains, l.NeverTrustDomains.Add},
	} {
		for _, e := range in.entries {
			if err := in.add(e); err != nil {
				return nil, c.KeyError(in.key, err)
			}
		}
	}
	return l, nil
}

// LoadLists reads the list files and returns the exemption lists, the
// inline entries with the entries of the files, and the notes on what
// loaded with a warning. Each file is read once. Errors name the key and
// the configuration file, then the list file.
func (c *Config) LoadLists() (*greylist.Lists, ListNotes, error) {
	var notes ListNotes
	l, err := c.inlineLists()
	if err != nil {
		return nil, notes, err
	}
	for _, f := range []struct {
		key   string
		paths []string
		add   func(string) error
	}{
		{"whitelist_client_files", c.WhitelistClientFiles, l.Clients.Add},
		{"whitelist_recipient_files", c.WhitelistRecipientFiles, l.Recipients.Add},
		{"never_auto_whitelist_files", c.NeverAutoWhitelistFiles, l.NeverAutoWhitelist.Add},
		{"never_trust_domain_files", c.NeverTrustDomainFiles, l.NeverTrustDomains.Add},
	} {
		for _, p := range f.paths {
			if err := notes.Lists.ReadFile(p, f.add); err != nil {
				return nil, notes, fmt.Errorf("%s (from %s): %w", f.key, c.path, err)
			}
		}
	}
	if c.DynamicNameFile != "" {
		p, err := readNamePatterns(c.DynamicNameFile)
		if err != nil {
			return nil, notes, fmt.Errorf("dynamic_name_file (from %s): %w", c.path, err)
		}
		l.DynamicNames = p
	}
	if len(c.BypassSenderFiles) > 0 {
		opts := accessmap.DefaultOptions()
		opts.Delimiters = c.RecipientDelimiter
		opts.ParentDomainMatchesSubdomains = c.ParentDomainMatchesSubdomains
		t, w, err := accessmap.Load(opts, c.BypassSenderFiles...)
		if err != nil {
			return nil, notes, fmt.Errorf("bypass_sender_files (from %s): %w", c.path, err)
		}
		l.Bypass, notes.Bypass = t, w
	}
	return l, notes, nil
}

// readNamePatterns reads a dynamic_name_file.
func readNamePatterns(path string) (*greylist.NamePatterns, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return greylist.ParseNamePatterns(path, f)
}
