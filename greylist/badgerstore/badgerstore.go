// Package badgerstore is a greylist.Store on Badger v4, the embedded
// default: one process, one directory, no server to run.
//
// Records are stored as greylist.Record.MarshalBinary under their key, with
// Badger's TTL for cleanup. Badger keeps expiry in whole seconds; the store
// rounds up, so a record lives at least its TTL and at most a second more.
// Badger locks its directory, so several MX hosts sharing greylist state
// need a network store instead.
//
// Memory: the options (see options.go) keep Badger's own buffers to a few
// tens of MiB; most of the remaining RSS is Go heap garbage, so a daemon
// should also set GOMEMLIMIT (64–128 MiB measured well).
package badgerstore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/milter-grey/milter-grey/internal/keylock"
)

// Options configures Open. The zero value is a sensible default.
type Options struct {
	// SyncWrites fsyncs every commit: survives power loss, slower. Without
	// it a crash of the machine (not of the process) may lose the last
	// writes, which for greylisting means a few senders are delayed again.
	SyncWrites bool

	// Logger receives Badger's own WARNING and ERROR messages and the
	// store's background errors; nil discards them.
	Logger *slog.Logger

	// InMemory keeps everything in memory and nothing on disk; for tests
	// only. dir must then be "".
	InMemory bool
}

// ErrLocked is wrapped by Open when another process holds the directory.
var ErrLocked = errors.New("database directory is locked by another process")

// gcInterval is how often the value log is garbage-collected.
const gcInterval = 10 * time.Minute

// Store is a greylist.Store on a Badger database. It is safe for
// concurrent use.
type Store struct {
	db  *badger.DB
	dir string
	log *slog.Logger // nil: discard

	// locks serialises the writers of a key within the process: Update,
	// Put and Delete. Badger allows one process per directory, so these
	// locks see every writer, and an Update's read and write need no
	// read-write transaction (see Update). Badger's own optimistic
	// transactions would instead fail N-1 of N concurrent
	// read-modify-writes of a key and retry them: measured, 32 goroutines
	// × 50 increments of one key on 2 CPUs, 600–800 conflicts and 25 ms
	// without locks, none and 13 ms with them.
	locks *keylock.Locks

	writableUntil atomic.Int64 // Unix ns: when the last check that the directory takes writes expires (space.go)

	stop chan struct{}  // closed by Close to stop the GC loop
	wg   sync.WaitGroup // the GC loop

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating it 0700 if needed) the Badger database in dir.
func Open(dir string, opts Options) (*Store, error) {
	return open(dir, opts, gcInterval)
}

// open is Open with a GC interval tests can shorten.
func open(dir string, opts Options, gcEvery time.Duration) (*Store, error) {
	if opts.InMemory {
		if dir != "" {
			return nil, fmt.Errorf("badgerstore: open %s: InMemory needs an empty dir", dir)
		}
	} else {
		if dir == "" {
			return nil, errors.New("badgerstore: open: empty directory name")
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("badgerstore: open %s: %w", dir, err)
		}
		// Badger's Open writes a new memtable file (space.go).
		if err := checkWritable(dir); err != nil {
			return nil, fmt.Errorf("badgerstore: open %s: %w", dir, err)
		}
	}
	db, err := badger.Open(badgerOptions(dir, opts))
	if err != nil {
		return nil, openError(dir, err)
	}
	s := &Store{db: db, dir: dir, log: opts.Logger, locks: keylock.New(), stop: make(chan struct{})}
	// In memory there is no value log to collect (RunValueLogGC says so).
	if !opts.InMemory {
		s.wg.Go(func() { s.gcLoop(gcEvery) })
	}
	return s, nil
}

// openError explains Badger's Open errors. Badger formats its lock error
// with %+v, not %w, so the flock errno cannot be matched with errors.Is;
// its text is all there is.
func openError(dir string, err error) error {
	if strings.Contains(err.Error(), "Another process is using this Badger database") {
		holder := ""
		// Badger writes the holder's pid into dir/LOCK.
		if pid, rerr := os.ReadFile(filepath.Join(dir, "LOCK")); rerr == nil {
			if p := strings.TrimSpace(string(pid)); p != "" {
				holder = "pid " + p + "; "
			}
		}
		return fmt.Errorf("badgerstore: open %s: %w (%sanother milter-grey uses it?)", dir, ErrLocked, holder)
	}
	return fmt.Errorf("badgerstore: open %s: %w", dir, err)
}

// Close stops the background GC and closes the database, flushing its
// memtables. Calls after the first do nothing and return nil; other methods
// return an error after Close.
func (s *Store) Close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		close(s.stop)
		s.wg.Wait()
		// Close flushes the memtable into a new table file, written
		// through a mapping: on a full disk a SIGBUS (space.go), on a
		// read-only one a flush Badger retries for ever. Leave the
		// records in the write-ahead log instead, as a crash would: the
		// next Open replays it.
		if s.dir != "" {
			if err := checkWritable(s.dir); err != nil {
				s.closeErr = fmt.Errorf("badgerstore: close %s: left unflushed, the next start replays its log: %w", s.dir, err)
				return
			}
		}
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("badgerstore: close %s: %w", s.dir, err)
		}
	})
	if !first {
		return nil
	}
	return s.closeErr
}
