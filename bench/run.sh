#!/usr/bin/env bash
# bench/run.sh: the performance run (what `make bench` runs).
#
# Builds milter-grey, the load generator (bench/load), the bare
# in-memory baseline milter (bench/baseline) and the preload tool
# (bench/preload), then, everything on 127.0.0.1:
#
#   phase 1-empty  baseline and milter-grey (Badger, empty store) loaded
#                  alternately, ROUNDS rounds of 1 and 10 RCPTs/session;
#   phase 2-1m     1 M passed triplets preloaded into a second Badger
#                  directory; its daemon's start time (exec → the milter
#                  answers option negotiation) and peak RSS (VmHWM, with
#                  GOMEMLIMIT as contrib/milter-grey.service sets it);
#                  loaded alternately with the empty-store daemon;
#   phase 2-1m-low the same 1 M store as preloaded (a copy taken before
#                  phase 2 wrote to it) under NEW_LOW new triplets (1 %):
#                  peak RSS at a mail server's write rate, for the report;
#   phase 3-redis  milter-grey on a private redis-server (no persistence),
#                  loaded alternately with the empty-store daemon;
#
# each run 16 sessions in flight, half the triplets new, half known (made
# known by the load generator's warm-up: sent, retried after the 1 s
# delay, passed; or, for 1 M, taken from the preload's sample and touched
# once). Then the Go benchmarks of the engine, the stores and the milter
# round trip, through benchstat. Prints the table and the targets
# (bench/report). Results stay in OUT (default: a new /tmp directory).
#
# The daemon runs with greylist = "everyone", domain_trust = 0 and
# key_by_spf_domain = false: under "suspicious" (the default), with domain
# trust or with SPF keys on (the defaults)
# every message costs an SPF evaluation, which against a real resolver
# measures that resolver and against a dead one (dns_server =
# "127.0.0.9:53") the failure path, uncached; neither is the milter's own
# cost. SPF=1 adds a phase with dns_server = "127.0.0.9:53" to show it.
#
#   bench/run.sh              full run, about 10 minutes
#   QUICK=1 bench/run.sh      about 2 minutes, for development
#   OUT=/tmp/b bench/run.sh   keep results in /tmp/b
#   GOBENCH=0 / SPF=1         skip the Go benchmarks / add the SPF phase
#
# Every process started here is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

QUICK=${QUICK:-0}
GOBENCH=${GOBENCH:-1}
SPF=${SPF:-0}
GOMEMLIMIT_DAEMON=${GOMEMLIMIT_DAEMON:-96MiB} # contrib/milter-grey.service
CONC=16
NEW=0.5
NEW_LOW=0.01 # phase 2-1m-low: ~200 new triplets/s, still above most MX hosts
KNOWN=2000 # envelopes × 10 recipients = 20,000 known triplets
if [[ $QUICK == 1 ]]; then
	ROUNDS=2 ROUNDS_SMALL=1 DUR=3s RAMP=500ms PRELOAD_N=1000000 KNOWN=500
	BENCH_COUNT=1 BENCHTIME=50ms MILTER_BENCHTIME=500x
else
	ROUNDS=5 ROUNDS_SMALL=3 DUR=8s RAMP=1s PRELOAD_N=1000000
	BENCH_COUNT=6 BENCHTIME=300ms MILTER_BENCHTIME=3000x # 6: benchstat needs 6 samples for its 95 % interval
fi
BENCHSTAT=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

OUT=${OUT:-$(mktemp -d /tmp/milter-grey-bench.XXXXXX)}
mkdir -p "$OUT/runs" "$OUT/bin"
BIN=$OUT/bin
META=$OUT/meta.txt
: >"$META"
echo "results in $OUT"

PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop PID: SIGTERM and wait (milter-grey closes its store cleanly).
stop() {
	local pid=$1 p rest=()
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || rest+=("$p"); done
	PIDS=("${rest[@]}")
}

meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }

echo "== build"
go build -trimpath -o "$BIN/milter-grey" ./cmd/milter-grey
go build -trimpath -o "$BIN/load" ./bench/load
go build -trimpath -o "$BIN/baseline" ./bench/baseline
go build -trimpath -o "$BIN/preload" ./bench/preload
go build -trimpath -o "$BIN/report" ./bench/report
meta machine "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
meta go "$(go version | cut -d' ' -f3-)"
meta load "$CONC sessions, -new $NEW, $((KNOWN * 10)) known triplets, $DUR measured after $RAMP ramp per run; rounds: $ROUNDS (phase 1), $ROUNDS_SMALL (phases 2, 3)"
meta gomemlimit "GOMEMLIMIT=$GOMEMLIMIT_DAEMON"
meta new_low "$(awk -v n="$NEW_LOW" 'BEGIN {printf "%g %%", 100 * n}')"
meta "loadavg start" "$(cut -d' ' -f1-3 /proc/loadavg)"

# Server bookkeeping: PORT_x and PID_x per configuration name.
declare -A PORT PID

# start_grey NAME STORE [SPF_TOML]: start milter-grey, record its start
# time (exec → milter answers) and RSS after start.
start_grey() {
	local name=$1 store=$2 spf=${3:-key_by_spf_domain = false} port t0 t1
	# greylist = "everyone": see the header (SPF would be measured).
	port=$(free_port)
	cat >"$OUT/$name.toml" <<EOF
listen = "inet:127.0.0.1:$port"
store = "$store"
delay = "1s"
hostname = "bench.test"
greylist = "everyone"
domain_trust = 0
$spf
EOF
	t0=$(date +%s%N)
	GOMEMLIMIT=$GOMEMLIMIT_DAEMON "$BIN/milter-grey" -config "$OUT/$name.toml" 2>"$OUT/$name.log" &
	PID[$name]=$!
	PIDS+=("${PID[$name]}")
	"$BIN/load" -addr "inet:127.0.0.1:$port" -wait-ready -wait-timeout 30s >/dev/null
	t1=$(date +%s%N)
	PORT[$name]=$port
	meta "start_ms $name" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b-a)/1e6}')"
	meta "rss_after_start_kib $name" "$(awk '/VmRSS/ {print $2}' "/proc/${PID[$name]}/status")"
	echo "   $name: pid ${PID[$name]}, port $port, ready in $(grep "^start_ms $name" "$META" | cut -f2) ms"
}

start_baseline() {
	local port
	port=$(free_port)
	"$BIN/baseline" -listen "inet:127.0.0.1:$port" -delay 1s 2>"$OUT/baseline.log" &
	PID[baseline]=$!
	PIDS+=("${PID[baseline]}")
	"$BIN/load" -addr "inet:127.0.0.1:$port" -wait-ready >/dev/null
	PORT[baseline]=$port
	echo "   baseline: pid ${PID[baseline]}, port $port"
}

# warm NAME [known-file]: make the known triplets known on NAME.
warm() {
	local name=$1 file=${2:-}
	if [[ -n $file ]]; then
		"$BIN/load" -addr "inet:127.0.0.1:${PORT[$name]}" -known-file "$file" -warmup-only
	else
		"$BIN/load" -addr "inet:127.0.0.1:${PORT[$name]}" -known "$KNOWN" -warmup-only
	fi
}

SEED=1000
# load PHASE NAME RCPTS ROUND [known-file]
load() {
	local phase=$1 name=$2 rc=$3 round=$4 file=${5:-} known
	if [[ -n $file ]]; then known=(-known-file "$file"); else known=(-known "$KNOWN" -warmup=false); fi
	SEED=$((SEED + 1))
	"$BIN/load" -addr "inet:127.0.0.1:${PORT[$name]}" -c "$CONC" -d "$DUR" -ramp "$RAMP" -rcpts "$rc" \
		-new "$NEW" -seed "$SEED" "${known[@]}" -server-pid "${PID[$name]}" -label "$phase/$name" \
		-o "$OUT/runs/${phase}__${name}__r${rc}__${round}.json" >"$OUT/runs/${phase}__${name}__r${rc}__${round}.txt"
	printf '   %-8s %-10s rcpts=%-2s round %s: %s decisions/s, p99 %s µs\n' "$phase" "$name" "$rc" "$round" \
		"$(grep 'RCPT decisions' "$OUT/runs/${phase}__${name}__r${rc}__${round}.txt" | sed 's/.*(\(.*\)\/s)/\1/')" \
		"$(grep 'RCPT latency' "$OUT/runs/${phase}__${name}__r${rc}__${round}.txt" | sed 's/.*p99 \([0-9]*\).*/\1/')"
}

# alternate PHASE A B ROUNDS [known-file-for-B]: rounds of A and B for 1
# and 10 RCPTs, A first in odd rounds, B first in even ones.
alternate() {
	local phase=$1 a=$2 b=$3 rounds=$4 fb=${5:-} r rc
	for r in $(seq "$rounds"); do
		for rc in 1 10; do
			if ((r % 2)); then
				load "$phase" "$a" "$rc" "$r"
				load "$phase" "$b" "$rc" "$r" "$fb"
			else
				load "$phase" "$b" "$rc" "$r" "$fb"
				load "$phase" "$a" "$rc" "$r"
			fi
		done
	done
}

echo "== phase 1: baseline vs milter-grey (Badger, empty store)"
start_baseline
start_grey badger "$OUT/db-empty"
warm baseline
warm badger
alternate 1-empty baseline badger "$ROUNDS"
stop "${PID[baseline]}"

echo "== phase 2: 1 M triplets"
t0=$(date +%s)
"$BIN/preload" -store "$OUT/db-1m" -n "$PRELOAD_N" -sample $((KNOWN * 10)) -known-out "$OUT/known-1m.txt" 2>"$OUT/preload.log"
meta preload "$(tail -2 "$OUT/preload.log" | head -1 | sed 's/^preload: //'); directory $(du -sh "$OUT/db-1m" | cut -f1) on disk"
cp -r "$OUT/db-1m" "$OUT/db-1m-low"
start_grey badger-1m "$OUT/db-1m"
warm badger-1m "$OUT/known-1m.txt"
alternate 2-1m badger badger-1m "$ROUNDS_SMALL" "$OUT/known-1m.txt"
stop "${PID[badger-1m]}"

# Peak RSS is the process's high-water mark: a daemon of its own, on the
# store as preloaded. Most of the RSS beyond the tables comes from
# compactions, whose rate follows the rate of new triplets.
echo "== phase 2-1m-low: 1 M triplets, $NEW_LOW new"
start_grey badger-1m-low "$OUT/db-1m-low"
warm badger-1m-low "$OUT/known-1m.txt"
for rc in 1 10; do
	NEW=$NEW_LOW load 2-1m-low badger-1m-low "$rc" 1 "$OUT/known-1m.txt"
done
stop "${PID[badger-1m-low]}"

echo "== phase 3: Redis store"
if command -v redis-server >/dev/null; then
	RPORT=$(free_port)
	mkdir -p "$OUT/redis"
	redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$OUT/redis" \
		--logfile "$OUT/redis/redis.log" --daemonize no &
	PIDS+=($!)
	REDIS_PID=$!
	for _ in $(seq 100); do
		redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break
		sleep 0.05
	done
	start_grey redis "redis://127.0.0.1:$RPORT/0"
	warm redis
	alternate 3-redis badger redis "$ROUNDS_SMALL"
	stop "${PID[redis]}"
	stop "$REDIS_PID"
else
	echo "   redis-server not installed (apt-get install redis-server): phase skipped"
fi

if [[ $SPF == 1 ]]; then
	echo "== phase 4: key_by_spf_domain = true with a dead DNS server (127.0.0.9:53)"
	start_grey spf-dead-dns "$OUT/db-spf" 'dns_server = "127.0.0.9:53" # key_by_spf_domain: default true'
	warm spf-dead-dns
	alternate 4-spf badger spf-dead-dns "$ROUNDS_SMALL"
	stop "${PID[spf-dead-dns]}"
fi
stop "${PID[badger]}"
meta store "Badger empty-store directory after all phases: $(du -sh "$OUT/db-empty" | cut -f1)"

if [[ $GOBENCH == 1 ]]; then
	echo "== Go benchmarks (-count $BENCH_COUNT)"
	go test -run '^$' -bench . -benchmem -count "$BENCH_COUNT" -benchtime "$BENCHTIME" \
		./greylist/ ./greylist/badgerstore/ ./greylist/redisstore/ >"$OUT/gobench.txt"
	go test -run '^$' -bench . -benchmem -count "$BENCH_COUNT" -benchtime "$MILTER_BENCHTIME" ./bench/milterbench/ >>"$OUT/gobench.txt"
fi

meta "loadavg end" "$(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$BIN/report" "$OUT" | tee "$OUT/report.txt"
if [[ $GOBENCH == 1 ]]; then
	echo
	echo "## Go benchmarks"
	echo
	if ! go run "$BENCHSTAT" "$OUT/gobench.txt" 2>"$OUT/benchstat.err" | tee "$OUT/benchstat.txt"; then
		echo "(benchstat unavailable: $(head -1 "$OUT/benchstat.err"); raw results)"
		grep -E '^(Benchmark|pkg:)' "$OUT/gobench.txt"
	fi
fi
echo
echo "results: $OUT"
