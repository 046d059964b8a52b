package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/milter-grey/milter-grey/accessmap"
	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/greylist/redisstore"
	"github.com/milter-grey/milter-grey/milter"
)

// daemon is a running milter-grey: what serve starts and stops.
type daemon struct {
	// fingerprint identifies the list files as last loaded; guarded by
	// the serve loop, the only caller of reload.
	fingerprint accessmap.Fingerprint
	cfg         *config
	log         *slog.Logger
	store       greylist.Store
	engine      *greylist.Engine
	srv         *milter.Server
	ln          net.Listener
}

// start opens the store and the socket and starts serving.
func start(c *config, log *slog.Logger) (*daemon, error) {
	lists, warnings, err := c.listsWarn()
	if err != nil {
		return nil, err
	}
	logListWarnings(log, warnings)
	fingerprint, _ := accessmap.Stat(c.listFiles()...)
	store, err := openStore(c.Store, c, log)
	if err != nil {
		return nil, err
	}
	onErr := greylist.ErrorAccept
	if c.OnError == "tempfail" {
		onErr = greylist.ErrorTempfail
	}
	engine := greylist.New(store, greylist.Config{
		Policy: greylist.Policy{
			Delay:       time.Duration(c.Delay),
			RetryWindow: time.Duration(c.RetryWindow),
			MaxAge:      time.Duration(c.MaxAge),
		},
		Mask:           greylist.ClientMask{IPv4: c.IPv4Mask, IPv6: c.IPv6Mask},
		Delimiters:     c.RecipientDelimiter,
		NoDelimiter:    c.RecipientDelimiter == "",
		AutoWhitelist:  c.AutoWhitelist,
		KeyBySPFDomain: c.KeyBySPFDomain,
		OnError:        onErr,
		Logger:         log,
	})
	engine.SetLists(lists)
	mc := milter.Config{
		Engine:          engine,
		Reply:           c.Reply,
		AddHeader:       c.AddHeader,
		Hostname:        c.Hostname,
		DecisionTimeout: time.Duration(c.DecisionTimeout),
		IdleTimeout:     time.Duration(c.IdleTimeout),
		Log:             log,
		StrictAlignment: c.DKIMAlignment == "strict",
		DKIMTimeout:     time.Duration(c.DNSTimeout),
	}
	// SPF and DKIM are set up only when something uses them, so a site
	// without a bypass list and without SPF keys makes no DNS lookups.
	if c.KeyBySPFDomain || len(c.BypassSenderFiles) > 0 {
		timeout := time.Duration(c.DNSTimeout)
		resolver := auth.NewResolver(auth.ResolverConfig{Server: c.DNSServer, Timeout: timeout})
		mc.SPF = auth.NewSPF(resolver, auth.SPFOptions{Timeout: timeout})
		mc.NewDKIM = func() *auth.DKIMVerifier {
			return auth.NewDKIMVerifier(resolver, auth.DKIMOptions{
				MaxSignatures:    c.DKIMMaxSignatures,
				MaxBytes:         c.DKIMMaxBytes,
				Timeout:          timeout,
				LeadingSpaceKept: true, // the milter negotiates it
			})
		}
	}
	srv, err := milter.NewServer(mc)
	if err != nil {
		store.Close()
		return nil, err
	}
	ln, err := listen(c)
	if err != nil {
		store.Close()
		return nil, err
	}
	d := &daemon{cfg: c, log: log, store: store, engine: engine, srv: srv, ln: ln, fingerprint: fingerprint}
	go func() {
		if err := srv.Serve(ln); err != nil {
			log.Error("milter server stopped", "err", err)
		}
	}()
	cfgName := c.path
	if !c.present {
		cfgName = "(none: defaults)"
	}
	log.Info("milter-grey started", "version", version(), "listen", c.Listen, "store", redactSpec(c.Store),
		"delay", formatDuration(time.Duration(c.Delay)), "config", cfgName,
		"trusted", lists.Trusted.Len(), "whitelist_clients", lists.Clients.Len(),
		"whitelist_recipients", lists.Recipients.Len(), "bypass_senders", bypassLen(lists))
	return d, nil
}

func bypassLen(l *greylist.Lists) int {
	if l.Bypass == nil {
		return 0
	}
	return l.Bypass.Len()
}

// logListWarnings reports bypass entries that load but bypass nothing
// (REJECT and other actions, shadowed duplicates), with file and line.
func logListWarnings(log *slog.Logger, ws []accessmap.Warning) {
	for _, w := range ws {
		log.Warn("bypass list entry", "warning", w.String())
	}
}

// stop drains the sessions and closes the store, so that nothing written
// is lost.
func (d *daemon) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(d.cfg.ShutdownTimeout))
	defer cancel()
	if err := d.srv.Shutdown(ctx); err != nil {
		d.log.Warn("sessions still open at shutdown_timeout were closed", "err", err)
	}
	if err := d.store.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	d.log.Info("milter-grey stopped")
	return nil
}

// reload re-reads the configuration file and swaps in its lists. A broken
// file or list keeps the lists in force. Other settings need a restart,
// which the log says when they changed.
func (d *daemon) reload() {
	fp, _ := accessmap.Stat(d.cfg.listFiles()...)
	c, err := loadConfig(d.cfg.path, !d.cfg.present)
	if err == nil {
		var lists *greylist.Lists
		var warnings []accessmap.Warning
		if lists, warnings, err = c.listsWarn(); err == nil {
			d.fingerprint = fp
			logListWarnings(d.log, warnings)
			d.engine.SetLists(lists)
			d.log.Info("lists reloaded", "config", d.cfg.path, "trusted", lists.Trusted.Len(),
				"whitelist_clients", lists.Clients.Len(), "whitelist_recipients", lists.Recipients.Len(),
				"never_auto_whitelist", lists.NeverAutoWhitelist.Len(), "bypass_senders", bypassLen(lists))
			if !c.sameExceptLists(d.cfg) {
				d.log.Warn("settings other than the lists changed; they take effect at the next restart", "config", d.cfg.path)
			}
			return
		}
	}
	d.fingerprint = fp // report a broken file once, not at every poll
	d.log.Error("reload failed; keeping the lists in force", "err", err)
}

// listsChanged reports whether a list file changed since the last load.
func (d *daemon) listsChanged() bool {
	fp, _ := accessmap.Stat(d.cfg.listFiles()...)
	return fp != d.fingerprint
}

// serve runs the daemon until SIGTERM or SIGINT; SIGHUP reloads the lists.
func serve(c *config) error {
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
	// a Postfix table after postmap.
	var poll <-chan time.Time
	if c.ReloadInterval > 0 && len(c.listFiles()) > 0 {
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
