// Package e2e holds milter-grey's end-to-end tests: the real daemon, built
// from cmd/milter-grey, behind private Postfix and Sendmail instances on
// loopback, driven by swaks, OpenDKIM's miltertest and go-milter's client,
// with a real redis-server, a DNS server on loopback for SPF and DKIM, the
// real Postgrey to compare list reading with, and the Debian package
// installed in a throwaway root: the way a mail administrator would wire it
// up.
//
// It contains only tests (run them with `go test ./e2e/`). Each scenario is a
// named test that reads as a description of the daemon's behaviour; the
// harness files (postfix_test.go, daemon_test.go, swaks_test.go, ...) know
// how to run the tools but nothing about greylisting.
//
// The tests need root and the Debian packages e2e/install-deps.sh installs
// (postfix, swaks, miltertest, redis-server, postgrey, m4 for Sendmail's
// configuration, debootstrap, systemd). When a tool is missing
// they are skipped, except under CI=true, where they fail: CI installs the
// tools (.ci/run), so a missing one there is a broken set-up, not a reason to
// pass silently.
package e2e
