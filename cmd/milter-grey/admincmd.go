package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/milter-grey/milter-grey/admin"
	"github.com/milter-grey/milter-grey/config"
	"github.com/milter-grey/milter-grey/greylist"
)

// The admin commands talk to the running daemon through its admin API:
// Badger lets one process open the database, and the daemon is it.

// adminAddr is the address of the daemon's admin API: -admin, else
// admin_listen of the configuration.
func adminAddr(o *options) (string, error) {
	spec := o.admin
	if spec == "" {
		c, err := config.Load(o.config, !o.explicit)
		if err != nil {
			return "", err
		}
		if c.AdminListen == "" {
			if !c.Found() {
				return "", fmt.Errorf("admin_listen is not set (%s does not exist); the admin commands need it, or -admin ADDR", c.Path())
			}
			return "", fmt.Errorf("admin_listen is not set in %s; the admin commands need it (or give -admin ADDR)", c.Path())
		}
		spec = c.AdminListen
	}
	network, address, err := parseListen(spec)
	if err != nil && !strings.Contains(spec, ":") {
		return "", fmt.Errorf("admin address %q: want HOST:PORT or unix:/path", spec)
	}
	switch {
	case err != nil: // a plain HOST:PORT
		return spec, nil
	case network == "unix":
		return "unix:" + address, nil
	}
	return address, nil
}

// adminCommand runs fn with a client of the daemon, reporting its error
// (with a hint when the daemon cannot be reached). Interrupting the
// command cancels the request.
func adminCommand(o *options, stderr io.Writer, fn func(ctx context.Context, c *admin.Client) error) int {
	addr, err := adminAddr(o)
	if err != nil {
		fmt.Fprintf(stderr, "milter-grey: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := fn(ctx, admin.NewClient(addr)); err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			err = fmt.Errorf("%w (is milter-grey running, with admin_listen = %q?)", err, addr)
		}
		fmt.Fprintf(stderr, "milter-grey: %v\n", err)
		return 1
	}
	return 0
}

func (o *options) filter() admin.Filter {
	return admin.Filter{Client: o.client, Sender: o.sender, Rcpt: o.rcpt, State: o.state, Kind: o.kind, Limit: o.limit}
}

func runList(o *options, _ []string, stdout, stderr io.Writer) int {
	return adminCommand(o, stderr, func(ctx context.Context, c *admin.Client) error {
		return printEntries(stdout, o.json, func(fn func(admin.Entry) error) error {
			return c.Records(ctx, o.filter(), fn)
		})
	})
}

func runNeverRetried(o *options, _ []string, stdout, stderr io.Writer) int {
	return adminCommand(o, stderr, func(ctx context.Context, c *admin.Client) error {
		return printEntries(stdout, o.json, func(fn func(admin.Entry) error) error {
			return c.NeverRetried(ctx, o.filter(), fn)
		})
	})
}

// jsonEncoder writes JSON as the API does: "<>" as is, not \u003c\u003e.
func jsonEncoder(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

// timeFormat is how the admin commands print times: local, to the second,
// as mail logs do.
const timeFormat = "2006-01-02 15:04:05"

// printEntries prints a listing: JSON lines, or a table with a header.
func printEntries(w io.Writer, asJSON bool, list func(fn func(admin.Entry) error) error) error {
	if asJSON {
		enc := jsonEncoder(w)
		return list(func(e admin.Entry) error { return enc.Encode(e) })
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tSTATE\tFIRST\tLAST\tCOUNT\tEXPIRES")
	err := list(func(e admin.Entry) error {
		_, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", e.Key, e.State,
			e.First.Local().Format(timeFormat), e.Last.Local().Format(timeFormat), e.Count, expires(e))
		return err
	})
	if ferr := tw.Flush(); err == nil {
		err = ferr
	}
	return err
}

func expires(e admin.Entry) string {
	if e.Expires == nil {
		return "never"
	}
	return e.Expires.Local().Format(timeFormat)
}

// oneKey joins the arguments of a command that takes a key: a key has
// spaces, and an admin may forget to quote it.
func oneKey(args []string) string { return strings.Join(args, " ") }

func runShow(o *options, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "milter-grey: show needs a KEY (see milter-grey list)")
		return 2
	}
	return adminCommand(o, stderr, func(ctx context.Context, c *admin.Client) error {
		e, err := c.Record(ctx, oneKey(args))
		if err != nil {
			return err
		}
		return printEntry(stdout, o.json, e)
	})
}

// printEntry prints one record, a field a line (or as JSON).
func printEntry(w io.Writer, asJSON bool, e admin.Entry) error {
	if asJSON {
		return jsonEncoder(w).Encode(e)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintf(tw, "key:\t%s\n", e.Key)
	fmt.Fprintf(tw, "kind:\t%s\n", e.Kind)
	for _, f := range []struct{ name, v string }{{"client", e.Client}, {"sender", e.Sender}, {"rcpt", e.Rcpt}} {
		if f.v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", f.name, f.v)
		}
	}
	fmt.Fprintf(tw, "state:\t%s\n", e.State)
	fmt.Fprintf(tw, "first:\t%s\n", e.First.Local().Format(timeFormat))
	fmt.Fprintf(tw, "last:\t%s\n", e.Last.Local().Format(timeFormat))
	fmt.Fprintf(tw, "count:\t%d\n", e.Count)
	if e.Expires == nil {
		fmt.Fprintf(tw, "expires:\tnever\n")
	} else {
		fmt.Fprintf(tw, "expires:\t%s (in %s)\n", expires(e), roughDuration(time.Duration(e.TTLSeconds)*time.Second))
	}
	return tw.Flush()
}

// roughDuration says how long in two units at most: "34d23h", "5h2m",
// "4m10s".
func roughDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d >= day:
		return fmt.Sprintf("%dd%dh", d/day, (d%day)/time.Hour)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", d/time.Hour, (d%time.Hour)/time.Minute)
	}
	return d.Round(time.Second).String()
}

func runDelete(o *options, args []string, stdout, stderr io.Writer) int {
	f := o.filter()
	switch {
	case len(args) > 0 && (!f.Empty() || o.all):
		fmt.Fprintln(stderr, "milter-grey: delete takes a KEY or filter flags, not both")
		return 2
	case len(args) > 0:
		key := oneKey(args)
		return adminCommand(o, stderr, func(ctx context.Context, c *admin.Client) error {
			if err := c.Delete(ctx, key); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "deleted %s\n", key)
			return nil
		})
	case f.Empty() && !o.all:
		fmt.Fprintln(stderr, "milter-grey: delete needs a KEY or a filter (-client, -sender, -rcpt, -state, -kind); -all deletes every record")
		return 2
	case !f.Empty() && o.all:
		fmt.Fprintln(stderr, "milter-grey: -all deletes every record: it takes no filter")
		return 2
	}
	f.All = o.all
	return adminCommand(o, stderr, func(ctx context.Context, c *admin.Client) error {
		n, err := c.DeleteMatching(ctx, f)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %d records\n", n)
		return nil
	})
}

func runPass(o *options, args []string, stdout, stderr io.Writer) int {
	req := admin.PassRequest{Client: o.client, Sender: o.sender, Rcpt: o.rcpt}
	switch {
	case len(args) > 0 && (req.Client != "" || req.Sender != "" || req.Rcpt != ""):
		fmt.Fprintln(stderr, "milter-grey: pass takes a KEY or -client, -sender and -rcpt, not both")
		return 2
	case len(args) > 0:
		req = admin.PassRequest{Key: oneKey(args)}
	case req.Client == "" || req.Rcpt == "":
		fmt.Fprintln(stderr, "milter-grey: pass needs -client and -rcpt (and -sender; empty is the null sender), or a KEY")
		return 2
	}
	return adminCommand(o, stderr, func(ctx context.Context, c *admin.Client) error {
		e, err := c.Pass(ctx, req)
		if err != nil {
			return err
		}
		if o.json {
			return printEntry(stdout, true, e)
		}
		fmt.Fprintf(stdout, "passed %s (until %s)\n", e.Key, expires(e))
		return nil
	})
}

func runExplain(o *options, _ []string, stdout, stderr io.Writer) int {
	if o.client == "" || o.to == "" {
		fmt.Fprintln(stderr, "milter-grey: explain needs -client IP and -to ADDR (and -from, -helo as the client would send them)")
		return 2
	}
	req := admin.ExplainRequest{Client: o.client, Helo: o.helo, From: o.from, To: o.to, Name: o.name, AuthUser: o.authUser}
	return adminCommand(o, stderr, func(ctx context.Context, c *admin.Client) error {
		ex, err := c.Explain(ctx, req)
		if err != nil {
			return err
		}
		if o.json {
			return jsonEncoder(stdout).Encode(ex)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 1, ' ', 0)
		fmt.Fprintf(tw, "action:\t%s\n", ex.Action)
		fmt.Fprintf(tw, "reason:\t%s\t(%s)\n", ex.Reason, greylist.Reason(ex.Reason).Describe())
		for _, f := range []struct{ name, v string }{{"match", ex.Match}, {"spf", ex.SPF}, {"trigger", ex.Trigger}, {"key", ex.Key}, {"error", ex.Err}} {
			if f.v != "" {
				fmt.Fprintf(tw, "%s:\t%s\n", f.name, f.v)
			}
		}
		if ex.Action == "greylist" && ex.RetryInSeconds > 0 {
			fmt.Fprintf(tw, "retry in:\t%d seconds\n", ex.RetryInSeconds)
		}
		if ex.Reason == "retried" {
			fmt.Fprintf(tw, "waited:\t%d seconds\n", ex.WaitedSeconds)
		}
		if r := ex.Record; r != nil {
			fmt.Fprintf(tw, "record:\t%s, first %s, last %s, count %d, expires %s\n", r.State,
				r.First.Local().Format(timeFormat), r.Last.Local().Format(timeFormat), r.Count, expires(*r))
		} else if ex.Key != "" {
			fmt.Fprintf(tw, "record:\tnone\n")
		}
		return tw.Flush()
	})
}

func runDump(o *options, _ []string, stdout, stderr io.Writer) int {
	return adminCommand(o, stderr, func(ctx context.Context, c *admin.Client) error {
		n, err := c.Dump(ctx, stdout)
		if err != nil {
			return fmt.Errorf("%w (after %d records)", err, n)
		}
		fmt.Fprintf(stderr, "milter-grey: dumped %d records\n", n)
		return nil
	})
}

func runRestore(o *options, args []string, stdout, stderr io.Writer) int {
	if len(args) > 1 {
		fmt.Fprintln(stderr, "milter-grey: restore reads one FILE, or standard input")
		return 2
	}
	var in io.Reader = os.Stdin
	if len(args) == 1 && args[0] != "-" {
		f, err := os.Open(args[0])
		if err != nil {
			fmt.Fprintf(stderr, "milter-grey: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	return adminCommand(o, stderr, func(ctx context.Context, c *admin.Client) error {
		n, err := c.Restore(ctx, in)
		if err != nil {
			return fmt.Errorf("%w (%d records restored before it)", err, n)
		}
		fmt.Fprintf(stdout, "restored %d records\n", n)
		return nil
	})
}

func runStats(o *options, _ []string, stdout, stderr io.Writer) int {
	return adminCommand(o, stderr, func(ctx context.Context, c *admin.Client) error {
		s, err := c.Stats(ctx)
		if err != nil {
			return err
		}
		if o.json {
			return jsonEncoder(stdout).Encode(s)
		}
		up := "up"
		if !s.StoreUp {
			up = "failing (decisions follow on_error)"
		}
		fmt.Fprintf(stdout, "triplets:  pending %d, passed %d, never-retried %d\n", s.Triplets.Pending, s.Triplets.Passed, s.Triplets.NeverRetried)
		fmt.Fprintf(stdout, "clients:   auto-whitelisted %d, counting %d\n", s.Clients.AutoWhitelisted, s.Clients.Counting)
		fmt.Fprintf(stdout, "domains:   trusted %d, counting %d\n", s.Domains.Trusted, s.Domains.Counting)
		if s.Other > 0 {
			fmt.Fprintf(stdout, "other:     %d records\n", s.Other)
		}
		fmt.Fprintf(stdout, "store:     %s\n", up)
		if s.SessionsOpen != nil {
			fmt.Fprintf(stdout, "sessions:  %d open\n", *s.SessionsOpen)
		}
		return nil
	})
}
