#!/usr/bin/env bash
# PostgreSQL benchmark: Tidemark against pgBackRest, same cluster, same run.
#
# A real PostgreSQL 15 (data checksums, archive_mode=on) with a pgbench
# database; a coordinator and an agent (as the postgres user) on loopback;
# pgBackRest from the distribution package. Both tools: zstd level 3,
# encryption on (Tidemark AES-256-GCM, pgBackRest aes-256-cbc), 2 parallel
# processes, one posix repository each on the same disk.
#
# Measured (RUNS runs each, interleaved, medians printed):
#   full backup wall time   pgbackrest backup --type=full
#                           tidemarkctl backup run --type full --wait (+ agent-side duration_ms)
#   restore wall time       pgbackrest restore --pg1-path EMPTY
#                           tidemark-agent restore --pgdata EMPTY --immediate (no --start)
#   stored size, MB/s, CPU seconds, peak RSS
# then WAL-push throughput (segments/s) under pgbench load, and the RTO of a
# restore to the latest point with WAL_MINUTES of pgbench WAL to replay.
#
# Usage: tests/bench/pg/run.sh [--scale N] [--runs N] [--wal-minutes N]
#            [--backlog-seconds N] [--workers N] [--skip-wal-push] [--skip-rto] [--build DIR]
# Bounded: every step has a timeout; everything lives in one temp dir, removed at the end
# (TM_KEEP_TMP=1 keeps it).
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
BUILD="$(cd "$BUILD" && pwd)"
command -v pgbackrest >/dev/null || { echo "pgbackrest not installed (apt-get install -y pgbackrest)" >&2; exit 2; }
export TM_BUILD_DIR="$BUILD" PYTHONPATH="$ROOT/tests/lib"
exec python3 "$HERE/bench_pg.py" "${ARGS[@]+"${ARGS[@]}"}"
