// Package config is milter-grey's configuration file: the TOML keys and
// their defaults, loading with errors that name the file, the line and the
// key, and the checks of every value.
//
// Loading and validating read the configuration file and nothing else: no
// list file, no account database, no DNS. A configuration loads the same
// anywhere and for anyone (the admin commands read it to find
// admin_listen), and the daemon can load it before it drops its
// privileges without reading a list as root. What touches the system is a
// separate call, made when the caller is ready for it: LoadLists reads the
// list files (the daemon calls it after the privilege drop, as its user,
// once per load), LookupAccounts resolves user, group and socket_group.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/milter"
)

// DefaultPath is where the daemon looks for its configuration.
const DefaultPath = "/etc/milter-grey/milter-grey.toml"

// Config is the TOML configuration file. Every key has a default (see
// Default and the README); the file may be absent or empty.
type Config struct {
	// Milter socket and process.
	Listen          string   `toml:"listen"`
	SocketMode      string   `toml:"socket_mode"`
	AllowPublic     bool     `toml:"allow_public_listen"`
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	IdleTimeout     Duration `toml:"idle_timeout"`
	MaxSessions     int      `toml:"max_sessions"`
	DecisionTimeout Duration `toml:"decision_timeout"`

	// Privileges: the account to drop to when started as root, and the
	// group given to unix sockets (see LookupAccounts).
	User        string `toml:"user"`
	Group       string `toml:"group"`
	SocketGroup string `toml:"socket_group"`

	// Admin API and metrics.
	AdminListen string `toml:"admin_listen"`

	// Store.
	Store       string `toml:"store"`
	SyncWrites  bool   `toml:"sync_writes"`
	RedisPrefix string `toml:"redis_prefix"`
	OnError     string `toml:"on_error"`

	// Greylisting.
	Delay              Duration `toml:"delay"`
	RetryWindow        Duration `toml:"retry_window"`
	MaxAge             Duration `toml:"max_age"`
	IPv4Mask           int      `toml:"ipv4_mask"`
	IPv6Mask           int      `toml:"ipv6_mask"`
	RecipientDelimiter string   `toml:"recipient_delimiter"`
	AutoWhitelist      int      `toml:"auto_whitelist"`
	Reply              string   `toml:"greylist_reply"`
	AddHeader          bool     `toml:"add_header"`
	Hostname           string   `toml:"hostname"`
	DryRun             bool     `toml:"dry_run"`

	// Lists: inline entries and files of entries.
	TrustedNetworks         []string `toml:"trusted_networks"`
	WhitelistClients        []string `toml:"whitelist_clients"`
	WhitelistClientFiles    []string `toml:"whitelist_client_files"`
	WhitelistRecipients     []string `toml:"whitelist_recipients"`
	WhitelistRecipientFiles []string `toml:"whitelist_recipient_files"`
	NeverAutoWhitelist      []string `toml:"never_auto_whitelist"`
	NeverAutoWhitelistFiles []string `toml:"never_auto_whitelist_files"`
	ReloadInterval          Duration `toml:"reload_interval"`

	// Authenticated sender bypass.
	BypassSenderFiles             []string `toml:"bypass_sender_files"`
	ParentDomainMatchesSubdomains bool     `toml:"parent_domain_matches_subdomains"`
	KeyBySPFDomain                bool     `toml:"key_by_spf_domain"`
	DKIMAlignment                 string   `toml:"dkim_alignment"`
	DKIMMaxSignatures             int      `toml:"dkim_max_signatures"`
	DKIMMaxBytes                  int64    `toml:"dkim_max_bytes"`
	DNSServer                     string   `toml:"dns_server"`
	DNSTimeout                    Duration `toml:"dns_timeout"`

	// Selective greylisting and domain trust.
	Greylist              string   `toml:"greylist"`
	GreylistTriggers      []string `toml:"greylist_triggers"`
	DNSBLZones            []string `toml:"dnsbl_zones"`
	DNSWLZones            []string `toml:"dnswl_zones"`
	DynamicNameFile       string   `toml:"dynamic_name_file"`
	SPFKeyDropsLocalPart  bool     `toml:"spf_key_drops_local_part"`
	DomainTrust           int      `toml:"domain_trust"`
	NeverTrustDomains     []string `toml:"never_trust_domains"`
	NeverTrustDomainFiles []string `toml:"never_trust_domain_files"`

	// Logging.
	LogFormat string `toml:"log_format"`
	LogOutput string `toml:"log_output"`
	LogLevel  string `toml:"log_level"`
	// SyslogFacility is the facility of syslog lines (log_output = "syslog").
	SyslogFacility string `toml:"syslog_facility"`

	path    string // the file read, for errors
	data    []byte // its text, for line numbers
	present bool   // false when the optional default file is absent
}

// Default returns the configuration of an empty file.
func Default() *Config {
	return &Config{
		Listen:             "inet:127.0.0.1:10091",
		SocketMode:         "0660",
		ShutdownTimeout:    Duration(15 * time.Second),
		IdleTimeout:        Duration(10 * time.Minute),
		MaxSessions:        1000,
		DecisionTimeout:    Duration(5 * time.Second),
		Store:              "/var/lib/milter-grey",
		RedisPrefix:        "milter-grey:",
		OnError:            "accept",
		Delay:              Duration(greylist.DefaultPolicy.Delay),
		RetryWindow:        Duration(greylist.DefaultPolicy.RetryWindow),
		MaxAge:             Duration(greylist.DefaultPolicy.MaxAge),
		IPv4Mask:           greylist.DefaultClientMask.IPv4,
		IPv6Mask:           greylist.DefaultClientMask.IPv6,
		RecipientDelimiter: "+",
		AutoWhitelist:      greylist.DefaultAutoWhitelist,
		Reply:              milter.DefaultReply,
		AddHeader:          true,
		TrustedNetworks:    []string{"127.0.0.0/8", "::1/128"},
		ReloadInterval:     Duration(10 * time.Second),

		Greylist:         greylist.Suspicious.String(),
		GreylistTriggers: []string{"dnsbl", "spf-fail", "spf-unproven", "dynamic-name", "no-fcrdns"},
		DomainTrust:      greylist.DefaultDomainTrust,

		ParentDomainMatchesSubdomains: true,
		KeyBySPFDomain:                true,
		DKIMAlignment:                 "relaxed",
		DKIMMaxSignatures:             auth.DefaultDKIMMaxSignatures,
		DKIMMaxBytes:                  auth.DefaultDKIMMaxBytes,
		DNSTimeout:                    Duration(auth.DefaultTimeout),
		LogFormat:                     "text",
		LogOutput:                     "stderr",
		LogLevel:                      "info",
		SyslogFacility:                "mail",
	}
}

// Path is the configuration file's name, as given to Load.
func (c *Config) Path() string { return c.path }

// Found reports whether the file was read: false when the optional default
// file is absent and the defaults apply.
func (c *Config) Found() bool { return c.present }

// configError is an error in the configuration file, at a line and key.
type configError struct {
	path string
	line int
	key  string
	err  error
}

func (e *configError) Error() string {
	loc := e.path
	if e.line > 0 {
		loc += ":" + strconv.Itoa(e.line)
	}
	if e.key != "" {
		return fmt.Sprintf("%s: %s: %v", loc, e.key, e.err)
	}
	return fmt.Sprintf("%s: %v", loc, e.err)
}

func (e *configError) Unwrap() error { return e.err }

// KeyError is err about the top-level key, as "FILE:LINE: KEY: err", for
// problems found after loading (an account that cannot be switched to).
func (c *Config) KeyError(key string, err error) error {
	return &configError{path: c.path, line: keyLine(c.data, toml.Key{key}), key: key, err: err}
}

// Load reads and validates the file at path. A missing file is an error
// unless optional is set (the default path), in which case the defaults
// apply. Inline list entries are checked; list files are not read (see
// LoadLists).
func Load(path string, optional bool) (*Config, error) {
	c := Default()
	c.path = path
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && optional {
		return c, c.validate()
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &configError{path: path, line: pe.Position.Line, key: pe.LastKey, err: errors.New(pe.Message)}
		}
		// Type errors are plain errors: "toml: line 3 (last key "k"): msg".
		if m := tomlTypeErrRe.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, &configError{path: path, line: line, key: m[2], err: errors.New(m[3])}
		}
		return nil, &configError{path: path, err: err}
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		return nil, &configError{path: path, line: keyLine(data, k), key: k.String(), err: errors.New("unknown key")}
	}
	c.data, c.present = data, true
	c.resolvePaths()
	return c, c.validate()
}

// resolvePaths makes relative list file names relative to the directory of
// the configuration file, not to wherever the daemon was started.
func (c *Config) resolvePaths() {
	dir := filepath.Dir(c.path)
	if c.DynamicNameFile != "" && !filepath.IsAbs(c.DynamicNameFile) {
		c.DynamicNameFile = filepath.Join(dir, c.DynamicNameFile)
	}
	for _, l := range []*[]string{&c.WhitelistClientFiles, &c.WhitelistRecipientFiles, &c.NeverAutoWhitelistFiles,
		&c.NeverTrustDomainFiles, &c.BypassSenderFiles} {
		for i, p := range *l {
			// A bypass file may carry the table type copied from
			// main.cf ("hash:/etc/postfix/nogreylist-senders"): the
			// path is what follows it.
			typ := ""
			if l == &c.BypassSenderFiles {
				typ, p = splitTableType(p)
			} else if path, optional := greylist.ListFilePath(p); optional {
				typ, p = greylist.OptionalListPrefix, path
			}
			if p != "" && !filepath.IsAbs(p) {
				(*l)[i] = typ + filepath.Join(dir, p)
			}
		}
	}
}

// splitTableType splits Postfix table types off a table name, as Postfix
// reads "type:name": "proxy:hash:/x" gives "proxy:hash:" and "/x". Which
// types are accepted is the access map loader's business.
func splitTableType(name string) (typ, path string) {
	path = name
	for {
		t, rest, ok := strings.Cut(path, ":")
		if !ok || !tableTypeRe.MatchString(t) {
			return typ, path
		}
		typ, path = typ+t+":", rest
	}
}

var tableTypeRe = regexp.MustCompile(`^[a-z][a-z0-9]*$`)

var tomlTypeErrRe = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)

// keyLine finds the line on which a key is set. The TOML library reports
// positions for syntax and type errors only, so semantic errors look the
// key up themselves: a table header then "name =".
func keyLine(data []byte, key toml.Key) int {
	if len(key) == 0 {
		return 0
	}
	table := strings.Join(key[:len(key)-1], ".")
	name := key[len(key)-1]
	keyRe := regexp.MustCompile(`^\s*"?` + regexp.QuoteMeta(name) + `"?\s*=`)
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			cur = strings.Trim(line, "[] ")
			if cur == key.String() { // an unknown table
				return n
			}
			continue
		}
		if cur == table && keyRe.MatchString(line) {
			return n
		}
	}
	return 0
}

// SameExceptLists reports whether c and o differ only in their lists.
func (c *Config) SameExceptLists(o *Config) bool {
	strip := func(x *Config) Config {
		y := *x
		y.TrustedNetworks, y.WhitelistClients, y.WhitelistClientFiles = nil, nil, nil
		y.WhitelistRecipients, y.WhitelistRecipientFiles = nil, nil
		y.NeverAutoWhitelist, y.NeverAutoWhitelistFiles = nil, nil
		y.BypassSenderFiles = nil
		y.data, y.present = nil, false
		return y
	}
	return reflect.DeepEqual(strip(c), strip(o))
}
