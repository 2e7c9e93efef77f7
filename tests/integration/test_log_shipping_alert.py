"""Log shipping failures reach a human: a real PostgreSQL archiving through
`tidemark-agent wal-push` into a posix repository, the agent daemon (as the
PostgreSQL user) reporting ReportLog with pg_stat_archiver, a coordinator
evaluating every second with a webhook receiver as its sink.

The repository is made unwritable for the PostgreSQL user: archiving a
switched segment fails, PostgreSQL counts the failure, the agent reports it
and log_shipping_failed fires at the webhook (latency printed), with the
failed WAL named; tidemark_log_archive_failures_total is exported. The
repository comes back: PostgreSQL's retry succeeds, the alert resolves, and
the segment is in the repository (nothing lost).

The same for a Redis target ("cache": a real redis-server with a multi-part
AOF shipped by the agent's own shipper into two repositories, local and far):
far goes down (the target's log directory there replaced by a file) while a writer logs every
acknowledged write; the shipper's failure reaches the coordinator through the
repository that still answers, log_shipping_failed fires naming the position
and the repository's error, status says failing; far comes back after
OUTAGE_S, the shipper's retry (backoff 1 s doubling) catches up, the alert
resolves, both repositories hold the same AOF objects, and a restore to the
latest time from either repository alone holds exactly the logged writes. The outage
is OUTAGE_S, not a minute: the retry after a minute's outage is the same
code path, reached at most 60 s (the backoff's cap) later.

Status and metrics are checked for both targets (TARGETS): the RPO against
the policy's goal and "log shipping: ok" once shipping works, the failure
counter while it fails, and the restorable window's metrics.
"""
import os
import shutil
import threading
import subprocess
import tempfile
import time

from tmtest import pg as pgmod
from tmtest.alertmanager import WebhookReceiver
from tmtest.cluster import Cluster, binary, free_port
from tmtest.pg import Postgres
from tmtest.redis import Redis, Resp
from tmtest.runner import check, run, setup, teardown, test, wait_for


class Ctx:
    pass


ctx = Ctx()


def coord_yaml(hook_url):
    return f"""alerts:
  evaluate_every: 1s
  repeat_interval: 1h
  sinks:
    - name: hook
      kind: webhook
      url: {hook_url}
policies:
  - name: pg
    match:
      kind: postgres
    schedule:
      full: "0 3 * * *"
      incremental: ""
    rpo_goal: 1h
  - name: cache
    match:
      kind: redis
    schedule:
      full: "0 3 * * *"
      incremental: ""
      snapshot: ""
    rpo_goal: 1h
"""

TARGETS = ("pg", "cache")  # one per engine: PostgreSQL (archive command), Redis (own shipper)
OUTAGE_S = 15


def target_status(name):
    doc = ctx.c.ctl_json("status")
    return next(t for t in doc["target_status"] if t["name"] == name)


def status_knows_rpo(name, agent):
    """The status row of a target whose log ships: RPO against the goal."""
    st = wait_for(lambda: (lambda t: t if t["rpo_seconds"] is not None and t["log_shipping"] == "ok"
                           else None)(target_status(name)), 30, f"status knows the RPO of {name}")
    check(0 <= st["rpo_seconds"] < 120 and st["rpo_goal_seconds"] == 3600,
          f"status: RPO now against the policy's goal: {st}")
    check(st["policy"] == name and st["agent"] == agent and st["agent_state"] == "online"
          and st["last_full_at"] and st["rto_seconds"] is None, f"status row: {st}")
    check(st["window"] == "point-in-time", f"{name}: a point-in-time window: {st}")
    return st


def hook_events(rule, event):
    return [b for b in ctx.hook.bodies("/hook")
            if b and b.get("rule") == rule and b.get("event") == event]


@setup
def setup():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-logalert-")
    os.chmod(ctx.tmp, 0o755)
    ctx.repo = os.path.join(ctx.tmp, "repo")
    ctx.key = os.path.join(ctx.tmp, "master.key")
    os.makedirs(ctx.repo)
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    pgmod.chown_tree(ctx.repo)
    u = pgmod.run_user()
    if u is not None:
        os.chown(ctx.key, u.pw_uid, u.pw_gid)
    ctx.hook = WebhookReceiver().__enter__()
    c = ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=coord_yaml(ctx.hook.url("/hook")))
    c.__enter__()
    agent = os.path.realpath(binary("tidemark-agent"))
    ctx.pg = Postgres(ctx.tmp, "src", env=c.env)
    ctx.pg.initdb()
    pgyaml = (f"postgres:\n  pgdata: {ctx.pg.datadir}\n  host: 127.0.0.1\n  port: {ctx.pg.port}\n"
              f"  user: postgres\n")
    repo = (f"repositories:\n  - name: local\n    type: posix\n    path: {ctx.repo}\n"
            f"encryption:\n  master_key_file: {ctx.key}\n")
    conf = c.agent_yaml("db-1", targets=[("pg", "postgres", pgyaml)], extra=repo)
    ctx.pg.write_conf({
        "archive_mode": "on",
        "archive_command": f"'{agent} --config {conf} wal-push --target pg %p'",
    })
    ctx.pg.start()
    c.start_coordinator()
    c.start_agent("db-1", as_pg_user=True, targets=[("pg", "postgres", pgyaml)], extra=repo)
    wait_for(lambda: c.agents_by_host().get("db-1", {}).get("state") == "online", 15,
             "agent online")
    ctx.pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
    seg = ctx.pg.psql("SELECT pg_walfile_name(pg_switch_wal())")
    wait_for(lambda: ctx.pg.psql("SELECT last_archived_wal FROM pg_stat_archiver") == seg, 30,
             f"{seg} archived while the repository is writable")
    wait_for(lambda: 'tidemark_log_last_archived_timestamp_seconds{target="pg"}' in c.metrics(),
             30, "the archiver status reaches the coordinator")
    r = c.ctl("backup", "run", "--target", "pg", "--type", "full", "--wait", check=False,
              timeout=300)
    check(r.returncode == 0, f"full backup: {r.stdout}{r.stderr}")
    seg = ctx.pg.psql("SELECT pg_walfile_name(pg_switch_wal())")
    wait_for(lambda: ctx.pg.psql("SELECT last_archived_wal FROM pg_stat_archiver") >= seg, 30,
             "the backup's WAL archived")

    ctx.pg_status = lambda: target_status("pg")
    # The Redis target: its own agent (as the invoking user: the shipper pins
    # the server's AOF files with hard links), two repositories.
    ctx.far = os.path.join(ctx.tmp, "far")
    os.makedirs(ctx.far)
    ctx.redis = Redis(ctx.tmp, "cache", conf={"appendonly": "yes", "aof-timestamp-enabled": "yes",
                                              "appenddirname": "appendonlydir"}).start()
    ryaml = (f"redis:\n  host: 127.0.0.1\n  port: {ctx.redis.port}\n"
             f"  aof_dir: {os.path.join(ctx.redis.dir, 'appendonlydir')}\n  ship_interval: 200ms\n")
    rrepo = (f"repositories:\n  - name: local\n    type: posix\n    path: {ctx.repo}\n"
             f"  - name: far\n    type: posix\n    path: {ctx.far}\n"
             f"encryption:\n  master_key_file: {ctx.key}\n")
    ctx.ryaml = ryaml
    c.start_agent("db-r", targets=[("cache", "redis", ryaml)], extra=rrepo)
    wait_for(lambda: c.agents_by_host().get("db-r", {}).get("state") == "online", 15,
             "redis agent online")
    ctx.redis.cli("SET", "before", "snapshot")
    r = c.ctl("backup", "run", "--target", "cache", "--type", "snapshot", "--wait", check=False,
              timeout=300)
    check(r.returncode == 0, f"redis snapshot: {r.stdout}{r.stderr}")
    ctx.redis.cli("SET", "after", "snapshot")
    for name, agent in (("pg", "db-1"), ("cache", "db-r")):
        status_knows_rpo(name, agent)
    text = c.ctl("status").stdout
    check("RPO now:" in text and "(goal 1 h 0 m) ok" in text and "log shipping: ok" in text
          and "never drilled" in text and "  cache (redis) on db-r" in text,
          f"status text:\n{text}")

def set_writable(on):
    for d, _, _ in os.walk(ctx.repo):
        os.chmod(d, 0o700 if on else 0o500)


@test
def failing_archive_fires_and_resolves():
    c = ctx.c
    check(not hook_events("log_shipping_failed", "firing"), "quiet while archiving works")
    # PostgreSQL runs wal-push as its own user, so permissions bite (even
    # when the test runs as root).
    set_writable(False)
    try:
        ctx.pg.psql("INSERT INTO t SELECT g FROM generate_series(1, 1000) g")
        ctx.failed_seg = ctx.pg.psql("SELECT pg_walfile_name(pg_switch_wal())")
        t0 = time.monotonic()
        wait_for(lambda: int(ctx.pg.psql("SELECT failed_count FROM pg_stat_archiver")) > 0, 60,
                 "PostgreSQL counts a failed archive attempt")
        t_fail = time.monotonic()
        body = wait_for(lambda: hook_events("log_shipping_failed", "firing"), 60,
                        "log_shipping_failed at the webhook", interval=0.1)[0]
        print(f"  log_shipping_failed delivered {time.monotonic() - t_fail:.2f} s after "
              f"PostgreSQL's first failed attempt ({t_fail - t0:.2f} s after the switch)")
        check(body["target"] == "pg" and body["severity"] == "critical", f"body: {body}")
        check(ctx.failed_seg in body["summary"], f"names the WAL that fails: {body['summary']}")
        alerts = c.ctl_json("alerts", "list")
        check(any(a["rule"] == "log_shipping_failed" and a["state"] == "firing" for a in alerts),
              f"listed as firing: {alerts}")
        m = c.metrics()
        line = [x for x in m.splitlines()
                if x.startswith('tidemark_log_archive_failures_total{target="pg"}')]
        check(line and float(line[0].split()[-1]) > 0, f"failures exported: {line}")
        st = ctx.pg_status()
        check(st["log_shipping"].startswith("failing: " + ctx.failed_seg) and
              st["alerts_firing"] >= 1, f"status shows log shipping failing: {st}")
        check(ctx.pg.psql("SELECT count(*) FROM pg_ls_dir('pg_wal/archive_status') f "
                          "WHERE f LIKE '%.ready'") != "0", "PostgreSQL keeps the segment")
    finally:
        set_writable(True)
    t_back = time.monotonic()
    # A new .ready file wakes PostgreSQL's archiver, which otherwise waits up
    # to a minute after three failures; it retries the oldest segment first.
    ctx.pg.psql("INSERT INTO t SELECT g FROM generate_series(1, 10) g")
    ctx.pg.psql("SELECT pg_switch_wal()")
    wait_for(lambda: ctx.pg.psql("SELECT last_archived_wal FROM pg_stat_archiver")
             >= ctx.failed_seg, 120, "PostgreSQL's retry archives the segment")
    wait_for(lambda: hook_events("log_shipping_failed", "resolved"), 60,
             "resolved at the webhook", interval=0.1)
    print(f"  resolved {time.monotonic() - t_back:.2f} s after the repository came back")
    meta = os.path.join(ctx.repo, "pg", "log", ctx.failed_seg[:8], ctx.failed_seg + ".meta")
    check(os.path.exists(meta), f"the segment that failed is in the repository now: {meta}")
    c = ctx.c
    # The window metrics are recomputed at most every 30 s.
    for fam in ("tidemark_pitr_window_start_timestamp_seconds",
                "tidemark_pitr_window_end_timestamp_seconds"):
        for t in TARGETS:
            line = wait_for(lambda: [x for x in c.metrics().splitlines()
                                     if x.startswith(fam + f'{{target="{t}"}}')], 40,
                            f"{fam} of {t} exported")
            check(abs(float(line[0].split()[-1]) - time.time()) < 300, f"{fam} is recent: {line}")
    check('tidemark_pitr_snapshot_only{target="cache"} 0' in c.metrics(),
          "the Redis target's window is not snapshot-only")


def shipped_objects(repo):
    root = os.path.join(repo, "cache", "log")
    out = {}
    for dp, _, fs in os.walk(root):
        for f in fs:
            if f.endswith(".meta"):
                rel = os.path.relpath(os.path.join(dp, f[:-5]), root)
                out[rel] = int(rel.rsplit("-", 1)[1])  # last #TS: second
    return out


class Writer(threading.Thread):
    """SETs a new key every 50 ms, logging each acknowledged one."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.log, self.stop = port, [], threading.Event()

    def run(self):
        try:
            with Resp(self.port) as c:
                i = 0
                while not self.stop.is_set():
                    c.call("SET", f"w{i}", f"v{i}")
                    self.log.append((f"w{i}", f"v{i}", time.time()))
                    i += 1
                    time.sleep(0.05)
        except (OSError, ConnectionError):
            pass  # the server went away (teardown after a failure)


@test
def redis_repository_down_fires_resolves_and_loses_nothing():
    c = ctx.c
    w = Writer(ctx.redis.port)
    w.start()
    # The log archive of the target in far made unusable (a file where its
    # directory was): the agent keeps far's root open, so replacing far
    # itself would not stop its writes.
    logdir = os.path.join(ctx.far, "cache", "log")
    away = logdir + ".away"
    try:
        time.sleep(1)
        os.rename(logdir, away)
        with open(logdir, "w") as f:
            f.write("not a directory\n")
        t_down = time.monotonic()
        body = wait_for(lambda: [b for b in hook_events("log_shipping_failed", "firing")
                                 if b.get("target") == "cache"], 60,
                        "log_shipping_failed for cache at the webhook", interval=0.1)[0]
        print(f"  cache: log_shipping_failed delivered {time.monotonic() - t_down:.2f} s after "
              f"the repository went down; summary: {body['summary']}")
        check(body["severity"] == "critical" and "far" in body["summary"],
              f"names the repository that fails: {body['summary']}")
        st = target_status("cache")
        check(st["log_shipping"].startswith("failing: ") and st["alerts_firing"] >= 1,
              f"status shows log shipping failing: {st}")
        line = [x for x in c.metrics().splitlines()
                if x.startswith('tidemark_log_archive_failures_total{target="cache"}')]
        check(line and float(line[0].split()[-1]) > 0, f"failures exported: {line}")
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t_down)))
    finally:
        os.unlink(logdir)
        os.rename(away, logdir)
    t_back = time.monotonic()
    wait_for(lambda: [b for b in hook_events("log_shipping_failed", "resolved")
                      if b.get("target") == "cache"], 90, "resolved at the webhook", interval=0.1)
    print(f"  cache: resolved {time.monotonic() - t_back:.2f} s after the repository came back "
          f"(outage {OUTAGE_S} s)")
    w.stop.set()
    w.join(timeout=10)
    last = int(w.log[-1][2]) + 1
    # A write in a later second: once shipped, everything before it is.
    time.sleep(max(0.0, last + 0.1 - time.time()))
    ctx.redis.cli("SET", "sentinel", "x")
    wait_for(lambda: all(any(ts >= last for ts in shipped_objects(r).values())
                         for r in (ctx.repo, ctx.far)), 60, "everything shipped to both")
    # local took the tries that far refused: it holds pieces of one AOF file
    # from the same offset (the retry's longer); restore keeps the longest.
    local, far = shipped_objects(ctx.repo), shipped_objects(ctx.far)
    print(f"  cache: {len(local)} AOF objects in local, {len(far)} in far")
    # Each repository alone restores every acknowledged write.
    for name, path in (("local", ctx.repo), ("far", ctx.far)):
        only = (f"repositories:\n  - name: {name}\n    type: posix\n    path: {path}\n"
                f"encryption:\n  master_key_file: {ctx.key}\n")
        conf = c.agent_yaml(f"restore-{name}", targets=[("cache", "redis", ctx.ryaml)], extra=only)
        d = os.path.join(ctx.tmp, f"restored-{name}")
        port = free_port()
        t = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(time.time() + 1))
        r = subprocess.run([binary("tidemark-agent"), "--config", conf, "restore", "--target",
                            "cache", "--dir", d, "--time", t, "--start", "--port", str(port)],
                           capture_output=True, text=True, timeout=300, env=c.env)
        check(r.returncode == 0, f"restore from {name} alone to {t}: {r.stdout}{r.stderr}")
        try:
            with Resp(port) as rc:
                missing = [k for k, v, _ in w.log if (rc.call("GET", k) or b"").decode() != v]
                dbsize = rc.call("DBSIZE")
        finally:
            subprocess.run(["redis-cli", "-p", str(port), "SHUTDOWN", "NOSAVE"],
                           capture_output=True)
        check(not missing, f"{name}: every acknowledged write restored: {len(missing)} of "
                           f"{len(w.log)} missing, e.g. {missing[:5]}")
        # w0.. + before, after, sentinel: nothing twice, nothing else.
        check(dbsize == len(w.log) + 3, f"{name}: exactly the writes: DBSIZE {dbsize}")
    print(f"  cache: {len(w.log)} writes across the outage, all restored from the repositories")


@teardown
def teardown():
    try:
        ctx.pg.stop("immediate")
        if getattr(ctx, "redis", None) is not None:
            ctx.redis.stop()
        ctx.hook.__exit__(None, None, None)
    finally:
        # Raises when a daemon ended badly (crash, sanitizer report, no stop).
        ctx.c.__exit__(None, None, None)
        shutil.rmtree(ctx.tmp, ignore_errors=True)


if __name__ == "__main__":
    run()
