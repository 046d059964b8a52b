package config

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/internal/sockspec"
	"github.com/milter-grey/milter-grey/milter"
)

// validate checks values the TOML types do not: ranges, names, addresses
// and inline list entries. It does no I/O. c.data is the file's text for
// line numbers (nil when only defaults apply).
func (c *Config) validate() error {
	fail := func(key string, format string, args ...any) error {
		return c.KeyError(key, fmt.Errorf(format, args...))
	}
	if _, _, err := sockspec.Parse(c.Listen); err != nil {
		return fail("listen", "%v", err)
	}
	if _, err := ParseMode(c.SocketMode); err != nil {
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
		network, address, err := sockspec.Parse(c.AdminListen)
		mnet, maddr, _ := sockspec.Parse(c.Listen)
		switch {
		case err != nil:
			return fail("admin_listen", "%v", err)
		case network == mnet && address == maddr && !strings.HasSuffix(address, ":0"):
			return fail("admin_listen", "%q is the milter socket (listen)", c.AdminListen)
		case network == "tcp" && !sockspec.IsLoopback(address) && !c.AllowPublic:
			return fail("admin_listen", "%s is not a loopback address; anyone who reaches it can read the greylist "+
				"(set allow_public_listen = true if a firewall protects it)", address)
		}
	}
	if err := CheckStore(c.Store); err != nil {
		return fail("store", "%v", err)
	}
	if c.OnError != "accept" && c.OnError != "tempfail" {
		return fail("on_error", "%q: want \"accept\" or \"tempfail\"", c.OnError)
	}
	if c.Delay <= 0 {
		return fail("delay", "must be positive")
	}
	if c.RetryWindow <= c.Delay {
		return fail("retry_window", "%s must be longer than delay (%s)", c.RetryWindow, c.Delay)
	}
	if c.MaxAge < c.RetryWindow {
		return fail("max_age", "%s must be at least retry_window (%s)", c.MaxAge, c.RetryWindow)
	}
	for _, d := range []struct {
		key string
		v   Duration
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
		return fail("dns_timeout", "%s must be positive and shorter than decision_timeout (%s)", c.DNSTimeout, c.DecisionTimeout)
	}
	if err := milter.ValidateReply(c.Reply); err != nil {
		return fail("greylist_reply", "%v", err)
	}
	if _, err := greylist.ParseScope(c.Greylist); err != nil {
		return fail("greylist", "%v", err)
	}
	if _, err := greylist.ParseTriggers(c.GreylistTriggers); err != nil {
		return fail("greylist_triggers", "%v", err)
	}
	for _, z := range []struct {
		key   string
		zones []string
	}{{"dnsbl_zones", c.DNSBLZones}, {"dnswl_zones", c.DNSWLZones}} {
		if _, err := parseZones(z.zones); err != nil {
			return fail(z.key, "%v", err)
		}
	}
	if c.DomainTrust < 0 || c.DomainTrust > 10000 {
		return fail("domain_trust", "%d: want 0 (off) to 10000", c.DomainTrust)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fail("log_format", "%q: want \"text\" or \"json\"", c.LogFormat)
	}
	if c.LogOutput != "stderr" && c.LogOutput != "syslog" {
		return fail("log_output", "%q: want \"stderr\" or \"syslog\"", c.LogOutput)
	}
	if _, err := ParseLevel(c.LogLevel); err != nil {
		return fail("log_level", "%v", err)
	}
	if _, err := ParseFacility(c.SyslogFacility); err != nil {
		return fail("syslog_facility", "%v", err)
	}
	// The inline list entries; the files are read by LoadLists.
	if _, err := c.inlineLists(); err != nil {
		return err
	}
	return nil
}

// accountNameRe is what user, group and socket_group accept: the
// portable POSIX names (and the Debian extensions "." and a final "$"),
// or a number.
var accountNameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\$?$`)

// ParseMode reads socket_mode: an octal file mode such as "0660".
func ParseMode(s string) (os.FileMode, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("%q is not an octal file mode like \"0660\"", s)
	}
	return os.FileMode(m), nil
}

// ParseLevel reads log_level: debug, info, warn or error, in any case.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q: want debug, info, warn or error", s)
	}
	return l, nil
}

// ParseFacility reads syslog_facility, a syslog facility by its
// syslog.conf(5) name, and returns its code (RFC 5424: mail is 2, local0
// is 16). kern is not among them: syslog daemons do not believe a process
// that claims it.
func ParseFacility(s string) (int, error) {
	switch s {
	case "user":
		return 1, nil
	case "mail":
		return 2, nil
	case "daemon":
		return 3, nil
	case "auth":
		return 4, nil
	case "syslog":
		return 5, nil
	case "lpr":
		return 6, nil
	case "news":
		return 7, nil
	case "uucp":
		return 8, nil
	case "cron":
		return 9, nil
	case "authpriv":
		return 10, nil
	case "ftp":
		return 11, nil
	}
	if n, ok := strings.CutPrefix(s, "local"); ok && len(n) == 1 && n[0] >= '0' && n[0] <= '7' {
		return 16 + int(n[0]-'0'), nil
	}
	return 0, fmt.Errorf("%q: want mail, daemon, user, local0 to local7, or another syslog facility "+
		"(auth, authpriv, cron, ftp, lpr, news, syslog, uucp)", s)
}
