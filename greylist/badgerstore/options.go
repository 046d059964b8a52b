package badgerstore

import (
	"github.com/dgraph-io/badger/v4"
)

// valueThreshold keeps every record in the LSM tree: an encoded record is
// at most 32 bytes, so nothing goes to the value log and reads never touch
// it. Badger rejects a threshold above 15 % of MemTableSize (1.2 MiB here);
// its 1 MiB default would pass at 8 MiB but not below ~6.7 MiB.
const valueThreshold = 1 << 10

// badgerOptions are Badger's defaults cut down for a mail filter: small
// values, modest write rates, and a host that also runs an MTA.
//
// Measured on a 2-core VM, 4 writers, one txn per key, ~60 B keys, 16 B
// values (the tuned column costs some write rate at 1M keys):
//
//	keys  options   peak RSS  txn/s  disk after Close
//	100k  defaults  123 MB    58k    2.9 MB
//	100k  these      94 MB    56k    2.8 MB
//	1M    defaults  639 MB    51k    31 MB
//	1M    these     253 MB    42k    31 MB
//
// With GOMEMLIMIT=40MiB the 100k case peaks at 53 MB at 52k txn/s.
func badgerOptions(dir string, o Options) badger.Options {
	bo := badger.DefaultOptions(dir)
	if o.InMemory {
		bo = badger.DefaultOptions("").WithInMemory(true)
	}
	bo = bo.
		// Memtables are allocated whole: 2 × 8 MiB instead of 5 × 64 MiB
		// (RSS 123 → 94 MB at 100k keys). 8 MiB still holds tens of
		// thousands of our small records between flushes, so the write
		// rate stayed within 4 % there.
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		// Compact L0 early, sized for the small memtables: fewer
		// overlapping tables to search per read. Writes stall at 4 L0
		// tables instead of 15, which greylisting rates do not reach.
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(4).
		// Smaller tables and base level to match the small memtable; our
		// whole database is a few MB to a few tens of MB.
		WithBaseTableSize(1 << 20).
		WithBaseLevelSize(4 << 20).
		// The default ~1 GiB value log file is sparse, but ls and backups
		// see 2.2 GB in the directory while open; with 16 MiB, 52 MB.
		WithValueLogFileSize(16 << 20).
		WithValueThreshold(valueThreshold).
		// Block cache 256 MiB → 8 MiB: the hot set is recent triplets.
		// It must stay non-zero while compression (Snappy, the default,
		// ~3× smaller on disk) is on, or badger.Open panics.
		WithBlockCacheSize(8 << 20).
		// Cap table indexes and bloom filters (0 keeps them all in heap,
		// growing with the database).
		WithIndexCacheSize(4 << 20).
		// 2 is the minimum that keeps compaction on (1 is an error).
		WithNumCompactors(2).
		// Badger's expvar metrics cost memory and CPU and nothing reads
		// them (DB.Size then reports 0).
		WithMetricsEnabled(false).
		// Every writer of a key holds its lock in this process (the only
		// one: Badger locks the directory), so Badger's optimistic
		// conflict detection has nothing to find; off, it stops keeping
		// the keys of recent commits.
		WithDetectConflicts(false).
		WithSyncWrites(o.SyncWrites).
		// Not WithLoggingLevel: it replaces the logger with Badger's
		// stderr one. The adapter drops INFO and DEBUG itself.
		WithLogger(newLogger(o.Logger))
	// Every level's tables at BaseTableSize (the default doubles it per
	// level). A compaction builds its tables in parallel, each in memory
	// of about twice the table size; with 1 M triplets, 1 MiB tables at
	// every level cut the daemon's peak RSS under load from 186-190 to
	// 161-165 MiB and its CPU per decision from 94 to 73 us (a 30 s load,
	// half of it new triplets, on a copy of the bench's 1 M store).
	bo.TableSizeMultiplier = 1
	return bo
}
