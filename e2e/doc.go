// Package e2e holds milter-grey's end-to-end tests: the real daemon, built
// from cmd/milter-grey, behind private Postfix and Sendmail instances on
// loopback, driven by swaks, OpenDKIM's miltertest and go-milter's client,
// with a real redis-server, a DNS server on loopback for SPF and DKIM, the
// real Postgrey to compare list reading with, and the Debian package
// installed in a throwaway root: the way a mail administrator would wire it
// up.
//
// Run them with `go test ./e2e/`. The *_test.go files are the scenarios:
// each is a named test that reads as a description of the daemon's
// behaviour, with the helpers only it needs. The harness, in the
// harness*.go files, knows how to run the tools (the daemon, Postfix,
// swaks, miltertest, a milter client, Postgrey) but nothing about
// greylisting.
//
// The tests need root and the Debian packages e2e/install-deps.sh installs
// (postfix, swaks, miltertest, redis-server, postgrey, m4 for Sendmail's
// configuration, debootstrap, systemd). When a tool is missing
// they are skipped, except under CI=true, where they fail: CI installs the
// tools (.ci/run), so a missing one there is a broken set-up, not a reason to
// pass silently.
package e2e
