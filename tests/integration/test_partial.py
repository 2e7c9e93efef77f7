"""Partial backups: "succeeded" means every required repository holds it.

A real PostgreSQL target backed up by one agent into two repositories the
policy requires: "local" (posix, region eu-west) and "s3" (a real S3 server,
OpenStack Swift with s3api on loopback, region us-east). The agent starts
with a WRONG S3 secret (generated here), so the S3 writes fail with 403.

- the backup is complete in "local" only: `backup run --wait` exits 3
  (partial), `backups list --json` shows it partial with "s3" missing,
  `task show --json` has one outcome per repository, `status` and
  `tasks list` say partial, tidemark_backup_partial_total counts it, and
  replication_gap for pg/s3 reaches the webhook within seconds (not at the
  next scheduled check: the policy's check cron is once a year);
- the agent is restarted with the right secret: the coordinator's check
  queues a COPY local -> s3, the backup becomes complete (partial cleared,
  "s3" among its repositories, its manifest in the bucket) and the alert
  resolves;
- both repositories broken (wrong secret, and the target's directory in the
  posix repository replaced by a file, so every write there fails): the
  backup fails and `--wait` exits 1, nothing is recorded.
"""
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time

from tmtest.alertmanager import WebhookReceiver
from tmtest.cluster import Cluster, binary
from tmtest.pg import Postgres
from tmtest.runner import check, run, setup, teardown, test, wait_for
from tmtest.s3server import S3Server

BUCKET = "tm-partial"
PARTIAL_EXIT = 3


class Ctx:
    pass


ctx = Ctx()


def coord_yaml(hook_url):
    return f"""tasks:
  lease: 10s
  max_attempts: 1
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
    replication:
      repositories: [local, s3]
      min_regions: 2
      check: "0 0 1 1 *"
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
            f"  - name: local\n    type: posix\n    path: {ctx.local}\n    region: eu-west\n"
            f"  - name: s3\n    type: s3\n    endpoint: {ctx.s3.endpoint}\n"
            f"    signing_region: us-east-1\n    bucket: {BUCKET}\n    region: us-east\n"
            f"    access_key: env:TM_TEST_S3_AK\n    secret_key: env:TM_TEST_S3_SK\n"
            f"    max_retries: 1\n    timeout: 20s\n"
            f"encryption:\n  master_key_file: {ctx.key}\n")


def start_agent(secret):
    """(Re)start db-1 with this S3 secret; the identity in its state dir stays."""
    c = ctx.c
    old = c.agents.get("db-1")
    if old is not None:
        try:
            old.stop(timeout=60)
        except AssertionError as e:  # killed after the timeout: a restart all the same
            print(f"  agent slow to stop (busy in a check): {str(e)[:200]}")
    c.env["TM_TEST_S3_SK"] = secret
    c.start_agent("db-1", targets=[("pg", "postgres", ctx.pgyaml)], extra=repo_yaml())
    wait_for(lambda: c.agents_by_host().get("db-1", {}).get("state") == "online", 30,
             "agent db-1 online")


def backups():
    return ctx.c.ctl_json("backups", "list", "--target", "pg")


def backup(bid):
    return next((b for b in backups() if b["id"] == bid), None)


def hook_events(rule, event, target=None):
    return [b for b in ctx.rx.bodies("/hook")
            if b and b.get("rule") == rule and b.get("event") == event
            and (target is None or b.get("target") == target)]


def metric(name, **labels):
    for line in ctx.c.metrics().splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def run_backup():
    r = ctx.c.ctl("backup", "run", "--target", "pg", "--type", "full", "--wait", "--json",
                  "--wait-timeout", "300", check=False, timeout=360)
    return r, json.loads(r.stdout) if r.stdout.strip() else None, time.monotonic()


@setup
def set_up():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-partial-")
    os.chmod(ctx.tmp, 0o755)
    ctx.local = os.path.join(ctx.tmp, "local")
    os.makedirs(ctx.local)
    ctx.key = os.path.join(ctx.tmp, "master.key")
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    ctx.s3 = S3Server(os.path.join(ctx.tmp, "s3")).__enter__()
    ctx.s3.create_bucket(BUCKET)
    ctx.rx = WebhookReceiver().__enter__()
    c = ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=coord_yaml(ctx.rx.url("/hook")))
    c.__enter__()
    c.env["TM_TEST_S3_AK"] = S3Server.access_key
    ctx.good_secret = S3Server.secret_key
    ctx.bad_secret = secrets.token_hex(16)
    ctx.pg = Postgres(ctx.tmp, "src", env=c.env)
    ctx.pg.initdb()
    ctx.pg.start()
    ctx.pg.pgbench("-i", "-s", "1", "-q")
    ctx.pgyaml = (f"postgres:\n  pgdata: {ctx.pg.datadir}\n  host: 127.0.0.1\n"
                  f"  port: {ctx.pg.port}\n  user: postgres\n")
    c.start_coordinator()
    start_agent(ctx.bad_secret)


@test
def wrong_secret_makes_a_partial_backup():
    r, task, t_done = run_backup()
    check(r.returncode == PARTIAL_EXIT,
          f"backup run --wait exits {PARTIAL_EXIT} (partial): {r.returncode}\n{r.stdout}\n"
          f"{r.stderr}")
    check(task["state"] == "partial", f"task state partial: {task}")
    ctx.task_id = task["id"]
    ctx.bid = task["result"]["backup_id"]
    check("s3" in task["error"] and "local" in task["error"], f"task says why: {task['error']}")
    print(f"  task error: {task['error'][:300]}")

    b = backup(ctx.bid)
    check(b is not None, f"the partial backup is recorded (restorable): {backups()}")
    check(b["partial"] is True and b["missing_repositories"] == ["s3"]
          and b["repositories"] == ["local"], f"backups list: partial, s3 missing: {b}")
    out = ctx.c.ctl("backups", "list", "--target", "pg").stdout
    check("PARTIAL" in out and "s3" in out, f"backups list (text) says partial:\n{out}")
    out = ctx.c.ctl("backup", "show", ctx.bid, "--target", "pg").stdout
    check("PARTIAL" in out and "s3" in out, f"backup show says partial:\n{out}")

    t = ctx.c.ctl_json("task", "show", ctx.task_id)
    outcomes = {o["repository"]: o for o in t["result"]["repository_outcomes"]}
    check(set(outcomes) == {"local", "s3"}, f"one outcome per repository: {outcomes}")
    check(outcomes["local"]["ok"] and not outcomes["s3"]["ok"], f"local ok, s3 not: {outcomes}")
    check(outcomes["s3"]["message"], f"s3's outcome says what happened: {outcomes['s3']}")
    check(ctx.bad_secret not in json.dumps(t), "the secret is not in the task record")
    out = ctx.c.ctl("task", "show", ctx.task_id).stdout
    check("s3" in out and "FAILED" in out and "partial" in out, f"task show (text):\n{out}")
    out = ctx.c.ctl("tasks", "list", "--target", "pg").stdout
    check("partial" in out, f"tasks list shows partial:\n{out}")

    st = ctx.c.ctl_json("status")
    rows = st["target_status"]
    row = next(x for x in rows if x["name"] == "pg")
    check(any(ctx.bid in p and "s3" in p for p in row["partial_backups"]),
          f"status shows the partial backup: {row}")
    check(metric("tidemark_backup_partial_total", target="pg", kind="full") == 1,
          "tidemark_backup_partial_total{pg,full} 1")
    # Restorable: retention plans over it like any backup, PITR starts at it.
    plan = ctx.c.ctl("retention", "plan", "--target", "pg", "--json").stdout
    check(ctx.bid in plan, f"retention plans over the partial backup: {plan[:500]}")
    win = ctx.c.ctl("pitr", "window", "--target", "pg", "--json", check=False)
    check(win.returncode == 0 and json.loads(win.stdout).get("start"),
          f"the PITR window starts at the partial backup: {win.stdout}{win.stderr}")

    post = wait_for(lambda: [p for p in ctx.rx.received("/hook") if p["json"]
                             and p["json"].get("rule") == "replication_gap"
                             and p["json"].get("event") == "firing"
                             and p["json"].get("target") == "pg/s3"], 30,
                    "replication_gap firing for pg/s3", interval=0.1)[0]
    body = post["json"]
    # The next scheduled check is a year away: only the partial outcome can
    # have raised it, within an alert evaluation (1 s) of the task's end.
    print(f"  replication_gap at the webhook {post['t'] - t_done:+.1f} s from backup run "
          f"--wait returning (which polls every 0.25 s)")
    check(post["t"] - t_done < 20, "the gap alert is at once, not at the next check")
    check(ctx.bid in body["summary"] and "partial" in body["summary"],
          f"the alert names the partial backup: {body['summary']}")
    check(ctx.bad_secret not in json.dumps(body), "the secret is not in the alert")


@test
def copy_fills_the_gap_when_the_repository_is_back():
    # Still partial while s3 refuses the secret: the checks keep failing to
    # reach it, the backup stays partial, the alert keeps firing.
    time.sleep(3)
    check(backup(ctx.bid)["partial"], "still partial while s3 is unreachable")
    check(not hook_events("replication_gap", "resolved", "pg/s3"), "not resolved while down")
    t0 = time.monotonic()
    start_agent(ctx.good_secret)
    # A check (which reads every object of every repository), the copy, and
    # the check after the copy: minutes on a loaded machine.
    b = wait_for(lambda: (lambda x: x if x and not x["partial"] else None)(backup(ctx.bid)), 480,
                 "the backup complete after the copy", interval=0.5)
    filled = time.monotonic() - t0
    check(sorted(b["repositories"]) == ["local", "s3"] and b["missing_repositories"] == [],
          f"complete in both: {b}")
    keys = ctx.s3.list_keys(BUCKET, f"pg/backup/{ctx.bid}/")
    check(f"pg/backup/{ctx.bid}/manifest" in keys, f"the manifest is in the bucket: {keys[:5]}")
    wait_for(lambda: hook_events("replication_gap", "resolved", "pg/s3"), 60,
             "replication_gap resolved for pg/s3", interval=0.2)
    resolved = time.monotonic() - t0
    print(f"  agent restarted with the right secret -> backup complete {filled:.1f} s, "
          f"alert resolved {resolved:.1f} s")
    log = ctx.c.agents["db-1"].output()
    check(f"event=copied target=pg backup={ctx.bid} from=local to=s3" in log,
          "the agent copied the backup local -> s3")
    st = ctx.c.ctl_json("status")
    rows = st["target_status"]
    row = next(x for x in rows if x["name"] == "pg")
    check(row["partial_backups"] == [], f"status: no partial backup left: {row}")
    # The check after the copy compared every object in s3 with local by its
    # stored digest: that is what cleared the flag.
    log = ctx.c.coordinator.output()
    check(f"event=backup_complete target=pg backup={ctx.bid}" in log,
          "the coordinator recorded the backup complete")


@test
def no_repository_holds_it_is_a_failure():
    start_agent(ctx.bad_secret)
    # The repository opens and probes fine; every write under pg/ fails
    # (ENOTDIR), as the S3 writes do (403).
    target_dir = os.path.join(ctx.local, "pg")
    away = target_dir + ".away"
    os.rename(target_dir, away)
    with open(target_dir, "w") as f:
        f.write("not a directory\n")
    try:
        before = {b["id"] for b in backups()}
        r, task, _ = run_backup()
        check(r.returncode == 1, f"backup run --wait exits 1 (failed): {r.returncode}\n"
                                 f"{r.stdout}\n{r.stderr}")
        check(task is not None and task["state"] == "failed", f"task failed: {task}")
        check("no repository" in task["error"] and "local" in task["error"],
              f"the error says no repository holds it: {task['error']}")
        print(f"  none case: {task['error'][:300]}")
        new = [b for b in backups() if b["id"] not in before]
        check(not new, f"no backup recorded: {new}")
        check(metric("tidemark_backup_partial_total", target="pg", kind="full") == 1,
              "not counted as partial")
    finally:
        os.unlink(target_dir)
        os.rename(away, target_dir)


@teardown
def tear_down():
    ctx.pg.stop("immediate")
    ctx.c.__exit__(None, None, None)
    ctx.rx.__exit__(None, None, None)
    ctx.s3.__exit__(None, None, None)
    shutil.rmtree(ctx.tmp, ignore_errors=True)


if __name__ == "__main__":
    run()
