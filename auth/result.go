// Package auth proves a sender's domain by SPF or by a DKIM signature
// aligned with it, and resolves the DNS this needs within a deadline. It
// knows nothing of the milter protocol: callers feed it addresses, names
// and message bytes, and get results whose only trusted outcome is
// "proven"; every failure, DNS trouble included, means "not proven".
package auth

import (
	"strconv"
	"strings"
)

// Result is an authentication result as named by RFC 7208 (SPF) and
// RFC 8601 (Authentication-Results).
type Result string

// Results. DKIM uses pass, fail, permerror, temperror and none.
const (
	ResultPass      Result = "pass"
	ResultFail      Result = "fail"
	ResultSoftFail  Result = "softfail"
	ResultNeutral   Result = "neutral"
	ResultNone      Result = "none"
	ResultTempError Result = "temperror"
	ResultPermError Result = "permerror"
)

// String is the SPF part of a log line: "spf=pass", "spf=pass(wide-open)",
// "spf=temperror".
func (r SPFResult) String() string {
	res := r.Result
	if res == "" {
		res = ResultNone
	}
	s := "spf=" + string(res)
	if r.Result == ResultPass && r.WideOpen {
		s += "(wide-open)"
	}
	return s
}

// String is one signature's part of a log line: "dkim=pass d=example.com
// s=sel".
func (r DKIMResult) String() string {
	var b strings.Builder
	b.WriteString("dkim=")
	b.WriteString(string(r.Result))
	if r.Domain != "" {
		b.WriteString(" d=" + logValue(r.Domain))
	}
	if r.Selector != "" {
		b.WriteString(" s=" + logValue(r.Selector))
	}
	return b.String()
}

// DKIMVerdict sums up a message's DKIM results against the envelope
// sender's domain.
type DKIMVerdict struct {
	// Result is the result of the signature reported: an aligned pass if
	// there is one, else a pass, temperror, fail or permerror in that
	// order; none without signatures.
	Result Result
	// Domain is the d= of the signature reported.
	Domain string
	// Aligned is AlignStrict or AlignRelaxed (the mode checked) when the
	// reported signature passed and is aligned, else "".
	Aligned string
	// Err explains a result other than pass.
	Err error
}

// EvaluateDKIM picks, among results, the signature that best proves
// senderDomain under the given alignment mode.
func EvaluateDKIM(results []DKIMResult, senderDomain string, strict bool) DKIMVerdict {
	mode := AlignRelaxed
	if strict {
		mode = AlignStrict
	}
	for _, r := range results {
		if r.Result == ResultPass && senderDomain != "" && Aligned(r.Domain, senderDomain, strict) {
			return DKIMVerdict{Result: ResultPass, Domain: r.Domain, Aligned: mode}
		}
	}
	for _, want := range []Result{ResultPass, ResultTempError, ResultFail, ResultPermError} {
		for _, r := range results {
			if r.Result == want {
				return DKIMVerdict{Result: r.Result, Domain: r.Domain, Err: r.Err}
			}
		}
	}
	return DKIMVerdict{Result: ResultNone}
}

// Proven reports whether an aligned signature passed.
func (v DKIMVerdict) Proven() bool {
	return v.Result == ResultPass && v.Aligned != ""
}

// String is the DKIM part of a log line: "dkim=pass d=example.com
// aligned=relaxed", "dkim=pass d=other.example aligned=no",
// "dkim=fail d=attacker.test", "dkim=none".
func (v DKIMVerdict) String() string {
	res := v.Result
	if res == "" {
		res = ResultNone
	}
	s := "dkim=" + string(res)
	if v.Domain != "" {
		s += " d=" + logValue(v.Domain)
	}
	if res == ResultPass {
		if v.Aligned != "" {
			s += " aligned=" + v.Aligned
		} else {
			s += " aligned=no"
		}
	}
	return s
}

// logValue quotes a value taken from the message (d=, s=) unless it is a
// plain name, so that it cannot forge other key=value pairs in a log line.
func logValue(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return strconv.Quote(s)
		}
	}
	return s
}
