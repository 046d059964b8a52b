#!/usr/bin/env bash
# scripts/fuzz.sh: run every fuzz target of the module, one after another,
# each for FUZZTIME (what `make fuzz` and `make fuzz-short` run).
#
#   scripts/fuzz.sh                       each target for 10 minutes
#   FUZZTIME=10s scripts/fuzz.sh          each for 10 seconds (make fuzz-short)
#   scripts/fuzz.sh ./accessmap ./auth    only the targets of these packages
#
# The targets are what `go test -list '^Fuzz'` reports. Every target runs
# even when one fails, and a summary ends the run: each target's result and
# its last progress line (elapsed time, executions, new inputs).
#
# A crasher is written to the package's testdata/fuzz/NAME/ and fails the
# run: keep it there, as a regression case that go test runs with the seeds.
# New inputs the fuzzer keeps are minimised for at most FUZZMINIMIZETIME
# each (Go's default, 60s, would spend a short run on one input).
#
# Go 1.26's fuzz coordinator can fail a clean run with a bare "context
# deadline exceeded" as -fuzztime ends (go.dev/issue/75804, fixed in Go
# 1.27). That alone, with no crasher written and no failure in the output,
# counts as a pass, and the summary says so.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-10m}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-5s}
module=$($GO list -m)

# targets prints "DIR NAME" for every fuzz target of the packages given
# (default: all). `go test -list` prints a package's matching names, then
# its "ok" line.
targets() {
	local line names=()
	$GO test -list '^Fuzz' "${@:-./...}" | while read -r line; do
		case $line in
		Fuzz*) names+=("$line") ;;
		ok*)
			local pkg dir n
			pkg=$(awk '{print $2}' <<<"$line")
			dir=.${pkg#"$module"}
			for n in "${names[@]}"; do echo "$dir $n"; done
			names=()
			;;
		esac
	done
}

# corpus_size DIR NAME: the number of entries in the target's corpus.
corpus_size() {
	local d=$1/testdata/fuzz/$2
	if [[ -d $d ]]; then find "$d" -type f | wc -l; else echo 0; fi
}

# only_deadline OUT: the output shows the coordinator's deadline error and
# no failure of the target.
only_deadline() {
	grep -qx '    context deadline exceeded' "$1" &&
		! grep -q -e 'panic' -e 'Failing input' -e '_test\.go:[0-9]' "$1"
}

list=$(mktemp)
out=$(mktemp)
summary=$(mktemp)
trap 'rm -f "$list" "$out" "$summary"' EXIT

if ! targets "$@" >"$list"; then
	echo "fuzz: go test -list failed" >&2
	exit 1
fi
if [[ ! -s $list ]]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi

failed=0
while read -r dir name; do
	echo "=== fuzz $dir $name for $FUZZTIME"
	before=$(corpus_size "$dir" "$name")
	$GO test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "$dir" 2>&1 | tee "$out"
	status=${PIPESTATUS[0]}
	after=$(corpus_size "$dir" "$name")

	if [[ $status == 0 ]]; then
		result=ok
	elif [[ $before == "$after" ]] && only_deadline "$out"; then
		result="ok (Go's fuzz coordinator reported its own -fuzztime deadline, go.dev/issue/75804; no crasher written)"
	elif [[ $before != "$after" ]]; then
		result="FAIL: crasher written to $dir/testdata/fuzz/$name/"
		failed=1
	else
		result="FAIL (exit $status)"
		failed=1
	fi
	progress=$(grep 'fuzz: elapsed' "$out" | tail -1 | sed -e 's/^fuzz: //' -e 's/ ([0-9]*\/sec)//')
	printf '%-14s %-24s %s: %s\n' "$dir" "$name" "$result" "$progress" >>"$summary"
done <"$list"

echo "=== fuzz summary (FUZZTIME=$FUZZTIME)"
cat "$summary"
exit "$failed"
