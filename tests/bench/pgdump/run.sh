#!/usr/bin/env bash
# Managed-PostgreSQL benchmark (engine pg_dump): Tidemark's dump and restore
# against the plain tools, same clusters, same run.
#
# A real PostgreSQL 15 with a pgbench database (scale SCALE) as the source,
# a second cluster as the restore destination, a coordinator and an agent
# on loopback, one posix repository. Interleaved, RUNS runs each, medians:
#
#   dump     tidemarkctl backup run --type snapshot --wait (pg_dumpall -g +
#            pg_dump -Fc -Z0 -> XXH3 -> zstd -3 -> AES-256-GCM -> repository)
#            against  pg_dump -Fc | openssl enc -aes-256-ctr -pbkdf2 > FILE
#   restore  tidemark-agent restore --into NEW --jobs 2 --no-globals
#            against  openssl enc -d ... FILE > PLAIN; pg_restore -j2 -d NEW PLAIN
#            (the decrypt is part of it: both start from encrypted storage;
#            pg_restore alone is printed too)
#
# Usage: tests/bench/pgdump/run.sh [--scale N] [--runs N] [--build DIR]
# Everything lives in one temp dir, removed at the end (TM_KEEP_TMP=1 keeps it).
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
command -v openssl >/dev/null || { echo "openssl not installed" >&2; exit 2; }
export TM_BUILD_DIR="$BUILD" PYTHONPATH="$ROOT/tests/lib"
exec python3 "$HERE/bench_pgdump.py" "${ARGS[@]+"${ARGS[@]}"}"
