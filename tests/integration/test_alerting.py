"""Alerting end to end: a real Alertmanager (prometheus-alertmanager) and a
webhook receiver as the coordinator's two sinks, evaluate_every 1s.

A backup of target "pg" fails (its PostgreSQL is initialised but not
running): the backup_failed alert must reach Alertmanager's
GET /api/v2/alerts and the webhook, and `tidemarkctl alerts list` must show
it; the latency from the failed task to each sink is measured and printed.
Then PostgreSQL starts, a backup succeeds, and the resolved notification
arrives (the alert leaves Alertmanager's active list). Finally an agent is
killed with SIGKILL and agent_lost fires. Every delivery is in the catalog
(alert_notifications).
"""
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time

from tmtest.alertmanager import Alertmanager, WebhookReceiver
from tmtest.cluster import Cluster, binary
from tmtest.pg import Postgres
from tmtest.runner import check, run, setup, teardown, test, wait_for


class Ctx:
    pass


ctx = Ctx()


def coord_yaml(am_url, hook_url):
    return f"""tasks:
  lease: 4s
  max_attempts: 1
  retry_backoff: 500ms
  poll_max: 5s
policies:
  - name: pg
    match:
      kind: postgres
    schedule:
      full: "0 3 * * *"
      incremental: ""
      jitter: 0s
alerts:
  evaluate_every: 1s
  repeat_interval: 1h
  sinks:
    - name: am
      kind: alertmanager
      url: {am_url}
    - name: hook
      kind: webhook
      url: {hook_url}
"""


def am_active(rule, target=None):
    out = []
    for a in ctx.am.alerts(active="true", silenced="false", inhibited="false"):
        lab = a.get("labels", {})
        if lab.get("alertname") == rule and (target is None or lab.get("target") == target):
            out.append(a)
    return out


def hook_events(rule, event):
    return [b for b in ctx.rx.bodies("/hook")
            if b and b.get("rule") == rule and b.get("event") == event]


@setup
def setup():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-alert-")
    os.chmod(ctx.tmp, 0o755)
    ctx.rx = WebhookReceiver().__enter__()
    ctx.am = Alertmanager(ctx.tmp).start()
    ctx.repo = os.path.join(ctx.tmp, "repo")
    ctx.key = os.path.join(ctx.tmp, "master.key")
    ctx.c = Cluster(heartbeat="200ms", stale=3, lost=10,
                    extra_coord_yaml=coord_yaml(ctx.am.url, ctx.rx.url("/hook")))
    ctx.c.__enter__()
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    # Initialised, not started: the first backup cannot connect.
    ctx.pg = Postgres(ctx.tmp, "src").initdb()
    pgyaml = (f"postgres:\n  pgdata: {ctx.pg.datadir}\n  host: 127.0.0.1\n  port: {ctx.pg.port}\n"
              f"  user: postgres\n")
    repo = (f"repositories:\n  - name: local\n    type: posix\n    path: {ctx.repo}\n"
            f"encryption:\n  master_key_file: {ctx.key}\n")
    c = ctx.c
    c.start_coordinator()
    c.start_agent("db-1", targets=[("pg", "postgres", pgyaml)], extra=repo)
    c.start_agent("db-2", targets=[])
    wait_for(lambda: all(c.agents_by_host().get(h, {}).get("state") == "online"
                         for h in ("db-1", "db-2")), 15, "agents online")


@test
def failed_backup_alerts_both_sinks():
    c = ctx.c
    r = c.ctl("backup", "run", "--target", "pg", "--wait", "--json", check=False, timeout=120)
    t_fail = time.monotonic()
    check(r.returncode == 1, f"the backup fails (PostgreSQL is down): rc {r.returncode}\n"
                             f"{r.stdout}\n{r.stderr}")
    wait_for(lambda: am_active("backup_failed", "pg"), 60, "backup_failed in Alertmanager",
             interval=0.1)
    am_lat = time.monotonic() - t_fail
    posts = wait_for(lambda: [p for p in ctx.rx.received("/hook")
                              if p["json"] and p["json"].get("rule") == "backup_failed"
                              and p["json"].get("event") == "firing"], 60,
                     "backup_failed firing at the webhook", interval=0.1)
    hook_lat = posts[0]["t"] - t_fail
    print(f"  alert latency (task failed -> delivered): Alertmanager <= {am_lat:.2f} s "
          f"(polled), webhook {hook_lat:.2f} s; evaluate_every 1s")
    check(am_lat < 30 and hook_lat < 30, "well inside the 5 minute budget")
    body = posts[0]["json"]
    check(body["target"] == "pg" and body["severity"] == "critical", f"webhook body: {body}")
    check("PostgreSQL" in body["summary"] or "connect" in body["summary"].lower()
          or "failed" in body["summary"], f"summary says why: {body['summary']}")
    alerts = c.ctl_json("alerts", "list")
    bf = [a for a in alerts if a["rule"] == "backup_failed" and a["target"] == "pg"]
    check(bf and bf[0]["state"] == "firing", f"alerts list shows it firing: {alerts}")
    check(bf[0]["details"].get("task"), "details name the task")
    text = c.ctl("alerts", "list").stdout
    check("backup_failed" in text and "firing" in text, f"table output: {text}")
    m = c.metrics()
    check('tidemark_alerts_firing{rule="backup_failed"} 1' in m,
          "firing metric: " + "\n".join(l for l in m.splitlines() if "alert" in l))
    check('tidemark_alert_notifications_total{sink="am"' in m, "sink metrics exported")
    check(any(x.startswith('tidemark_backup_failures_total{target="pg",kind="full"} ')
              and float(x.split()[-1]) >= 1 for x in m.splitlines()),
          "failures by target and kind: " +
          "\n".join(x for x in m.splitlines() if "failures_total" in x))


@test
def recovery_resolves():
    c = ctx.c
    ctx.pg.start()
    r = c.ctl("backup", "run", "--target", "pg", "--wait", "--json", check=False, timeout=300)
    check(r.returncode == 0, f"backup succeeds once PostgreSQL runs: {r.stdout}\n{r.stderr}")
    t_ok = time.monotonic()
    wait_for(lambda: hook_events("backup_failed", "resolved"), 30,
             "resolved notification at the webhook", interval=0.1)
    wait_for(lambda: not am_active("backup_failed", "pg"), 30,
             "backup_failed no longer active in Alertmanager", interval=0.2)
    print(f"  resolve latency (backup succeeded -> resolved everywhere): "
          f"{time.monotonic() - t_ok:.2f} s")
    alerts = c.ctl_json("alerts", "list")
    check(not [a for a in alerts if a["rule"] == "backup_failed"], f"gone from the list: {alerts}")


@test
def killed_agent_fires_agent_lost():
    c = ctx.c
    agent_id = c.identity("db-2")["agent_id"] if "agent_id" in c.identity("db-2") else None
    t0 = time.monotonic()
    c.agents["db-2"].kill9()
    body = wait_for(lambda: hook_events("agent_lost", "firing"), 30, "agent_lost at the webhook",
                    interval=0.1)[0]
    print(f"  agent_lost delivered {time.monotonic() - t0:.2f} s after kill -9 "
          f"(lost after 10 missed 200 ms heartbeats)")
    check("db-2" in body["summary"], f"names the host: {body}")
    if agent_id:
        check(body["target"] == agent_id, f"target is the agent id: {body}")
    wait_for(lambda: am_active("agent_lost"), 30, "agent_lost in Alertmanager")
    check(any(a["rule"] == "agent_lost" for a in c.ctl_json("alerts", "list")), "listed")


@test
def notifications_recorded_in_catalog():
    db = sqlite3.connect(os.path.join(ctx.c.dir, "catalog.db"))
    rows = db.execute("SELECT rule, status, sink, ok FROM alert_notifications").fetchall()
    db.close()
    for rule, status, sink in (("backup_failed", "firing", "am"), ("backup_failed", "firing", "hook"),
                               ("backup_failed", "resolved", "hook"),
                               ("agent_lost", "firing", "hook")):
        check((rule, status, sink, 1) in rows, f"{rule}/{status}/{sink} recorded ok: {rows}")


@teardown
def teardown():
    try:
        ctx.pg.stop("immediate")
        ctx.am.stop()
        ctx.rx.__exit__(None, None, None)
    finally:
        # Raises when a daemon ended badly (crash, sanitizer report, no stop).
        ctx.c.__exit__(None, None, None)
        shutil.rmtree(ctx.tmp, ignore_errors=True)


if __name__ == "__main__":
    run()
