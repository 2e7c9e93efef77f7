#!/usr/bin/env bash
# Quick start (the README's first command): on a fresh Debian 12 machine,
# install the packages, build, and run the whole loop locally with the
# embedded defaults (SQLite catalog, local directory repositories):
#
#   coordinator + one agent serving a local PostgreSQL 15, a local Redis 7
#   and a local SQLite database, two repositories as two "regions", each
#   engine's log shipped continuously (WAL archived, AOF tailed, SQLite WAL
#   frames shipped every second), a backup of each, a
#   point-in-time restore of each into a second instance (the row or key
#   written after the chosen time is absent), a restore drill of each with
#   its measured RTO and RPO, status with each target's PITR window, RPO and
#   RTO, and an alert firing on a simulated failure.
#
#   deploy/quickstart.sh          run the loop, show it, stop everything
#   deploy/quickstart.sh --keep   leave it running (stop: deploy/quickstart.sh --stop)
#
# Everything lives in ./demo (or $TIDEMARK_DEMO_DIR). PostgreSQL refuses to
# run as root: as root, PostgreSQL and the agent run as the `postgres` user.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
demo=${TIDEMARK_DEMO_DIR:-$root/demo}
bin=$root/build

stop_all() {
    [[ -f "$demo/redis/redis.pid" ]] && kill "$(cat "$demo/redis/redis.pid")" 2>/dev/null || true
    [[ -f "$demo/restored/postmaster.pid" ]] && as_pg pg_ctl -D "$demo/restored" -m fast stop >/dev/null 2>&1 || true
    [[ -f "$demo/pg/postmaster.pid" ]] && as_pg pg_ctl -D "$demo/pg" -m fast stop >/dev/null 2>&1 || true
    for p in agent coordinator; do
        if [[ -f "$demo/$p.pid" ]]; then
            kill "$(cat "$demo/$p.pid")" 2>/dev/null || true
            rm -f "$demo/$p.pid"
        fi
    done
}
as_pg() {
    local pgbin
    pgbin=$(pg_config --bindir)
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- env PATH="$pgbin:$PATH" TIDEMARK_ENROLL_TOKEN="${TIDEMARK_ENROLL_TOKEN:-}" "$@"
    else
        env PATH="$pgbin:$PATH" "$@"
    fi
}
if [[ "${1:-}" == "--stop" ]]; then
    stop_all
    echo "stopped"
    exit 0
fi
keep=0
[[ "${1:-}" == "--keep" ]] && keep=1
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "install packages and build"
deploy/install-deps.sh
if ! command -v pg_config >/dev/null || [[ ! -x "$(pg_config --bindir)/initdb" ]]; then
    sudo_=""; [[ $(id -u) -eq 0 ]] || sudo_=sudo
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq postgresql >/dev/null
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "built: $bin/coordinator/tidemark-coordinator, $bin/agent/tidemark-agent, $bin/coordinator/ctl/tidemarkctl"

stop_all
rm -rf "$demo"
mkdir -p "$demo"/{region-a,region-b,restored,restored-redis,restored-sqlite,state}
chmod 755 "$demo"
# Secrets are generated here, kept in files only their owner can read, and
# handed over through the environment: never in a config file.
(umask 077 && openssl rand -hex 32 >"$demo/admin.token" && openssl rand -hex 32 >"$demo/enroll.token")
export TIDEMARK_ADMIN_TOKEN=$(cat "$demo/admin.token")
export TIDEMARK_ENROLL_TOKEN=$(cat "$demo/enroll.token")
"$bin/agent/tidemark-agent" repo keygen "$demo/master.key" >/dev/null
pgport=$((54000 + RANDOM % 1000))
redisport=$((56000 + RANDOM % 1000))

# The coordinator: the example config, with a fast alert evaluation for the demo.
sed -e 's/^  evaluate_every: 30s .*/  evaluate_every: 2s/' -e 's|^  path: /var/lib/tidemark/coordinator/catalog.db.*|  path: catalog.db|' deploy/examples/coordinator.yaml >"$demo/coordinator.yaml"
cat >"$demo/agent.yaml" <<YAML
# deploy/examples/agent.yaml, filled in for this machine.
coordinator:
  url: tcp://127.0.0.1:7800
  enrollment_token: env:TIDEMARK_ENROLL_TOKEN
state_dir: state
# Restore and drill tasks write only beneath these.
restore_roots:
  - restored
  - restored-redis
  - restored-sqlite
  - state/drills
hostname: demo-db
labels:
  env: prod
targets:
  - name: pg-main
    kind: postgres
    postgres:
      pgdata: $demo/pg
      host: 127.0.0.1
      port: $pgport
      user: postgres
  - name: app
    kind: sqlite
    sqlite:
      path: $demo/app.db
      ship_interval: 250ms   # a commit is stamped with the tick that ships it
  - name: cache
    kind: redis
    redis:
      host: 127.0.0.1
      port: $redisport
      aof_dir: $demo/redis/appendonlydir
      ship_interval: 500ms
repositories:
  - name: region-a
    type: posix
    path: region-a
  - name: region-b
    type: posix
    path: region-b
encryption:
  master_key_file: master.key
YAML
if [[ $(id -u) -eq 0 ]]; then
    chown -R postgres:postgres "$demo"
    chown root:root "$demo/admin.token"
fi

step "PostgreSQL 15 on port $pgport, archiving WAL with tidemark-agent wal-push"
as_pg initdb -D "$demo/pg" -A trust -U postgres --data-checksums >/dev/null
cat >>"$demo/pg/postgresql.auto.conf" <<CONF
port = $pgport
listen_addresses = '127.0.0.1'
unix_socket_directories = '$demo'
archive_mode = on
archive_command = '$bin/agent/tidemark-agent --config $demo/agent.yaml wal-push --target pg-main %p'
CONF
as_pg pg_ctl -D "$demo/pg" -l "$demo/pg.log" -w start >/dev/null
psql_() { psql -X -h 127.0.0.1 -p "$1" -U postgres -Atq -c "$2"; }
pgbench -h 127.0.0.1 -p "$pgport" -U postgres -i -s 1 -q postgres 2>/dev/null
psql_ "$pgport" "CREATE TABLE orders (id int PRIMARY KEY, at timestamptz DEFAULT now())"

step "Redis 7 on port $redisport, multi-part AOF with timestamps (the agent tails it)"
mkdir -p "$demo/redis"
cat >"$demo/redis/redis.conf" <<CONF
port $redisport
bind 127.0.0.1
dir $demo/redis
daemonize yes
pidfile $demo/redis/redis.pid
logfile $demo/redis/redis.log
save ""
appendonly yes
appendfsync everysec
aof-timestamp-enabled yes
repl-diskless-sync-delay 0
CONF
[[ $(id -u) -eq 0 ]] && chown -R postgres:postgres "$demo/redis"
as_pg redis-server "$demo/redis/redis.conf"
rcli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
for _ in $(seq 1 100); do rcli "$redisport" PING 2>/dev/null | grep -q PONG && break; sleep 0.1; done
for i in $(seq 1 200); do echo "SET session:$i user$i"; done | rcli "$redisport" >/dev/null

step "SQLite: $demo/app.db in WAL mode (the agent ships its WAL frames)"
sqlite3 "$demo/app.db" "PRAGMA journal_mode=WAL; CREATE TABLE orders (id INTEGER PRIMARY KEY, at TEXT);
    INSERT INTO orders(at) SELECT datetime('now') FROM (SELECT 1 UNION SELECT 2 UNION SELECT 3);" >/dev/null
[[ $(id -u) -eq 0 ]] && chown postgres:postgres "$demo/app.db"*

step "coordinator and agent"
"$bin/coordinator/tidemark-coordinator" --config "$demo/coordinator.yaml" --check-config
"$bin/coordinator/tidemark-coordinator" --config "$demo/coordinator.yaml" >>"$demo/coordinator.log" 2>&1 &
echo $! >"$demo/coordinator.pid"
for _ in $(seq 1 100); do
    curl -fsS http://127.0.0.1:9187/healthz >/dev/null 2>&1 && break
    sleep 0.1
done
if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- env TIDEMARK_ENROLL_TOKEN="$TIDEMARK_ENROLL_TOKEN" \
        "$bin/agent/tidemark-agent" --config "$demo/agent.yaml" >>"$demo/agent.log" 2>&1 &
else
    "$bin/agent/tidemark-agent" --config "$demo/agent.yaml" >>"$demo/agent.log" 2>&1 &
fi
echo $! >"$demo/agent.pid"
trap '[[ $keep == 1 ]] || stop_all' EXIT
ctl() { "$bin/coordinator/ctl/tidemarkctl" --config "$demo/coordinator.yaml" "$@"; }
for _ in $(seq 1 100); do
    ctl agents list --state online 2>/dev/null | grep -q online && break
    sleep 0.1
done
echo "\$ tidemarkctl agents list"
ctl agents list

step "a full backup, encrypted, to both regions at once"
echo "\$ tidemarkctl backup run --target pg-main --type full --wait"
ctl backup run --target pg-main --type full --wait

step "both regions hold the backup: the replication check (after every backup)"
for _ in $(seq 1 100); do
    ctl replication status --target pg-main --json 2>/dev/null | grep -q '"last_check":"' && break
    sleep 0.2
done
echo "\$ tidemarkctl replication status --target pg-main"
ctl replication status --target pg-main || true

step "writes after the backup; remember a point in time between them"
psql_ "$pgport" "INSERT INTO orders(id) VALUES (1)"
sleep 1.5
target_time=$(date -u '+%Y-%m-%d %H:%M:%S+00')
sleep 1.5
psql_ "$pgport" "INSERT INTO orders(id) VALUES (2)"
psql_ "$pgport" "SELECT pg_switch_wal()" >/dev/null
echo "order 1 written before $target_time, order 2 after it"
for _ in $(seq 1 100); do
    end=$(ctl pitr window --target pg-main --json | sed -n 's/.*"end":"\([^"]*\)".*/\1/p')
    [[ -n "$end" && "$end" > "$(date -u -d "$target_time" '+%Y-%m-%dT%H:%M:%SZ')" ]] && break
    sleep 0.3
done
echo "\$ tidemarkctl pitr window --target pg-main"
ctl pitr window --target pg-main

step "restore to $target_time into a second instance (what a drill does)"
rport=$((pgport + 1))
echo "\$ tidemarkctl restore --target pg-main --time '$target_time' --to demo-db --dir $demo/restored --start --port $rport --wait"
ctl restore --target pg-main --time "$target_time" --to demo-db --dir "$demo/restored" \
    --start --port "$rport" --wait
echo "orders in the restored instance: $(psql_ "$rport" "SELECT string_agg(id::text, ',') FROM orders") (order 2 came after the target time)"
as_pg pg_ctl -D "$demo/restored" -m fast stop >/dev/null

step "a PITR restore drill: restore, start, check, measure RTO/RPO, tear down"
echo "\$ tidemarkctl drill run --target pg-main --wait"
ctl drill run --target pg-main --wait
echo "\$ tidemarkctl drills list"
ctl drills list

step "Redis: a snapshot (RDB over the replication protocol), keys around a remembered time"
echo "\$ tidemarkctl backup run --target cache --type snapshot --wait"
ctl backup run --target cache --type snapshot --wait
rcli "$redisport" SET order:1 before >/dev/null
sleep 1.5
redis_time=$(date -u '+%Y-%m-%d %H:%M:%S+00')
sleep 1.5
rcli "$redisport" SET order:2 after >/dev/null
echo "order:1 written before $redis_time, order:2 after it"
for _ in $(seq 1 100); do
    end=$(ctl pitr window --target cache --json | sed -n 's/.*"end":"\([^"]*\)".*/\1/p')
    [[ -n "$end" && "$end" > "$(date -u -d "$redis_time" '+%Y-%m-%dT%H:%M:%SZ')" ]] && break
    sleep 0.3
done
echo "\$ tidemarkctl pitr window --target cache"
ctl pitr window --target cache

step "Redis: restore to $redis_time into a second server (snapshot + AOF up to that time)"
rrport=$((redisport + 1))
echo "\$ tidemarkctl restore --target cache --time '$redis_time' --to demo-db --dir $demo/restored-redis --start --port $rrport --wait"
ctl restore --target cache --time "$redis_time" --to demo-db --dir "$demo/restored-redis" \
    --start --port "$rrport" --wait
echo "in the restored server: order:1=$(rcli "$rrport" GET order:1) order:2=$(rcli "$rrport" GET order:2) (order:2 came after the target time)"
rcli "$rrport" SHUTDOWN NOSAVE >/dev/null 2>&1 || true

step "Redis: a restore drill to a time (restore, start, check, measure RTO/RPO, tear down)"
echo "\$ tidemarkctl drill run --target cache --time '$redis_time' --wait"
ctl drill run --target cache --time "$redis_time" --wait

step "SQLite: a snapshot (online backup API), rows around a remembered time"
echo "\$ tidemarkctl backup run --target app --type snapshot --wait"
ctl backup run --target app --type snapshot --wait
sq() { as_pg sqlite3 -cmd ".timeout 5000" "$@"; }
sq "$demo/app.db" "INSERT INTO orders(id, at) VALUES (101, datetime('now'))"
sleep 1.5
sqlite_time=$(date -u '+%Y-%m-%d %H:%M:%S+00')
sleep 1.5
sq "$demo/app.db" "INSERT INTO orders(id, at) VALUES (102, datetime('now'))"
echo "order 101 written before $sqlite_time, order 102 after it"
for _ in $(seq 1 100); do
    end=$(ctl pitr window --target app --json | sed -n 's/.*"end":"\([^"]*\)".*/\1/p')
    [[ -n "$end" && "$end" > "$(date -u -d "$sqlite_time" '+%Y-%m-%dT%H:%M:%SZ')" ]] && break
    sleep 0.3
done
echo "\$ tidemarkctl pitr window --target app"
ctl pitr window --target app

step "SQLite: restore to $sqlite_time into a new file (snapshot + shipped WAL frames up to that time)"
echo "\$ tidemarkctl restore --target app --time '$sqlite_time' --to demo-db --dir $demo/restored-sqlite --wait"
ctl restore --target app --time "$sqlite_time" --to demo-db --dir "$demo/restored-sqlite" --wait
echo "orders 101/102 in the restored file: $(sqlite3 "$demo/restored-sqlite/app.db" "SELECT group_concat(id) FROM orders WHERE id > 100") (order 102 came after the target time)"

step "SQLite: a restore drill (restore, integrity_check, checks, RTO/RPO, tear down)"
echo "\$ tidemarkctl drill run --target app --wait"
ctl drill run --target app --wait

step "status: per target the restorable window, RPO now and the drill's RTO, against the goals"
echo "\$ tidemarkctl status"
ctl status
echo "\$ tidemarkctl backups list"
ctl backups list

step "a simulated failure: PostgreSQL stops, the next backup fails, an alert fires"
as_pg pg_ctl -D "$demo/pg" -m immediate stop >/dev/null
ctl backup run --target pg-main --type full --wait >/dev/null 2>&1 || true
for _ in $(seq 1 50); do
    ctl alerts list 2>/dev/null | grep -q backup_failed && break
    sleep 0.3
done
echo "\$ tidemarkctl alerts list"
ctl alerts list

echo
echo "Metrics: curl -s http://127.0.0.1:9187/metrics | grep ^tidemark_"
echo "Logs: $demo/coordinator.log, $demo/agent.log"
if [[ $keep == 1 ]]; then
    echo "Running (PostgreSQL stopped by the simulated failure: start it with"
    echo "  pg_ctl -D $demo/pg start). Stop everything with: deploy/quickstart.sh --stop"
fi
