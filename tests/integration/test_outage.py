"""Finished work survives a coordinator outage; partial attempts are swept.

Real PostgreSQL 15, a real coordinator and agent ("db-1" serving target
"pg"), two posix repositories ("region-a", "region-b"), a short task lease
(tasks.lease: 3s) so an outage outlives it.

- coordinator_down_while_backup_finishes: a full backup is leased and
  copying; the agent is paused (SIGSTOP) so the backup cannot finish first,
  the coordinator is stopped, the agent resumed: the backup finishes while
  the coordinator is down, which stays down longer than the lease. The
  result is kept in the agent's state_dir/results. Coordinator restarted:
  the task succeeds once, attempt 1, no re-run; exactly one backup row; no
  object in any repository that the catalog does not list (repo ls);
  `tasks list` and `task show` explain ("delivered N s late, recorded").
- agent_killed_after_finishing_during_outage: the same, but the agent is
  SIGKILLed after it kept its result and before the coordinator is back;
  the restarted agent delivers the kept result.
- agent_killed_mid_backup: SIGKILL while copying leaves objects without a
  manifest; the restarted agent's next attempt sweeps them from every
  repository before it copies (log line + "swept_partial" in the task
  result) and the backup is good.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from tmtest import pg as pgmod
from tmtest.cluster import Cluster, binary
from tmtest.pg import Postgres
from tmtest.runner import check, run, setup, teardown, test, wait_for

LEASE_S = 3
TASKS_YAML = f"""tasks:
  lease: {LEASE_S}s
  max_attempts: 3
  retry_backoff: 1s
  poll_max: 5s
"""


class Ctx:
    pass


ctx = Ctx()


def repo_yaml():
    return (f"repositories:\n"
            f"  - name: region-a\n    type: posix\n    path: {ctx.repo_a}\n"
            f"  - name: region-b\n    type: posix\n    path: {ctx.repo_b}\n"
            f"encryption:\n  master_key_file: {ctx.key}\n")


def pg_yaml():
    return (f"postgres:\n  pgdata: {ctx.pg.datadir}\n  host: 127.0.0.1\n  port: {ctx.pg.port}\n"
            f"  user: postgres\n")


def start_agent():
    ctx.c.start_agent("db-1", targets=[("pg", "postgres", pg_yaml())], extra=repo_yaml())


def agent():
    return ctx.c.agents["db-1"]


def results_dir():
    return os.path.join(ctx.c.dir, "agents", "db-1", "state", "results")


def kept_results():
    d = results_dir()
    # A "*.result.tmp.<pid>" is a write in progress, not yet kept.
    return sorted(n for n in os.listdir(d) if n.endswith(".result")) if os.path.isdir(d) else []


def repo_ls():
    """Every backup in every repository, as the agent lists them."""
    r = subprocess.run([binary("tidemark-agent"), "--config", ctx.conf, "repo", "ls", "--json",
                        "--target", "pg"], capture_output=True, text=True, timeout=120,
                       env=ctx.c.env)
    check(r.returncode == 0, f"repo ls: {r.stdout}\n{r.stderr}")
    out = json.loads(r.stdout)
    check(out["unlisted_repos"] == [], f"every repository listed: {out}")
    return out["backups"]


def backup_dirs():
    return {repo: set(os.listdir(os.path.join(repo, "pg", "backup")))
            if os.path.isdir(os.path.join(repo, "pg", "backup")) else set()
            for repo in (ctx.repo_a, ctx.repo_b)}


def catalog_backups():
    return [b["id"] for b in ctx.c.ctl_json("backups", "list", "--target", "pg")]


def check_no_orphans(label):
    """Repositories hold exactly the catalog's backups, complete everywhere."""
    listed = repo_ls()
    cat = catalog_backups()
    print(f"  {label}: repositories hold " + ", ".join(
        f"{b['backup_id']} (complete={b['complete']}, in {b['repos']}, incomplete in "
        f"{b['incomplete_in']})" for b in listed) + f"; catalog: {cat}")
    check(sorted(b["backup_id"] for b in listed) == sorted(cat),
          f"{label}: the repositories hold exactly the catalog's backups: {listed} vs {cat}")
    for b in listed:
        check(b["complete"] and sorted(b["repos"]) == ["region-a", "region-b"]
              and b["incomplete_in"] == [],
              f"{label}: {b['backup_id']} complete in both repositories: {b}")
    check(len(cat) == len(set(cat)), f"{label}: no duplicate backup rows: {cat}")


def new_copying_backup(before):
    """The id of a backup that started writing in region-a since before."""
    bdir = os.path.join(ctx.repo_a, "pg", "backup")

    def started():
        if not os.path.isdir(bdir):
            return None
        for b in set(os.listdir(bdir)) - before:
            if os.path.isdir(os.path.join(bdir, b, "data")):
                return b
        return None
    return wait_for(started, 60, "the backup copying", interval=0.005)


def manifests(bid):
    return [os.path.exists(os.path.join(r, "pg", "backup", bid, "manifest"))
            for r in (ctx.repo_a, ctx.repo_b)]


def task(tid):
    return ctx.c.ctl_json("task", "show", tid)


@setup
def setup_cluster():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-outage-")
    os.chmod(ctx.tmp, 0o755)
    ctx.repo_a = os.path.join(ctx.tmp, "repo-a")
    ctx.repo_b = os.path.join(ctx.tmp, "repo-b")
    ctx.key = os.path.join(ctx.tmp, "master.key")
    ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=TASKS_YAML)
    ctx.c.__enter__()
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    ctx.pg = Postgres(ctx.tmp, "src").initdb().start()
    ctx.pg.pgbench("-i", "-s", "3", "-q")
    ctx.c.start_coordinator()
    start_agent()
    ctx.conf = os.path.join(ctx.c.dir, "agents", "db-1", "agent.yaml")
    wait_for(lambda: ctx.c.agents_by_host().get("db-1", {}).get("state") == "online", 30,
             "agent online")


def outage(kill_agent):
    """Backup leased and copying; coordinator stopped; the backup finishes
    during the outage, which outlasts the lease; coordinator back."""
    c = ctx.c
    before = backup_dirs()[ctx.repo_a]
    rows_before = catalog_backups()
    t = c.ctl_json("backup", "run", "--target", "pg", "--type", "full")
    bid = new_copying_backup(before)
    # Hold the agent so the backup cannot finish before the coordinator is
    # down (the point is a result that comes during the outage).
    agent().p.send_signal(signal.SIGSTOP)
    check(manifests(bid) == [False, False], f"{bid} still copying when paused")
    c.coordinator.stop()
    down_at = time.monotonic()
    try:
        agent().p.send_signal(signal.SIGCONT)
        wait_for(lambda: all(manifests(bid)), 120, f"backup {bid} finished during the outage")
        # The agent keeps the result before it sends it (checked below, after
        # the outcome, so an agent that does not keep it still shows what
        # follows: a second run and an orphan).
        try:
            wait_for(lambda: kept_results(), 15, "the result kept in state_dir/results")
        except AssertionError:
            pass
        kept = kept_results()
        print(f"  {bid} finished {time.monotonic() - down_at:.1f} s into the outage; kept: {kept}")
        if kill_agent:
            agent().kill9()
        # Down for longer than the lease: the lease expires when it is back.
        time.sleep(max(0.0, LEASE_S * 2 + 1 - (time.monotonic() - down_at)))
    finally:
        c.start_coordinator()
        if not agent().alive():
            start_agent()
    wait_for(lambda: task(t["id"])["state"] in ("succeeded", "failed"), 120, "the task decided")
    # Long enough for a requeued retry (backoff 1 s, lease 3 s) to have run.
    time.sleep(LEASE_S * 3)
    got = task(t["id"])
    print(f"  task {t['id']}: state={got['state']} attempt={got['attempt']} "
          f"notes={got.get('notes')}")
    check(got["state"] == "succeeded", f"the task succeeded: {got}")
    check(got["attempt"] == 1, f"no re-run: still attempt 1: {got}")
    check(got["result"]["backup_id"] == bid, f"the recorded backup is the one finished: {got}")
    rows = catalog_backups()
    check(sorted(rows) == sorted(rows_before + [bid]), f"exactly one backup row added: {rows}")
    dirs = backup_dirs()
    for repo in (ctx.repo_a, ctx.repo_b):
        check(dirs[repo] - before == {bid},
              f"one new backup in {repo}, the recorded one: {sorted(dirs[repo] - before)}")
    check_no_orphans("after the outage")
    check(any("result of attempt 1 delivered" in n and "late, recorded" in n
              for n in got.get("notes", [])),
          f"task show explains the late result: {got.get('notes')}")
    shown = c.ctl("task", "show", t["id"]).stdout
    check("late, recorded" in shown, f"task show (text) explains: {shown}")
    listed = c.ctl("tasks", "list").stdout
    line = [l for l in listed.splitlines() if t["id"] in l]
    check(line and "late, recorded" in line[0], f"tasks list explains: {listed}")
    check(kept == [f"{t['id']}.1.result"], f"the result was kept, of attempt 1: {kept}")
    wait_for(lambda: kept_results() == [], 30, "the kept result deleted after the reply")
    log = agent().output()
    check("event=completed" in log and f"attempt=1" in log, "agent logged the delivery")


@test
def coordinator_down_while_backup_finishes():
    outage(kill_agent=False)


@test
def agent_killed_after_finishing_during_outage():
    outage(kill_agent=True)
    check("event=result_redeliver" in agent().output(),
          "the restarted agent delivered the kept result")


@test
def agent_killed_mid_backup():
    c = ctx.c
    before = backup_dirs()[ctx.repo_a]
    t = c.ctl_json("backup", "run", "--target", "pg", "--type", "full")
    victim = new_copying_backup(before)
    agent().p.send_signal(signal.SIGSTOP)
    # Let region-b get objects too (the copy writes both as it goes), when it
    # can: pause, look, resume a moment, up to a point.
    for _ in range(200):
        if os.path.isdir(os.path.join(ctx.repo_b, "pg", "backup", victim)):
            break
        agent().p.send_signal(signal.SIGCONT)
        time.sleep(0.01)
        agent().p.send_signal(signal.SIGSTOP)
    check(manifests(victim) == [False, False], f"{victim} has no manifest when killed")
    agent().kill9()  # a kill the harness knows of: not counted as a crash
    partial = {r for r in (ctx.repo_a, ctx.repo_b)
               if os.path.isdir(os.path.join(r, "pg", "backup", victim))}
    print(f"  killed {victim} mid-copy: objects left in {sorted(partial)}")
    check(ctx.repo_a in partial, "the killed attempt left objects")
    # A write the kill cut short leaves a posix temporary (".tmp.<name>.<rnd>",
    # never listed). The sweep removes those untouched for hours (a live
    # writer writes all the time): age what the kill left, plant one more so
    # that there is one for sure, and a fresh one that must stay.
    aged = time.time() - 7 * 3600
    planted = os.path.join(ctx.repo_a, "pg", "backup", victim, ".tmp.planted.0123abcd")
    with open(planted, "wb") as f:
        f.write(b"half an object")
    temps = [os.path.join(dp, f) for r in partial for dp, _, fs in
             os.walk(os.path.join(r, "pg")) for f in fs if f.startswith(".tmp.")]
    for t_path in temps:
        os.utime(t_path, (aged, aged))
    fresh = os.path.join(ctx.repo_a, "pg", ".tmp.fresh.0123abcd")
    with open(fresh, "wb") as f:
        f.write(b"a writer that is alive")
    print(f"  temporaries aged 7 h: {len(temps)}")
    start_agent()
    wait_for(lambda: task(t["id"])["state"] in ("succeeded", "failed"), 180, "the task decided")
    got = task(t["id"])
    check(got["state"] == "succeeded" and got["attempt"] >= 2,
          f"the next attempt succeeded: {got}")
    bid = got["result"]["backup_id"]
    swept = got["result"]["extra"].get("swept_partial", "")
    print(f"  attempt {got['attempt']} backed up {bid}; swept: {swept}")
    for r in (ctx.repo_a, ctx.repo_b):
        for sub in ("backup", "keys"):
            left = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(r, "pg", sub, victim))
                    for f in fs]
            check(left == [], f"the partial {victim}'s objects and temporaries are gone "
                              f"from {r}: {left}")
    check(victim in swept, f"the task result says what was swept: {got['result']['extra']}")
    check("abandoned temporary files in region-a" in swept,
          f"the task result counts the temporaries swept: {swept}")
    check(os.path.exists(fresh), "a fresh temporary (its writer may be alive) is kept")
    os.unlink(fresh)
    check("event=swept_temps target=pg" in agent().output(), "the temporaries' sweep is logged")
    check(f"event=swept_partial target=pg" in agent().output() and victim in agent().output(),
          "the sweep is logged")
    check(all(manifests(bid)), f"the new backup {bid} is complete in both repositories")
    check_no_orphans("after the sweep")
    # And it is a good backup: verify reads it back.
    r = subprocess.run([binary("tidemark-agent"), "--config", ctx.conf, "repo", "verify",
                        "--target", "pg", "--backup", bid], capture_output=True, text=True,
                       timeout=300, env=c.env)
    check(r.returncode == 0, f"repo verify {bid}: {r.stdout[-2000:]}\n{r.stderr[-2000:]}")


@teardown
def tear_down():
    ctx.pg.stop("immediate")
    ctx.c.__exit__(None, None, None)
    shutil.rmtree(ctx.tmp, ignore_errors=True)


if __name__ == "__main__":
    run()
