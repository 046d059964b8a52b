package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/milter-grey/milter-grey/accessmap"
	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/milter"
)

// DefaultConfigPath is where the daemon looks for its configuration.
const DefaultConfigPath = "/etc/milter-grey/milter-grey.toml"

// config is the TOML configuration file. Every key has a default (see
// defaultConfig and the README); the file may be absent or empty.
type config struct {
	// Milter socket and process.
	Listen          string   `toml:"listen"`
	SocketMode      string   `toml:"socket_mode"`
	AllowPublic     bool     `toml:"allow_public_listen"`
	ShutdownTimeout duration `toml:"shutdown_timeout"`
	IdleTimeout     duration `toml:"idle_timeout"`
	MaxSessions     int      `toml:"max_sessions"`
	DecisionTimeout duration `toml:"decision_timeout"`

	// Privileges: the account to drop to when started as root, and the
	// group given to unix sockets (see privileges.go).
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
	Delay              duration `toml:"delay"`
	RetryWindow        duration `toml:"retry_window"`
	MaxAge             duration `toml:"max_age"`
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
	ReloadInterval          duration `toml:"reload_interval"`

	// Authenticated sender bypass.
	BypassSenderFiles             []string `toml:"bypass_sender_files"`
	ParentDomainMatchesSubdomains bool     `toml:"parent_domain_matches_subdomains"`
	KeyBySPFDomain                bool     `toml:"key_by_spf_domain"`
	DKIMAlignment                 string   `toml:"dkim_alignment"`
	DKIMMaxSignatures             int      `toml:"dkim_max_signatures"`
	DKIMMaxBytes                  int64    `toml:"dkim_max_bytes"`
	DNSServer                     string   `toml:"dns_server"`
	DNSTimeout                    duration `toml:"dns_timeout"`

	// Logging.
	LogFormat string `toml:"log_format"`
	LogOutput string `toml:"log_output"`
	LogLevel  string `toml:"log_level"`

	path    string // the file read, for errors
	data    []byte // its text, for line numbers
	present bool   // false when the optional default file is absent
}

func defaultConfig() *config {
	return &config{
		Listen:             "inet:127.0.0.1:10025",
		SocketMode:         "0660",
		ShutdownTimeout:    duration(15 * time.Second),
		IdleTimeout:        duration(10 * time.Minute),
		MaxSessions:        1000,
		DecisionTimeout:    duration(5 * time.Second),
		Store:              "/var/lib/milter-grey",
		RedisPrefix:        "milter-grey:",
		OnError:            "accept",
		Delay:              duration(greylist.DefaultPolicy.Delay),
		RetryWindow:        duration(greylist.DefaultPolicy.RetryWindow),
		MaxAge:             duration(greylist.DefaultPolicy.MaxAge),
		IPv4Mask:           greylist.DefaultClientMask.IPv4,
		IPv6Mask:           greylist.DefaultClientMask.IPv6,
		RecipientDelimiter: "+",
		AutoWhitelist:      greylist.DefaultAutoWhitelist,
		Reply:              milter.DefaultReply,
		AddHeader:          true,
		TrustedNetworks:    []string{"127.0.0.0/8", "::1/128"},
		ReloadInterval:     duration(10 * time.Second),

		ParentDomainMatchesSubdomains: true,
		KeyBySPFDomain:                true,
		DKIMAlignment:                 "relaxed",
		DKIMMaxSignatures:             auth.DefaultDKIMMaxSignatures,
		DKIMMaxBytes:                  auth.DefaultDKIMMaxBytes,
		DNSTimeout:                    duration(auth.DefaultTimeout),
		LogFormat:                     "text",
		LogOutput:                     "stderr",
		LogLevel:                      "info",
	}
}

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

// loadConfig reads and validates the file at path. A missing file is an
// error unless optional is set (the default path), in which case the
// defaults apply.
func loadConfig(path string, optional bool) (*config, error) {
	c := defaultConfig()
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
func (c *config) resolvePaths() {
	dir := filepath.Dir(c.path)
	for _, l := range []*[]string{&c.WhitelistClientFiles, &c.WhitelistRecipientFiles, &c.NeverAutoWhitelistFiles, &c.BypassSenderFiles} {
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

// validate checks values the TOML types do not: ranges, names, addresses
// and list entries. data is the file's text for line numbers (nil when
// only defaults apply).
func (c *config) validate() error {
	data := c.data
	fail := func(key string, format string, args ...any) error {
		return &configError{path: c.path, line: keyLine(data, toml.Key{key}), key: key, err: fmt.Errorf(format, args...)}
	}
	if _, _, err := parseListen(c.Listen); err != nil {
		return fail("listen", "%v", err)
	}
	if _, err := parseMode(c.SocketMode); err != nil {
		return fail("socket_mode", "%v", err)
	}
	for _, a := range []struct{ key, v string }{{"user", c.User}, {"group", c.Group}, {"socket_group", c.SocketGroup}} {
		if a.v != "" && !accountNameRe.MatchString(a.v) {
			return fail(a.key, "%q is not a user or group name (or number)", a.v)
		}
	}
	if c.Group != "" && c.User == "" {
		return fail("group", "needs user: the group is set when privileges are dropped to user")
	}
	if c.AdminListen != "" {
		network, address, err := parseListen(c.AdminListen)
		mnet, maddr, _ := parseListen(c.Listen)
		switch {
		case err != nil:
			return fail("admin_listen", "%v", err)
		case network == mnet && address == maddr && !strings.HasSuffix(address, ":0"):
			return fail("admin_listen", "%q is the milter socket (listen)", c.AdminListen)
		case network == "tcp" && !isLoopback(address) && !c.AllowPublic:
			return fail("admin_listen", "%s is not a loopback address; anyone who reaches it can read the greylist "+
				"(set allow_public_listen = true if a firewall protects it)", address)
		}
	}
	if err := checkStoreSpec(c.Store); err != nil {
		return fail("store", "%v", err)
	}
	if c.OnError != "accept" && c.OnError != "tempfail" {
		return fail("on_error", "%q: want \"accept\" or \"tempfail\"", c.OnError)
	}
	if c.Delay <= 0 {
		return fail("delay", "must be positive")
	}
	if c.RetryWindow <= c.Delay {
		return fail("retry_window", "%s must be longer than delay (%s)", formatDuration(time.Duration(c.RetryWindow)), formatDuration(time.Duration(c.Delay)))
	}
	if c.MaxAge < c.RetryWindow {
		return fail("max_age", "%s must be at least retry_window (%s)", formatDuration(time.Duration(c.MaxAge)), formatDuration(time.Duration(c.RetryWindow)))
	}
	for _, d := range []struct {
		key string
		v   duration
	}{{"shutdown_timeout", c.ShutdownTimeout}, {"idle_timeout", c.IdleTimeout}, {"decision_timeout", c.DecisionTimeout}} {
		if d.v <= 0 {
			return fail(d.key, "must be positive")
		}
	}
	if err := (greylist.ClientMask{IPv4: c.IPv4Mask, IPv6: c.IPv6Mask}).Validate(); err != nil {
		if c.IPv4Mask < 1 || c.IPv4Mask > 32 {
			return fail("ipv4_mask", "%v", err)
		}
		return fail("ipv6_mask", "%v", err)
	}
	if strings.ContainsAny(c.RecipientDelimiter, "@ \t") {
		return fail("recipient_delimiter", "%q may not contain '@' or spaces", c.RecipientDelimiter)
	}
	if c.MaxSessions < 0 {
		return fail("max_sessions", "must be 0 (no bound) or more")
	}
	if c.AutoWhitelist < 0 {
		return fail("auto_whitelist", "must be 0 (off) or more")
	}
	if c.ReloadInterval < 0 {
		return fail("reload_interval", "must be 0 (off) or positive")
	}
	if c.DKIMAlignment != "relaxed" && c.DKIMAlignment != "strict" {
		return fail("dkim_alignment", "%q: want \"relaxed\" or \"strict\"", c.DKIMAlignment)
	}
	if c.DKIMMaxSignatures < 1 || c.DKIMMaxSignatures > 50 {
		return fail("dkim_max_signatures", "%d: want 1 to 50", c.DKIMMaxSignatures)
	}
	if c.DKIMMaxBytes < 64<<10 {
		return fail("dkim_max_bytes", "%d: want at least 65536", c.DKIMMaxBytes)
	}
	if c.DNSServer != "" {
		if _, port, err := net.SplitHostPort(c.DNSServer); err != nil || port == "" {
			return fail("dns_server", "%q: want HOST:PORT, e.g. \"127.0.0.1:53\"", c.DNSServer)
		}
	}
	if c.DNSTimeout <= 0 || c.DNSTimeout >= c.DecisionTimeout {
		return fail("dns_timeout", "%s must be positive and shorter than decision_timeout (%s)",
			formatDuration(time.Duration(c.DNSTimeout)), formatDuration(time.Duration(c.DecisionTimeout)))
	}
	if err := milter.ValidateReply(c.Reply); err != nil {
		return fail("greylist_reply", "%v", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fail("log_format", "%q: want \"text\" or \"json\"", c.LogFormat)
	}
	if c.LogOutput != "stderr" && c.LogOutput != "syslog" {
		return fail("log_output", "%q: want \"stderr\" or \"syslog\"", c.LogOutput)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return fail("log_level", "%v", err)
	}
	// Inline list entries; files are read by loadLists (and on reload).
	if _, err := c.lists(); err != nil {
		return err
	}
	return nil
}

// accountNameRe is what user, group and socket_group accept: the
// portable POSIX names (and the Debian extensions "." and a final "$"),
// or a number.
var accountNameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\$?$`)

func parseMode(s string) (os.FileMode, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("%q is not an octal file mode like \"0660\"", s)
	}
	return os.FileMode(m), nil
}

// lists builds the exemption lists from the inline entries and the list
// files. Errors name the config key and entry, or the file and line.
func (c *config) lists() (*greylist.Lists, error) {
	l, _, err := c.listsWarn()
	return l, err
}

// listFiles are every list file the configuration names, for change
// detection: an optional file is watched too, so that creating it reloads.
func (c *config) listFiles() []string {
	var all []string
	for _, l := range [][]string{c.WhitelistClientFiles, c.WhitelistRecipientFiles, c.NeverAutoWhitelistFiles} {
		for _, name := range l {
			path, _ := greylist.ListFilePath(name)
			all = append(all, path)
		}
	}
	return append(all, c.BypassSenderFiles...)
}

// listNotes is what loading the lists found that does not stop them from
// loading but that the admin must be told.
type listNotes struct {
	bypass []accessmap.Warning // bypass entries that bypass nothing (REJECT, …)
	lists  greylist.ListReport // list lines skipped, optional files absent
}

// listsWarn is lists with the notes on what loaded with a warning.
func (c *config) listsWarn() (*greylist.Lists, listNotes, error) {
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
	var notes listNotes
	files := func(key string, paths []string, add func(string) error) error {
		for _, p := range paths {
			if err := notes.lists.ReadFile(p, add); err != nil {
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
		l.Bypass, notes.bypass = t, w
	}
	return l, notes, nil
}

// sameExceptLists reports whether c and o differ only in their lists.
func (c *config) sameExceptLists(o *config) bool {
	strip := func(x *config) config {
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
