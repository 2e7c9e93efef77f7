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
"""
import os
import shutil
import subprocess
import tempfile
import time

from tmtest import pg as pgmod
from tmtest.alertmanager import WebhookReceiver
from tmtest.cluster import Cluster, binary
from tmtest.pg import Postgres
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
"""


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

    def pg_status():
        doc = c.ctl_json("status")
        return next(t for t in doc["target_status"] if t["name"] == "pg")
    st = wait_for(lambda: (lambda t: t if t["rpo_seconds"] is not None and t["log_shipping"] == "ok"
                           else None)(pg_status()), 30, "status knows the RPO")
    check(0 <= st["rpo_seconds"] < 120 and st["rpo_goal_seconds"] == 3600,
          f"status: RPO now against the policy's goal: {st}")
    check(st["policy"] == "pg" and st["agent"] == "db-1" and st["agent_state"] == "online"
          and st["last_full_at"] and st["rto_seconds"] is None, f"status row: {st}")
    text = c.ctl("status").stdout
    check("RPO now:" in text and "(goal 1 h 0 m) ok" in text and "log shipping: ok" in text
          and "never drilled" in text, f"status text:\n{text}")
    ctx.pg_status = pg_status

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
        line = wait_for(lambda: [x for x in c.metrics().splitlines()
                                 if x.startswith(fam + '{target="pg"}')], 40, f"{fam} exported")
        check(abs(float(line[0].split()[-1]) - time.time()) < 300, f"{fam} is recent: {line}")


@teardown
def teardown():
    try:
        ctx.pg.stop("immediate")
        ctx.hook.__exit__(None, None, None)
    finally:
        # Raises when a daemon ended badly (crash, sanitizer report, no stop).
        ctx.c.__exit__(None, None, None)
        shutil.rmtree(ctx.tmp, ignore_errors=True)


if __name__ == "__main__":
    run()
