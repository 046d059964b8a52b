package auth_test

import (
	"errors"
	"testing"

	"github.com/milter-grey/milter-grey/auth"
)

func TestSPFResultString(t *testing.T) {
	tests := []struct {
		res    auth.SPFResult
		want   string
		proven bool
	}{
		{auth.SPFResult{Result: auth.ResultPass, Domain: "example.com"}, "spf=pass", true},
		{auth.SPFResult{Result: auth.ResultPass, WideOpen: true}, "spf=pass(wide-open)", false},
		{auth.SPFResult{Result: auth.ResultTempError}, "spf=temperror", false},
		{auth.SPFResult{Result: auth.ResultSoftFail}, "spf=softfail", false},
		{auth.SPFResult{}, "spf=none", false},
	}
	for _, tt := range tests {
		if got := tt.res.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.res, got, tt.want)
		}
		if tt.res.Proven() != tt.proven {
			t.Errorf("%+v.Proven() = %v", tt.res, tt.res.Proven())
		}
	}
}

func TestDKIMStrings(t *testing.T) {
	errBad := errors.New("bad")
	tests := []struct {
		name    string
		results []auth.DKIMResult
		sender  string
		strict  bool
		want    string
		proven  bool
	}{
		{"no signature", nil, "example.com", false, "dkim=none", false},
		{"aligned relaxed", []auth.DKIMResult{{Domain: "example.com", Result: auth.ResultPass}}, "mail.example.com", false, "dkim=pass d=example.com aligned=relaxed", true},
		{"aligned strict", []auth.DKIMResult{{Domain: "example.com", Result: auth.ResultPass}}, "example.com", true, "dkim=pass d=example.com aligned=strict", true},
		{"misaligned pass", []auth.DKIMResult{{Domain: "attacker.test", Result: auth.ResultPass}}, "example.com", false, "dkim=pass d=attacker.test aligned=no", false},
		{"fail", []auth.DKIMResult{{Domain: "attacker.test", Result: auth.ResultFail, Err: errBad}}, "example.com", false, "dkim=fail d=attacker.test", false},
		{"aligned fail", []auth.DKIMResult{{Domain: "example.com", Result: auth.ResultFail, Err: errBad}}, "example.com", false, "dkim=fail d=example.com", false},
		{"temperror before fail", []auth.DKIMResult{{Domain: "a.test", Result: auth.ResultFail}, {Domain: "b.test", Result: auth.ResultTempError}}, "example.com", false, "dkim=temperror d=b.test", false},
		{"aligned pass wins over an earlier pass", []auth.DKIMResult{{Domain: "esp.test", Result: auth.ResultPass}, {Domain: "example.com", Result: auth.ResultPass}}, "example.com", false, "dkim=pass d=example.com aligned=relaxed", true},
		{"forged d= is quoted", []auth.DKIMResult{{Domain: "x.test aligned=relaxed", Result: auth.ResultFail}}, "example.com", false, `dkim=fail d="x.test aligned=relaxed"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := auth.EvaluateDKIM(tt.results, tt.sender, tt.strict)
			if got := v.String(); got != tt.want || v.Proven() != tt.proven {
				t.Errorf("verdict %q proven=%v, want %q proven=%v", got, v.Proven(), tt.want, tt.proven)
			}
		})
	}

	r := auth.DKIMResult{Domain: "example.com", Selector: "sel", Result: auth.ResultPass}
	if got, want := r.String(), "dkim=pass d=example.com s=sel"; got != want {
		t.Errorf("DKIMResult.String() = %q, want %q", got, want)
	}
}
