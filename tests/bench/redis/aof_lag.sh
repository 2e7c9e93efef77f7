#!/usr/bin/env bash
# AOF shipping lag (not run by CI): a real redis-server on loopback with
# appendonly yes + aof-timestamp-enabled yes (appendfsync everysec), a steady
# write load (RATE SETs/s, paced in 10 ms slots, for SECONDS), BGREWRITEAOF
# every REWRITE s, and tm_aof_tool tail shipping the AOF (poll every
# INTERVAL ms) into a temp directory. For every write: lag = the time its
# range was shipped (written and fsynced, ranges.log shipped_ms) minus the
# time Redis acknowledged it. Prints p50 / p99 / max, writes never shipped,
# and the tail's peak RSS. Goal: p99 <= 1 s.
#
# Usage: [TM_BUILD_DIR=build] tests/bench/redis/aof_lag.sh [--rate 1000]
#        [--seconds 60] [--interval-ms 100] [--rewrite-every 20] [--value-bytes 100]
# Bounded: one temp dir, removed at the end.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
export TM_BUILD_DIR="${TM_BUILD_DIR:-$root/build}" PYTHONPATH="$root/tests/lib"
test -x "$TM_BUILD_DIR/tests/tm_aof_tool" || { echo "no $TM_BUILD_DIR/tests/tm_aof_tool: build first" >&2; exit 2; }
exec python3 "$root/tests/bench/redis/aof_lag.py" "$@"
