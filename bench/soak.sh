#!/usr/bin/env bash
# bench/soak.sh: the soak test (e2e TestSoak), with its figures kept.
#
#   bench/soak.sh [DURATION [RATE]]      default 30m, 400 sessions/s in bursts
#
# Runs milter-grey for DURATION under a mix of new, retried, known,
# bypass (SPF pass) and DKIM-pending milter sessions (some aborted, some
# dropped mid-body) from go-milter clients on 127.0.0.1, sampling /metrics
# every 10 s (RSS, heap, goroutines, open fds, decisions), and fails if the
# samples after the warm-up (the first 20 %) are not flat. The samples go
# to OUT/_artifacts/*/soak.csv, the test's log to OUT/soak.log (default
# OUT: a new /tmp directory); the summary is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-30m}
rate=${2:-400}
out=${OUT:-$(mktemp -d /tmp/milter-grey-soak.XXXXXX)}
mkdir -p "$out"

# go test's -timeout: the soak plus 10 minutes for the build and the end
# (for a duration in s, m or h; anything else: no timeout).
case $duration in
*h) timeout=$(( ${duration%h} * 60 + 10 ))m ;;
*m) timeout=$(( ${duration%m} + 10 ))m ;;
*s) timeout=$(( ${duration%s} + 600 ))s ;;
*) timeout=0 ;;
esac

echo "soak: $duration at $rate sessions/s; output in $out"
status=0
MILTER_GREY_SOAK=$duration MILTER_GREY_SOAK_RATE=$rate \
	go test -count=1 -run '^TestSoak$' -timeout "$timeout" -v -artifacts -outputdir "$out" ./e2e/ \
	>"$out/soak.log" 2>&1 || status=$?
sed -n '/soak_test.go/p; /^--- /p' "$out/soak.log"
find "$out/_artifacts" -name soak.csv 2>/dev/null
exit $status
