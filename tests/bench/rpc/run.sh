#!/bin/sh
# run.sh - RPC benchmark: a real tidemark-coordinator on loopback, bench_rpc
# against it (raw nng echo reference, 10,000 registrations, heartbeats),
# medians of RUNS runs. Prints figures; not a test.
#
#   tests/bench/rpc/run.sh [--agents N] [--concurrency C] [--sockets K]
#                          [--seconds S] [--runs R] [--contexts N] [--build DIR]
#                          [--hostile H]
#
# --hostile H (default 200, 0 = off): the heartbeat runs are repeated while
# tests/lib/tmtest/hostile.py holds H hostile connections open (non-readers,
# slowloris, half-open, oversize, random bytes); the ratio is printed.
#
# Needs a build (cmake --build build --target tidemark-coordinator bench_rpc)
# and curl. Everything binds 127.0.0.1 on free ports and lives in a temp dir
# removed on exit; the coordinator is stopped on exit whatever happens.
# Goal (issue 2): >= 5,000 heartbeats/s with p99 < 20 ms, 10,000 agents.
set -eu
AGENTS=10000
CONC=128
SOCKS=8
SECONDS_=10
RUNS=3
CONTEXTS=256
BUILD=build
HOSTILE=200
usage() {
    echo "usage: $0 [--agents N] [--concurrency C] [--sockets K] [--seconds S] [--runs R]" \
        "[--contexts N] [--build DIR] [--hostile H]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || usage
    case "$1" in
    --agents) AGENTS=$2 ;;
    --concurrency) CONC=$2 ;;
    --sockets) SOCKS=$2 ;;
    --seconds) SECONDS_=$2 ;;
    --runs) RUNS=$2 ;;
    --contexts) CONTEXTS=$2 ;;
    --build) BUILD=$2 ;;
    --hostile) HOSTILE=$2 ;;
    *) usage ;;
    esac
    shift 2
done
COORD=$BUILD/coordinator/tidemark-coordinator
BENCH=$BUILD/tests/bench/rpc/bench_rpc
for b in "$COORD" "$BENCH"; do
    [ -x "$b" ] || { echo "build first: cmake --build $BUILD --target tidemark-coordinator bench_rpc" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "missing curl: apt-get install -y curl" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

TMP=$(mktemp -d /tmp/tm-bench-rpc-XXXXXX)
COORD_PID=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [ -n "$COORD_PID" ] && kill -0 "$COORD_PID" 2>/dev/null; then
        kill -TERM "$COORD_PID" 2>/dev/null || true
        # Bounded: SIGKILL if it has not stopped within 10 s.
        i=0
        while kill -0 "$COORD_PID" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -KILL "$COORD_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$(free_port)
HTTP_PORT=$(free_port)
TM_BENCH_ENROLL=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
TIDEMARK_ADMIN_TOKEN=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
export TM_BENCH_ENROLL TIDEMARK_ADMIN_TOKEN

# Heartbeat interval 10 s like production, but 60 missed beats before stale:
# no agent may go stale while the echo and registration phases run (that
# would turn the first heartbeats into catalog writes and skew the figures).
cat >"$TMP/coordinator.yaml" <<EOF
listen: tcp://127.0.0.1:$PORT
http:
  listen: http://127.0.0.1:$HTTP_PORT
catalog:
  path: $TMP/catalog.db
admin_token: env:TIDEMARK_ADMIN_TOKEN
enrollment:
  - name: bench
    token: env:TM_BENCH_ENROLL
    auto_approve: true
heartbeat:
  interval: 10s
  stale_after_missed: 60
  lost_after_missed: 120
rpc:
  contexts: $CONTEXTS
log:
  level: info
EOF

"$COORD" -c "$TMP/coordinator.yaml" >"$TMP/coordinator.log" 2>&1 &
COORD_PID=$!
i=0
until curl -fs "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null 2>&1; do
    if ! kill -0 "$COORD_PID" 2>/dev/null || [ "$i" -ge 150 ]; then
        echo "coordinator did not come up:" >&2
        tail -20 "$TMP/coordinator.log" >&2
        exit 1
    fi
    sleep 0.1
    i=$((i + 1))
done
echo "== coordinator pid $COORD_PID on tcp://127.0.0.1:$PORT (rpc.contexts $CONTEXTS), catalog on $TMP"
echo "== machine: $(nproc) CPUs, $(uname -r)"

# bench_rpc stops by itself (its phases are time-bound, calls time out after
# 30 s); timeout(1) is the last resort if the coordinator wedges.
LIMIT=$((RUNS * (SECONDS_ + 2) * 2 + AGENTS / 20 + 120))
rc=0
set -- --url "tcp://127.0.0.1:$PORT" --token-env TM_BENCH_ENROLL --agents "$AGENTS" \
    --concurrency "$CONC" --sockets "$SOCKS" --seconds "$SECONDS_" --runs "$RUNS" \
    --echo-contexts "$CONTEXTS"
if [ "$HOSTILE" -gt 0 ]; then
    LIMIT=$((LIMIT * 2))
    HERE=$(cd "$(dirname "$0")" && pwd)
    set -- "$@" --hostile-cmd "exec python3 $HERE/../../lib/tmtest/hostile.py --port $PORT --count $HOSTILE --seconds 3600"
fi
timeout -k 5 "$LIMIT" "$BENCH" "$@" || rc=$?

echo "== coordinator view after the run"
curl -fs "http://127.0.0.1:$HTTP_PORT/metrics" | grep -E '^tidemark_agents\{|^tidemark_rpc_requests_total' || true
n_err=$(grep -c 'level=error' "$TMP/coordinator.log" || true)
echo "coordinator log: $(wc -l <"$TMP/coordinator.log") lines, $n_err errors"
exit $rc
