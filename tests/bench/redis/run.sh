#!/usr/bin/env bash
# Redis snapshot benchmark: Tidemark's RDB fetch + streaming check against
# `redis-cli --rdb -`, same server, same run (not run by CI).
#
# A real redis-server on loopback is filled with a mixed dataset (every type:
# strings, hashes, lists, sets, sorted sets, streams with consumer groups,
# TTLs, three databases; the bulk topped up with DEBUG POPULATE strings) up to
# SIZE MB of used_memory. Then RUNS rounds, interleaved:
#   tidemark   tm_redis_tool rdb-fetch (SYNC as a minimal ACL user, every chunk
#              through the RDB validator with CRC-64) > /dev/null
#   redis-cli  redis-cli --rdb - > /dev/null
# Medians of wall time, MB/s and peak RSS are printed, then the ratio
# tidemark / redis-cli (goal <= 1.0). Only the blocks that exist are measured:
# compression, encryption and repository upload come with the engine.
#
# The diskless transfer's repl-diskless-sync-delay is set to 0 here: it adds
# the same fixed wait (5 s by default) to both tools and would hide the
# difference. --disk measures the disk-backed ($len) form instead.
#
# --mode full (or both, the default) adds the whole backup: coordinator +
# agent (SYNC, RDB check, zstd, AES-256-GCM frames, a posix repository) timed
# as the agent task, against `redis-cli --rdb - | zstd -3 | openssl enc
# -aes-256-ctr` to a file; agent peak RSS (VmHWM); per backup the agent's
# phases (wait/fetch/close ms, chunks) and the CPU seconds of the agent and of
# the pipeline's processes, with medians per GB of RDB.
# Without a server: build/tests/bench/redis/bench_rdb_pipe [--sync] RDB OUT
# runs an RDB file through the checker and the pipeline (per-thread CPU).
#
# --load (full mode): redis-benchmark (SET/GET, --load-clients N connections,
# default 4) runs against the primary throughout; the primary's commands per
# second (INFO stats) are printed idle (5 s before each round) and during each
# tool's backup.
#
# Usage: tests/bench/redis/run.sh [--size-mb N (64)] [--runs N (3)] [--mode fetch|full|both] [--disk] [--load [--load-clients N]] [--build DIR]
# Bounded: one temp dir, removed at the end (TM_KEEP_TMP=1 keeps it).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
BUILD="$ROOT/build"
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --build) BUILD="$2"; shift 2 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
if [ ! -x "$BUILD/tests/tm_redis_tool" ]; then
    echo "build first: cmake --build $BUILD (needs tests/tm_redis_tool)" >&2
    exit 2
fi
export TM_BUILD_DIR="$BUILD" PYTHONPATH="$ROOT/tests/lib"
exec python3 "$HERE/bench_redis.py" "${ARGS[@]+"${ARGS[@]}"}"
