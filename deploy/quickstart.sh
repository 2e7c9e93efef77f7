#!/usr/bin/env bash
# Quick start (the README's first command): on a fresh Debian 12 machine,
# install the packages, build, and run a local coordinator + agent from the
# example configs with embedded defaults (SQLite catalog), then show the fleet.
#
#   deploy/quickstart.sh          run, show, stop
#   deploy/quickstart.sh --keep   leave both running (stop: deploy/quickstart.sh --stop)
#
# Everything it writes lives in ./demo (or $TIDEMARK_DEMO_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
demo=${TIDEMARK_DEMO_DIR:-$root/demo}

stop_all() {
    for p in agent coordinator; do
        if [[ -f "$demo/$p.pid" ]]; then
            kill "$(cat "$demo/$p.pid")" 2>/dev/null || true
            rm -f "$demo/$p.pid"
        fi
    done
}
if [[ "${1:-}" == "--stop" ]]; then
    stop_all
    echo "stopped"
    exit 0
fi
keep=0
[[ "${1:-}" == "--keep" ]] && keep=1

deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"

mkdir -p "$demo"
chmod 700 "$demo"
cp deploy/examples/coordinator.yaml deploy/examples/agent.yaml "$demo/"
# Secrets are generated here, kept in files only the user can read, and
# handed over through the environment: never in a config file.
for t in admin enroll; do
    [[ -s "$demo/$t.token" ]] || (umask 077 && openssl rand -hex 32 >"$demo/$t.token")
done
export TIDEMARK_ADMIN_TOKEN=$(cat "$demo/admin.token")
export TIDEMARK_ENROLL_TOKEN=$(cat "$demo/enroll.token")

stop_all
bin=$root/build
"$bin/coordinator/tidemark-coordinator" --config "$demo/coordinator.yaml" --check-config
"$bin/agent/tidemark-agent" --config "$demo/agent.yaml" --check-config
"$bin/coordinator/tidemark-coordinator" --config "$demo/coordinator.yaml" >>"$demo/coordinator.log" 2>&1 &
echo $! >"$demo/coordinator.pid"
for _ in $(seq 1 100); do
    curl -fsS http://127.0.0.1:9187/healthz >/dev/null 2>&1 && break
    sleep 0.1
done
"$bin/agent/tidemark-agent" --config "$demo/agent.yaml" >>"$demo/agent.log" 2>&1 &
echo $! >"$demo/agent.pid"
trap '[[ $keep == 1 ]] || stop_all' EXIT

ctl() { "$bin/coordinator/ctl/tidemarkctl" --config "$demo/coordinator.yaml" "$@"; }
for _ in $(seq 1 100); do
    ctl agents list --state online 2>/dev/null | grep -q online && break
    sleep 0.1
done

echo
echo "\$ tidemarkctl agents list"
ctl agents list
echo
echo "\$ tidemarkctl status"
ctl status
echo
echo "\$ curl -s http://127.0.0.1:9187/metrics | grep ^tidemark_agents"
curl -s http://127.0.0.1:9187/metrics | grep '^tidemark_agents'
echo
echo "Logs: $demo/coordinator.log, $demo/agent.log"
if [[ $keep == 1 ]]; then
    echo "Running. Try: build/coordinator/ctl/tidemarkctl --config $demo/coordinator.yaml agents show $(hostname)"
    echo "Stop with: deploy/quickstart.sh --stop"
fi
