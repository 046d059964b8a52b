package config

import (
	"fmt"

	"github.com/BurntSushi/toml"

	"github.com/milter-grey/milter-grey/accessmap"
	"github.com/milter-grey/milter-grey/greylist"
)

// lists builds the exemption lists from the inline entries and the list
// files. Errors name the config key and entry, or the file and line.
func (c *Config) lists() (*greylist.Lists, error) {
	l, _, err := c.LoadLists()
	return l, err
}

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
	return append(all, c.BypassSenderFiles...)
}

// ListNotes is what loading the lists found that does not stop them from
// loading but that the admin must be told.
type ListNotes struct {
	Bypass []accessmap.Warning // bypass entries that bypass nothing (REJECT, …)
	Lists  greylist.ListReport // list lines skipped, optional files absent
}

// LoadLists builds the exemption lists from the inline entries and the
// list files, with the notes on what loaded with a warning. Errors name
// the config key and entry, or the file and line.
func (c *Config) LoadLists() (*greylist.Lists, ListNotes, error) {
	data := c.data
	l := &greylist.Lists{
		Trusted:            &greylist.Networks{},
		Clients:            &greylist.ClientList{},
		Recipients:         &greylist.RecipientList{},
		NeverAutoWhitelist: &greylist.ClientList{},
	}
	inline := func(key string, entries []string, add func(string) error) error {
		for _, e := range entries {
			if err := add(e); err != nil {
				return &configError{path: c.path, line: keyLine(data, toml.Key{key}), key: key, err: err}
			}
		}
		return nil
	}
	var notes ListNotes
	files := func(key string, paths []string, add func(string) error) error {
		for _, p := range paths {
			if err := notes.Lists.ReadFile(p, add); err != nil {
				return fmt.Errorf("%s (from %s): %w", key, c.path, err)
			}
		}
		return nil
	}
	steps := []error{
		inline("trusted_networks", c.TrustedNetworks, l.Trusted.Add),
		inline("whitelist_clients", c.WhitelistClients, l.Clients.Add),
		inline("whitelist_recipients", c.WhitelistRecipients, l.Recipients.Add),
		inline("never_auto_whitelist", c.NeverAutoWhitelist, l.NeverAutoWhitelist.Add),
	}
	for _, err := range steps {
		if err != nil {
			return nil, notes, err
		}
	}
	for _, err := range []error{
		files("whitelist_client_files", c.WhitelistClientFiles, l.Clients.Add),
		files("whitelist_recipient_files", c.WhitelistRecipientFiles, l.Recipients.Add),
		files("never_auto_whitelist_files", c.NeverAutoWhitelistFiles, l.NeverAutoWhitelist.Add),
	} {
		if err != nil {
			return nil, notes, err
		}
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
