#!/bin/sh
# run.sh - pipeline benchmark with its references, medians of RUNS runs.
#
#   tests/bench/pipeline/run.sh [--size MIB] [--runs N] [--build DIR]
#
# Needs: zstd, xxhash (xxhsum), openssl (Debian packages) and a built
# bench_pipeline (cmake --build build --target bench_pipeline).
# Prints pipeline MB/s, its ratio to `zstd -3 -T1` (goal >= 0.85), the
# speed-up with 2 parallel streams (goal >= 1.7x) and peak RSS (goal < 64 MiB).
set -eu
SIZE=2048
RUNS=3
BUILD=build
while [ $# -gt 0 ]; do
    case "$1" in
    --size) SIZE=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    *) echo "usage: $0 [--size MIB] [--runs N] [--build DIR]" >&2; exit 2 ;;
    esac
done
BENCH=$BUILD/tests/bench/pipeline/bench_pipeline
for t in zstd xxhsum openssl; do
    command -v $t >/dev/null || { echo "missing $t: apt-get install -y zstd xxhash openssl" >&2; exit 1; }
done
[ -x "$BENCH" ] || { echo "build first: cmake --build $BUILD --target bench_pipeline" >&2; exit 1; }

TMP=$(mktemp -d /tmp/tm-bench-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
BYTES=$((SIZE * 1024 * 1024))
now() { date +%s.%N; }
mbps() { echo "$BYTES $1 $2" | awk '{ printf "%.1f", $1 * $3 / 1e6 / $2 }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "== data: $SIZE MiB x 2 (mixed compressibility) in $TMP"
"$BENCH" gen "$SIZE" 1 "$TMP/data1"
"$BENCH" gen "$SIZE" 2 "$TMP/data2"
cat "$TMP/data1" "$TMP/data2" >/dev/null # warm the page cache

echo "== references ($RUNS runs each, median)"
: >"$TMP/zstd"
for i in $(seq "$RUNS"); do
    t0=$(now); zstd -3 -T1 -q -c "$TMP/data1" >"$TMP/ref.zst"; t1=$(now)
    mbps "$(echo "$t1 - $t0" | bc -l)" 1 >>"$TMP/zstd"; echo >>"$TMP/zstd"
done
ZSTD=$(median <"$TMP/zstd")
ZRATIO=$(echo "$(stat -c %s "$TMP/ref.zst") $BYTES" | awk '{ printf "%.3f", $1 / $2 }')
rm -f "$TMP/ref.zst"
: >"$TMP/xxh"
for i in $(seq "$RUNS"); do
    t0=$(now); xxhsum -H2 "$TMP/data1" >/dev/null 2>&1; t1=$(now)
    mbps "$(echo "$t1 - $t0" | bc -l)" 1 >>"$TMP/xxh"; echo >>"$TMP/xxh"
done
XXH=$(median <"$TMP/xxh")
GCM=$(openssl speed -seconds 2 -bytes 1048576 -evp aes-256-gcm 2>/dev/null | awk '/^AES-256-GCM/ { sub("k", "", $2); printf "%.0f", $2 * 1000 / 1e6 }')
SHA=$(openssl speed -seconds 2 -bytes 1048576 -evp sha256 2>/dev/null | awk '/^sha256/ { sub("k", "", $2); printf "%.0f", $2 * 1000 / 1e6 }')
echo "zstd -3 -T1:            $ZSTD MB/s (stored/plain $ZRATIO)"
echo "xxhsum -H2:             $XXH MB/s"
echo "openssl aes-256-gcm:    $GCM MB/s (1 MiB blocks)"
echo "openssl sha256:         $SHA MB/s (1 MiB blocks)"

echo "== pipeline, 1 stream"
: >"$TMP/p1"; : >"$TMP/rss"
for i in $(seq "$RUNS"); do
    mkdir -p "$TMP/out"
    line=$("$BENCH" run "$TMP/out" "$TMP/data1")
    echo "  $line"
    echo "$line" | sed 's/.*MBps=\([0-9.]*\).*/\1/' >>"$TMP/p1"
    echo "$line" | sed 's/.*maxrss_kib=\([0-9]*\).*/\1/' >>"$TMP/rss"
    rm -rf "$TMP/out"
done
P1=$(median <"$TMP/p1")
RSS=$(sort -n "$TMP/rss" | tail -1)

echo "== pipeline, 2 parallel streams"
: >"$TMP/p2"
for i in $(seq "$RUNS"); do
    mkdir -p "$TMP/out"
    line=$("$BENCH" run "$TMP/out" "$TMP/data1" "$TMP/data2")
    echo "  $line"
    echo "$line" | sed 's/.*MBps=\([0-9.]*\).*/\1/' >>"$TMP/p2"
    [ "$i" -lt "$RUNS" ] || "$BENCH" verify "$TMP/out" "$TMP/data1" "$TMP/data2" | sed 's/^/  verify: /'
    rm -rf "$TMP/out"
done
P2=$(median <"$TMP/p2")

echo "== summary (medians of $RUNS; $(nproc) cores)"
echo "pipeline 1 stream:      $P1 MB/s"
echo "ratio to zstd -3 -T1:   $(echo "$P1 $ZSTD" | awk '{ printf "%.2f", $1 / $2 }') (goal >= 0.85)"
echo "2 streams aggregate:    $P2 MB/s, speed-up $(echo "$P2 $P1" | awk '{ printf "%.2f", $1 / $2 }')x (goal >= 1.7x)"
echo "peak RSS (1 stream):    $((RSS / 1024)) MiB (goal < 64 MiB)"
