"""Restore drills end to end, with measured RTO and RPO.

A real PostgreSQL archives WAL through `tidemark-agent wal-push` (the agent
runs as the PostgreSQL user, as in test_pitr.py); agent "db-1" serves target
"pg", agent "staging" has no targets and the same repository and key. After
a full backup and rows written after it (their WAL archived),
`tidemarkctl drill run --target pg --to staging --wait` (the runbook's
e2e:drill block) must pass on the staging agent, with the RTO equal to the
sum of its phases, the achieved RPO small and >= 0 and consistent with the
commit time of the last row, the figures in `drills list --json` and on
/metrics, the drill directory gone, and the source PostgreSQL and the
repository's WAL untouched (the copy did not archive a new timeline).

Then the coordinator restarts with a drill check that fails: the drill
fails, `drill_failed` reaches the webhook sink and `alerts list`, the
metrics say result 0. Finally a policy with drill.schedule "* * * * *":
a drill runs by itself (requested_by "schedule"), passes, and drill_failed
resolves.
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
from tmtest.runbook import runbook
from tmtest.runner import check, run, test, wait_for

GOOD_CHECK = "SELECT count(*) = 3 FROM drill_rows"
BAD_CHECK = "SELECT count(*) > 1000 FROM drill_rows"


class Ctx:
    pass


ctx = Ctx()


def coord_yaml(schedule, check_sql, rpo_goal="5m"):
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
    drill:
      schedule: "{schedule}"
      checks:
        - {check_sql}
      rto_goal: 10m
      rpo_goal: {rpo_goal}
alerts:
  evaluate_every: 1s
  repeat_interval: 1h
  sinks:
    - name: hook
      kind: webhook
      url: {ctx.rx.url("/hook")}
"""


def restart_coordinator(c, schedule, check_sql, rpo_goal="5m"):
    c.coordinator.stop()
    with open(c.coord_yaml) as f:
        text = f.read()
    text = text[:text.index("tasks:\n")] + coord_yaml(schedule, check_sql, rpo_goal)
    with open(c.coord_yaml, "w") as f:
        f.write(text)
    c.start_coordinator()
    wait_for(lambda: {a["hostname"]: a["state"] for a in c.ctl_json("agents", "list")}
             == {"db-1": "online", "staging": "online"}, 30, "agents back online")


def metric(text, name, labels=""):
    m = re.search(r"^" + re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "")
                  + r" (\S+)$", text, re.M)
    check(m is not None, f"{name}{{{labels}}} on /metrics:\n"
          + "\n".join(x for x in text.splitlines() if "drill" in x))
    return float(m.group(1))


def drills_dir():
    return os.path.join(ctx.c.dir, "agents", "staging", "state", "drills")


def run_drill(c, *extra):
    argv = runbook("drill", TARGET="pg", STAGING="staging")
    t0 = time.monotonic()
    r = subprocess.run(argv[:1] + ["--url", c.url] + argv[1:] + list(extra), capture_output=True,
                       text=True, env=c.env, timeout=600)
    return r, time.monotonic() - t0


def hook_events(rule, event):
    return [b for b in ctx.rx.bodies("/hook")
            if b and b.get("rule") == rule and b.get("event") == event]


@test
def drill_to_a_second_agent():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-drill-")
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
    ctx.rx = WebhookReceiver().__enter__()
    c = ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml="")
    with open(c.coord_yaml, "a") as f:
        f.write(coord_yaml("0 0 1 1 *", GOOD_CHECK))
    c.__enter__()
    ok = False
    try:
        scenario(c)
        ok = True
    finally:
        if hasattr(ctx, "pg"):
            ctx.pg.stop("immediate")
        c.__exit__(None, None, None)
        ctx.rx.__exit__(None, None, None)
        if ok and not os.environ.get("TM_KEEP_TMP"):
            shutil.rmtree(ctx.tmp, ignore_errors=True)


def scenario(c):
    agent = os.path.realpath(binary("tidemark-agent"))
    repo = (f"repositories:\n  - name: local\n    type: posix\n    path: {ctx.repo}\n"
            f"encryption:\n  master_key_file: {ctx.key}\n")
    ctx.pg = Postgres(ctx.tmp, "src", env=c.env)
    ctx.pg.initdb()
    pgyaml = (f"postgres:\n  pgdata: {ctx.pg.datadir}\n  host: 127.0.0.1\n  port: {ctx.pg.port}\n"
              f"  user: postgres\n")
    conf = c.agent_yaml("db-1", targets=[("pg", "postgres", pgyaml)], extra=repo)
    ctx.pg.write_conf({
        "archive_mode": "on",
        "archive_command": f"'{agent} --config {conf} wal-push --target pg %p'",
        "archive_timeout": "60",
    })
    ctx.pg.start()
    ctx.pg.psql("CREATE TABLE drill_rows (id int PRIMARY KEY, at timestamptz NOT NULL "
                "DEFAULT clock_timestamp())")
    c.start_coordinator()
    c.start_agent("db-1", as_pg_user=True, targets=[("pg", "postgres", pgyaml)], extra=repo)
    c.start_agent("staging", as_pg_user=True, targets=[], extra=repo)
    wait_for(lambda: {a["hostname"]: a["state"] for a in c.ctl_json("agents", "list")}
             == {"db-1": "online", "staging": "online"}, 15, "agents online")
    r = c.ctl("backup", "run", "--target", "pg", "--type", "full", "--wait", "--json",
              timeout=300, check=False)
    check(r.returncode == 0, f"full backup: {r.stdout}{r.stderr}")
    backup_id = c.ctl_json("backups", "list", "--target", "pg")[-1]["id"]

    # Rows after the backup: only WAL brings them back.
    for k in (1, 2, 3):
        ctx.pg.psql(f"INSERT INTO drill_rows(id) VALUES ({k})")
    last_commit = float(ctx.pg.psql("SELECT extract(epoch FROM max(at)) FROM drill_rows"))
    seg = ctx.pg.psql("SELECT pg_walfile_name(pg_switch_wal())")
    wait_for(lambda: os.path.exists(os.path.join(ctx.repo, "pg", "log", seg[:8], seg + ".meta")),
             60, f"segment {seg} archived")
    time.sleep(1.0)  # a drill of "latest" measures RPO from its own start

    # 1. On demand, to the staging agent: the runbook's command.
    before = time.time()
    r, wall = run_drill(c, "--json")
    check(r.returncode == 0, f"drill run --wait: {r.stdout}{r.stderr}\n"
          + c.agents["staging"].output()[-3000:])
    d = json.loads(r.stdout)
    check(d["ok"] and d["result"] == "ok", f"drill passed: {d}")
    check(d["backup_id"] == backup_id, f"drilled the newest backup {backup_id}: {d['backup_id']}")
    check(d["agent_id"] == c.agents_by_host()["staging"]["id"], "ran on the staging agent")
    ph = d["phases"]
    phases = ph["restore_files_seconds"] + ph["recovery_seconds"] + ph["checks_seconds"]
    check(d["rto_seconds"] > 0, f"RTO measured: {d['rto_seconds']}")
    check(abs(d["rto_seconds"] - phases) <= 0.25 + 0.02 * d["rto_seconds"],
          f"RTO {d['rto_seconds']} = files + recovery + checks {phases:.3f}")
    check(d["rto_seconds"] <= wall, f"RTO {d['rto_seconds']} within the command's {wall:.1f} s")
    rpo = d["rpo_seconds"]
    check(rpo is not None and rpo >= 0, f"RPO measured and >= 0: {rpo}")
    # The copy holds the last row: it recovered to its commit or later, and
    # the RPO is at most "drill start - last row".
    check(rpo <= time.time() - last_commit + 1, f"RPO {rpo} <= time since the last row")
    check(rpo < 120, f"RPO small: {rpo}")
    names = {k["name"]: k for k in d["checks"]}
    check(names.get("catalog:postgres", {}).get("ok"), f"engine check on postgres: {names}")
    check(names.get("sql:1", {}).get("ok"), f"the policy's SQL check passed: {names}")
    print(f"  drill on staging: RTO {d['rto_seconds']:.2f} s (files {ph['restore_files_seconds']:.2f}"
          f" + recovery {ph['recovery_seconds']:.2f} + checks {ph['checks_seconds']:.2f}), "
          f"RPO {rpo:.2f} s, command {wall:.1f} s")

    listed = c.ctl_json("drills", "list", "--target", "pg")
    check(len(listed) == 1 and listed[0]["task_id"] == d["task_id"]
          and listed[0]["rto_seconds"] == d["rto_seconds"], f"drills list: {listed}")
    rb = runbook("drills", TARGET="pg")
    r = subprocess.run(rb[:1] + ["--url", c.url] + rb[1:], capture_output=True, text=True,
                       env=c.env, timeout=60)
    check(r.returncode == 0 and "ok" in r.stdout and backup_id in r.stdout,
          f"runbook: drills list: {r.stdout}{r.stderr}")
    st = c.ctl("status").stdout
    check(re.search(r"pg\s+ok .*RTO [0-9.]+ s .*RPO [0-9.]+ s", st), f"status shows RTO/RPO: {st}")
    sj = c.ctl_json("status")
    check([(x["target"], x["rto_seconds"], x["rpo_seconds"]) for x in sj["drills"]]
          == [("pg", d["rto_seconds"], rpo)], f"status --json drills: {sj.get('drills')}")
    row = next(t for t in sj["target_status"] if t["name"] == "pg")
    check(abs(row["rto_seconds"] - d["rto_seconds"]) < 0.002 and row["last_drill_ok"] is True
          and row["rto_goal_seconds"] == 600 and row["rpo_seconds"] is not None,
          f"the target's status row: RTO of the last drill against the goal, RPO now: {row}")
    check(re.search(r"RTO: +[0-9.]+ s measured by the drill .*\(goal 10 m 0 s\) ok", st),
          f"status text: the target's RTO line: {st}")

    m = c.metrics()
    check(abs(metric(m, "tidemark_drill_last_rto_seconds", 'target="pg"') - d["rto_seconds"])
          < 0.01, "RTO exported")
    check(abs(metric(m, "tidemark_drill_last_rpo_seconds", 'target="pg"') - rpo) < 0.01,
          "RPO exported")
    check(metric(m, "tidemark_drill_last_result", 'target="pg"') == 1, "result 1 exported")
    check(metric(m, "tidemark_drill_last_success_timestamp_seconds", 'target="pg"') >= before - 1,
          "last success timestamp exported")
    check(metric(m, "tidemark_drills_total", 'result="ok"') == 1, "drills_total{ok} = 1")

    check(os.listdir(drills_dir()) == [], f"drill dir removed: {os.listdir(drills_dir())}")
    check(ctx.pg.psql("SELECT pg_is_in_recovery()") == "f"
          and ctx.pg.psql("SELECT count(*) FROM drill_rows") == "3", "source PostgreSQL untouched")
    tl2 = [n for n in os.listdir(os.path.join(ctx.repo, "pg", "log")) if not n.startswith("00000001")]
    check(tl2 == [], f"the drill copy archived nothing into the repository: {tl2}")

    # 2. A failing user check: the drill fails, drill_failed alerts.
    restart_coordinator(c, "0 0 1 1 *", BAD_CHECK)
    r, _ = run_drill(c, "--json")
    check(r.returncode == 1, f"a failing check fails the drill (exit 1): {r.returncode} {r.stdout}"
          f"{r.stderr}")
    f = json.loads(r.stdout)
    check(not f["ok"] and "sql:1" in (f["error"] or ""), f"failed on sql:1: {f}")
    check(f["rto_seconds"] is not None, "a failed drill still records its timings")
    check(os.listdir(drills_dir()) == [], "drill dir removed after a failure too")
    t0 = time.monotonic()
    body = wait_for(lambda: hook_events("drill_failed", "firing"), 30,
                    "drill_failed at the webhook", interval=0.1)
    print(f"  drill_failed at the webhook {time.monotonic() - t0:.2f} s after the failed drill")
    check(body[-1]["target"] == "pg" and body[-1]["severity"] == "critical", f"webhook: {body}")
    check(any(a["rule"] == "drill_failed" and a["target"] == "pg" and a["state"] == "firing"
              for a in c.ctl_json("alerts", "list")), "drill_failed in alerts list")
    m = c.metrics()
    check(metric(m, "tidemark_drill_last_result", 'target="pg"') == 0, "result 0 exported")
    check(metric(m, "tidemark_drills_total", 'result="failed"') == 1, "drills_total{failed} = 1")

    # 3. Scheduled: a drill runs by itself and drill_failed resolves; with
    # an RPO goal of 1 s (the last row is older than that by now) the
    # achieved RPO is over the goal.
    restart_coordinator(c, "* * * * *", GOOD_CHECK, rpo_goal="1s")
    t0 = time.monotonic()
    s = wait_for(lambda: [x for x in c.ctl_json("drills", "list", "--target", "pg")
                          if x["requested_by"] == "schedule"], 150, "a scheduled drill ran")
    check(s[0]["ok"], f"the scheduled drill passed: {s[0]}")
    print(f"  scheduled drill finished {time.monotonic() - t0:.1f} s after the restart, "
          f"RTO {s[0]['rto_seconds']:.2f} s, RPO {s[0]['rpo_seconds']:.2f} s")
    wait_for(lambda: hook_events("drill_failed", "resolved"), 30, "drill_failed resolves")
    check(s[0]["rpo_seconds"] > 1 and s[0]["rpo_goal_seconds"] == 1, f"RPO over 1 s: {s[0]}")
    wait_for(lambda: [a for a in c.ctl_json("alerts", "list")
                      if a["rule"] == "drill_rpo_over_goal" and a["target"] == "pg"
                      and a["state"] == "firing"], 30, "drill_rpo_over_goal fires")
    check(not [a for a in c.ctl_json("alerts", "list") if a["rule"] == "drill_rto_over_goal"],
          "RTO within its 10 min goal: no drill_rto_over_goal")


if __name__ == "__main__":
    run()
