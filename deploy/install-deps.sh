#!/usr/bin/env bash
# Install what Tidemark needs on Debian 12, from Debian's packages only.
#   deploy/install-deps.sh          build + run dependencies
#   deploy/install-deps.sh --test   also the servers and tools the tests start
# Safe to run again: apt-get skips what is already installed.
set -euo pipefail

build=(cmake make gcc pkg-config protobuf-c-compiler libprotobuf-c-dev libnng-dev libpq-dev
       libhiredis-dev libcurl4-openssl-dev libssl-dev libcyaml-dev libyaml-dev libsqlite3-dev
       libzstd-dev libxxhash-dev libcmocka-dev)
run=(sqlite3 ca-certificates curl)
test=(python3 postgresql redis-server clang libfuzzer-14-dev libclang-rt-14-dev clang-format gcovr
      zstd xxhash openssl bc procps iproute2 psmisc
      swift swift-proxy swift-account swift-container swift-object python3-swift memcached
      prometheus prometheus-alertmanager
      git debhelper dpkg-dev fakeroot lintian help2man systemd util-linux)

pkgs=("${build[@]}" "${run[@]}")
if [[ "${1:-}" == "--test" ]]; then
    pkgs+=("${test[@]}")
fi

# Node.js and npm (tests only: the official @libsql/client and
# @tursodatabase/api clients they install from the npm registry). A machine
# that has node from elsewhere keeps it; otherwise Debian's.
if [[ "${1:-}" == "--test" ]] && ! command -v npm >/dev/null; then
    pkgs+=(nodejs npm)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    echo "install-deps: all ${#pkgs[@]} packages present"
    exit 0
fi
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo
echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Servers are started by the tests themselves; keep the packaged ones from
# starting at install time where policy-rc.d allows it.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
