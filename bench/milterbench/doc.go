// Package milterbench holds the benchmarks of the milter round trip:
// go-milter's client, driven by the load generator (bench/internal/loadgen),
// against a milter.Server on loopback wired as cmd/milter-grey wires it
// with the bench configuration (defaults: auto-whitelist 5, X-Greylist
// header; Badger on disk; one decision log line per recipient to a file;
// no SPF), and against the bare in-memory baseline milter
// (bench/internal/baseline), the limit of the stack. bench/run.sh runs
// them. The package has no code of its own; it lives under bench/ so that
// the product's milter package does not depend on benchmark tooling.
package milterbench
