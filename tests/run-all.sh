#!/usr/bin/env bash
# The test command (README, .ci/run): build with -Werror, run every unit,
# integration and e2e test, then the sanitizer pass and a short fuzz pass.
#   tests/run-all.sh            everything
#   tests/run-all.sh --quick    build + unit + integration only
# Every server a test needs is started by the test harness itself on
# 127.0.0.1 with random ports and temp dirs.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
fuzz_seconds=${TM_FUZZ_SECONDS:-30}
status=0

step() { printf '\n==== %s\n' "$*"; }

step "build (RelWithDebInfo, -Werror)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTIDEMARK_WERROR=ON >/dev/null
cmake --build build -j"$jobs"

step "unit tests"
(cd build && ctest -L unit --output-on-failure -j"$jobs") || status=1

step "integration + e2e tests (real servers on loopback)"
(cd build && ctest -L 'integration|e2e' --output-on-failure) || status=1

if ((quick == 0)); then
    step "ASan/UBSan build + unit tests"
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTIDEMARK_SANITIZE=ON >/dev/null
    cmake --build build-asan -j"$jobs"
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest -L unit --output-on-failure -j"$jobs") || status=1
    step "ASan/UBSan: integration and e2e tests of the coordinator, agent and engine"
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest -L 'integration|e2e' -R 'fleet|tasks|scheduler|alerting|pitr|drill|retention|log_shipping|replication' --output-on-failure) || status=1

    step "fuzz pass (${fuzz_seconds}s per decoder of untrusted bytes)"
    CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTIDEMARK_FUZZ=ON \
        -DTIDEMARK_TESTS=OFF >/dev/null
    cmake --build build-fuzz -j"$jobs"
    for f in build-fuzz/tests/fuzz_*; do
        name=$(basename "$f")
        corpus_src="tests/fuzz/corpus/${name#fuzz_}"
        work=$(mktemp -d)
        [[ -d "$corpus_src" ]] && cp -r "$corpus_src/." "$work/"
        if "$f" -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 -artifact_prefix="$work.crash-" \
            "$work" >"$work.log" 2>&1; then
            echo "fuzz $name: ok ($(grep -Eo '#[0-9]+' "$work.log" | tail -1 | tr -d '#') runs)"
        else
            echo "fuzz $name: FAILED"; tail -40 "$work.log"; status=1
            mkdir -p build-fuzz/crashes && cp "$work".crash-* build-fuzz/crashes/ 2>/dev/null || true
        fi
        rm -rf "$work" "$work.log"
    done

    if command -v clang-format >/dev/null; then
        step "clang-format"
        bad=$(git ls-files '*.c' '*.h' | while read -r f; do
            clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || echo "$f"; done)
        if [[ -n "$bad" ]]; then echo "not formatted: $bad"; status=1; else echo "all formatted"; fi
    fi
fi

step "result"
if ((status == 0)); then echo "all test stages passed"; else echo "some test stage FAILED"; fi
exit $status
