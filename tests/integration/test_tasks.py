"""Tasks through a real coordinator and real agents: long-polled delivery
(a submitted task wakes the parked poll), the coordinator deciding the outcome, cancel, listing.

The agents here serve a postgres target without postgres: settings (and have
no repositories), so every task fails with a clear reason; backups themselves
are exercised by the engine tests (test_pg_backup.py)."""
import time

from tmtest.cluster import Cluster
from tmtest.runner import check, run, test, wait_for

TASKS_YAML = """tasks:
  lease: 3s
  max_attempts: 2
  retry_backoff: 500ms
  poll_max: 60s
"""


@test
def dispatch_and_outcome():
    with Cluster(heartbeat="200ms", extra_coord_yaml=TASKS_YAML) as c:
        c.start_coordinator()
        c.start_agent("db-1", targets=[("pg-main", "postgres")])
        wait_for(lambda: c.agents_by_host().get("db-1", {}).get("state") == "online", 10, "agent")
        time.sleep(0.5)  # let the agent's first long-poll park

        # Delivery: the agent is parked in NextTask, so the task is leased at once.
        latencies = []
        for _ in range(5):
            t0 = time.monotonic()
            task = c.ctl_json("backup", "run", "--target", "pg-main", "--type", "full")
            tid = task["id"]
            # poll_max is 60 s: a lease within 30 s can only come from the
            # parked NextTask being woken by the submit, not from the agent's
            # next poll (an event check, however slow the machine).
            wait_for(lambda: c.ctl_json("task", "show", tid)["state"] in ("running", "failed"),
                     30, "task leased through the parked long poll")
            latencies.append(time.monotonic() - t0)
            wait_for(lambda: c.ctl_json("task", "show", tid)["state"] == "failed", 10,
                     "task decided")
            time.sleep(0.3)  # the agent parks again
        latencies.sort()
        print(f"  dispatch latency (submit -> leased, incl. 2 ctl round trips): "
              f"median {latencies[2] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")

        # The coordinator decides: not configured -> failed, not retried, reason kept.
        t = c.ctl_json("task", "show", tid)
        check(t["state"] == "failed" and t["attempt"] == 1, f"failed once, not retried: {t}")
        check("postgres.pgdata" in (t["error"] or ""), f"reason recorded: {t['error']}")
        check(c.ctl_json("backups", "list") == [], "a failed backup is not in the catalog")

        # --wait returns 1 with the error.
        r = c.ctl("backup", "run", "--target", "pg-main", "--wait", check=False)
        check(r.returncode == 1 and "postgres.pgdata" in r.stdout,
              f"--wait exits 1 and says why: {r.returncode} {r.stdout} {r.stderr}")

        # Unknown target.
        r = c.ctl("backup", "run", "--target", "nope", check=False)
        check(r.returncode == 1 and "NOT_FOUND" in r.stderr, f"unknown target: {r.stderr}")

        # Cancel a task nobody picks up (its agent is stopped).
        c.agents["db-1"].stop()
        q = c.ctl_json("backup", "run", "--target", "pg-main")
        check(q["state"] == "queued", f"queued while the agent is away: {q['state']}")
        x = c.ctl_json("task", "cancel", q["id"])
        check(x["state"] == "cancelled", f"cancelled: {x}")
        listed = c.ctl_json("tasks", "list", "--target", "pg-main")
        check(len(listed) == 7 and listed[0]["id"] == q["id"], f"tasks listed newest first: {len(listed)}")
        m = c.metrics()
        check('tidemark_tasks{state="failed"} 6' in m and 'tidemark_tasks{state="cancelled"} 1' in m,
              "tasks by state exported")

        # Restore to another agent (staging) is queued for that agent.
        c.start_agent("staging", targets=[])
        wait_for(lambda: c.agents_by_host().get("staging", {}).get("state") == "online", 10, "staging")
        r = c.ctl_json("restore", "--target", "pg-main", "--to", "staging", "--pgdata", "/tmp/x",
                       "--time", "2026-01-01 00:00:00+00")
        staging_id = c.agents_by_host()["staging"]["id"]
        check(r["agent_id"] == staging_id, "restore task goes to the --to agent")
        wait_for(lambda: c.ctl_json("task", "show", r["id"])["state"] == "failed", 10,
                 "restore decided (no repositories on staging)")
        r = c.ctl("restore", "--target", "pg-main", "--pgdata", "relative", check=False)
        check(r.returncode == 1 and "absolute" in r.stderr, "relative destination refused")


if __name__ == "__main__":
    run()
