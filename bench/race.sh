#!/usr/bin/env bash
# A load run against a daemon built with the race detector: the suite runs
# under -race already (make test); this adds the daemon's own goroutines
# under real concurrent milter traffic. Fails if the daemon reports a data
# race or does not stop cleanly. Loopback only; stops what it starts.
#   bench/race.sh [SECONDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-20}
dir=$(mktemp -d /tmp/milter-grey-race.XXXXXX)
pid=""
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
go build -race -o "$dir/milter-grey" ./cmd/milter-grey
go build -o "$dir/load" ./bench/load
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$dir/c.toml" <<TOML
listen = "inet:127.0.0.1:$port"
store = "$dir/db"
delay = "1s"
trusted_networks = []
dns_server = "127.0.0.9:53"
TOML
"$dir/milter-grey" -config "$dir/c.toml" >"$dir/daemon.log" 2>&1 &
pid=$!
"$dir/load" -addr "inet:127.0.0.1:$port" -wait-ready >/dev/null
"$dir/load" -addr "inet:127.0.0.1:$port" -c 16 -d "${secs}s" -rcpts 5 -new 0.5 -known 200
"$dir/load" -addr "inet:127.0.0.1:$port" -c 8 -d "$((secs / 2))s" -rcpts 1 -ipv6 0.5
kill -TERM "$pid"
wait "$pid" || { echo "race.sh: daemon exited with $?" >&2; tail -20 "$dir/daemon.log" >&2; exit 1; }
pid=""
if grep -q "DATA RACE" "$dir/daemon.log"; then
	grep -A30 "DATA RACE" "$dir/daemon.log" >&2
	exit 1
fi
echo "race.sh: $(grep -c 'msg=decision' "$dir/daemon.log") decisions, no data race, clean stop"
