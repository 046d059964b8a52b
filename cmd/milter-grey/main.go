// Command milter-grey is a greylisting milter for Postfix and Sendmail.
//
// Usage:
//
//	milter-grey [-config FILE]               serve
//	milter-grey check-config [-config FILE]  validate the configuration
//	milter-grey version
//
// See README.md for the configuration keys and the MTA set-up.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("milter-grey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", DefaultConfigPath, "configuration `file` (TOML)")
	from := fs.String("from", "", "copy-store: the `store` to read (Badger directory or Redis URL; default: the configured store)")
	to := fs.String("to", "", "copy-store: the `store` to write")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: milter-grey [serve|check-config|version] [-config FILE]\n"+
			"       milter-grey copy-store [-config FILE] [-from STORE] -to STORE\n")
		fs.PrintDefaults()
	}
	// Flags may stand before or after the command.
	err := fs.Parse(args)
	cmd := "serve"
	if err == nil && fs.NArg() > 0 {
		cmd = fs.Arg(0)
		err = fs.Parse(fs.Args()[1:])
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "milter-grey: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })

	switch cmd {
	case "version":
		fmt.Fprintln(stdout, "milter-grey", version())
		return 0
	case "check-config":
		c, err := loadConfig(*configPath, !explicit)
		if err != nil {
			fmt.Fprintf(stderr, "milter-grey: %v\n", err)
			return 1
		}
		if !c.present {
			fmt.Fprintf(stdout, "%s: not found; the defaults apply and are valid\n", c.path)
			return 0
		}
		_, warnings, _ := c.listsWarn() // errors were reported by loadConfig
		for _, w := range warnings {
			fmt.Fprintf(stdout, "warning: %s\n", w)
		}
		fmt.Fprintf(stdout, "%s: OK\n", c.path)
		return 0
	case "copy-store":
		c, err := loadConfig(*configPath, !explicit)
		if err != nil {
			fmt.Fprintf(stderr, "milter-grey: %v\n", err)
			return 1
		}
		src := *from
		if src == "" {
			src = c.Store
		}
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		n, err := copyStore(c, src, *to, log)
		if err != nil {
			fmt.Fprintf(stderr, "milter-grey: %v (%d records copied)\n", err, n)
			return 1
		}
		fmt.Fprintf(stdout, "copied %d records from %s to %s\n", n, redactSpec(src), redactSpec(*to))
		return 0
	case "serve":
		c, err := loadConfig(*configPath, !explicit)
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
	fmt.Fprintf(stderr, "milter-grey: unknown command %q\n", cmd)
	fs.Usage()
	return 2
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
