package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/milter-grey/milter-grey/accessmap"
	"github.com/milter-grey/milter-grey/admin"
	"github.com/milter-grey/milter-grey/config"
	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/greylist/redisstore"
	"github.com/milter-grey/milter-grey/internal/redact"
	"github.com/milter-grey/milter-grey/metrics"
	"github.com/milter-grey/milter-grey/milter"
)

// The daemon's life, in the order of this file: serve sets up logging and
// signals and calls start; start listens (while it may still be root),
// drops privileges, reads the lists, opens the store and serves; serve
// then waits, reloading the lists on SIGHUP or when a list file changes,
// until SIGTERM or SIGINT, when stop drains the sessions and closes the
// store.

// daemon is a running milter-grey: what serve starts and stops.
type daemon struct {
	// fingerprint identifies the list files as last loaded, and
	// listFiles are the files the configuration last read names: those
	// the change check watches (a reload may name others). Both are
	// guarded by the serve loop, the only caller of reload.
	fingerprint accessmap.Fingerprint
	listFiles   []string
	cfg         *config.Config
	log         *slog.Logger
	store       greylist.Store // instrumented
	engine      *greylist.Engine
	srv         *milter.Server
	ln          net.Listener
	metrics     *metrics.Metrics

	// The admin API, when admin_listen is set.
	admin   *http.Server
	adminLn net.Listener

	// The never-retried counter (see countNeverRetried).
	neverRetriedUntil time.Time
	stopping          atomic.Bool
	cancel            context.CancelFunc // stops the background work
	bg                sync.WaitGroup
}

// serve runs the daemon until SIGTERM or SIGINT; SIGHUP reloads the lists.
func serve(c *config.Config) error {
	log, closer, err := newLogger(c, "")
	if err != nil {
		return err
	}
	defer closer.Close()
	// go-milter logs through the standard log package and go-redis through
	// a process-wide logger: send both here too.
	slog.SetDefault(log)
	redisstore.SetLibraryLogger(log.With("component", "go-redis"))

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	d, err := start(c, log)
	if err != nil {
		return err
	}
	// List files are also reloaded when they change, as admins expect of
	// a Postfix table after postmap. Also without list files at start:
	// SIGHUP may add some.
	var poll <-chan time.Time
	if c.ReloadInterval > 0 {
		t := time.NewTicker(time.Duration(c.ReloadInterval))
		defer t.Stop()
		poll = t.C
	}
	for {
		select {
		case <-poll:
			if d.listsChanged() {
				d.log.Info("list files changed; reloading")
				d.reload()
			}
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				d.reload()
				continue
			}
			log.Info("shutting down", "signal", sig.String())
			return d.stop()
		}
	}
}

// start brings the daemon up. What it opened before a failure is closed
// again, so that a failed start leaves no socket and no locked store.
func start(c *config.Config, log *slog.Logger) (_ *daemon, err error) {
	priv, err := preparePrivileges(c, os.Geteuid(), os.Getegid(), log)
	if err != nil {
		return nil, err
	}
	// The sockets first, while the daemon may still be root: a unix
	// socket in a directory only root may write, a privileged port.
	ln, adminLn, err := listenAll(c, priv, log)
	if err != nil {
		return nil, err
	}
	var store greylist.Store
	defer func() {
		if err != nil {
			ln.Close()
			if adminLn != nil {
				adminLn.Close()
			}
			if store != nil {
				store.Close()
			}
		}
	}()

	// Then, for good, the daemon's user: before it reads a list, opens
	// the store or parses a byte from the network.
	if err = priv.prepareStore(c.Store); err != nil {
		return nil, err
	}
	if err = priv.dropPrivileges(log); err != nil {
		return nil, err
	}
	if priv.drop != nil {
		warnIfUnreadable(c, log)
	}

	// The lists, once, as the daemon's user: what it cannot read now it
	// could not reload either. Before the store, so that a typo in a
	// list fails the start at once. The files are stat'ed before they
	// are read: an edit made while they load is seen by the next change
	// check.
	listFiles := c.ListFiles()
	fingerprint, _ := accessmap.Stat(listFiles...)
	lists, notes, err := c.LoadLists()
	if err != nil {
		return nil, err
	}
	logListWarnings(log, notes)

	m := metrics.New(version())
	rawStore, err := openStore(c.Store, c, log)
	if err != nil {
		return nil, err
	}
	store = m.InstrumentStore(rawStore)

	resolver := newResolver(c, m)
	engine := newEngine(c, store, resolver, log)
	engine.SetLists(lists)
	m.WatchStore(engine.StoreHealthy)
	srv, err := milter.NewServer(newMilterConfig(c, engine, resolver, m, log))
	if err != nil {
		return nil, err
	}
	m.WatchSessions(srv.OpenSessions)
	d := &daemon{cfg: c, log: log, store: store, engine: engine, srv: srv, ln: ln, fingerprint: fingerprint,
		listFiles: listFiles, metrics: m, neverRetriedUntil: engine.Now()}
	if adminLn != nil {
		d.startAdmin(adminLn)
	}
	go func() {
		if err := srv.Serve(ln); err != nil {
			log.Error("milter server stopped", "err", err)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	d.bg.Go(func() { d.neverRetriedLoop(ctx, neverRetriedFirst, neverRetriedEvery) })
	logStarted(log, c, lists)
	return d, nil
}

// reload re-reads the configuration file and swaps in its lists. A broken
// file or list keeps the lists in force. Other settings need a restart,
// which the log says when they changed.
func (d *daemon) reload() {
	c, err := config.Load(d.cfg.Path(), !d.cfg.Found())
	if err == nil {
		// From now on the files this configuration names are watched,
		// stat'ed before they are read: an edit made while they load is
		// seen by the next check.
		d.listFiles = c.ListFiles()
	}
	fp, _ := accessmap.Stat(d.listFiles...)
	if err == nil {
		var lists *greylist.Lists
		var notes config.ListNotes
		if lists, notes, err = c.LoadLists(); err == nil {
			d.fingerprint = fp
			logListWarnings(d.log, notes)
			d.engine.SetLists(lists)
			d.metrics.ListReload(nil)
			d.log.Info("lists reloaded", "config", d.cfg.Path(), "trusted", lists.Trusted.Len(),
				"whitelist_clients", lists.Clients.Len(), "whitelist_recipients", lists.Recipients.Len(),
				"never_auto_whitelist", lists.NeverAutoWhitelist.Len(), "bypass_senders", bypassLen(lists))
			if !c.SameExceptLists(d.cfg) {
				d.log.Warn("settings other than the lists changed; they take effect at the next restart", "config", d.cfg.Path())
			}
			return
		}
	}
	d.fingerprint = fp // report a broken file once, not at every poll
	d.metrics.ListReload(err)
	d.log.Error("reload failed; keeping the lists in force", "err", err)
}

// listsChanged reports whether a list file changed since the last load.
func (d *daemon) listsChanged() bool {
	fp, _ := accessmap.Stat(d.listFiles...)
	return fp != d.fingerprint
}

// adminShutdown bounds the wait for admin requests at shutdown.
const adminShutdown = 5 * time.Second

// stop drains the sessions and closes the store, so that nothing written
// is lost.
func (d *daemon) stop() error {
	d.stopping.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(d.cfg.ShutdownTimeout))
	defer cancel()
	if d.admin != nil {
		// Admin requests under way (a dump, a restore) may finish within
		// a few seconds, then are cut: the milter sessions come first.
		actx, acancel := context.WithTimeout(ctx, adminShutdown)
		err := d.admin.Shutdown(actx)
		acancel()
		if err != nil {
			d.admin.Close()
			d.log.Warn("admin requests still open at shutdown_timeout were closed", "err", err)
		}
	}
	d.cancel()
	d.bg.Wait()
	if err := d.srv.Shutdown(ctx); err != nil {
		d.log.Warn("sessions still open at shutdown_timeout were closed", "err", err)
	}
	if err := d.store.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	d.log.Info("milter-grey stopped")
	return nil
}

// startAdmin serves the admin API and the metrics on the admin listener.
func (d *daemon) startAdmin(ln net.Listener) {
	h := admin.NewHandler(admin.Config{
		Store:    d.store,
		Engine:   d.engine,
		Metrics:  d.metrics,
		Sessions: d.srv.OpenSessions,
		Ready: func() error {
			if d.stopping.Load() {
				return errors.New("shutting down")
			}
			return nil
		},
		Log: d.log.With("component", "admin"),
	})
	d.admin = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(d.log.With("component", "admin").Handler(), slog.LevelWarn),
		// No read or write timeout: dumps and restores stream for as long
		// as the database is large.
	}
	d.adminLn = ln
	go func() {
		if err := d.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("admin server stopped", "err", err)
		}
	}()
}

// warnIfUnreadable warns, after the privilege drop, when the daemon's user
// cannot read the configuration file: it started, but SIGHUP will fail.
func warnIfUnreadable(c *config.Config, log *slog.Logger) {
	if !c.Found() {
		return
	}
	f, err := os.Open(c.Path())
	if err != nil {
		log.Warn("the configuration file is not readable by user: SIGHUP cannot reload it", "user", c.User, "err", err)
		return
	}
	f.Close()
}

// logStarted says what the daemon started with.
func logStarted(log *slog.Logger, c *config.Config, lists *greylist.Lists) {
	cfgName := c.Path()
	if !c.Found() {
		cfgName = "(none: defaults)"
	}
	adminName := c.AdminListen
	if adminName == "" {
		adminName = "off"
	}
	log.Info("milter-grey started", "version", version(), "listen", c.Listen, "store", redact.URL(c.Store),
		"delay", c.Delay.String(), "config", cfgName,
		"trusted", lists.Trusted.Len(), "whitelist_clients", lists.Clients.Len(),
		"whitelist_recipients", lists.Recipients.Len(), "bypass_senders", bypassLen(lists),
		"admin_listen", adminName, "dry_run", c.DryRun, "uid", os.Getuid())
	if c.DryRun {
		log.Warn("dry_run is on: decisions are recorded and logged, but nothing is refused")
	}
}

func bypassLen(l *greylist.Lists) int {
	if l.Bypass == nil {
		return 0
	}
	return l.Bypass.Len()
}

// logListWarnings reports what loaded with a warning, with file and line:
// list lines skipped because they cannot be parsed, optional list files
// that are absent, and bypass entries that bypass nothing (REJECT and
// other actions, shadowed duplicates).
func logListWarnings(log *slog.Logger, n config.ListNotes) {
	for _, e := range n.Lists.Skipped {
		log.Warn("list line skipped", "at", fmt.Sprintf("%s:%d", e.File, e.Line), "value", e.Value, "err", e.Err)
	}
	for _, path := range n.Lists.Absent {
		log.Info("optional list file absent; skipped", "file", path)
	}
	for _, w := range n.Bypass {
		if w.Skipped {
			log.Warn("bypass list line skipped", "warning", w.String())
			continue
		}
		log.Warn("bypass list entry", "warning", w.String())
	}
}
