package badgerstore

import (
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// gcDiscardRatio rewrites a value log file when half of it is garbage,
// Badger's recommendation (lifetime write amplification of 2).
const gcDiscardRatio = 0.5

// gcLoop collects the value log every interval until Close. With records
// below the value threshold the log holds almost nothing and every run
// ends in ErrNoRewrite; the loop is there for values that ever do land in
// it (and costs one sample per interval).
func (s *Store) gcLoop(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.collect()
	}
}

// collect runs value log GC until it finds nothing to rewrite: each
// successful run rewrites one file.
func (s *Store) collect() {
	for {
		err := s.db.RunValueLogGC(gcDiscardRatio)
		switch {
		case err == nil:
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			// Nothing to do, or another GC (or Close) is running.
			return
		default:
			if s.log != nil {
				s.log.Warn("badgerstore: value log GC failed", "dir", s.dir, "err", err)
			}
			return
		}
		select {
		case <-s.stop:
			return
		default:
		}
	}
}
