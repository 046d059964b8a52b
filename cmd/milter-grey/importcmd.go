package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/milter-grey/milter-grey/admin"
	"github.com/milter-grey/milter-grey/config"
	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/migrate"
)

// importOptions are the flags of import.
type importOptions struct {
	dryRun    bool
	delay     time.Duration
	autowhite time.Duration
	ipv4cidr  int
	ipv6cidr  int
}

// The systems import reads.
const (
	sourcePostgrey       = "postgrey"
	sourceMilterGreylist = "milter-greylist"
)

func importCommand() *command {
	return &command{
		name:    "import",
		usage:   "postgrey|milter-greylist [-dry-run] [-json] [-delay D] [-autowhite D] [-ipv4cidr N] [-ipv6cidr N] FILE…",
		summary: "import the triplets of Postgrey or milter-greylist, merged into the running daemon's",
		args:    "SOURCE FILE…",
		flags: func(fs *flag.FlagSet, o *options) {
			adminFlags(fs, o)
			fs.BoolVar(&o.imp.dryRun, "dry-run", false, "print the records instead of writing them")
			fs.BoolVar(&o.json, "json", false, "print JSON: with -dry-run the records as dump lines, then the summary")
			fs.Func("delay", "the greylisting `delay` the old daemon ran with, in seconds or as 5m (default: Postgrey's 300, milter-greylist's 30m)", func(s string) error {
				d, err := importDuration(s)
				o.imp.delay = d
				return err
			})
			fs.Func("autowhite", "milter-greylist: its autowhite `period`, in seconds or as 1d (default 24h)", func(s string) error {
				d, err := importDuration(s)
				o.imp.autowhite = d
				return err
			})
			fs.IntVar(&o.imp.ipv4cidr, "ipv4cidr", greylist.DefaultClientMask.IPv4, "Postgrey: its --ipv4cidr `N`")
			fs.IntVar(&o.imp.ipv6cidr, "ipv6cidr", greylist.DefaultClientMask.IPv6, "Postgrey: its --ipv6cidr `N`")
		},
		run: runImport,
	}
}

// importDuration reads a duration as the old daemons write theirs: a bare
// number is seconds (Postgrey's --delay, milter-greylist's times without a
// unit), else as in the configuration (5m, 1d).
func importDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return config.ParseDuration(s)
}

// importReport is the summary of an import, as -json prints it.
type importReport struct {
	Source string `json:"source"`
	migrate.Summary
	DryRun bool `json:"dry_run"`
	// Written and Unchanged are the daemon's answer: records it wrote,
	// and those its store already held as much of.
	Written   int `json:"written"`
	Unchanged int `json:"unchanged"`
}

func runImport(o *options, args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 || (args[0] != sourcePostgrey && args[0] != sourceMilterGreylist) {
		fmt.Fprintf(stderr, "milter-grey: import needs %s or %s, then the files to read\n", sourcePostgrey, sourceMilterGreylist)
		return 2
	}
	source, files := args[0], args[1:]
	c, err := config.Load(o.config, !o.explicit)
	if err != nil {
		fmt.Fprintf(stderr, "milter-grey: %v\n", err)
		return 1
	}
	mask := greylist.ClientMask{IPv4: o.imp.ipv4cidr, IPv6: o.imp.ipv6cidr}
	if err := mask.Validate(); err != nil {
		fmt.Fprintf(stderr, "milter-grey: -ipv4cidr/-ipv6cidr: %v\n", err)
		return 2
	}
	ec := engineConfig(c) // the keys and lifetimes the daemon uses
	im := migrate.NewImporter(migrate.Options{
		Policy:               ec.Policy,
		Mask:                 ec.Mask,
		Delimiters:           ec.Delimiters,
		AutoWhitelist:        ec.AutoWhitelist,
		KeyBySPFDomain:       ec.KeyBySPFDomain,
		SPFKeyDropsLocalPart: ec.SPFKeyDropsLocalPart,
		Delay:                o.imp.delay,
		Autowhite:            o.imp.autowhite,
		SourceMask:           mask,
		Now:                  time.Now(),
	})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Every file is read before anything is written: a file that cannot
	// be read stops the import with nothing changed.
	if err := readSources(ctx, im, source, files); err != nil {
		fmt.Fprintf(stderr, "milter-grey: %v\n", err)
		return 1
	}
	for _, s := range im.Skips() {
		fmt.Fprintf(stderr, "milter-grey: skipped %s\n", s)
	}
	report := importReport{Source: source, Summary: im.Summary(), DryRun: o.imp.dryRun}
	recs := im.Records()
	now := time.Now()
	entry := func(r migrate.Record) admin.Entry {
		return admin.DumpEntry(r.Key, &r.Rec, ec.Policy.Lifetime(&r.Rec, now), now)
	}

	if o.imp.dryRun {
		err := printEntries(stdout, o.json, func(fn func(admin.Entry) error) error {
			for _, r := range recs {
				if err := fn(entry(r)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			fmt.Fprintf(stderr, "milter-grey: %v\n", err)
			return 1
		}
		return printImportReport(stdout, o.json, report)
	}

	code := adminCommand(o, stderr, func(ctx context.Context, cl *admin.Client) error {
		pr, pw := io.Pipe()
		go func() {
			enc := json.NewEncoder(pw)
			enc.SetEscapeHTML(false)
			for _, r := range recs {
				if err := enc.Encode(entry(r)); err != nil {
					pw.CloseWithError(err)
					return
				}
			}
			pw.Close()
		}()
		res, err := cl.Merge(ctx, pr)
		pr.Close()
		report.Written, report.Unchanged = res.Restored, res.Unchanged
		if err != nil {
			return fmt.Errorf("%w (%d records written before it)", err, res.Restored)
		}
		return nil
	})
	// The summary also after a failure: what was read, and what was
	// written before it.
	if rc := printImportReport(stdout, o.json, report); code == 0 {
		code = rc
	}
	return code
}

// readSources reads every file of an import.
func readSources(ctx context.Context, im *migrate.Importer, source string, files []string) error {
	for _, path := range files {
		if source == sourceMilterGreylist {
			if err := readDumpfile(im, path); err != nil {
				return err
			}
			continue
		}
		dbs, err := migrate.PostgreyFiles(path)
		if err != nil {
			return err
		}
		for _, db := range dbs {
			err := migrate.DBDump(ctx, db, func(r io.Reader) error { return im.ReadPostgrey(r, db) })
			if errors.Is(err, migrate.ErrNoDBDump) {
				return fmt.Errorf("reading %s: %w", db, err)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func readDumpfile(im *migrate.Importer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return im.ReadMilterGreylist(f, path)
}

func printImportReport(w io.Writer, asJSON bool, r importReport) int {
	if asJSON {
		jsonEncoder(w).Encode(struct {
			Summary importReport `json:"summary"`
		}{r})
		return 0
	}
	fmt.Fprintf(w, "import %s: %s\n", r.Source, r.Summary)
	if r.DryRun {
		fmt.Fprintln(w, "dry run: nothing written")
	} else {
		fmt.Fprintf(w, "written %d, unchanged %d (the store held as much)\n", r.Written, r.Unchanged)
	}
	return 0
}
