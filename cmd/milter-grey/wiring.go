package main

import (
	"log/slog"
	"net"
	"time"

	"github.com/milter-grey/milter-grey/auth"
	"github.com/milter-grey/milter-grey/config"
	"github.com/milter-grey/milter-grey/dnslist"
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
// store, checking SPF and the DNS lists through resolver.
func newEngine(c *config.Config, store greylist.Store, resolver *net.Resolver, log *slog.Logger) *greylist.Engine {
	ec := engineConfig(c)
	ec.SPF = auth.NewSPF(resolver, auth.SPFOptions{Timeout: time.Duration(c.DNSTimeout)})
	block, allow := c.Zones()
	if len(block) > 0 {
		ec.DNSBL = dnslist.New(resolver, time.Duration(c.DNSTimeout), block)
	}
	if len(allow) > 0 {
		ec.DNSWL = dnslist.New(resolver, time.Duration(c.DNSTimeout), allow)
	}
	ec.Logger = log
	return greylist.New(store, ec)
}

// engineConfig is the engine's policy as the configuration sets it,
// without the outside world (SPF, DNS lists, logs): the daemon's engine
// and the import's keys and lifetimes follow the same settings.
func engineConfig(c *config.Config) greylist.Config {
	onErr := greylist.ErrorAccept
	if c.OnError == "tempfail" {
		onErr = greylist.ErrorTempfail
	}
	scope, _ := greylist.ParseScope(c.Greylist)               // validated at load
	triggers, _ := greylist.ParseTriggers(c.GreylistTriggers) // validated at load
	return greylist.Config{
		Policy: greylist.Policy{
			Delay:       time.Duration(c.Delay),
			RetryWindow: time.Duration(c.RetryWindow),
			MaxAge:      time.Duration(c.MaxAge),
		},
		Mask:                 greylist.ClientMask{IPv4: c.IPv4Mask, IPv6: c.IPv6Mask},
		Delimiters:           c.RecipientDelimiter,
		NoDelimiter:          c.RecipientDelimiter == "",
		AutoWhitelist:        c.AutoWhitelist,
		KeyBySPFDomain:       c.KeyBySPFDomain,
		SPFKeyDropsLocalPart: c.SPFKeyDropsLocalPart,
		DomainTrust:          c.DomainTrust,
		Scope:                scope,
		Triggers:             triggers,
		StrictAlignment:      c.DKIMAlignment == "strict",
		OnError:              onErr,
	}
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
