package main

import (
	"log/slog"
	"net"
	"time"

	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/config"
	"github.com/milter-grey/milter-grey/greylist"
	"github.com/milter-grey/milter-grey/metrics"
	"github.com/milter-grey/milter-grey/milter"
)

// newResolver is the DNS resolver of SPF and DKIM, counted by m. SPF and
// DKIM are always ready: a bypass file may come with a reload. They make
// DNS lookups only when a decision needs them (a listed sender, or
// key_by_spf_domain).
func newResolver(c *config.Config, m *metrics.Metrics) *net.Resolver {
	return m.InstrumentResolver(auth.NewResolver(auth.ResolverConfig{Server: c.DNSServer, Timeout: time.Duration(c.DNSTimeout)}))
}

// newEngine is the greylisting engine the configuration describes, on
// store, checking SPF through resolver.
func newEngine(c *config.Config, store greylist.Store, resolver *net.Resolver, log *slog.Logger) *greylist.Engine {
	onErr := greylist.ErrorAccept
	if c.OnError == "tempfail" {
		onErr = greylist.ErrorTempfail
	}
	return greylist.New(store, greylist.Config{
		Policy: greylist.Policy{
			Delay:       time.Duration(c.Delay),
			RetryWindow: time.Duration(c.RetryWindow),
			MaxAge:      time.Duration(c.MaxAge),
		},
		Mask:            greylist.ClientMask{IPv4: c.IPv4Mask, IPv6: c.IPv6Mask},
		Delimiters:      c.RecipientDelimiter,
		NoDelimiter:     c.RecipientDelimiter == "",
		AutoWhitelist:   c.AutoWhitelist,
		KeyBySPFDomain:  c.KeyBySPFDomain,
		SPF:             auth.NewSPF(resolver, auth.SPFOptions{Timeout: time.Duration(c.DNSTimeout)}),
		StrictAlignment: c.DKIMAlignment == "strict",
		OnError:         onErr,
		Logger:          log,
	})
}

// newMilterConfig is the milter server's configuration: the engine, the
// replies, the timeouts, and DKIM through resolver.
func newMilterConfig(c *config.Config, engine *greylist.Engine, resolver *net.Resolver, m *metrics.Metrics, log *slog.Logger) milter.Config {
	dnsTimeout := time.Duration(c.DNSTimeout)
	return milter.Config{
		Engine:          engine,
		Reply:           c.Reply,
		AddHeader:       c.AddHeader,
		Hostname:        c.Hostname,
		DecisionTimeout: time.Duration(c.DecisionTimeout),
		IdleTimeout:     time.Duration(c.IdleTimeout),
		MaxSessions:     c.MaxSessions,
		Log:             log,
		DKIMTimeout:     dnsTimeout,
		DryRun:          c.DryRun,
		OnDecision:      m.ObserveDecision,
		NewDKIM: func() *auth.DKIMVerifier {
			return auth.NewDKIMVerifier(resolver, auth.DKIMOptions{
				MaxSignatures:    c.DKIMMaxSignatures,
				MaxBytes:         c.DKIMMaxBytes,
				Timeout:          dnsTimeout,
				LeadingSpaceKept: true, // the milter negotiates it
			})
		},
	}
}
