"""Point-in-time recovery end to end, the way an operator runs it.

A real PostgreSQL 15 archives its WAL through `tidemark-agent wal-push` into
two posix repositories ("region-a", "region-b"); a coordinator drives full
and incremental backups on agent "db-1"; the agent reports archived WAL so
`tidemarkctl pitr window` knows the recoverable window; then
`tidemarkctl restore --time T --to staging --start` restores onto a second
agent and PostgreSQL replays WAL (fetched with `wal-get`) up to T. Markers
written 2+ s apart, with a table checksum recorded after each, prove the
restore stopped exactly between two of them. A restore of the latest point,
and a time outside the window (refused, window printed) complete it.
Both agents run as the postgres user, as the systemd unit does.

A third repository, "region-c", is a bucket of a real S3-compatible server
(OpenStack Swift with s3api on loopback, tmtest.s3server): every backup and
WAL segment goes there too, and a restore to the same time with only that
repository configured proves backup + PITR through the S3 code (#14).
"""
import json
import os
import subprocess
import tempfile
import time
from datetime import datetime, timezone

from tmtest import pg as pgmod
from tmtest.cluster import Cluster, binary, free_port
from tmtest.pg import Postgres
from tmtest.runbook import runbook
from tmtest.runner import check, run, test, wait_for
from tmtest.s3server import S3Server

TASKS_YAML = """tasks:
  lease: 10s
  max_attempts: 2
  retry_backoff: 500ms
  poll_max: 5s
policies:
  - name: pg
    match:
      kind: postgres
    schedule:
      full: "0 0 1 1 *"
      incremental: ""
      jitter: 0s
alerts:
  evaluate_every: 1s
"""
CHECKSUM_SQL = "SELECT md5(string_agg(md5(a::text), '' ORDER BY aid)) FROM pgbench_accounts a"


class Ctx:
    pass


ctx = Ctx()


def s3_repo_yaml():
    return (f"  - name: region-c\n    type: s3\n    endpoint: {ctx.s3.endpoint}\n"
            f"    signing_region: us-east-1\n    bucket: pitr\n"
            f"    access_key_file: {ctx.s3_ak}\n    secret_key_file: {ctx.s3_sk}\n"
            f"    timeout: 20s\n")


def repo_yaml(s3_only=False):
    repos = "" if s3_only else (
        f"  - name: region-a\n    type: posix\n    path: {ctx.repo_a}\n"
        f"  - name: region-b\n    type: posix\n    path: {ctx.repo_b}\n")
    return (f"repositories:\n{repos}{s3_repo_yaml()}"
            f"encryption:\n  master_key_file: {ctx.key}\n"
            f"restore_roots:\n  - {ctx.restores}\n")


def handle(datadir, port):
    p = Postgres.__new__(Postgres)
    p.base, p.datadir, p.sockdir, p.port = os.path.dirname(datadir), datadir, ctx.pg.sockdir, port
    p.logfile = os.path.join(datadir, "tidemark-restore.log")
    p.bin, p.env = ctx.pg.bin, None
    return p


def utc(ts):
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S+00")


@test
def pitr_through_the_coordinator():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-pitr-")
    os.chmod(ctx.tmp, 0o755)
    ctx.repo_a = os.path.join(ctx.tmp, "repo-a")
    ctx.repo_b = os.path.join(ctx.tmp, "repo-b")
    ctx.key = os.path.join(ctx.tmp, "master.key")
    ctx.restores = os.path.join(ctx.tmp, "restores")
    for d in (ctx.repo_a, ctx.repo_b, ctx.restores):
        os.makedirs(d)
    pgmod.chown_tree(ctx.restores)
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    pgmod.chown_tree(ctx.repo_a)
    pgmod.chown_tree(ctx.repo_b)
    u = pgmod.run_user()
    if u is not None:
        os.chown(ctx.key, u.pw_uid, u.pw_gid)
    ctx.s3 = S3Server(os.path.join(ctx.tmp, "swift")).start()
    ctx.s3.create_bucket("pitr")
    # Key files, not env: the server a restore starts (and its
    # restore_command) gets a minimal environment, never the agent's.
    ctx.s3_ak, ctx.s3_sk = os.path.join(ctx.tmp, "s3-ak"), os.path.join(ctx.tmp, "s3-sk")
    for path, value in ((ctx.s3_ak, ctx.s3.access_key), (ctx.s3_sk, ctx.s3.secret_key)):
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(value)
        if u is not None:
            os.chown(path, u.pw_uid, u.pw_gid)
    c = ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=TASKS_YAML)
    c.__enter__()
    try:
        run_scenario(c)
    finally:
        for p in getattr(ctx, "restored", []):
            p.stop("immediate")
        if hasattr(ctx, "pg"):
            ctx.pg.stop("immediate")
        try:
            c.__exit__(None, None, None)
        finally:
            ctx.s3.stop()


def run_scenario(c):
    agent = os.path.realpath(binary("tidemark-agent"))
    ctx.pg = Postgres(ctx.tmp, "src", env=c.env)
    pgyaml = None  # set once the port is known
    ctx.pg.initdb()
    pgyaml = (f"postgres:\n  pgdata: {ctx.pg.datadir}\n  host: 127.0.0.1\n  port: {ctx.pg.port}\n"
              f"  user: postgres\n  parallel: 2\n")
    conf = c.agent_yaml("db-1", targets=[("pg", "postgres", pgyaml)], extra=repo_yaml())
    ctx.pg.write_conf({
        "archive_mode": "on",
        "archive_command": f"'{agent} --config {conf} wal-push --target pg %p'",
        "archive_timeout": "60",
    })
    ctx.pg.start()
    ctx.pg.pgbench("-i", "-s", "2", "-q")
    ctx.pg.psql("CREATE TABLE markers (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())")

    c.start_coordinator()
    c.start_agent("db-1", as_pg_user=True, targets=[("pg", "postgres", pgyaml)], extra=repo_yaml())
    c.start_agent("staging", as_pg_user=True, targets=[], extra=repo_yaml())
    wait_for(lambda: {a["hostname"]: a["state"] for a in c.ctl_json("agents", "list")}
             == {"db-1": "online", "staging": "online"}, 15, "agents online")

    r = c.ctl("backup", "run", "--target", "pg", "--type", "full", "--wait", "--json", timeout=300,
              check=False)
    check(r.returncode == 0, f"full backup: {r.stdout}{r.stderr}")

    # Markers 2+ s apart: a whole second always lies strictly between two.
    marks = {}
    for k in range(1, 7):
        ctx.pg.psql(f"UPDATE pgbench_accounts SET abalance = abalance + {k} WHERE aid % 97 = {k}")
        ctx.pg.psql(f"INSERT INTO markers(id) VALUES ({k})")
        marks[k] = {"t": time.time(), "sum": ctx.pg.psql(CHECKSUM_SQL)}
        if k == 3:
            r = c.ctl("backup", "run", "--target", "pg", "--type", "incremental", "--wait",
                      "--json", timeout=300, check=False)
            check(r.returncode == 0, f"incremental backup: {r.stdout}{r.stderr}")
        time.sleep(2.2)
    seg = ctx.pg.psql("SELECT pg_walfile_name(pg_switch_wal())")
    wait_for(lambda: all(os.path.exists(os.path.join(r_, "pg", "log", seg[:8], seg + ".meta"))
                         for r_ in (ctx.repo_a, ctx.repo_b)),
             60, f"segment {seg} archived in both regions")

    # The coordinator knows the window from the agent's reports.
    win = wait_for(lambda: (lambda w: w if w["end"] and
                            datetime.strptime(w["end"], "%Y-%m-%dT%H:%M:%SZ")
                            .replace(tzinfo=timezone.utc).timestamp() >= int(marks[6]["t"]) else None)
                   (c.ctl_json("pitr", "window", "--target", "pg")), 30,
                   "PITR window reaches the last marker")
    check(win["gaps"] == [], f"no gaps: {win['gaps']}")
    wait_for(lambda: c.ctl_json("pitr", "window", "--target", "pg")["queue_depth"] == 0, 30,
             "nothing waiting to be archived")
    rb = subprocess.run(runbook("window", TARGET="pg")[:1] + ["--url", c.url] +
                        runbook("window", TARGET="pg")[1:], capture_output=True, text=True,
                        env=c.env, timeout=60)
    check(rb.returncode == 0 and "RPO now" in rb.stdout and "region-a" in rb.stdout,
          f"runbook step 1 (pitr window): {rb.stdout}{rb.stderr}")
    rb = subprocess.run(runbook("backups", TARGET="pg")[:1] + ["--url", c.url] +
                        runbook("backups", TARGET="pg")[1:], capture_output=True, text=True,
                        env=c.env, timeout=60)
    check(rb.returncode == 0 and "incremental" in rb.stdout, f"runbook: backups list: {rb.stdout}")
    check({r_["repository"] for r_ in win["ranges"]} == {"region-a", "region-b", "region-c"},
          f"every region reports WAL: {win['ranges']}")
    print(f"  PITR window {win['start']} .. {win['end']}, RPO now {win['rpo_seconds']} s")

    # Restore to a time between markers 4 and 5, on the staging agent.
    target_s = int(marks[4]["t"]) + 1
    check(target_s < marks[5]["t"], "a whole second lies between markers 4 and 5")
    dest = os.path.join(ctx.restores, "restore-t")
    port = free_port()
    t0 = time.monotonic()
    argv = runbook("restore", TARGET="pg", TIME=utc(target_s), STAGING="staging", DIR=dest,
                   PORT=str(port))
    r = subprocess.run(argv[:1] + ["--url", c.url] + argv[1:], capture_output=True, text=True,
                       env=c.env, timeout=600)
    rto = time.monotonic() - t0
    check(r.returncode == 0, f"restore --time: {r.stdout}{r.stderr}\n"
                             + c.agents["staging"].output()[-3000:])
    p = handle(dest, port)
    ctx.restored = [p]
    got = p.psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM markers")
    check(got == "1,2,3,4", f"exactly the markers before the target time exist: {got!r}")
    check(p.psql(CHECKSUM_SQL) == marks[4]["sum"],
          "pgbench_accounts checksum equals the one recorded at marker 4")
    check(p.psql("SELECT pg_is_in_recovery()") == "f", "promoted after recovery")
    print(f"  restore to {utc(target_s)} on staging: {rto:.1f} s end to end (RTO, via coordinator)")
    p.stop("fast")

    # Latest point, standalone (coordinator not needed), on this host.
    dest2 = os.path.join(ctx.restores, "restore-latest")
    port2 = free_port()
    kw = pgmod.as_user_kwargs(c.env)
    r = subprocess.run(runbook("restore-local", CONFIG=conf, TARGET="pg", DIR=dest2,
                               PORT=str(port2)), capture_output=True, text=True, timeout=600, **kw)
    check(r.returncode == 0, f"restore latest: {r.stdout}{r.stderr}")
    p2 = handle(dest2, port2)
    ctx.restored.append(p2)
    got = p2.psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM markers")
    check(got == "1,2,3,4,5,6", f"latest restore has every marker: {got!r}")
    check(p2.psql(CHECKSUM_SQL) == marks[6]["sum"], "latest checksum equals marker 6's")
    p2.stop("fast")

    # The same time from the S3 region alone: its backups and its WAL (the
    # restore_command this restore writes uses the same configuration).
    conf_s3 = c.agent_yaml("s3-only", targets=[("pg", "postgres", pgyaml)],
                           extra=repo_yaml(s3_only=True))
    pgmod.chown_tree(os.path.dirname(conf_s3))
    dest3 = os.path.join(ctx.restores, "restore-s3")
    port3 = free_port()
    r = subprocess.run(runbook("restore-local", CONFIG=conf_s3, TARGET="pg", DIR=dest3,
                               PORT=str(port3)) + ["--time", utc(target_s)],
                       capture_output=True, text=True, timeout=600, **kw)
    check(r.returncode == 0, f"restore --time from the S3 region alone: {r.stdout}{r.stderr}")
    p3 = handle(dest3, port3)
    ctx.restored.append(p3)
    got = p3.psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM markers")
    check(got == "1,2,3,4", f"S3 only: exactly the markers before the target time: {got!r}")
    check(p3.psql(CHECKSUM_SQL) == marks[4]["sum"], "S3 only: checksum equals marker 4's")
    print(f"  restore to {utc(target_s)} from region-c (S3) alone: markers {got}")
    p3.stop("fast")

    # Archiving falls behind (one region unwritable): the queue shows in the
    # window, which is what an RPO alert watches; nothing is lost after.
    def queue_alert():
        return [a for a in c.ctl_json("alerts", "list")
                if a["rule"] == "archive_queue_growing" and a["target"] == "pg"
                and a["state"] == "firing"]
    os.chmod(ctx.repo_a, 0)
    try:
        for _ in range(5):
            ctx.pg.psql("INSERT INTO markers(id) SELECT max(id) + 1 FROM markers")
            ctx.pg.psql("SELECT pg_switch_wal()")
        w = wait_for(lambda: (lambda x: x if x["queue_depth"] >= 4 else None)(
                         c.ctl_json("pitr", "window", "--target", "pg")), 30,
                     "the archive queue is reported while a region is unwritable")
        print(f"  queue while region-a is unwritable: {w['queue_depth']} segment(s)")
        t0 = time.monotonic()
        wait_for(queue_alert, 30, "archive_queue_growing fires")
        print(f"  archive_queue_growing firing {time.monotonic() - t0:.1f} s after the queue "
              "was reported")
    finally:
        os.chmod(ctx.repo_a, 0o755)
    wait_for(lambda: c.ctl_json("pitr", "window", "--target", "pg")["queue_depth"] == 0, 60,
             "the queue drains once the region is writable again")
    wait_for(lambda: not queue_alert(), 30, "archive_queue_growing resolves")

    # Outside the window: refused, and the window is printed.
    r = subprocess.run([agent, "--config", conf, "restore", "--target", "pg", "--pgdata",
                        os.path.join(ctx.restores, "nope"), "--time", "2001-01-01 00:00:00+00"],
                       capture_output=True, text=True, timeout=120, **kw)
    check(r.returncode != 0 and "window" in (r.stdout + r.stderr).lower(),
          f"a time before every backup is refused with the window: {r.stdout}{r.stderr}")


    # Master key rotation rewraps the WAL log key too: afterwards the new key
    # alone reads archived WAL and the old key alone no longer does.
    newkey = os.path.join(ctx.restores, "new.key")
    r = subprocess.run([agent, "repo", "keygen", newkey], capture_output=True, text=True, **kw)
    check(r.returncode == 0, f"keygen: {r.stderr}")
    r = subprocess.run([agent, "--config", conf, "repo", "rotate-key", "--new-key-file", newkey],
                       capture_output=True, text=True, timeout=300, **kw)
    check(r.returncode == 0, f"rotate-key: {r.stdout}{r.stderr}")
    with open(conf) as f:
        text = f.read()
    conf_new = os.path.join(ctx.restores, "agent-newkey.yaml")
    with open(conf_new, "w") as f:
        f.write(text.replace(f"master_key_file: {ctx.key}", f"master_key_file: {newkey}")
                .replace("state_dir: state", f"state_dir: {os.path.dirname(conf)}/state"))
    pgmod.chown_tree(ctx.restores)
    out = os.path.join(ctx.restores, "seg-new")
    r = subprocess.run([agent, "--config", conf_new, "wal-get", "--target", "pg", "--prefetch", "0",
                        seg, out], capture_output=True, text=True, timeout=120, **kw)
    check(r.returncode == 0 and os.path.getsize(out) == 16 << 20,
          f"wal-get with only the new key after rotation: {r.returncode} {r.stderr}")
    r = subprocess.run([agent, "--config", conf, "wal-get", "--target", "pg", "--prefetch", "0", seg,
                        os.path.join(ctx.restores, "seg-old")], capture_output=True, text=True,
                       timeout=120, **kw)
    check(r.returncode != 0, "the old key alone no longer reads WAL after rotation")

if __name__ == "__main__":
    run()
