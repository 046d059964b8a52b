package testci

import (
	"testing"
)

// recorder notes how SkipOrFail ended a test, without ending this one.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper()                        {}
func (r *recorder) Skipf(format string, a ...any)  { r.skipped, r.msg = true, format }
func (r *recorder) Fatalf(format string, a ...any) { r.failed, r.msg = true, format }

func TestSkipOrFail(t *testing.T) {
	for _, tc := range []struct {
		ci                 string
		wantSkip, wantFail bool
	}{
		{"", true, false},
		{"false", true, false},
		{"true", false, true},
	} {
		t.Setenv("CI", tc.ci)
		r := &recorder{TB: t}
		SkipOrFail(r, "no %s", "postfix")
		if r.skipped != tc.wantSkip || r.failed != tc.wantFail {
			t.Errorf("CI=%q: skipped %v, failed %v; want %v, %v", tc.ci, r.skipped, r.failed, tc.wantSkip, tc.wantFail)
		}
	}
}
