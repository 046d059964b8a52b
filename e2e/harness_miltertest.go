package e2e

import (
	"context"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"
)

// miltertest runs OpenDKIM's miltertest on a Lua script, passing defines as
// global variables (-D name=value). err is non-nil when the script failed.
func miltertest(t testing.TB, script string, defines map[string]string) (out string, err error) {
	t.Helper()
	bin := requireTool(t, "miltertest")
	args := []string{"-s", script}
	keys := make([]string, 0, len(defines))
	for k := range defines {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-D", k+"="+defines[k])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	t.Logf("miltertest %s -> %v\n%s", strings.Join(args, " "), err, indent(string(b)))
	return string(b), err
}
