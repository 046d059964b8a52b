// Package testci decides what a test does when a real component it drives
// (Postfix, redis-server, root, a system user) is missing: skip on a
// developer's machine, fail under CI=true, where .ci/run installs every
// prerequisite on purpose and a missing one is a broken set-up. It is a
// test helper (testutil/): only tests import it.
package testci

import (
	"fmt"
	"os"
	"testing"
)

// SkipOrFail skips t, or fails it under CI=true.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: prerequisites are mandatory)", msg)
	} else {
		t.Skipf("%s; skipping", msg)
	}
}
