package badgerstore

import (
	"errors"
	"fmt"
	"syscall"
	"time"
)

// Badger writes its write-ahead log (the current memtable's .mem file)
// through a memory mapping of a file it creates sparse, twice
// MemTableSize long. A page of it gets its disk block only when first
// written, and when the filesystem has no block left the kernel answers the
// write with SIGBUS, which the Go runtime cannot turn into an error: the
// daemon dies with "fatal error: fault" in memTable.Put, and again at
// every start while the disk stays full (Open maps and writes a new
// memtable file). A memtable file that cannot be created at all (a
// read-only filesystem, a directory made unwritable) leaves Badger without
// a mutable memtable, and every read after that panics until a restart.
//
// So the store refuses to write while the directory's filesystem has
// less than minFree bytes available or the directory is not writable, and
// Open refuses to open it then: the error makes decisions follow
// on_error, and writes resume by themselves once there is room again.
// This narrows the window, it does not close it: the disk can still fill
// between the check and Badger's next page fault (another process writing
// minFree in that instant, or within recheckWritable), and Badger's own
// background work (a memtable flush, a compaction) needs room of its own.

// minFree is the space a write needs available: what Badger may still
// write after the check: the rest of the current memtable log and the
// next one (MemTableSize each, options.go), the flush of a full memtable
// to a level-0 table (as much again) and a compaction's new tables
// before the old ones are deleted.
const minFree = 32 << 20

// ErrNotWritable is wrapped by the errors of writes (and of Open) refused
// because the store's directory is not writable, its filesystem is
// read-only, or has less than minFree bytes available.
var ErrNotWritable = errors.New("store directory not writable")

// stRdonly is ST_RDONLY of statfs(2)'s f_flags (MNT_RDONLY on the BSDs).
const stRdonly = 0x1

// checkWritable tells whether Badger may write in dir now (see above).
func checkWritable(dir string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("%w: statfs %s: %v", ErrNotWritable, dir, err)
	}
	if uint64(st.Flags)&stRdonly != 0 {
		return fmt.Errorf("%w: %s is on a read-only filesystem", ErrNotWritable, dir)
	}
	if err := syscall.Access(dir, 2 /* W_OK */); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNotWritable, dir, err)
	}
	if free := uint64(st.Bavail) * uint64(st.Bsize); free < minFree {
		return fmt.Errorf("%w: %s: %.1f MiB available on its filesystem, writes need %d MiB (a full disk crashes Badger)",
			ErrNotWritable, dir, float64(free)/(1<<20), minFree>>20)
	}
	return nil
}

// recheckWritable is how long a successful check holds: the two system
// calls cost about 3 µs, a fifth of a write, and the disk would have to
// fill minFree in that time to get past the check. A failed check is not
// kept: the next write checks again, so writes resume at once.
const recheckWritable = 10 * time.Millisecond

// writable is checkWritable for the store's directory; a store in memory
// is always writable.
func (s *Store) writable() error {
	if s.dir == "" {
		return nil
	}
	// Wall-clock nanoseconds: a clock step only shortens or stretches
	// one 10 ms period.
	now := time.Now().UnixNano()
	if now < s.writableUntil.Load() {
		return nil
	}
	if err := checkWritable(s.dir); err != nil {
		return err
	}
	s.writableUntil.Store(now + int64(recheckWritable))
	return nil
}
