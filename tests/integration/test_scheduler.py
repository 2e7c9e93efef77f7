"""The scheduler takes backups on its own: a real PostgreSQL, a coordinator
whose policy fires a full every minute and an incremental every 5 s (the
shortest @every; jitter 0) and one agent with the postgres target and a
posix repository.
No `backup run` is issued: within ~70 s a full backup must appear in
`backups list`, then incrementals based on it, all made by tasks with
requested_by "schedule", never two at once for the target. A second target
that no policy matches is reported (tidemark_targets_without_policy, a log
line), not ignored. With the agent stopped, the next scheduled run cannot
start: backup_late fires after schedule.late_after (8 s) and resolves when
the agent is back and the run finishes.
"""
import datetime
import os
import shutil
import subprocess
import tempfile
import time

from tmtest.cluster import Cluster, binary
from tmtest.pg import Postgres
from tmtest.runner import check, run, setup, teardown, test, wait_for

# The shortest @every: the incrementals and the late alert come that soon.
INCR_S = 5
POLICY_YAML = f"""tasks:
  lease: 10s
  max_attempts: 2
  retry_backoff: 500ms
  poll_max: 5s
policies:
  - name: every-minute
    match:
      kind: postgres
      labels:
        role: db
    schedule:
      full: "* * * * *"
      incremental: "@every {INCR_S}s"
      jitter: 0s
      late_after: 8s
scheduler:
  max_tasks_per_agent: 2
alerts:
  evaluate_every: 1s
"""


class Ctx:
    pass


ctx = Ctx()


@setup
def setup():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-sched-")
    os.chmod(ctx.tmp, 0o755)
    ctx.repo = os.path.join(ctx.tmp, "repo")
    ctx.key = os.path.join(ctx.tmp, "master.key")
    ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=POLICY_YAML)
    ctx.c.__enter__()
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    ctx.pg = Postgres(ctx.tmp, "src").initdb().start()
    ctx.pg.psql("CREATE TABLE t (id int PRIMARY KEY)")
    pgyaml = (f"postgres:\n  pgdata: {ctx.pg.datadir}\n  host: 127.0.0.1\n  port: {ctx.pg.port}\n"
              f"  user: postgres\n")
    repo = (f"repositories:\n  - name: local\n    type: posix\n    path: {ctx.repo}\n"
            f"encryption:\n  master_key_file: {ctx.key}\n")
    c = ctx.c
    c.start_coordinator()
    # "cache" is a redis target: the postgres-only policy does not match it.
    c.start_agent("db-1", targets=[("pg", "postgres", pgyaml), ("cache", "redis")], extra=repo)
    ctx.pgyaml, ctx.repo_yaml = pgyaml, repo
    ctx.t0 = time.monotonic()
    wait_for(lambda: c.agents_by_host().get("db-1", {}).get("state") == "online", 15,
             "agent online")


@test
def scheduled_full_backup_without_backup_run():
    c = ctx.c

    def scheduled_backup():
        for b in c.ctl_json("backups", "list", "--target", "pg"):
            if b.get("type") == "full":
                return b
        return None

    b = wait_for(scheduled_backup, 75, "a scheduled full backup in `backups list`", interval=0.5)
    dt = time.monotonic() - ctx.t0
    print(f"  scheduled full backup {b['id']} listed {dt:.1f} s after the agent started")
    tasks = [t for t in c.ctl_json("tasks", "list", "--target", "pg") if t["kind"] == "backup"]
    check(tasks, "a backup task exists")
    check(all(t["requested_by"] == "schedule" for t in tasks),
          f"every backup task was requested by the schedule: {tasks}")
    check(any(t["state"] == "succeeded" and t.get("result", {}).get("backup_id") == b["id"]
              for t in tasks), f"the listed backup came from a scheduled task: {tasks}")
    # The schedule's period is exported as soon as the target has jobs, not
    # a minute after the coordinator started (it was recomputed only once a
    # minute, so a coordinator that started before its agents exported
    # nothing for up to a minute).
    m = wait_for(lambda: 'tidemark_backup_expected_interval_seconds{target="pg",type="full"} 60'
                 in (x := c.metrics()) and x, 5, "the expected interval of pg's full backups")
    check(f'tidemark_backup_expected_interval_seconds{{target="pg",type="incremental"}} {INCR_S}' in m,
          "and of its incrementals")


@test
def scheduled_incrementals_follow():
    c = ctx.c

    def incrementals():
        full = [b for b in c.ctl_json("backups", "list", "--target", "pg") if b["type"] == "full"]
        inc = [b for b in c.ctl_json("backups", "list", "--target", "pg")
               if b["type"] == "incremental"]
        return (full, inc) if len(inc) >= 2 else None

    full, inc = wait_for(incrementals, 90, "two scheduled incrementals", interval=0.5)
    fulls = {b["id"] for b in full}
    print(f"  {len(full)} full(s), {len(inc)} incremental(s): "
          f"{', '.join(b['id'] for b in sorted(full + inc, key=lambda b: b['id']))}")
    for b in inc:
        check(b.get("parent_id") in fulls | {x["id"] for x in inc},
              f"incremental {b['id']} is based on a backup of the chain: {b}")
    tasks = [t for t in c.ctl_json("tasks", "list", "--target", "pg") if t["kind"] == "backup"]
    check(all(t["requested_by"] == "schedule" for t in tasks), f"all scheduled: {tasks}")
    def ts(x):
        return datetime.datetime.strptime(x, "%Y-%m-%dT%H:%M:%SZ").timestamp()
    spans = sorted((ts(t["started_at"]), ts(t["finished_at"])) for t in tasks
                   if t.get("started_at") and t.get("finished_at"))
    for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
        check(s2 >= e1 - 1, f"no two backups of the target ran at once: {spans}")


@test
def late_schedule_alert():
    c = ctx.c
    c.agents["db-1"].stop()
    t0 = time.monotonic()

    def late():
        return [a for a in c.ctl_json("alerts", "list")
                if a["rule"] == "backup_late" and a["state"] == "firing"]
    firing = wait_for(late, 90, "backup_late firing while the agent is down", interval=0.5)
    print(f"  backup_late fired {time.monotonic() - t0:.1f} s after the agent stopped: "
          f"{firing[0]['summary']}")
    check(firing[0]["target"] in ("pg/full", "pg/incremental"), f"names target and kind: {firing}")
    check("late_after" in firing[0]["summary"], f"summary says why: {firing[0]}")
    m = c.metrics()
    check('tidemark_alerts_firing{rule="backup_late"}' in m, "exported")
    c.start_agent("db-1", targets=[("pg", "postgres", ctx.pgyaml), ("cache", "redis")],
                  extra=ctx.repo_yaml)
    wait_for(lambda: not late(), 90, "backup_late resolved once the agent is back", interval=0.5)
    print(f"  resolved {time.monotonic() - t0:.1f} s after the agent stopped")


@test
def target_without_policy_is_reported():
    c = ctx.c
    m = wait_for(lambda: "tidemark_targets_without_policy 1" in c.metrics() and c.metrics(), 10,
                 "tidemark_targets_without_policy 1")
    check("tidemark_scheduled_tasks_total" in m, "scheduled tasks counter exported")
    check('tidemark_backup_expected_interval_seconds{target="pg",type="full"} 60' in m and
          f'tidemark_backup_expected_interval_seconds{{target="pg",type="incremental"}} {INCR_S}' in m,
          "the schedule's period per type is exported: " +
          "\n".join(x for x in m.splitlines() if "expected_interval" in x))
    log = c.coordinator.output()
    check("event=target_without_policy target=cache" in log, "the unmatched target is logged")
    check(log.count("event=target_without_policy target=cache") == 1, "logged once, not per tick")
    check(not [t for t in c.ctl_json("tasks", "list", "--target", "cache")],
          "no task for the unmatched target")


@test
def retention_plan_dry_run():
    c = ctx.c
    doc = c.ctl_json("retention", "plan", "--target", "pg")
    check(doc["dry_run"] is True and "retention apply" in doc["note"], f"says dry run: {doc}")
    plans = doc["plans"]
    check(len(plans) == 1 and plans[0]["policy"] == "every-minute", f"one plan, its policy: {doc}")
    tgt = plans[0]["plan"]["targets"]
    check(len(tgt) == 1 and tgt[0]["target"] == "pg", f"target pg: {tgt}")
    backups = tgt[0]["backups"]
    check(backups and backups[0]["action"] == "keep" and "newest" in backups[0]["reason"],
          f"the newest backup is kept, and says why: {backups}")
    text = c.ctl("retention", "plan").stdout
    check("DRY RUN" in text and "pg" in text, f"text output: {text}")
    r = c.ctl("retention", "plan", "--target", "nope", check=False)
    check(r.returncode == 1 and "nope" in r.stderr, f"unknown target fails: {r.returncode} {r.stderr}")
    r = c.ctl("retention", "plan", "--bogus", check=False)
    check(r.returncode == 2, "usage error exits 2")


@teardown
def teardown():
    try:
        ctx.pg.stop("immediate")
    finally:
        # Raises when a daemon ended badly (crash, sanitizer report, no stop).
        ctx.c.__exit__(None, None, None)
        shutil.rmtree(ctx.tmp, ignore_errors=True)


if __name__ == "__main__":
    run()
