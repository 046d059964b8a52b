// Command milter-grey is a greylisting milter for Postfix and Sendmail.
//
// Usage:
//
//	milter-grey [-config FILE]               serve
//	milter-grey check-config [-config FILE]  validate the configuration
//	milter-grey copy-store -to STORE         copy the records to another store
//	milter-grey list|show|delete|pass|explain|dump|restore|stats|never-retried
//	                                         admin commands, through the
//	                                         running daemon's admin_listen
//	milter-grey import postgrey|milter-greylist FILE…
//	                                         import another greylister's
//	                                         triplets, through it too
//	milter-grey version
//
// See README.md for the commands, the configuration keys and the MTA
// set-up.
//
// The configuration file is package config's business. Here, main.go
// holds the commands and their flags; daemon.go the daemon's life from
// start to stop, calling in order the steps of listen.go, privileges.go
// and store.go, and wiring.go to turn the configuration into the engine's
// and the milter server's settings; admincmd.go the admin commands, which
// talk to the running daemon.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/milter-grey/milter-grey/config"
	"github.com/milter-grey/milter-grey/internal/redact"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the values of every command's flags; each command defines
// the flags it takes.
type options struct {
	config   string
	explicit bool // -config was given
	admin    string
	from, to string // copy-store: stores; explain: addresses
	client   string
	sender   string
	rcpt     string
	state    string
	kind     string
	limit    int
	json     bool
	all      bool
	helo     string
	name     string
	authUser string
	imp      importOptions
}

// command is one sub-command of milter-grey.
type command struct {
	name    string
	usage   string // what follows "milter-grey NAME" in the usage line
	summary string
	// flags defines the command's flags on fs, bound to o.
	flags func(fs *flag.FlagSet, o *options)
	// args says how many arguments follow the flags: "" none, else their
	// name in the usage, and positional arguments are allowed.
	args string
	run  func(o *options, args []string, stdout, stderr io.Writer) int
}

func configFlag(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.config, "config", config.DefaultPath, "configuration `file` (TOML)")
}

func adminFlags(fs *flag.FlagSet, o *options) {
	configFlag(fs, o)
	fs.StringVar(&o.admin, "admin", "", "the daemon's admin `address` (HOST:PORT or unix:/path; default: admin_listen of the configuration)")
}

// filterFlags defines the flags of a filter; all adds -state and -kind.
func filterFlags(fs *flag.FlagSet, o *options, all bool) {
	fs.StringVar(&o.client, "client", "", "client `IP`, network (CIDR) or spf:DOMAIN")
	fs.StringVar(&o.sender, "sender", "", "sender `address` or domain (<> for the null sender)")
	fs.StringVar(&o.rcpt, "rcpt", "", "recipient `address` or domain")
	if all {
		fs.StringVar(&o.state, "state", "", "`state`: pending, passed, never-retried, auto-whitelisted or counting")
		fs.StringVar(&o.kind, "kind", "", "`kind` of record: triplet or client")
	}
}

func commands() []*command {
	return []*command{
		{
			name: "serve", usage: "[-config FILE]", summary: "run the daemon (the default command)",
			flags: func(fs *flag.FlagSet, o *options) { configFlag(fs, o) },
			run:   runServe,
		},
		{
			name: "check-config", usage: "[-config FILE]", summary: "validate a configuration and exit",
			flags: func(fs *flag.FlagSet, o *options) { configFlag(fs, o) },
			run:   runCheckConfig,
		},
		{
			name: "copy-store", usage: "[-config FILE] [-from STORE] -to STORE", summary: "copy every record to another store (daemon stopped)",
			flags: func(fs *flag.FlagSet, o *options) {
				configFlag(fs, o)
				fs.StringVar(&o.from, "from", "", "the `store` to read (Badger directory or Redis URL; default: the configured store)")
				fs.StringVar(&o.to, "to", "", "the `store` to write")
			},
			run: runCopyStore,
		},
		{
			name: "list", usage: "[-client X] [-sender X] [-rcpt X] [-state S] [-kind K] [-limit N] [-json]",
			summary: "list records (a table, or JSON lines)",
			flags: func(fs *flag.FlagSet, o *options) {
				adminFlags(fs, o)
				filterFlags(fs, o, true)
				fs.IntVar(&o.limit, "limit", 0, "list at most `N` records (0: all)")
				fs.BoolVar(&o.json, "json", false, "print JSON lines")
			},
			run: runList,
		},
		{
			name: "never-retried", usage: "[-client X] [-sender X] [-rcpt X] [-limit N] [-json]",
			summary: "list triplets whose retry window closed without a retry",
			flags: func(fs *flag.FlagSet, o *options) {
				adminFlags(fs, o)
				filterFlags(fs, o, false)
				fs.IntVar(&o.limit, "limit", 0, "list at most `N` records (0: all)")
				fs.BoolVar(&o.json, "json", false, "print JSON lines")
			},
			run: runNeverRetried,
		},
		{
			name: "show", usage: "[-json] KEY", summary: "show one record", args: "KEY",
			flags: func(fs *flag.FlagSet, o *options) {
				adminFlags(fs, o)
				fs.BoolVar(&o.json, "json", false, "print JSON")
			},
			run: runShow,
		},
		{
			name: "delete", usage: "KEY | -client X -sender X -rcpt X -state S -kind K | -all",
			summary: "delete one record, or every record a filter selects", args: "KEY",
			flags: func(fs *flag.FlagSet, o *options) {
				adminFlags(fs, o)
				filterFlags(fs, o, true)
				fs.BoolVar(&o.all, "all", false, "with no filter: delete every record")
			},
			run: runDelete,
		},
		{
			name: "pass", usage: "[-json] -client IP [-sender ADDR] -rcpt ADDR | [-json] KEY | [-json] d:DOMAIN",
			summary: "mark a triplet passed (its mail passes at once from now on), or trust a proven domain (d:DOMAIN)", args: "KEY",
			flags: func(fs *flag.FlagSet, o *options) {
				adminFlags(fs, o)
				fs.StringVar(&o.client, "client", "", "client `IP` (keyed by its network), network (CIDR) or spf:DOMAIN")
				fs.StringVar(&o.sender, "sender", "", "sender `address` (empty or <> for the null sender)")
				fs.StringVar(&o.rcpt, "rcpt", "", "recipient `address`")
				fs.BoolVar(&o.json, "json", false, "print JSON")
			},
			run: runPass,
		},
		{
			name: "explain", usage: "-client IP [-helo NAME] [-from ADDR] -to ADDR [-name HOST] [-auth USER] [-json]",
			summary: "say what the daemon would answer now, and why, changing nothing",
			flags: func(fs *flag.FlagSet, o *options) {
				adminFlags(fs, o)
				fs.StringVar(&o.client, "client", "", "the client's `IP` address")
				fs.StringVar(&o.helo, "helo", "", "the client's HELO `name`")
				fs.StringVar(&o.from, "from", "", "envelope sender `address` (empty or <> for the null sender)")
				fs.StringVar(&o.to, "to", "", "recipient `address`")
				fs.StringVar(&o.name, "name", "", "the client's confirmed host `name`, if it has one")
				fs.StringVar(&o.authUser, "auth", "", "the SASL login `user`, for an authenticated session")
				fs.BoolVar(&o.json, "json", false, "print JSON")
			},
			run: runExplain,
		},
		{
			name: "dump", usage: "> FILE", summary: "write every record, with its remaining lifetime, as JSON lines",
			flags: adminFlags,
			run:   runDump,
		},
		{
			name: "restore", usage: "[FILE] (default: standard input)", summary: "write the records of a dump back", args: "FILE",
			flags: adminFlags,
			run:   runRestore,
		},
		importCommand(),
		{
			name: "stats", usage: "[-json]", summary: "count the records by state; store and sessions",
			flags: func(fs *flag.FlagSet, o *options) {
				adminFlags(fs, o)
				fs.BoolVar(&o.json, "json", false, "print JSON")
			},
			run: runStats,
		},
		{
			name: "version", summary: "print the version",
			flags: func(*flag.FlagSet, *options) {},
			run: func(_ *options, _ []string, stdout, _ io.Writer) int {
				fmt.Fprintln(stdout, "milter-grey", version())
				return 0
			},
		},
	}
}

// usage prints the synopsis of every command.
func usage(w io.Writer, cmds []*command) {
	fmt.Fprintln(w, "usage: milter-grey [COMMAND] [-config FILE] [flags]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nflags common to the commands:")
	fmt.Fprintf(w, "  -config FILE   configuration file (default %s)\n", config.DefaultPath)
	fmt.Fprintln(w, "  -admin ADDR    admin commands: the daemon's admin address, instead of admin_listen")
	fmt.Fprintln(w, "\n'milter-grey COMMAND -h' lists the flags of a command.")
}

// run is main without the process exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	// Flags may stand before or after the command: a first pass with
	// every command's flags finds where the command is.
	var all options
	pre := flag.NewFlagSet("milter-grey", flag.ContinueOnError)
	pre.SetOutput(stderr)
	pre.Usage = func() { usage(stderr, cmds) }
	for _, c := range cmds {
		tmp := flag.NewFlagSet(c.name, flag.ContinueOnError)
		c.flags(tmp, &all)
		tmp.VisitAll(func(f *flag.Flag) {
			if pre.Lookup(f.Name) == nil {
				pre.Var(f.Value, f.Name, f.Usage)
			}
		})
	}
	err := pre.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	name, rest := "serve", args
	if pre.NArg() > 0 {
		i := len(args) - pre.NArg()
		name = args[i]
		rest = append(append([]string(nil), args[:i]...), args[i+1:]...)
	}
	var cmd *command
	for _, c := range cmds {
		if c.name == name {
			cmd = c
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "milter-grey: unknown command %q\n", name)
		usage(stderr, cmds)
		return 2
	}

	var o options
	fs := flag.NewFlagSet("milter-grey "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: milter-grey %s %s\n  %s\n", cmd.name, cmd.usage, cmd.summary)
		fs.PrintDefaults()
	}
	cmd.flags(fs, &o)
	// Arguments and flags may be mixed: parse up to each argument.
	var positional []string
	for {
		if err := fs.Parse(rest); errors.Is(err, flag.ErrHelp) {
			return 0
		} else if err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(positional) > 0 && cmd.args == "" {
		fmt.Fprintf(stderr, "milter-grey: unexpected argument %q\n", positional[0])
		fs.Usage()
		return 2
	}
	fs.Visit(func(f *flag.Flag) { o.explicit = o.explicit || f.Name == "config" })
	return cmd.run(&o, positional, stdout, stderr)
}

func runServe(o *options, _ []string, _, stderr io.Writer) int {
	c, err := config.Load(o.config, !o.explicit)
	if err != nil {
		fmt.Fprintf(stderr, "milter-grey: %v\n", err)
		return 1
	}
	if err := serve(c); err != nil {
		fmt.Fprintf(stderr, "milter-grey: %v\n", err)
		return 1
	}
	return 0
}

func runCheckConfig(o *options, _ []string, stdout, stderr io.Writer) int {
	c, err := config.Load(o.config, !o.explicit)
	if err != nil {
		fmt.Fprintf(stderr, "milter-grey: %v\n", err)
		return 1
	}
	if !c.Found() {
		fmt.Fprintf(stdout, "%s: not found; the defaults apply and are valid\n", c.Path())
		return 0
	}
	// What config.Load does not: the accounts, resolved on this host,
	// and the list files (as the user running check-config, who may not
	// be the daemon's).
	if _, _, err := c.LookupAccounts(); err != nil {
		fmt.Fprintf(stderr, "milter-grey: %v\n", err)
		return 1
	}
	_, notes, err := c.LoadLists()
	if err != nil {
		fmt.Fprintf(stderr, "milter-grey: %v\n", err)
		return 1
	}
	bad := len(notes.Lists.Skipped)
	for _, w := range notes.Bypass {
		if w.Skipped {
			bad++
			fmt.Fprintf(stderr, "milter-grey: %s\n", w)
			continue
		}
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	for _, path := range notes.Lists.Absent {
		fmt.Fprintf(stdout, "%s: optional list file absent; skipped\n", path)
	}
	// serve skips a line it cannot parse and runs; here it is a failure,
	// so that a broken list is seen before it is deployed.
	for _, e := range notes.Lists.Skipped {
		fmt.Fprintf(stderr, "milter-grey: %v (serve skips this line)\n", e)
	}
	if bad > 0 {
		fmt.Fprintf(stderr, "milter-grey: %s: %d list line(s) cannot be parsed\n", c.Path(), bad)
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK\n", c.Path())
	return 0
}

func runCopyStore(o *options, _ []string, stdout, stderr io.Writer) int {
	c, err := config.Load(o.config, !o.explicit)
	if err != nil {
		fmt.Fprintf(stderr, "milter-grey: %v\n", err)
		return 1
	}
	src := o.from
	if src == "" {
		src = c.Store
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := copyStore(c, src, o.to, log)
	if err != nil {
		fmt.Fprintf(stderr, "milter-grey: %v (%d records copied)\n", err, n)
		return 1
	}
	fmt.Fprintf(stdout, "copied %d records from %s to %s\n", n, redact.URL(src), redact.URL(o.to))
	return 0
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
