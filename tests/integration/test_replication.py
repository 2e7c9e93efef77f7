"""Cross-region replication: checks, copy repair, repository health, alerts.

A real PostgreSQL archives WAL through `tidemark-agent wal-push` into two
posix repositories, "eu" (region eu-west) and "us" (region us-east); the
policy requires both (min_regions 2) and checks every minute; a webhook
receiver is the alert sink (evaluate_every 1s).

- a clean check: both repositories ok, lag 0, tidemark_repository_up 1;
- one data object of the backup and one WAL file deleted from "us": the
  check finds both, a COPY task puts them back byte for byte (so the stored
  digests match), the check after the copy is clean;
- an object deleted from both repositories cannot be repaired by a copy:
  replication_gap fires (webhook), status shows the gap, lag > 0 is
  exported; once "eu" is repaired by hand the copy fixes "us" and the alert
  resolves;
- "us" made unreachable (its directory replaced by a file): the agent's probe
  fails, repository_unreachable fires and tidemark_repository_up is 0; it
  resolves when the directory is back.
Both agents run as the postgres user, as the systemd unit does.

The checks, copies and gap alerts also run for a Redis target ("cache", a
real redis-server with a multi-part AOF that a third agent ships into the same
two repositories, under the same replication policy): a snapshot object and a
shipped AOF object deleted from "us" are copied back, an unrepairable gap
alerts and resolves (TARGETS). Repository health and the unmeetable policy
are the agent's and the policy's, not an engine's: checked once.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from tmtest import pg as pgmod
from tmtest.alertmanager import WebhookReceiver
from tmtest.cluster import Cluster, binary
from tmtest.pg import Postgres
from tmtest.redis import Redis
from tmtest.runner import check, run, setup, teardown, test, wait_for


class Ctx:
    pass


ctx = Ctx()


TARGETS = ("pg", "cache")  # one per engine: PostgreSQL, Redis
AGENT = {"pg": "db-1", "cache": "db-r"}


def coord_yaml(hook_url):
    return f"""tasks:
  lease: 10s
  max_attempts: 1
  retry_backoff: 500ms
  poll_max: 5s
policies:
  - name: cache
    match:
      kind: redis
    schedule:
      full: "0 0 1 1 *"
      incremental: ""
      snapshot: ""
      jitter: 0s
    replication:
      repositories: [eu, us]
      min_regions: 2
      check: "* * * * *"
      lag_threshold: 1h
  - name: pg
    match:
      kind: postgres
    schedule:
      full: "0 0 1 1 *"
      incremental: ""
      jitter: 0s
    replication:
      repositories: [eu, us]
      min_regions: 2
      check: "* * * * *"
      lag_threshold: 1h
alerts:
  evaluate_every: 1s
  repeat_interval: 1h
  sinks:
    - name: hook
      kind: webhook
      url: {hook_url}
"""


def repo_yaml():
    return (f"repositories:\n"
            f"  - name: eu\n    type: posix\n    path: {ctx.eu}\n    region: eu-west\n"
            f"  - name: us\n    type: posix\n    path: {ctx.us}\n    region: us-east\n"
            f"encryption:\n  master_key_file: {ctx.key}\n")


def status(target="pg"):
    r = ctx.c.ctl("replication", "status", "--target", target, "--json", check=False)
    check(r.returncode in (0, 1), f"replication status: {r.returncode} {r.stderr}")
    return json.loads(r.stdout)


def state(repo, target="pg"):
    return next((s for s in status(target)["states"] if s["repository"] == repo), None)


def hook_events(rule, event, target=None):
    return [b for b in ctx.rx.bodies("/hook")
            if b and b.get("rule") == rule and b.get("event") == event
            and (target is None or b.get("target") == target)]


def metric(name, **labels):
    for line in ctx.c.metrics().splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def read(path):
    with open(path, "rb") as f:
        return f.read()


def check_now(target="pg"):
    r = ctx.c.ctl("replication", "check", "--target", target, "--wait", "--wait-timeout", "120",
                  check=False, timeout=180)
    check(r.returncode == 0, f"replication check task: {r.returncode}\n{r.stdout}\n{r.stderr}")


# A shipped log object as each engine names it (WAL segment; AOF range).
LOG_NAME = {"pg": r"[0-9A-F]{24}", "cache": r"[01][rai]\d{8}-[0-9a-f]{16}-\d{10}-\d{10}"}


def settled_wal(target="pg"):
    """A log file both repositories hold, shipped > 10 s ago (settled)."""
    d = os.path.join(ctx.us, target, "log")
    out = []
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            if re.fullmatch(LOG_NAME[target], f) and os.path.exists(p + ".meta") \
                    and time.time() - os.path.getmtime(p) > 12:
                out.append(os.path.relpath(p, ctx.us))
    return sorted(out)


@setup
def setup():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-repl-")
    os.chmod(ctx.tmp, 0o755)
    ctx.eu = os.path.join(ctx.tmp, "eu")
    ctx.us = os.path.join(ctx.tmp, "us")
    ctx.key = os.path.join(ctx.tmp, "master.key")
    for d in (ctx.eu, ctx.us):
        os.makedirs(d)
        pgmod.chown_tree(d)
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    u = pgmod.run_user()
    if u is not None:
        os.chown(ctx.key, u.pw_uid, u.pw_gid)
    ctx.rx = WebhookReceiver().__enter__()
    c = ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=coord_yaml(ctx.rx.url("/hook")))
    c.__enter__()
    agent = os.path.realpath(binary("tidemark-agent"))
    ctx.pg = Postgres(ctx.tmp, "src", env=c.env)
    ctx.pg.initdb()
    pgyaml = (f"postgres:\n  pgdata: {ctx.pg.datadir}\n  host: 127.0.0.1\n  port: {ctx.pg.port}\n"
              f"  user: postgres\n")
    conf = c.agent_yaml("db-1", targets=[("pg", "postgres", pgyaml)], extra=repo_yaml())
    ctx.pg.write_conf({"archive_mode": "on",
                       "archive_command": f"'{agent} --config {conf} wal-push --target pg %p'"})
    ctx.pg.start()
    ctx.pg.pgbench("-i", "-s", "1", "-q")
    c.start_coordinator()
    c.start_agent("db-1", as_pg_user=True, targets=[("pg", "postgres", pgyaml)], extra=repo_yaml())
    wait_for(lambda: c.agents_by_host().get("db-1", {}).get("state") == "online", 15,
             "agent online")
    ctx.agent_id = c.agents_by_host()["db-1"]["id"]
    r = c.ctl("backup", "run", "--target", "pg", "--wait", "--json", timeout=300, check=False)
    check(r.returncode == 0, f"full backup: {r.stdout}{r.stderr}")
    for _ in range(3):
        ctx.pg.psql("INSERT INTO pgbench_history(tid, bid, aid, delta, mtime) "
                    "VALUES (1, 1, 1, 1, now())")
        ctx.pg.psql("SELECT pg_switch_wal()")
    # The Redis target: its own agent (as the invoking user: the shipper
    # pins the server's AOF files with hard links), the same repositories.
    ctx.redis = Redis(ctx.tmp, "cache", conf={"appendonly": "yes", "aof-timestamp-enabled": "yes",
                                              "appenddirname": "appendonlydir"}).start()
    ryaml = (f"redis:\n  host: 127.0.0.1\n  port: {ctx.redis.port}\n"
             f"  aof_dir: {os.path.join(ctx.redis.dir, 'appendonlydir')}\n  ship_interval: 200ms\n")
    c.start_agent("db-r", targets=[("cache", "redis", ryaml)], extra=repo_yaml())
    wait_for(lambda: c.agents_by_host().get("db-r", {}).get("state") == "online", 15,
             "redis agent online")
    for k in range(3):
        ctx.redis.cli("SET", f"k{k}", "v" * 100)
        time.sleep(1.1)
    r = c.ctl("backup", "run", "--target", "cache", "--type", "snapshot", "--wait", "--json",
              timeout=300, check=False)
    check(r.returncode == 0, f"redis snapshot: {r.stdout}{r.stderr}")
    for k in range(3):
        ctx.redis.cli("SET", f"after{k}", "w" * 100)
        time.sleep(1.1)
    wait_for(lambda: len(settled_wal()) >= 2 and len(settled_wal("cache")) >= 2, 90,
             "settled WAL files and AOF objects in both repositories", interval=0.5)


@test
def clean_check_after_backup():
    for t in TARGETS:
        clean_check(t)


def clean_check(target):
    # The backup itself queued a check; ask for one more and wait for it.
    check_now(target)
    wait_for(lambda: all((state(r, target) or {}).get("state") == "ok" for r in ("eu", "us")), 30,
             f"{target}: both repositories ok")
    st = status(target)
    us = state("us", target)
    check(us["region"] == "us-east" and us["gaps"] == 0 and us["lag_seconds"] == 0
          and us["required"], f"us complete: {us}")
    check(us["newest_backup"] and us["newest_log"], f"newest items named: {us}")
    check(not [s for s in st["states"] if s["repository"] == "" and s["state"] != "ok"],
          f"policy satisfiable (2 regions): {st['states']}")
    check(metric("tidemark_replication_lag_seconds", target=target, repository="us") == 0,
          f"{target}: lag metric 0")
    wait_for(lambda: metric("tidemark_repository_up", repository="us", region="us-east") == 1,
             10, "tidemark_repository_up{us} 1")
    check(metric("tidemark_replication_checks_total", result="ok") >= 1, "checks_total{ok}")
    r = ctx.c.ctl("replication", "status", "--target", target)
    check(r.returncode == 0 and "us-east" in r.stdout and "ok" in r.stdout, r.stdout)


@test
def deleted_object_and_wal_are_copied_back():
    for t in TARGETS:
        copied_back(t)


def copied_back(target):
    bid = state("us", target)["newest_backup"]
    data = os.path.join(target, "backup", bid, "data")
    objs = sorted(os.path.relpath(os.path.join(root, f), ctx.us)
                  for root, _, files in os.walk(os.path.join(ctx.us, data)) for f in files)
    check(objs, f"backup {bid} has data objects in us")
    obj = objs[len(objs) // 2]
    wal = settled_wal(target)[0]
    good_obj, good_wal = read(os.path.join(ctx.eu, obj)), read(os.path.join(ctx.eu, wal))
    check(read(os.path.join(ctx.us, obj)) == good_obj, "same bytes in both regions before")
    gaps_before = metric("tidemark_replication_checks_total", result="gap") or 0
    copies_before = metric("tidemark_replication_copies_total", result="ok") or 0
    os.unlink(os.path.join(ctx.us, obj))
    os.unlink(os.path.join(ctx.us, wal))
    t0 = time.monotonic()
    check_now(target)
    wait_for(lambda: os.path.exists(os.path.join(ctx.us, obj))
             and os.path.exists(os.path.join(ctx.us, wal)), 60, "both copied back to us",
             interval=0.2)
    check(read(os.path.join(ctx.us, obj)) == good_obj, f"{obj}: the copy is the same bytes")
    check(read(os.path.join(ctx.us, wal)) == good_wal, f"{wal}: the copy is the same bytes")
    check(read(os.path.join(ctx.us, wal + ".meta")) == read(os.path.join(ctx.eu, wal + ".meta")),
          "the sidecar (stored digest) is the same")
    wait_for(lambda: (state("us", target) or {}).get("state") == "ok"
             and (state("us", target) or {}).get("copies") == 0, 60,
             "the check after the copy is clean")
    print(f"  {target}: gap found ({obj}, {wal}), copied back and re-checked in "
          f"{time.monotonic() - t0:.1f} s")
    check(metric("tidemark_replication_checks_total", result="gap") >= gaps_before + 1,
          "the check found the gap")
    check(metric("tidemark_replication_copies_total", result="ok") >= copies_before + 1,
          "copies_total{ok}")
    log = ctx.c.agents[AGENT[target]].output()
    check(f"event=copied target={target} backup={bid} from=eu to=us" in log,
          "agent copied the backup")
    check(f"event=copied target={target} log={wal.split('/log/', 1)[1]} from=eu to=us" in log,
          "agent copied the log file")
    check(not hook_events("replication_gap", "firing"), "a repaired gap raises no alert")
    # The restored copy passes the agent's own keyless verify.
    r = subprocess.run([binary("tidemark-agent"), "-c",
                        os.path.join(ctx.c.dir, "agents", AGENT[target], "agent.yaml"), "repo",
                        "verify", "--no-key", "--target", target], capture_output=True, text=True,
                       env=ctx.c.env)
    check(r.returncode == 0, f"repo verify --no-key after repair: {r.stdout}{r.stderr}")


@test
def unrepairable_gap_alerts_then_resolves():
    for t in TARGETS:
        gap_alerts(t)


def gap_alerts(target):
    tu = f"{target}/us"
    bid = state("us", target)["newest_backup"]
    data = os.path.join(target, "backup", bid, "data")
    objs = sorted(os.path.relpath(os.path.join(root, f), ctx.us)
                  for root, _, files in os.walk(os.path.join(ctx.us, data)) for f in files)
    obj = objs[0]
    good = read(os.path.join(ctx.eu, obj))
    os.unlink(os.path.join(ctx.us, obj))
    os.unlink(os.path.join(ctx.eu, obj))
    check_now(target)
    body = wait_for(lambda: hook_events("replication_gap", "firing", tu), 30,
                    f"replication_gap firing for {tu}", interval=0.1)[0]
    check(bid in body["summary"] and "no repository holds a good copy" in body["summary"],
          f"summary says why: {body['summary']}")
    us = state("us", target)
    check(us["state"] == "gap" and us["unresolved"] and us["gaps"] >= 1 and us["lag_seconds"] > 0,
          f"status shows the gap and a lag: {us}")
    r = ctx.c.ctl("replication", "status", "--target", target, check=False)
    check(r.returncode == 1 and "UNRESOLVED" in r.stdout, f"status exits 1: {r.stdout}")
    check(metric("tidemark_replication_lag_seconds", target=target, repository="us") > 0,
          "tidemark_replication_lag_seconds{us} > 0")
    check(metric("tidemark_replication_gaps", target=target, repository="us") >= 1,
          "gaps metric")
    check(any(a["rule"] == "replication_gap" and a["target"] == tu
              for a in ctx.c.ctl_json("alerts", "list")), "alerts list shows it")
    # Repair eu by hand; the next check copies eu -> us and the alert resolves.
    with open(os.path.join(ctx.eu, obj), "wb") as f:
        f.write(good)
    pgmod.chown_tree(ctx.eu)
    check_now(target)
    wait_for(lambda: hook_events("replication_gap", "resolved", tu), 60,
             f"replication_gap resolved for {tu}", interval=0.2)
    check(read(os.path.join(ctx.us, obj)) == good, "us holds the same bytes again")
    check(state("us", target)["state"] == "ok" and not state("us", target)["unresolved"],
          f"{state('us', target)}")
    print(f"  {target}: unrepairable gap alerted and resolved after the repair")


@test
def unreachable_repository_alerts_then_resolves():
    away = ctx.us + ".away"
    os.rename(ctx.us, away)
    with open(ctx.us, "w") as f:
        f.write("not a directory\n")
    target = f"{ctx.agent_id}/us"
    try:
        body = wait_for(lambda: hook_events("repository_unreachable", "firing", target), 30,
                        "repository_unreachable firing", interval=0.1)[0]
        check("us-east" in body["summary"], f"names the region: {body['summary']}")
        check(metric("tidemark_repository_up", repository="us", region="us-east") == 0,
              "tidemark_repository_up{us} 0")
        h = [x for x in status()["repositories"] if x["repository"] == "us"]
        check(h and not h[0]["ok"] and h[0]["error"], f"status shows the probe failing: {h}")
    finally:
        os.unlink(ctx.us)
        os.rename(away, ctx.us)
    wait_for(lambda: hook_events("repository_unreachable", "resolved", target), 30,
             "repository_unreachable resolved", interval=0.1)
    check(metric("tidemark_repository_up", repository="us", region="us-east") == 1, "up again")


@test
def policy_an_agent_cannot_meet_is_reported():
    """db-2 has only "eu": the policy's "us" and 2 regions cannot be met."""
    c = ctx.c
    pgyaml = (f"postgres:\n  pgdata: {ctx.pg.datadir}\n  host: 127.0.0.1\n  port: {ctx.pg.port}\n"
              f"  user: postgres\n")
    one = (f"repositories:\n  - name: eu\n    type: posix\n    path: {ctx.eu}\n"
           f"    region: eu-west\nencryption:\n  master_key_file: {ctx.key}\n")
    c.start_agent("db-2", targets=[("pg2", "postgres", pgyaml)], extra=one)
    wait_for(lambda: c.agents_by_host().get("db-2", {}).get("state") == "online", 15,
             "db-2 online")
    r = c.ctl("replication", "check", "--target", "pg2", "--wait", "--wait-timeout", "60",
              check=False, timeout=90)
    check(r.returncode == 0, f"check of pg2: {r.stdout}{r.stderr}")
    def policy_row():
        r = c.ctl("replication", "status", "--target", "pg2", "--json", check=False)
        return next((s for s in json.loads(r.stdout)["states"] if s["repository"] == ""), None)
    row = wait_for(policy_row, 15, "target-wide row for pg2")
    check(row["state"] == "unsatisfied" and row["unresolved"], f"reported, not ignored: {row}")
    check("'us'" in row["detail"] and "2 regions" in row["detail"], f"says why: {row['detail']}")
    body = wait_for(lambda: hook_events("replication_gap", "firing", "pg2"), 30,
                    "replication_gap firing for pg2", interval=0.1)[0]
    check("cannot be met" in body["summary"], f"summary: {body['summary']}")
    r = c.ctl("replication", "status", "--target", "pg2", check=False)
    check(r.returncode == 1 and "unsatisfied" in r.stdout, f"status exits 1: {r.stdout}")


@teardown
def teardown():
    try:
        ctx.pg.stop("immediate")
        if getattr(ctx, "redis", None) is not None:
            ctx.redis.stop()
        ctx.rx.__exit__(None, None, None)
    finally:
        # Raises when a daemon ended badly (crash, sanitizer report, no stop).
        ctx.c.__exit__(None, None, None)
        shutil.rmtree(ctx.tmp, ignore_errors=True)


if __name__ == "__main__":
    run()
