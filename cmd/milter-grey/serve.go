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

	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/greylist/redisstore"
	"github.com/milter-grey/milter-grey/milter"
)

// daemon is a running milter-grey: what serve starts and stops.
type daemon struct {
	cfg    *config
	log    *slog.Logger
	store  greylist.Store
	engine *greylist.Engine
	srv    *milter.Server
	ln     net.Listener
}

// start opens the store and the socket and starts serving.
func start(c *config, log *slog.Logger) (*daemon, error) {
	lists, err := c.lists()
	if err != nil {
		return nil, err
	}
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
		Mask:          greylist.ClientMask{IPv4: c.IPv4Mask, IPv6: c.IPv6Mask},
		Delimiters:    c.RecipientDelimiter,
		NoDelimiter:   c.RecipientDelimiter == "",
		AutoWhitelist: c.AutoWhitelist,
		OnError:       onErr,
		Logger:        log,
	})
	engine.SetLists(lists)
	srv, err := milter.NewServer(milter.Config{
		Engine:          engine,
		Reply:           c.Reply,
		AddHeader:       c.AddHeader,
		Hostname:        c.Hostname,
		DecisionTimeout: time.Duration(c.DecisionTimeout),
		IdleTimeout:     time.Duration(c.IdleTimeout),
		Log:             log,
	})
	if err != nil {
		store.Close()
		return nil, err
	}
	ln, err := listen(c)
	if err != nil {
		store.Close()
		return nil, err
	}
	d := &daemon{cfg: c, log: log, store: store, engine: engine, srv: srv, ln: ln}
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
		"whitelist_recipients", lists.Recipients.Len())
	return d, nil
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
	c, err := loadConfig(d.cfg.path, !d.cfg.present)
	if err == nil {
		var lists *greylist.Lists
		if lists, err = c.lists(); err == nil {
			d.engine.SetLists(lists)
			d.log.Info("lists reloaded", "config", d.cfg.path, "trusted", lists.Trusted.Len(),
				"whitelist_clients", lists.Clients.Len(), "whitelist_recipients", lists.Recipients.Len(),
				"never_auto_whitelist", lists.NeverAutoWhitelist.Len())
			if !c.sameExceptLists(d.cfg) {
				d.log.Warn("settings other than the lists changed; they take effect at the next restart", "config", d.cfg.path)
			}
			return
		}
	}
	d.log.Error("reload failed; keeping the lists in force", "err", err)
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
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			d.reload()
			continue
		}
		log.Info("shutting down", "signal", sig.String())
		return d.stop()
	}
	return nil
}
