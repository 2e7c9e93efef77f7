"""Tidemark's pg_dump engine against pg_dump | openssl and pg_restore -j2
(see run.sh for what is measured)."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from tmtest import pg as pgmod
from tmtest.cluster import Cluster, binary
from tmtest.pg import Postgres

ap = argparse.ArgumentParser(prog="tests/bench/pgdump/run.sh")
ap.add_argument("--scale", type=int, default=100)
ap.add_argument("--runs", type=int, default=3)
opt = ap.parse_args()

TASKS_YAML = "tasks:\n  lease: 120s\n  max_attempts: 1\n  retry_backoff: 500ms\n  poll_max: 1s\n"
PASS = "bench-cipher-passphrase-0123456789abcdef"
T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def sh(cmd, **kw):
    """Run a shell pipeline, fail loudly; wall seconds."""
    t = time.monotonic()
    r = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {cmd}\n{r.stdout}\n{r.stderr}")
    return time.monotonic() - t


def du(path):
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(path) for f in fs)


tmp = tempfile.mkdtemp(prefix="tm-bench-pgdump-")
os.chmod(tmp, 0o755)
src = dst = c = None
try:
    bindir = pgmod.bindir()
    src = Postgres(tmp, "src", checksums=False, conf={"max_wal_size": "'4GB'"}).initdb().start()
    dst = Postgres(tmp, "dst", checksums=False, conf={"max_wal_size": "'4GB'"}).initdb().start()
    src.psql("CREATE DATABASE bench")
    log(f"pgbench -i -s {opt.scale}")
    src.pgbench("-i", "-q", "-s", str(opt.scale), db="bench")
    size = int(src.psql("SELECT pg_database_size('bench')"))
    log(f"database bench: {size / 1e6:.0f} MB")

    repo = os.path.join(tmp, "repo")
    key = os.path.join(tmp, "master.key")
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", key], check=True,
                   capture_output=True)
    c = Cluster(heartbeat="200ms", extra_coord_yaml=TASKS_YAML + """policies:
  - name: managed
    match:
      kind: pg_dump
    schedule:
      full: "0 3 1 1 *"
      snapshot: ""
    drill:
      schedule: ""
""")
    c.__enter__()
    c.start_coordinator()
    c.start_agent("db-1", targets=[("bench", "pg_dump",
                                    f"pg_dump:\n  host: 127.0.0.1\n  port: {src.port}\n"
                                    f"  user: postgres\n  sslmode: disable\n"
                                    f"  databases: [bench]\n  jobs: 2\n")],
                  extra=(f"repositories:\n  - name: local\n    type: posix\n    path: {repo}\n"
                         f"encryption:\n  master_key_file: {key}\n"))
    conf = os.path.join(c.dir, "agents", "db-1", "agent.yaml")
    deadline = time.monotonic() + 30
    while c.agents_by_host().get("db-1", {}).get("state") != "online":
        if time.monotonic() > deadline:
            raise SystemExit("agent not online")
        time.sleep(0.2)

    conn = f"-h 127.0.0.1 -p {src.port} -U postgres"
    dconn = f"-h 127.0.0.1 -p {dst.port} -U postgres"
    enc = os.path.join(tmp, "bench.dump.enc")
    plain = os.path.join(tmp, "bench.dump")
    res = {k: [] for k in ("tm_dump", "tm_dump_agent", "base_dump", "tm_restore", "base_restore",
                           "base_pg_restore")}
    stored = []
    def base_dump(run):
        if os.path.exists(enc):
            os.unlink(enc)
        t = sh(f"{bindir}/pg_dump -Fc {conn} -d bench | openssl enc -aes-256-ctr -pbkdf2 "
               f"-pass pass:{PASS} -out {enc}")
        res["base_dump"].append(t)
        log(f"run {run + 1}: pg_dump -Fc | openssl enc: {t:.2f} s, {os.path.getsize(enc) / 1e6:.0f} MB")

    def tm_dump(run):
        before = du(repo) if os.path.isdir(repo) else 0
        t1 = time.monotonic()
        r = c.ctl("backup", "run", "--target", "bench", "--type", "snapshot", "--wait", "--json",
                  timeout=1800)
        t = time.monotonic() - t1
        task = json.loads(r.stdout)
        res["tm_dump"].append(t)
        agent_ms = task.get("duration_ms") or task.get("result", {}).get("duration_ms")
        if agent_ms:
            res["tm_dump_agent"].append(agent_ms / 1000)
        stored.append(du(repo) - before)
        log(f"run {run + 1}: tidemark dump: {t:.2f} s (agent {agent_ms} ms), "
            f"{stored[-1] / 1e6:.1f} MB stored")

    def fresh_dst():
        # Neither restore pays for the other's writes: both copies gone and
        # the destination checkpointed before each measured restore.
        dst.psql("DROP DATABASE IF EXISTS base_r")
        dst.psql("DROP DATABASE IF EXISTS tm_r")
        dst.psql("CHECKPOINT")

    def base_restore(run):
        fresh_dst()
        dst.psql("CREATE DATABASE base_r TEMPLATE template0")
        t = sh(f"openssl enc -d -aes-256-ctr -pbkdf2 -pass pass:{PASS} -in {enc} -out {plain}")
        t2 = sh(f"{bindir}/pg_restore -j2 {dconn} -d base_r {plain}")
        os.unlink(plain)
        res["base_restore"].append(t + t2)
        res["base_pg_restore"].append(t2)
        log(f"run {run + 1}: openssl dec {t:.2f} s + pg_restore -j2 {t2:.2f} s")
        got["base"] = dst.psql("SELECT count(*), sum(abalance) FROM pgbench_accounts", db="base_r")

    def tm_restore(run):
        fresh_dst()
        t1 = time.monotonic()
        r = subprocess.run([binary("tidemark-agent"), "--config", conf, "restore", "--target",
                            "bench", "--host", "127.0.0.1", "--port", str(dst.port), "--user",
                            "postgres", "--sslmode", "disable", "--into", "tm_r", "--jobs", "2",
                            "--no-globals", "--dir", tmp],
                           capture_output=True, text=True, timeout=1800, env=c.env)
        t = time.monotonic() - t1
        if r.returncode != 0:
            raise SystemExit(f"tidemark restore failed: {r.stdout}\n{r.stderr}")
        res["tm_restore"].append(t)
        log(f"run {run + 1}: tidemark restore: {t:.2f} s\n" + r.stdout.rstrip())
        got["tm"] = dst.psql("SELECT count(*), sum(abalance) FROM pgbench_accounts", db="tm_r")

    got = {}
    for run in range(opt.runs):
        # Interleaved, and the order alternates from run to run (ABBA), so
        # neither side always runs second on a machine still writing back.
        first_base = run % 2 == 0
        for f in ((base_dump, tm_dump) if first_base else (tm_dump, base_dump)):
            f(run)
        for f in ((base_restore, tm_restore) if first_base else (tm_restore, base_restore)):
            f(run)
        if got["base"] != got["tm"] or not got["tm"].startswith(str(opt.scale * 100000)):
            raise SystemExit(f"restored copies differ: {got}")

    m = {k: med(v) for k, v in res.items()}
    print()
    print(f"pgbench scale {opt.scale}, database {size / 1e6:.0f} MB, {opt.runs} runs, medians")
    print(f"dump     pg_dump -Fc | openssl enc   {m['base_dump']:8.2f} s  "
          f"({os.path.getsize(enc) / 1e6:.0f} MB)")
    print(f"dump     tidemark                    {m['tm_dump']:8.2f} s  (agent "
          f"{m['tm_dump_agent']:.2f} s, {med(stored) / 1e6:.0f} MB stored)  "
          f"ratio {m['tm_dump'] / m['base_dump']:.2f}")
    print(f"restore  openssl dec + pg_restore -j2 {m['base_restore']:8.2f} s  "
          f"(pg_restore alone {m['base_pg_restore']:.2f} s)")
    print(f"restore  tidemark --jobs 2           {m['tm_restore']:8.2f} s  "
          f"ratio {m['tm_restore'] / m['base_restore']:.2f} "
          f"(vs pg_restore alone {m['tm_restore'] / m['base_pg_restore']:.2f})")
    print("raw: " + json.dumps({k: [round(x, 2) for x in v] for k, v in res.items()}))
finally:
    if c is not None:
        c.__exit__(None, None, None)
    for s in (src, dst):
        if s is not None:
            s.destroy()
    if not os.environ.get("TM_KEEP_TMP"):
        shutil.rmtree(tmp, ignore_errors=True)
