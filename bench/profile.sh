#!/usr/bin/env bash
# bench/profile.sh: CPU and allocation profiles of the milter-grey daemon
# under the bench load (Badger store, bench configuration of run.sh).
#
# Builds a variant of cmd/milter-grey with bench/profile/pprof.go overlaid
# (go build -overlay: the daemon's sources are untouched) that serves
# net/http/pprof on loopback, loads it with bench/load for RCPTS
# recipients per session while taking a CPU profile, then saves the heap
# profile (allocations since start) and prints `go tool pprof -top` of
# both. Profiles stay in OUT.
#
#   bench/profile.sh                 # 10 RCPTs/session, 15 s
#   RCPTS=1 SECONDS_=10 bench/profile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RCPTS=${RCPTS:-10}
SECS=${SECONDS_:-15}
OUT=${OUT:-$(mktemp -d /tmp/milter-grey-profile.XXXXXX)}
mkdir -p "$OUT"
echo "profiles in $OUT"

PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$OUT/overlay.json" <<EOF
{"Replace": {"$PWD/cmd/milter-grey/zz_pprof_overlay.go": "$PWD/bench/profile/pprof.go"}}
EOF
go build -trimpath -tags milter_grey_pprof -overlay "$OUT/overlay.json" -o "$OUT/milter-grey-pprof" ./cmd/milter-grey
go build -trimpath -o "$OUT/load" ./bench/load

PORT=$(free_port)
PPROF=$(free_port)
cat >"$OUT/milter-grey.toml" <<EOF
listen = "inet:127.0.0.1:$PORT"
store = "$OUT/db"
delay = "1s"
greylist = "everyone"
domain_trust = 0
key_by_spf_domain = false
hostname = "bench.test"
EOF
GOMEMLIMIT=${GOMEMLIMIT_DAEMON:-96MiB} MILTER_GREY_PPROF=127.0.0.1:$PPROF \
	"$OUT/milter-grey-pprof" -config "$OUT/milter-grey.toml" 2>"$OUT/milter-grey.log" &
DPID=$!
PIDS+=("$DPID")
"$OUT/load" -addr "inet:127.0.0.1:$PORT" -wait-ready >/dev/null
"$OUT/load" -addr "inet:127.0.0.1:$PORT" -warmup-only

# Load for SECS+2 s; profile SECS s of it.
"$OUT/load" -addr "inet:127.0.0.1:$PORT" -c 16 -d "$((SECS + 2))s" -ramp 0s -rcpts "$RCPTS" -new 0.5 \
	-warmup=false -seed 99 -server-pid "$DPID" >"$OUT/load.txt" &
LPID=$!
PIDS+=("$LPID")
sleep 1
go tool pprof -proto -output "$OUT/cpu.pb.gz" "http://127.0.0.1:$PPROF/debug/pprof/profile?seconds=$SECS" 2>/dev/null
wait "$LPID"
go tool pprof -proto -output "$OUT/heap.pb.gz" "http://127.0.0.1:$PPROF/debug/pprof/allocs" 2>/dev/null
go tool pprof -proto -output "$OUT/mutex.pb.gz" "http://127.0.0.1:$PPROF/debug/pprof/mutex" 2>/dev/null
go tool pprof -proto -output "$OUT/block.pb.gz" "http://127.0.0.1:$PPROF/debug/pprof/block" 2>/dev/null

cat "$OUT/load.txt"
echo
echo "## CPU, flat (top 35)"
go tool pprof -top -nodecount 35 "$OUT/milter-grey-pprof" "$OUT/cpu.pb.gz" 2>/dev/null | tee "$OUT/cpu-top.txt"
echo
echo "## CPU, cumulative (top 60)"
go tool pprof -top -cum -nodecount 60 "$OUT/milter-grey-pprof" "$OUT/cpu.pb.gz" 2>/dev/null | tee "$OUT/cpu-cum.txt"
echo
echo "## Allocations since start, by space (top 30)"
go tool pprof -top -sample_index alloc_space -nodecount 30 "$OUT/milter-grey-pprof" "$OUT/heap.pb.gz" 2>/dev/null | tee "$OUT/alloc-top.txt"
echo
echo "## Allocations since start, by count, cumulative (top 40)"
go tool pprof -top -cum -sample_index alloc_objects -nodecount 40 "$OUT/milter-grey-pprof" "$OUT/heap.pb.gz" 2>/dev/null | tee "$OUT/alloc-cum.txt"
echo
echo "profiles: $OUT (go tool pprof -http=127.0.0.1:0 $OUT/milter-grey-pprof $OUT/cpu.pb.gz)"
