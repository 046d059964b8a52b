package greylist

import (
	"testing"

	"github.com/milter-grey/milter-grey/auth"
)

// The rule of the suspicious scope, alone.
func TestTrigger(t *testing.T) {
	mailServer := clientSignals{name: "mx.example.net", spf: auth.ResultPass, spfProven: true}
	with := func(f func(*clientSignals)) clientSignals { s := mailServer; f(&s); return s }
	for _, c := range []struct {
		name    string
		s       clientSignals
		enabled Triggers
		want    Trigger
	}{
		{"a mail server: none", mailServer, 0, ""},
		{"no SPF record", with(func(s *clientSignals) { s.spf, s.spfProven = auth.ResultNone, false }), 0, TriggerSPFUnproven},
		{"neutral", with(func(s *clientSignals) { s.spf, s.spfProven = auth.ResultNeutral, false }), 0, TriggerSPFUnproven},
		{"a wide-open record's pass proves nothing", with(func(s *clientSignals) { s.spfProven = false }), 0, TriggerSPFUnproven},
		{"no SPF record, the trigger off", with(func(s *clientSignals) { s.spf, s.spfProven = auth.ResultNone, false }),
			AllTriggers &^ UseSPFUnproven, ""},
		{"blocklisted", with(func(s *clientSignals) { s.dnsbl = "bl.test" }), 0, "dnsbl:bl.test"},
		{"DNS failure", with(func(s *clientSignals) { s.dnsFailure = true }), 0, TriggerDNSFailure},
		{"SPF fail", with(func(s *clientSignals) { s.spf = auth.ResultFail }), 0, TriggerSPFFail},
		{"SPF softfail", with(func(s *clientSignals) { s.spf = auth.ResultSoftFail }), 0, TriggerSPFFail},
		{"dynamic name", with(func(s *clientSignals) { s.dynamicName = `dyn` }), 0, TriggerDynamicName},
		{"no FCrDNS", with(func(s *clientSignals) { s.name = "" }), 0, TriggerNoFCrDNS},
		{"blocklist first", clientSignals{dnsbl: "bl.test", dnsFailure: true, spf: auth.ResultFail}, 0, "dnsbl:bl.test"},
		{"SPF before the name", clientSignals{spf: auth.ResultSoftFail, dynamicName: "dyn"}, 0, TriggerSPFFail},
		{"unproven before the name", clientSignals{spf: auth.ResultNone, dynamicName: "dyn"}, 0, TriggerSPFUnproven},
		{"disabled trigger does not hold", with(func(s *clientSignals) { s.name = "" }), UseDNSBL | UseSPFFail, ""},
		{"DNS failure always holds", with(func(s *clientSignals) { s.dnsFailure = true }), UseNoFCrDNS, TriggerDNSFailure},
		{"only the enabled ones", clientSignals{dynamicName: "dyn"}, UseNoFCrDNS, TriggerNoFCrDNS},
		{"all five", clientSignals{name: "mx.example.net", spfProven: true}, AllTriggers, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := trigger(c.s, c.enabled); got != c.want {
				t.Errorf("trigger = %q, want %q", got, c.want)
			}
		})
	}
}
