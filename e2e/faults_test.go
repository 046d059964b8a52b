package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/milter-grey/milter-grey/testutil/testci"
)

// Store faults and crashes of the Badger store, as an admin meets them: the
// disk fills up, the store's filesystem turns read-only, the daemon is
// killed under load, the machine loses power. Each test mounts what it
// breaks (a tmpfs, a loop device) and so needs root; without it, or where
// mounting is not permitted, it is skipped (a failure under CI=true).
//
// What Badger did on a full disk, observed here before the store guarded
// against it (greylist/badgerstore/space.go): it writes its write-ahead log
// (the memtable's .mem file) and its tables through memory mappings of
// sparse files, so a write that needs a new block does not fail with
// ENOSPC: the kernel sends SIGBUS and the daemon dies ("fatal error:
// fault" in badger.(*logFile).writeEntry), on tmpfs and on ext4 alike,
// after the few decisions that still fit in the log's last page; again at
// every start while the disk stays full (Open writes a new memtable file),
// and at SIGTERM (Close flushes the memtable to a new table). A memtable
// file that cannot be created (a read-only directory) left Badger without
// a memtable: every later decision panicked and dropped its milter
// connection, with milter_grey_store_up still 1, until a restart. The
// store now refuses to write while less than 32 MiB are available or the
// directory is not writable, and does not flush at Close then, so these
// tests see on_error instead. And since reads still work, a known
// correspondent's decision (a read) used to end the outage ("store
// recovered") and the next write to begin another; an outage now ends at
// the first successful write (greylist/engine.go, storeOK).

// mountTmpfs mounts a tmpfs of the given size (as mount(8) reads it: "64m")
// on a fresh directory readable by all, and unmounts it when the test ends
// (after the daemons the test starts later are stopped).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testci.SkipOrFail(t, "mounting a tmpfs needs root")
	}
	dir, err := os.MkdirTemp("", "e2e-tmpfs-")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		os.Remove(dir)
		testci.SkipOrFail(t, "mount -t tmpfs is not permitted here: %v: %s", err, out)
	}
	t.Cleanup(func() { unmount(t, dir); os.Remove(dir) })
	return dir
}

// unmount unmounts dir, waiting a little for a process that just ended to
// let go of it.
func unmount(t *testing.T, dir string) {
	t.Helper()
	var out []byte
	var err error
	if waitFor(5*time.Second, func() bool {
		out, err = exec.Command("umount", dir).CombinedOutput()
		return err == nil
	}) {
		return
	}
	t.Errorf("umount %s: %v: %s", dir, err, out)
}

// mustRun runs a command that must succeed and returns its output.
func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// fill writes a file of zeros in 1 MiB blocks until the filesystem
// refuses more (ENOSPC), and returns the bytes written.
func fill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 1<<20)
	var n int64
	for {
		w, err := f.Write(block)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			return n
		}
		if err != nil {
			t.Fatalf("fill %s: %v after %d bytes", path, err, n)
		}
	}
}

// availableBytes is what statfs(2) says unprivileged users may still write
// on dir's filesystem.
func availableBytes(t *testing.T, dir string) uint64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Bavail * uint64(st.Bsize)
}

// idleRuntime waits until the daemon has no milter session open and
// returns its goroutines and open file descriptors, from /metrics.
func idleRuntime(t *testing.T, m *metricsReader) (goroutines, fds float64) {
	t.Helper()
	var v map[string]float64
	var err error
	if !waitFor(10*time.Second, func() bool {
		v, err = m.read()
		return err == nil && v["milter_grey_sessions_open"] == 0
	}) {
		t.Fatalf("sessions still open 10s after the last one ended (or /metrics fails: %v): %v", err, v["milter_grey_sessions_open"])
	}
	return v["go_goroutines"], v["process_open_fds"]
}

// metricValue reads one metric (summed over its labels).
func metricValue(t *testing.T, m *metricsReader, name string) float64 {
	t.Helper()
	v, err := m.read()
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	return v[name]
}

// storeErrorDecisions counts the decisions of a log that followed on_error.
func storeErrorDecisions(log string) int {
	n := 0
	for _, f := range decisions(log) {
		if f["reason"] == "store-error" {
			n++
		}
	}
	return n
}

// The outage part the full-disk and read-only tests share: while broken()
// holds, fresh triplets follow on_error, a triplet passed before still
// passes, the daemon stays up and warns once; after repair() greylisting
// resumes by itself, "store recovered" says how many decisions were
// affected, and no goroutine or descriptor is left behind.
type outage struct {
	name     string // what breaks, for messages: "the disk is full"
	onError  string
	break_   func(t *testing.T)
	repair   func(t *testing.T)
	errorSay string // a part of the "store failing" line's err
}

func testStoreOutage(t *testing.T, store string, o outage) {
	adminAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, greyConfig(map[string]string{
		"store":        strconv.Quote(store),
		"on_error":     strconv.Quote(o.onError),
		"admin_listen": strconv.Quote("inet:" + adminAddr),
	}))
	m := newMetricsReader(adminAddr)
	wantDuring, duringAction := "continue", "action=pass"
	okDuring := func(got string) bool { return got == "continue" }
	if o.onError == "tempfail" {
		wantDuring, duringAction = storeErrorReply.String(), "action=greylist"
		okDuring = storeErrorReply.MatchString
	}

	// Before: greylisting works, and one correspondent is known (passed).
	known := freshEnvelope("known")
	if got := ask(t, d, known); !greylistReply.MatchString(got) {
		t.Fatalf("fresh triplet answered %q, want %q", got, greylistReply)
	}
	firstDone := time.Now()
	for range 50 { // some load, so that the baseline below is a warm daemon's
		if got := ask(t, d, freshEnvelope("before")); !greylistReply.MatchString(got) {
			t.Fatalf("fresh triplet answered %q, want %q", got, greylistReply)
		}
	}
	time.Sleep(time.Until(firstDone.Add(afterDelay)))
	if got := ask(t, d, known); got != "continue" {
		t.Fatalf("retry after the delay answered %q, want continue", got)
	}
	g0, f0 := idleRuntime(t, m)
	t.Logf("before: %.0f goroutines, %.0f open fds", g0, f0)

	o.break_(t)
	// The store trusts a successful check of its directory for 10 ms
	// (badgerstore's recheckWritable): a write in that instant still goes
	// to the log file it has open.
	time.Sleep(50 * time.Millisecond)
	const during = 20
	if !t.Run("while "+o.name+" decisions follow on_error and the daemon warns once", func(t *testing.T) {
		for range during {
			env := freshEnvelope("down")
			if got := ask(t, d, env); !okDuring(got) {
				t.Errorf("while %s, %s answered %q, want %q (on_error = %q)", o.name, env.From, got, wantDuring, o.onError)
			}
		}
		// Reading needs no room: a known correspondent still passes.
		if got := ask(t, d, known); got != "continue" {
			t.Errorf("while %s, the known triplet answered %q, want continue", o.name, got)
		}
		d.WaitLog(t, 5*time.Second, duringAction, "reason=store-error")
		d.WaitLog(t, 5*time.Second, "action=pass", "reason=known", known.From)
		running(t, d)
		line := d.WaitLog(t, 5*time.Second, "store failing")
		t.Logf("the warning: %s", line)
		if !strings.Contains(line, o.errorSay) {
			t.Errorf("the warning does not say %q", o.errorSay)
		}
		log := d.Log()
		if n := countLines(log, "store failing"); n != 1 {
			t.Errorf("%d \"store failing\" lines for one outage of %d decisions, want 1", n, during)
		}
		if n := storeErrorDecisions(log); n != during {
			t.Errorf("%d decisions logged with reason=store-error, want %d", n, during)
		}
		if up := metricValue(t, m, "milter_grey_store_up"); up != 0 {
			t.Errorf("milter_grey_store_up = %v while %s, want 0", up, o.name)
		}
		// /healthz checks that the store answers a read, which it does.
		if resp, err := m.client.Get("http://" + adminAddr + "/healthz"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Logf("GET /healthz while %s: %s %s", o.name, resp.Status, strings.TrimSpace(string(body)))
		}
		g, f := idleRuntime(t, m)
		t.Logf("during: %.0f goroutines, %.0f open fds", g, f)
	}) {
		return
	}

	o.repair(t)
	t.Run("once repaired greylisting resumes by itself, with no goroutine left behind", func(t *testing.T) {
		var last string
		if !waitFor(15*time.Second, func() bool {
			last = ask(t, d, freshEnvelope("back"))
			return greylistReply.MatchString(last)
		}) {
			t.Fatalf("15s after the repair a fresh triplet still gets %q, want %q", last, greylistReply)
		}
		running(t, d)
		line := d.WaitLog(t, 5*time.Second, "store recovered")
		t.Logf("the recovery: %s", line)
		log := d.Log()
		if n := countLines(log, "store recovered"); n != 1 {
			t.Errorf("%d \"store recovered\" lines, want 1", n)
		}
		if n := countLines(log, "store failing"); n != 1 {
			t.Errorf("%d \"store failing\" lines, want 1 (one outage)", n)
		}
		if got, want := logFields(line)["failed_decisions"], strconv.Itoa(storeErrorDecisions(log)); got != want {
			t.Errorf("store recovered reports failed_decisions=%s, but %s decisions were logged with reason=store-error", got, want)
		}
		if up := metricValue(t, m, "milter_grey_store_up"); up != 1 {
			t.Errorf("milter_grey_store_up = %v after the recovery, want 1", up)
		}
		for _, bad := range []string{"panic", "level=ERROR", "fatal error"} {
			if l, ok := lineWith(log, bad); ok {
				t.Errorf("daemon log has %q: %s", bad, l)
			}
		}
		// The same count of goroutines and descriptors as before the
		// outage, give or take background work caught at that moment.
		const margin = 5
		g1, f1 := idleRuntime(t, m)
		t.Logf("after: %.0f goroutines, %.0f open fds (before: %.0f, %.0f)", g1, f1, g0, f0)
		if g1 > g0+margin {
			t.Errorf("%.0f goroutines after the outage, %.0f before: a leak", g1, g0)
		}
		if f1 > f0+margin {
			t.Errorf("%.0f open fds after the outage, %.0f before: a leak", f1, f0)
		}
	})
}

// The store's disk fills up (here a 64 MiB tmpfs, filled with a file of
// zeros until the filesystem refuses more): decisions keep getting answers
// as on_error says, the daemon stays up and warns once; when the file is
// deleted greylisting resumes without a restart.
func TestFullDiskFollowsOnErrorAndRecovers(t *testing.T) {
	t.Parallel()
	for _, onError := range []string{"accept", "tempfail"} {
		t.Run("on_error "+onError, func(t *testing.T) {
			t.Parallel()
			mnt := mountTmpfs(t, "64m")
			filler := filepath.Join(mnt, "filler")
			testStoreOutage(t, filepath.Join(mnt, "store"), outage{
				name: "the disk is full", onError: onError, errorSay: "available on its filesystem",
				break_: func(t *testing.T) {
					n := fill(t, filler)
					t.Logf("filled the tmpfs with %d MiB; %d bytes available", n>>20, availableBytes(t, mnt))
				},
				repair: func(t *testing.T) {
					must(t, os.Remove(filler))
					t.Logf("deleted the filler; %d MiB available", availableBytes(t, mnt)>>20)
				},
			})
		})
	}
	// Stopping flushes Badger's memtable into a new table, which needs
	// room: on a full disk the daemon leaves the records in its log, as a
	// crash would, and says so; the next start replays them.
	t.Run("stopped while the disk is full: no crash, nothing answered lost", func(t *testing.T) {
		t.Parallel()
		mnt := mountTmpfs(t, "64m")
		d := startDaemon(t, greyConfig(map[string]string{"store": strconv.Quote(filepath.Join(mnt, "store"))}))
		var envs []envelope
		for range 100 {
			env := freshEnvelope("term")
			if got := ask(t, d, env); !greylistReply.MatchString(got) {
				t.Fatalf("fresh triplet answered %q, want %q", got, greylistReply)
			}
			envs = append(envs, env)
		}
		answered := time.Now()
		filler := filepath.Join(mnt, "filler")
		fill(t, filler)
		r := d.current()
		d.stop(t) // SIGTERM
		log := d.Log()
		t.Logf("after SIGTERM with the disk full: %v; last lines:\n%s", r.err, indent(tail(log, 3)))
		var ee *exec.ExitError
		if errors.As(r.err, &ee) && ee.ExitCode() != 1 {
			t.Errorf("milter-grey exited with status %d on SIGTERM, want 0 or 1 (an error)", ee.ExitCode())
		}
		for _, bad := range []string{"fatal error", "panic", "SIGBUS"} {
			if line, ok := lineWith(log, bad); ok {
				t.Errorf("log after SIGTERM with the disk full: %s", line)
			}
		}
		if _, ok := lineWith(log, "close store", "left unflushed", "replays its log"); !ok {
			t.Errorf("the daemon did not say that it left its records in the log")
		}
		must(t, os.Remove(filler))
		d.Restart(t)
		time.Sleep(time.Until(answered.Add(afterDelay)))
		for _, env := range envs {
			if got := ask(t, d, env); got != "continue" {
				t.Errorf("after the restart, the retry of %s answered %q, want continue: its record was lost", env.From, got)
			}
		}
	})
}

func TestReadOnlyStoreDirectory(t *testing.T) {
	t.Parallel()
	// The daemon refuses to start, saying which directory and why, and
	// without a crash.
	t.Run("start on a read-only filesystem fails with a clear error", func(t *testing.T) {
		t.Parallel()
		mnt := mountTmpfs(t, "64m")
		store := filepath.Join(mnt, "store")
		must(t, os.Mkdir(store, 0o700))
		mustRun(t, "mount", "-o", "remount,ro", mnt)
		out := startFails(t, store, nil)
		if !strings.Contains(out, "read-only file") {
			t.Errorf("the error does not say the filesystem is read-only")
		}
	})
	// Root ignores mode bits: the daemon runs as nobody here, as the
	// systemd unit runs it as milter-grey.
	t.Run("start on a directory its user cannot write fails with a clear error", func(t *testing.T) {
		t.Parallel()
		setpriv := requireTool(t, "setpriv")
		mnt := mountTmpfs(t, "64m")
		store := filepath.Join(mnt, "store")
		must(t, os.Mkdir(store, 0o500))
		must(t, os.Chown(store, 65534, 65534))
		must(t, os.Chmod(store, 0o500)) // after the umask
		out := startFails(t, store, []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"})
		if !strings.Contains(out, "permission denied") {
			t.Errorf("the error does not say permission denied")
		}
	})
	// At run time. Linux refuses to remount a filesystem read-only while
	// a process holds files on it open for writing, as Badger does
	// ("mount point is busy"), so `mount -o remount,ro` is tried and, as
	// it fails, a read-only bind mount over the store directory is used:
	// files the daemon has open stay writable, new ones cannot be created,
	// which is what Badger needs at its next memtable. (A filesystem the
	// kernel turns read-only after an I/O error, errors=remount-ro, is
	// the case met in practice.)
	t.Run("store turned read-only at run time follows on_error and recovers", func(t *testing.T) {
		t.Parallel()
		mnt := mountTmpfs(t, "64m")
		store := filepath.Join(mnt, "store")
		bound, remounted := false, false
		t.Cleanup(func() {
			if bound {
				unmount(t, store)
			}
		})
		testStoreOutage(t, store, outage{
			name: "the store is read-only", onError: "accept", errorSay: "read-only",
			break_: func(t *testing.T) {
				out, err := exec.Command("mount", "-o", "remount,ro", mnt).CombinedOutput()
				if err == nil {
					remounted = true
					t.Logf("remounted %s read-only under the running daemon", mnt)
					return
				}
				t.Logf("mount -o remount,ro %s under the running daemon: %v: %s; a read-only bind mount instead",
					mnt, err, strings.TrimSpace(string(out)))
				mustRun(t, "mount", "--bind", store, store)
				bound = true
				mustRun(t, "mount", "-o", "remount,ro,bind", store)
				if f, err := os.Create(filepath.Join(store, "probe")); err == nil {
					f.Close()
					t.Fatal("created a file in the store directory through the read-only bind mount")
				}
			},
			repair: func(t *testing.T) {
				if remounted {
					mustRun(t, "mount", "-o", "remount,rw", mnt)
					return
				}
				unmount(t, store)
				bound = false
			},
		})
	})
}

// startFails starts the daemon (through prefix: nothing, or setpriv and
// its flags) on store and expects it to exit with status 1 and an error
// naming the directory, without a crash; it returns the output.
func startFails(t *testing.T, store string, prefix []string) string {
	t.Helper()
	// The binary and the configuration in a directory another user can
	// read (the test's temporary directories are root's alone).
	cfgDir, err := os.MkdirTemp("", "e2e-cfg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(cfgDir) })
	must(t, os.Chmod(cfgDir, 0o755))
	bin := filepath.Join(cfgDir, "milter-grey")
	copyFile(t, buildDaemon(t), bin, 0o755)
	cfg := filepath.Join(cfgDir, "milter-grey.toml")
	conf := fmt.Sprintf("listen = %q\nstore = %q\n", fmt.Sprintf("inet:127.0.0.1:%d", freePort(t)), store) + greyConfig(nil)
	must(t, os.WriteFile(cfg, []byte(conf), 0o644))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append(append([]string{}, prefix...), bin, "-config", cfg)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	t.Logf("%s\n-> %v\n%s", strings.Join(args, " "), err, indent(out))
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("milter-grey still ran 20s after its start on %s; it should have refused to start", store)
	case errors.As(err, &ee) && ee.ExitCode() == 1:
	default:
		t.Fatalf("milter-grey exited with %v, want exit status 1", err)
	}
	if !strings.Contains(out, store) {
		t.Errorf("the error does not name the store directory %s", store)
	}
	for _, bad := range []string{"panic", "fatal error", "goroutine "} {
		if strings.Contains(out, bad) {
			t.Errorf("the output has %q: a crash, not an error", bad)
		}
	}
	return out
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	must(t, dst.Close())
	must(t, os.Chmod(to, mode))
}

// crashLoad is several MTAs sending to the daemon at once, each session a
// new triplet or the retry (after the delay) of one greylisted before, and
// what they got back: the triplets whose reply arrived are the ones a
// crash must not lose.
type crashLoad struct {
	addr     string
	stopping atomic.Bool // set before the daemon is killed or stopped: errors are expected from then on
	wg       sync.WaitGroup

	mu       sync.Mutex
	answered map[string]envelope // by sender: replies received
	pending  []pendingTriplet    // answered 451 (new), not yet retried
	lastAt   time.Time           // the latest reply
	retried  int                 // retries answered continue
	problems []string
}

func startCrashLoad(addr string, workers int) *crashLoad {
	l := &crashLoad{addr: addr, answered: map[string]envelope{}}
	for range workers {
		l.wg.Go(func() {
			for !l.stopping.Load() {
				if !l.session() {
					return
				}
			}
		})
	}
	return l
}

// session runs one session; false when the daemon no longer answers.
func (l *crashLoad) session() bool {
	var env envelope
	retry := false
	l.mu.Lock()
	if rand.IntN(3) == 0 && len(l.pending) > 0 && time.Since(l.pending[0].at) > afterDelay {
		env, retry = l.pending[0].env, true
		l.pending = l.pending[1:]
	}
	l.mu.Unlock()
	if !retry {
		env = envelope{ClientIP: soakClientIP(), Helo: "mail.sender.test", From: newSender("crash"), Rcpt: "user@dest.test"}
	}
	act, err := milterRcpt(l.addr, env)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if !l.stopping.Load() {
			l.problems = append(l.problems, fmt.Sprintf("%s before the crash: %v", env.From, err))
		}
		return false
	}
	got := actionText(act)
	switch {
	case !retry && greylistReply.MatchString(got):
		l.pending = append(l.pending, pendingTriplet{env, time.Now()})
	case retry && got == "continue":
		l.retried++
	default:
		l.problems = append(l.problems, fmt.Sprintf("%s (retry %v) answered %q before the crash", env.From, retry, got))
		return true
	}
	l.answered[env.From] = env
	l.lastAt = time.Now()
	return true
}

func (l *crashLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.answered)
}

// crashAfterLoad runs the load on d until at least atLeast replies came
// back and the first triplets are due for their retry, then a random
// moment more (up to 2 s), and calls crash (the load is told first, so that
// the errors it then meets are not problems); it returns the load once
// every MTA gave up.
func crashAfterLoad(t *testing.T, d *daemon, crash func()) *crashLoad {
	t.Helper()
	const atLeast = 300
	start := time.Now()
	l := startCrashLoad(d.Addr, 6)
	if !waitFor(30*time.Second, func() bool { return l.count() >= atLeast }) {
		t.Logf("only %d replies in 30s", l.count())
	}
	time.Sleep(time.Until(start.Add(afterDelay + time.Second))) // some retries in the mix
	extra := time.Duration(rand.Int64N(int64(2 * time.Second)))
	time.Sleep(extra)
	at := time.Since(start)
	l.stopping.Store(true)
	crash()
	l.wg.Wait()
	for i, p := range l.problems {
		if i == 10 {
			t.Errorf("… %d problems in all", len(l.problems))
			break
		}
		t.Error(p)
	}
	if len(l.answered) == 0 {
		t.Fatal("no reply before the crash: nothing to check")
	}
	t.Logf("crash %v into the load: %d triplets answered, %d of them retried and passed",
		at.Round(time.Millisecond), len(l.answered), l.retried)
	return l
}

// expectAllKept asks d (started on the store the crash left) for every
// triplet l got a reply for, after the delay: each must pass (retried, or
// known), none be new again. It returns how many were lost.
func expectAllKept(t *testing.T, d *daemon, l *crashLoad, report bool) int {
	t.Helper()
	time.Sleep(time.Until(l.lastAt.Add(afterDelay)))
	envs := make(chan envelope)
	var mu sync.Mutex
	var lost []string
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for env := range envs {
				act, err := milterRcpt(d.Addr, env)
				got := ""
				if err != nil {
					got = "error: " + err.Error()
				} else {
					got = actionText(act)
				}
				if got != "continue" {
					mu.Lock()
					lost = append(lost, fmt.Sprintf("%s from %s: %s", env.From, env.ClientIP, got))
					mu.Unlock()
				}
			}
		})
	}
	for _, env := range l.answered {
		envs <- env
	}
	close(envs)
	wg.Wait()
	if report {
		for i, s := range lost {
			if i == 5 {
				break
			}
			t.Errorf("answered before the crash, after it: %s (the record was lost)", s)
		}
		if len(lost) > 0 {
			t.Errorf("%d of %d answered triplets lost", len(lost), len(l.answered))
		}
	}
	return len(lost)
}

// expectCleanOpen checks the log of a daemon started on a crashed store:
// Badger opened it without an error or a word of corruption.
func expectCleanOpen(t *testing.T, d *daemon) {
	t.Helper()
	log := d.Log()
	for _, bad := range []string{"corrupt", "checksum", "panic", "fatal error", "level=error", "truncat"} {
		if line, ok := lineWith(strings.ToLower(log), bad); ok {
			t.Errorf("log of the daemon on the crashed store mentions %q: %s", bad, line)
		}
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "component=badger") {
			t.Logf("badger said: %s", line)
		}
	}
}

// A crash under load, three ways. Each loses no triplet whose reply the
// MTA received, and leaves a database that opens cleanly.
//
// Not parallel: it loads the machine on purpose, and its retries are timed
// against the delay.
func TestKill9DuringLoadLosesNothingAnswered(t *testing.T) {
	// kill -9: the process dies, the kernel keeps what it wrote. Badger
	// writes each decision to its log (a mapped file) before the reply, so
	// the page cache holds it.
	t.Run("kill -9 at a random moment", func(t *testing.T) {
		d := startDaemon(t, greyConfig(nil))
		l := crashAfterLoad(t, d, func() {
			if err := d.Kill9(); err != nil {
				t.Error(err)
			}
		})
		d.Restart(t)
		expectCleanOpen(t, d)
		expectAllKept(t, d, l, true)
	})

	// A power cut, as far as a copy can show one: with sync_writes the
	// daemon is frozen (SIGSTOP) at a random moment, its store directory
	// copied, then it is killed, and a fresh daemon opens the copy. The
	// copy is what the page cache held at that instant, as a crash of the
	// process leaves it, a torn last write included: it proves that Badger
	// recovers from any instant. It cannot show what a power cut adds, the
	// loss of the page cache itself: everything written is in the copy,
	// synced or not. The loop device below does.
	t.Run("sync_writes, frozen and copied at a random moment", func(t *testing.T) {
		d := startDaemon(t, greyConfig(map[string]string{"sync_writes": "true"}))
		image := filepath.Join(t.TempDir(), "store-copy")
		l := crashAfterLoad(t, d, func() {
			r := d.current()
			if err := r.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Error(err)
			}
			if out, err := exec.Command("cp", "-a", "--sparse=always", d.Store, image).CombinedOutput(); err != nil {
				t.Errorf("copy the store: %v: %s", err, out)
			}
			if err := d.Kill9(); err != nil { // SIGKILL ends a stopped process too
				t.Error(err)
			}
		})
		fresh := startDaemon(t, greyConfig(map[string]string{"sync_writes": "true", "store": strconv.Quote(image)}))
		expectCleanOpen(t, fresh)
		expectAllKept(t, fresh, l, true)
	})

	// A power cut with the page cache lost: the store on ext4 on a loop
	// device; at a random moment the daemon is frozen and the loop
	// device's backing file copied: that is the disk as the kernel had
	// written it, without the dirty pages still in the page cache, which a
	// power cut loses. (The kernel may write back some dirty pages while
	// the copy runs, as it may at the instant of a real power cut.) A
	// fresh daemon opens a mount of the copy.
	for _, sync := range []bool{true, false} {
		name := "sync_writes, power cut of a loop device"
		if !sync {
			name = "without sync_writes, power cut of a loop device (losses reported, not failed)"
		}
		t.Run(name, func(t *testing.T) {
			losetup, mkfs := requireTool(t, "losetup"), requireTool(t, "mkfs.ext4")
			if os.Geteuid() != 0 {
				testci.SkipOrFail(t, "loop devices need root")
			}
			img := filepath.Join(t.TempDir(), "disk.img")
			mnt := mountLoop(t, losetup, mkfs, img, true)
			cfg := map[string]string{"sync_writes": strconv.FormatBool(sync), "store": strconv.Quote(filepath.Join(mnt, "store"))}
			d := startDaemon(t, greyConfig(cfg))
			cut := filepath.Join(t.TempDir(), "disk-after-power-cut.img")
			l := crashAfterLoad(t, d, func() {
				if err := d.current().cmd.Process.Signal(syscall.SIGSTOP); err != nil {
					t.Error(err)
				}
				if out, err := exec.Command("cp", "--sparse=always", img, cut).CombinedOutput(); err != nil {
					t.Errorf("copy the disk: %v: %s", err, out)
				}
				if err := d.Kill9(); err != nil {
					t.Error(err)
				}
			})
			mnt2 := mountLoop(t, losetup, mkfs, cut, false)
			logStoreFiles(t, filepath.Join(mnt2, "store"))
			cfg["store"] = strconv.Quote(filepath.Join(mnt2, "store"))
			fresh := startDaemon(t, greyConfig(cfg))
			expectCleanOpen(t, fresh)
			lost := expectAllKept(t, fresh, l, sync)
			if !sync {
				t.Logf("without sync_writes the power cut lost %d of %d answered triplets (the page cache's)", lost, len(l.answered))
			}
		})
	}
}

// logStoreFiles lists what a power cut left of a store directory.
func logStoreFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Logf("the store after the power cut: %v", err)
		return
	}
	var files []string
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			st, _ := fi.Sys().(*syscall.Stat_t)
			files = append(files, fmt.Sprintf("%s (%d KiB written)", e.Name(), st.Blocks/2))
		}
	}
	t.Logf("the store after the power cut: %s", strings.Join(files, ", "))
}

// mountLoop attaches img to a loop device (creating a 128 MiB ext4 image
// first when mkfs is true) and mounts it; both are undone when the test
// ends.
func mountLoop(t *testing.T, losetup, mkfs, img string, create bool) string {
	t.Helper()
	if create {
		must(t, os.WriteFile(img, nil, 0o600))
		must(t, os.Truncate(img, 128<<20))
		mustRun(t, mkfs, "-q", "-F", img)
	}
	out, err := exec.Command(losetup, "--find", "--show", img).CombinedOutput()
	if err != nil {
		testci.SkipOrFail(t, "losetup is not permitted here: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command(losetup, "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	dir, err := os.MkdirTemp("", "e2e-loop-")
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, "mount", dev, dir)
	t.Cleanup(func() { unmount(t, dir); os.Remove(dir) })
	return dir
}
