#!/usr/bin/env bash
# WAL-push throughput (segments/s), sync and async, under a pgbench write
# load: a real PostgreSQL 15, two posix repositories on the same disk,
# encryption on, zstd -3.
#
# Method: archiving is paused (archive_command = '', PostgreSQL keeps .ready
# files) while pgbench plus bulk inserts build a backlog of BACKLOG_SEGS
# segments (at most BACKLOG_S seconds); then
# archive_command is set to `tidemark-agent wal-push` (sync) or
# `wal-push --async` plus a `wal-archiver --workers WORKERS`, and the backlog
# is drained while pgbench keeps writing. Throughput = segments archived /
# time until the backlog is gone. Bounded: every phase has a time limit.
#
# Usage: tests/bench/pg/wal_push.sh [BUILD_DIR]   (env: BACKLOG_SEGS=100 BACKLOG_S=60 WORKERS=4 SCALE=10)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
export TM_BUILD_DIR="$BUILD" PYTHONPATH="$ROOT/tests/lib" TM_ENROLL=x
exec python3 - <<'PY'
import os, shutil, subprocess, tempfile, time
from tmtest import pg

AGENT = os.path.join(os.environ["TM_BUILD_DIR"], "agent", "tidemark-agent")
BACKLOG_S = int(os.environ.get("BACKLOG_S", "60"))
BACKLOG_SEGS = int(os.environ.get("BACKLOG_SEGS", "100"))
WORKERS = os.environ.get("WORKERS", "4")
SCALE = os.environ.get("SCALE", "10")

d = tempfile.mkdtemp(prefix="tm-walbench-")
os.chmod(d, 0o755)
key = os.path.join(d, "mk.key")
subprocess.run([AGENT, "repo", "keygen", key], check=True, capture_output=True)
conf = os.path.join(d, "agent.yaml")
for r in ("r1", "r2", "state"):
    os.makedirs(os.path.join(d, r))
with open(conf, "w") as f:
    f.write(f"""coordinator:
  url: tcp://127.0.0.1:7800
  enrollment_token: env:TM_ENROLL
state_dir: {d}/state
repositories:
  - name: r1
    type: posix
    path: {d}/r1
  - name: r2
    type: posix
    path: {d}/r2
encryption:
  master_key_file: {key}
  compress_level: 3
""")
pg.chown_tree(d)
db = pg.Postgres(d, conf={"archive_mode": "on", "archive_command": "''", "max_wal_size": "'4GB'",
                          "checkpoint_timeout": "'30min'"})
db.initdb().start()
kw = pg.as_user_kwargs(dict(os.environ))
status = os.path.join(db.datadir, "pg_wal", "archive_status")


def ready():
    return len([f for f in os.listdir(status) if f.endswith(".ready")])


def run(mode):
    target = "bench-" + mode
    db.psql("ALTER SYSTEM SET archive_command = ''")
    db.psql("SELECT pg_reload_conf()")
    # pgbench alone writes WAL at the commit-fsync rate: on a small machine 20 s
    # gave a handful of segments, too few to time the async archiver. A checkpoint
    # (full-page images follow) plus bulk inserts (md5 text, ~2:1 under zstd like
    # pgbench's WAL) beside pgbench build BACKLOG_SEGS segments in seconds.
    db.psql("CHECKPOINT")
    db.psql("CREATE TABLE IF NOT EXISTS bench_fill (id int, t text, at timestamptz)")
    gen = subprocess.Popen(["pgbench", "-h", "127.0.0.1", "-p", str(db.port), "-U", "postgres", "-T",
                            str(BACKLOG_S + 5), "-c", "4", "-j", "2", "-n", "postgres"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    t_end = time.monotonic() + BACKLOG_S
    while time.monotonic() < t_end and ready() < BACKLOG_SEGS:
        db.psql("INSERT INTO bench_fill SELECT g, md5(g::text), now() FROM generate_series(1, 100000) g")
    db.psql("TRUNCATE bench_fill")
    gen.terminate()
    gen.wait()
    db.psql("SELECT pg_switch_wal()")
    backlog = ready()
    arch = None
    flag = "--async " if mode == "async" else ""
    if mode == "async":
        arch = subprocess.Popen([AGENT, "--config", conf, "wal-archiver", "--target", target, "--pgdata",
                                 db.datadir, "--workers", WORKERS, "--interval-ms", "50"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    load = subprocess.Popen(["pgbench", "-h", "127.0.0.1", "-p", str(db.port), "-U", "postgres", "-T", "600",
                             "-c", "4", "-j", "2", "-n", "postgres"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    t0 = time.monotonic()
    db.psql(f"ALTER SYSTEM SET archive_command = '{AGENT} --config {conf} wal-push {flag}--target {target} %p'")
    db.psql("SELECT pg_reload_conf()")
    deadline = t0 + 600
    while time.monotonic() < deadline:
        logdir = os.path.join(d, "r1", target, "log", "00000001")
        n = len([f for f in os.listdir(logdir) if f.endswith(".meta")]) if os.path.isdir(logdir) else 0
        if n >= backlog:
            break
        time.sleep(0.05)
    dt = time.monotonic() - t0
    load.terminate()
    load.wait()
    if arch:
        arch.terminate()
        arch.wait()
    rate = n / dt
    print(f"{mode:5s}: {n} segments ({backlog} backlog) archived in {dt:.1f}s under pgbench load: {rate:.1f} segments/s ({rate * 16:.0f} MiB/s)")
    return rate


try:
    db.pgbench("-i", "-s", SCALE, "-q")
    s = run("sync")
    a = run("async")
    print(f"async/sync: {a / s:.2f}x   (workers {WORKERS}, backlog up to {BACKLOG_SEGS} segments, 2 posix repositories, zstd -3, AES-256-GCM)")
finally:
    db.stop("immediate")
    shutil.rmtree(d, ignore_errors=True)
PY
