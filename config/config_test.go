package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/envelope"
	"github.com/milter-grey/milter-grey/greylist"
)

// fullConfig is testdata/config/full.toml, where every key differs from
// its default. Its list file paths are relative to this directory.
const fullConfig = "../testdata/config/full.toml"

// writeFile writes text to name in a new temporary directory.
func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeAndLoad writes text to the configuration file at path and loads it.
func writeAndLoad(t *testing.T, path, text string) *Config {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, false)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tomlKeys maps each config key to its struct field index.
func tomlKeys(t *testing.T) map[string]int {
	t.Helper()
	keys := make(map[string]int)
	rt := reflect.TypeFor[Config]()
	for i := range rt.NumField() {
		if tag := rt.Field(i).Tag.Get("toml"); tag != "" {
			keys[tag] = i
		}
	}
	if len(keys) < 29 {
		t.Fatalf("only %d toml keys in config: struct tags changed?", len(keys))
	}
	return keys
}

func TestMissingDefaultConfigGivesDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "milter-grey.toml") // does not exist
	c, err := Load(path, true)
	if err != nil {
		t.Fatalf("Load(missing, optional): %v", err)
	}
	if c.path != path {
		t.Errorf("path = %q, want %q", c.path, path)
	}
	for _, tc := range []struct {
		key       string
		got, want any
	}{
		{"listen", c.Listen, "inet:127.0.0.1:10091"},
		{"socket_mode", c.SocketMode, "0660"},
		{"allow_public_listen", c.AllowPublic, false},
		{"user", c.User, ""},
		{"group", c.Group, ""},
		{"socket_group", c.SocketGroup, ""},
		{"store", c.Store, "/var/lib/milter-grey"},
		{"delay", time.Duration(c.Delay), 5 * time.Minute},
		{"retry_window", time.Duration(c.RetryWindow), 48 * time.Hour},
		{"max_age", time.Duration(c.MaxAge), 35 * day},
		{"ipv4_mask", c.IPv4Mask, 24},
		{"ipv6_mask", c.IPv6Mask, 64},
		{"recipient_delimiter", c.RecipientDelimiter, "+"},
		{"auto_whitelist", c.AutoWhitelist, 5},
		{"greylist_reply", c.Reply, "451 4.7.1 Greylisted, please try again in {seconds} seconds"},
		{"add_header", c.AddHeader, true},
		{"trusted_networks", c.TrustedNetworks, []string{"127.0.0.0/8", "::1/128"}},
		{"on_error", c.OnError, "accept"},
		{"admin_listen", c.AdminListen, ""},
		{"dry_run", c.DryRun, false},
		{"log_format", c.LogFormat, "text"},
		{"log_output", c.LogOutput, "stderr"},
		{"log_level", c.LogLevel, "info"},
		{"syslog_facility", c.SyslogFacility, "mail"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			if !reflect.DeepEqual(tc.got, tc.want) {
				t.Errorf("%s = %#v, want %#v", tc.key, tc.got, tc.want)
			}
		})
	}
}

func TestEmptyConfigGivesDefaults(t *testing.T) {
	path := writeFile(t, "empty.toml", "# nothing set\n")
	c, err := Load(path, false)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.path = path
	c.data, c.present = nil, false // how it was read, not what it says
	if !reflect.DeepEqual(c, want) {
		t.Errorf("empty file:\n got %+v\nwant %+v", c, want)
	}
}

func TestMissingExplicitConfigIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "typo.toml")
	_, err := Load(path, false)
	if err == nil {
		t.Fatal("Load(missing, explicit) succeeded")
	}
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q should be not-exist and name %s", err, path)
	}
}

func TestFullConfigLoadsEveryKey(t *testing.T) {
	c, err := Load(fullConfig, false)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen:                  "unix:/run/milter-grey/milter.sock",
		SocketMode:              "0600",
		AllowPublic:             true,
		SocketGroup:             "mail",
		User:                    "daemon",
		Group:                   "mail",
		ShutdownTimeout:         Duration(30 * time.Second),
		IdleTimeout:             Duration(20 * time.Minute),
		MaxSessions:             50,
		DecisionTimeout:         Duration(2 * time.Second),
		AdminListen:             "inet:127.0.0.1:10126",
		Store:                   "/srv/milter-grey/db",
		SyncWrites:              true,
		RedisPrefix:             "mx-test:",
		OnError:                 "tempfail",
		Delay:                   Duration(10 * time.Minute),
		RetryWindow:             Duration(3 * day),
		MaxAge:                  Duration(42 * day),
		IPv4Mask:                32,
		IPv6Mask:                48,
		RecipientDelimiter:      "+-",
		AutoWhitelist:           0,
		Reply:                   "450 4.2.0 Greylisted for {seconds}s, come back later",
		AddHeader:               false,
		Hostname:                "mx1.example.net",
		DryRun:                  true,
		TrustedNetworks:         []string{"10.0.0.0/8", "192.0.2.1", "2001:db8::/32"},
		WhitelistClients:        []string{"mail.example.com", ".google.com", `/^mta[0-9]+\.example\.org$/`},
		WhitelistClientFiles:    []string{"../testdata/config/whitelist_clients"},
		WhitelistRecipients:     []string{"postmaster@", "abuse@example.net"},
		WhitelistRecipientFiles: []string{"../testdata/config/whitelist_recipients"},
		NeverAutoWhitelist:      []string{"198.51.100.0/24"},
		NeverAutoWhitelistFiles: []string{"../testdata/config/never_auto_whitelist"},
		ReloadInterval:          Duration(time.Minute),
		BypassSenderFiles:       []string{"../testdata/access/nogreylist-senders"},
		DKIMAlignment:           "strict",
		DKIMMaxSignatures:       3,
		DKIMMaxBytes:            1 << 20,
		DNSServer:               "127.0.0.1:5353",
		DNSTimeout:              Duration(time.Second),
		Greylist:                "everyone",
		GreylistTriggers:        []string{"dnsbl", "no-fcrdns"},
		DNSBLZones:              []string{"bl.example=127.0.0.2,127.0.0.4/30"},
		DNSWLZones:              []string{"wl.example"},
		DynamicNameFile:         "../testdata/config/dynamic_names",
		SPFKeyDropsLocalPart:    true,
		DomainTrust:             5,
		NeverTrustDomains:       []string{"freemail.example"},
		NeverTrustDomainFiles:   []string{"../testdata/config/never_trust_domains"},
		LogFormat:               "json",
		LogOutput:               "syslog",
		LogLevel:                "debug",
		SyslogFacility:          "local3",
		path:                    fullConfig,
	}
	rc, rw, rd := reflect.ValueOf(c).Elem(), reflect.ValueOf(want).Elem(), reflect.ValueOf(Default()).Elem()
	for key, i := range tomlKeys(t) {
		t.Run(key, func(t *testing.T) {
			got, w := rc.Field(i).Interface(), rw.Field(i).Interface()
			if !reflect.DeepEqual(got, w) {
				t.Errorf("%s = %#v, want %#v", key, got, w)
			}
			if reflect.DeepEqual(got, rd.Field(i).Interface()) {
				t.Errorf("%s: full.toml should set it to a value other than the default %#v", key, got)
			}
		})
	}
}

func TestFullConfigLists(t *testing.T) {
	c, err := Load(fullConfig, false)
	if err != nil {
		t.Fatal(err)
	}
	l, _, err := c.LoadLists()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("inline and file entries are counted", func(t *testing.T) {
		for _, n := range []struct {
			list      string
			got, want int
		}{
			{"trusted", l.Trusted.Len(), 3},
			{"clients", l.Clients.Len(), 3 + 3},
			{"recipients", l.Recipients.Len(), 2 + 2},
			{"never auto-whitelist", l.NeverAutoWhitelist.Len(), 1 + 1},
			{"never trust", l.NeverTrustDomains.Len(), 1 + 1},
			{"dynamic names (the file's pattern and exception, not the shipped list)", l.DynamicNames.(*greylist.NamePatterns).Len(), 2},
		} {
			if n.got != n.want {
				t.Errorf("%s: Len = %d, want %d", n.list, n.got, n.want)
			}
		}
	})
	ip := netip.MustParseAddr
	for _, tc := range []struct {
		name string
		ok   bool
		want bool
	}{
		{"trusted: a CIDR entry", matched(l.Trusted.Match(ip("10.1.2.3"))), true},
		{"trusted: a bare address is that address only", matched(l.Trusted.Match(ip("192.0.2.2"))), false},
		{"clients: a CIDR from the file", matched(l.Clients.Match(ip("203.0.113.9"), "")), true},
		{"clients: a regexp from the file", matched(l.Clients.Match(ip("192.0.2.77"), "smtp-out12.example.com")), true},
		{"clients: a host name from the file matches its subdomains", matched(l.Clients.Match(ip("192.0.2.77"), "a.outbound.example-farm.net")), true},
		{"clients: the rest of a file line is not an entry", matched(l.Clients.Match(ip("192.0.2.77"), "their")), false},
		{"clients: an inline regexp", matched(l.Clients.Match(ip("192.0.2.77"), "mta7.example.org")), true},
		{"recipients: an address from the file", matched(l.Recipients.Match("sales@example.net")), true},
		{"recipients: an inline user in any domain", matched(l.Recipients.Match("postmaster@example.org")), true},
		{"recipients: .domain from the file is subdomains only", matched(l.Recipients.Match("x@lists.example.net")), false},
		{"never auto-whitelist: .domain from the file", matched(l.NeverAutoWhitelist.Match(ip("192.0.2.1"), "mail-x.outlook.com")), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.ok != tc.want {
				t.Errorf("Match = %v, want %v", tc.ok, tc.want)
			}
		})
	}
}

func matched(_ string, ok bool) bool { return ok }

// Each error in a configuration file names the file, the line and the key,
// as "PATH:LINE: KEY: message", so that an admin can jump to it.
func TestConfigErrorsNameFileLineAndKey(t *testing.T) {
	const head = "# milter-grey test\nhostname = \"mx.example.net\"\n" // lines 1 and 2
	for _, tc := range []struct {
		name string
		body string // appended to head: its first line is line 3
		line int
		key  string // "" for a syntax error without a key
		text string
	}{
		{"an unknown key", `delya = "5m"`, 3, "delya", "unknown key"},
		{"an unknown key after others", "delay = \"5m\"\n\nretry_windw = \"2d\"", 5, "retry_windw", "unknown key"},
		{"an unknown table", "[greylisting]\ndelay = \"5m\"", 3, "greylisting", "unknown key"},
		{"a greylist scope", `greylist = "some"`, 3, "greylist", `"some"`},
		{"a trigger", `greylist_triggers = ["dnsbl", "rdns"]`, 3, "greylist_triggers", `"rdns"`},
		{"a DNSBL zone's code", "\ndnsbl_zones = [\"bl.example=127.0.0.300\"]", 4, "dnsbl_zones", "127.0.0.300"},
		{"a DNSWL zone", `dnswl_zones = ["not a zone"]`, 3, "dnswl_zones", "not a zone"},
		{"domain trust", `domain_trust = -1`, 3, "domain_trust", "-1"},
		{"a never-trust domain", `never_trust_domains = ["a@b"]`, 3, "never_trust_domains", "a@b"},
		{"a duration in words", `delay = "5 minutes"`, 3, "delay", `bad duration "5 minutes"`},
		{"a duration as a bare number", `delay = 300`, 3, "delay", `bad duration "300"`},
		{"a negative duration", `idle_timeout = "-1m"`, 3, "idle_timeout", "-1m"},
		{"a zero duration", `shutdown_timeout = "0s"`, 3, "shutdown_timeout", "must be positive"},
		{"a string for a number", `ipv4_mask = "24"`, 3, "ipv4_mask", "incompatible types"},
		{"a number for a string", `socket_mode = 0o660`, 3, "socket_mode", "incompatible types"},
		{"a string for a list", `whitelist_recipients = "vip@"`, 3, "whitelist_recipients", "incompatible types"},
		{"a bad CIDR in trusted_networks", `trusted_networks = ["10.0.0.0/8", "10.0.0.0/33"]`, 3, "trusted_networks", `bad CIDR "10.0.0.0/33"`},
		{"a bad regexp in whitelist_clients", `whitelist_clients = ["/mta(/"]`, 3, "whitelist_clients", "bad regexp /mta(/"},
		{"a bad recipient entry", `whitelist_recipients = ["vip@", "@"]`, 3, "whitelist_recipients", `bad recipient "@"`},
		{"a bad never_auto_whitelist entry", `never_auto_whitelist = ["bad name"]`, 3, "never_auto_whitelist", "bad host name"},
		{"retry_window equal to delay", "delay = \"10m\"\nretry_window = \"10m\"", 4, "retry_window", "must be longer than delay"},
		{"retry_window shorter than delay", "retry_window = \"4m\"", 3, "retry_window", "must be longer than delay"},
		{"max_age shorter than retry_window", "retry_window = \"3d\"\nmax_age = \"2d\"", 4, "max_age", "must be at least retry_window"},
		{"ipv4_mask above 32", `ipv4_mask = 33`, 3, "ipv4_mask", "/33"},
		{"ipv4_mask zero", `ipv4_mask = 0`, 3, "ipv4_mask", "/0"},
		{"ipv6_mask zero", `ipv6_mask = 0`, 3, "ipv6_mask", "/0"},
		{"ipv6_mask above 128", `ipv6_mask = 129`, 3, "ipv6_mask", "/129"},
		{"on_error neither accept nor tempfail", `on_error = "maybe"`, 3, "on_error", `"maybe"`},
		{"log_format neither text nor json", `log_format = "xml"`, 3, "log_format", `"xml"`},
		{"log_output neither stderr nor syslog", `log_output = "file"`, 3, "log_output", `"file"`},
		{"an unknown log_level", `log_level = "loud"`, 3, "log_level", `"loud"`},
		{"a syslog_facility syslog does not know", `syslog_facility = "local8"`, 3, "syslog_facility", `"local8"`},
		{"syslog_facility kern", `syslog_facility = "kern"`, 3, "syslog_facility", `"kern"`},
		{"socket_mode not octal", `socket_mode = "999"`, 3, "socket_mode", `"999"`},
		{"socket_mode above 0777", `socket_mode = "01777"`, 3, "socket_mode", `"01777"`},
		{"a user name with a space", `user = "mail grey"`, 3, "user", "not a user or group name"},
		{"a socket_group with a colon", `socket_group = "postfix:postfix"`, 3, "socket_group", "not a user or group name"},
		{"group without user", `group = "mail"`, 3, "group", "needs user"},
		{"listen of an unknown kind", `listen = "tcp:foo"`, 3, "listen", `unknown socket type "tcp"`},
		{"listen with a port out of range", `listen = "inet:127.0.0.1:99999"`, 3, "listen", `bad port "99999"`},
		{"listen on a relative unix path", `listen = "unix:milter.sock"`, 3, "listen", "absolute"},
		{"a 5xx greylist_reply", `greylist_reply = "550 5.7.1 Go away"`, 3, "greylist_reply", `"550 5.7.1 Go away"`},
		{"a greylist_reply whose classes differ", `greylist_reply = "451 5.7.1 Greylisted"`, 3, "greylist_reply", "4XX 4.X.X"},
		{"recipient_delimiter with an @", `recipient_delimiter = "@"`, 3, "recipient_delimiter", "'@'"},
		{"a negative auto_whitelist", `auto_whitelist = -1`, 3, "auto_whitelist", "0 (off) or more"},
		{"an empty store", `store = ""`, 3, "store", "directory"},
		{"admin_listen of an unknown kind", `admin_listen = "http://127.0.0.1:10092"`, 3, "admin_listen", `unknown socket type "http"`},
		{"admin_listen on the milter socket", "listen = \"inet:127.0.0.1:10091\"\nadmin_listen = \"inet:10091@127.0.0.1\"", 4, "admin_listen", "is the milter socket"},
		{"admin_listen off loopback", `admin_listen = "inet:192.0.2.1:10092"`, 3, "admin_listen", "allow_public_listen"},
		{"dry_run not a boolean", `dry_run = "yes"`, 3, "dry_run", "incompatible types"},
		{"a key set twice", "delay = \"5m\"\ndelay = \"6m\"", 4, "delay", "already been defined"},
		{"a TOML syntax error", "delay = 5m", 3, "", ""},
		{"an unterminated string", "delay = \"5m\nretry_window = \"2d\"", 3, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "milter-grey.toml", head+tc.body+"\n")
			c, err := Load(path, false)
			if err == nil {
				t.Fatalf("Load succeeded: %+v", c)
			}
			msg := err.Error()
			loc := path + ":" + strconv.Itoa(tc.line) + ": "
			if !strings.HasPrefix(msg, loc) {
				t.Errorf("error %q does not start with %q", msg, loc)
			}
			if tc.key != "" && !strings.HasPrefix(msg, loc+tc.key+": ") {
				t.Errorf("error %q does not name key %s after the line", msg, tc.key)
			}
			if !strings.Contains(msg, tc.text) {
				t.Errorf("error %q does not say %q", msg, tc.text)
			}
			var ce *configError
			if !errors.As(err, &ce) {
				t.Errorf("error %T is not a *configError", err)
			}
		})
	}
}

// A list file line that cannot be parsed does not stop the configuration
// from loading: it is skipped and reported at its own file and line, with
// its value, and the file's other entries load.
func TestListFileBadLinesAreSkippedAndReported(t *testing.T) {
	for _, tc := range []struct {
		name  string
		key   string
		lines string
		line  int
		value string
		text  string
		count func(*greylist.Lists) int
	}{
		{"a bad recipient", "whitelist_recipient_files", "# recipients\nvip@\n@ # oops\n", 3, "@", `bad recipient "@"`,
			func(l *greylist.Lists) int { return l.Recipients.Len() }},
		{"a bad client regexp", "whitelist_client_files", "mail.example.com\n\n\n/(/\n", 4, "/(/", "bad regexp",
			func(l *greylist.Lists) int { return l.Clients.Len() }},
		{"a bad client CIDR", "never_auto_whitelist_files", "10.0.0.0/40\n192.0.2\n", 1, "10.0.0.0/40", "bad CIDR",
			func(l *greylist.Lists) int { return l.NeverAutoWhitelist.Len() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			list := filepath.Join(dir, "list")
			if err := os.WriteFile(list, []byte(tc.lines), 0o644); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "milter-grey.toml")
			if err := os.WriteFile(path, []byte(tc.key+" = ["+strconv.Quote(list)+"]\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path, false)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			l, notes, err := c.LoadLists()
			if err != nil {
				t.Fatalf("LoadLists: %v", err)
			}
			if n := tc.count(l); n != 1 {
				t.Errorf("%d entries loaded, want the file's one good entry", n)
			}
			if len(notes.Lists.Skipped) != 1 {
				t.Fatalf("skipped lines %v, want one", notes.Lists.Skipped)
			}
			s := notes.Lists.Skipped[0]
			if s.File != list || s.Line != tc.line || s.Value != tc.value || !strings.Contains(s.Error(), tc.text) {
				t.Errorf("skipped %+v (%v), want %s:%d value %q saying %q", s, s, list, tc.line, tc.value, tc.text)
			}
		})
	}
}

// A list file named with the "?" prefix may be absent, as Postgrey's
// ".local" files may; a relative one is relative to the configuration.
func TestOptionalListFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "milter-grey.toml")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`whitelist_client_files = ["?clients.local", "?` + filepath.Join(dir, "absent") + `"]` + "\n")
	c, err := Load(path, false)
	if err != nil {
		t.Fatalf("Load with absent optional files: %v", err)
	}
	want := []string{"?" + filepath.Join(dir, "clients.local"), "?" + filepath.Join(dir, "absent")}
	if !slices.Equal(c.WhitelistClientFiles, want) {
		t.Errorf("files resolved to %q, want %q", c.WhitelistClientFiles, want)
	}
	_, notes, err := c.LoadLists()
	if err != nil || !slices.Equal(notes.Lists.Absent, []string{filepath.Join(dir, "clients.local"), filepath.Join(dir, "absent")}) {
		t.Errorf("LoadLists: absent %q, err %v; want both files absent, no error", notes.Lists.Absent, err)
	}
	if files := c.ListFiles(); !slices.Equal(files, []string{filepath.Join(dir, "clients.local"), filepath.Join(dir, "absent")}) {
		t.Errorf("watched files %q, want the paths without the prefix", files)
	}

	if err := os.WriteFile(filepath.Join(dir, "clients.local"), []byte("192.0.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, notes, err := c.LoadLists()
	if err != nil || len(notes.Lists.Absent) != 1 || l.Clients.Len() != 1 {
		t.Errorf("after creating clients.local: %d entries, absent %q, err %v; want 1, one, none", l.Clients.Len(), notes.Lists.Absent, err)
	}
}

func TestMissingListFileIsAnError(t *testing.T) {
	list := filepath.Join(t.TempDir(), "absent")
	path := writeFile(t, "milter-grey.toml", "whitelist_client_files = ["+strconv.Quote(list)+"]\n")
	c, err := Load(path, false)
	if err != nil {
		t.Fatalf("Load read the list file: %v", err)
	}
	_, _, err = c.LoadLists()
	if err == nil {
		t.Fatal("LoadLists succeeded")
	}
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), list) {
		t.Errorf("error %q should be not-exist and name %s", err, list)
	}
}

// Load reads the configuration file and nothing else: list files that do
// not exist and accounts that do not exist load, and are errors only when
// LoadLists and LookupAccounts look for them.
func TestLoadReadsOnlyTheConfigurationFile(t *testing.T) {
	absent := filepath.Join(t.TempDir(), "absent")
	for _, key := range []string{"whitelist_client_files", "whitelist_recipient_files", "never_auto_whitelist_files", "bypass_sender_files"} {
		t.Run(key, func(t *testing.T) {
			name := absent
			if key == "bypass_sender_files" {
				name = "hash:" + absent // as copied from main.cf
			}
			path := writeFile(t, "milter-grey.toml", key+" = ["+strconv.Quote(name)+"]\n")
			c, err := Load(path, false)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if _, _, err := c.LoadLists(); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), key) {
				t.Errorf("LoadLists: %v, want not-exist naming %s", err, key)
			}
		})
	}
	t.Run("accounts", func(t *testing.T) {
		path := writeFile(t, "milter-grey.toml", "user = \"no-such-user-mg\"\ngroup = \"no-such-group-mg\"\n")
		c, err := Load(path, false)
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if _, _, err := c.LookupAccounts(); err == nil || !strings.HasPrefix(err.Error(), path+":1: user: ") {
			t.Errorf("LookupAccounts: %v, want %s:1: user: …", err, path)
		}
	})
}

// A bypass file may be named with the table type copied from main.cf;
// a relative name after it is relative to the configuration's directory,
// as without one.
func TestBypassFileWithTableType(t *testing.T) {
	dir := t.TempDir()
	list, err := os.ReadFile("../testdata/access/nogreylist-senders")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nogreylist-senders"), list, 0o644); err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(dir, "nogreylist-senders")
	for _, name := range []string{"hash:" + abs, "texthash:nogreylist-senders", "proxy:hash:nogreylist-senders", "nogreylist-senders", abs} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, "milter-grey.toml")
			c := writeAndLoad(t, path, "bypass_sender_files = ["+strconv.Quote(name)+"]\n")
			l, _, err := c.LoadLists()
			if err != nil {
				t.Fatal(err)
			}
			if l.Bypass == nil || l.Bypass.Len() != 1 {
				t.Errorf("bypass list %+v, want the one entry of the file", l.Bypass)
			}
		})
	}
	t.Run("an unsupported type is reported as such", func(t *testing.T) {
		path := filepath.Join(dir, "milter-grey.toml")
		c := writeAndLoad(t, path, "bypass_sender_files = [\"cidr:nogreylist-senders\"]\n")
		if _, _, err := c.LoadLists(); err == nil || !strings.Contains(err.Error(), "table type cidr: is not supported") {
			t.Errorf("error %v, want table type cidr: is not supported", err)
		}
	})
	t.Run("a pcre: table, relative to the configuration", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(dir, "senders.pcre"), []byte("/^postmaster@/ OK\n/@example\\.com$/ OK\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "milter-grey.toml")
		c := writeAndLoad(t, path, "bypass_sender_files = [\"pcre:senders.pcre\", \"hash:nogreylist-senders\"]\n")
		l, _, err := c.LoadLists()
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := l.Bypass.Lookup(envelope.Parse("postmaster@example.org")); !ok || m.File != filepath.Join(dir, "senders.pcre") || m.Line != 1 {
			t.Errorf("Lookup = %+v, %v; want line 1 of senders.pcre", m, ok)
		}
	})
	t.Run("a pattern RE2 cannot match is skipped with file and line", func(t *testing.T) {
		pcre := filepath.Join(dir, "bad.pcre")
		if err := os.WriteFile(pcre, []byte("# partners\n/^(?!noreply@).*@partner\\.test$/ OK\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "milter-grey.toml")
		c := writeAndLoad(t, path, "bypass_sender_files = [\"pcre:bad.pcre\"]\n")
		_, notes, err := c.LoadLists()
		if err != nil {
			t.Fatal(err)
		}
		if len(notes.Bypass) != 1 || !notes.Bypass[0].Skipped || !strings.HasPrefix(notes.Bypass[0].String(), pcre+":2: ") ||
			!strings.Contains(notes.Bypass[0].Msg, "lookahead") {
			t.Errorf("notes %+v, want %s:2 skipped and lookahead", notes.Bypass, pcre)
		}
	})
}
