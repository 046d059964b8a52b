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
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: milter-grey [serve|check-config|version] [-config FILE]\n")
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
		fmt.Fprintf(stdout, "%s: OK\n", c.path)
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
