"""Foundation, end to end on loopback: a real coordinator and real agents.

Covers issue 2's integration list: 3 agents register and heartbeat; kill -9
one -> stale within the window, then lost; restart it -> same id, online; a
wrong token is refused and writes nothing; 10,000 hostile payloads leave the
coordinator serving the agents; a coordinator restart is ridden out by the
agents with nothing lost; manual approval; removal; metrics; config errors.
"""
import os
import re
import sqlite3
import subprocess
import time
from datetime import datetime, timezone

from tmtest.cluster import Cluster, binary
from tmtest.runner import check, run, test, wait_for

HB = 0.2        # heartbeat interval (s) in these tests
STALE = 3       # missed beats before stale
LOST = 10       # missed beats before lost


def iso(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def states(c):
    return {h: a["state"] for h, a in c.agents_by_host().items()}


def catalog_agent_count(c):
    db = sqlite3.connect(os.path.join(c.dir, "catalog.db"))
    try:
        return db.execute("select count(*) from agents").fetchone()[0]
    finally:
        db.close()


@test
def fleet_lifecycle():
    with Cluster(heartbeat="200ms", stale=STALE, lost=LOST) as c:
        c.start_coordinator()
        for n in ("db-1", "db-2", "db-3"):
            c.start_agent(n)
        wait_for(lambda: states(c) == {"db-1": "online", "db-2": "online", "db-3": "online"},
                 10, "3 agents online")
        listed = c.agents_by_host()
        ids = {h: a["id"] for h, a in listed.items()}
        tg = listed["db-1"]["targets"]
        check(len(tg) == 1 and tg[0]["name"] == "db-1-pg" and tg[0]["kind"] == "postgres",
              f"targets as registered: {tg}")
        check(listed["db-2"]["labels"] == {"region": "test", "role": "db"}, "labels as registered")

        # Identity is persisted 0600 and matches what the coordinator knows.
        ident = os.path.join(c.dir, "agents", "db-1", "state", "identity")
        check(oct(os.stat(ident).st_mode & 0o777) == "0o600", "identity file is 0600")
        check(c.identity("db-1")["id"] == ids["db-1"], "persisted id matches catalog")
        # The coordinator stores only a hash of the secret.
        db = sqlite3.connect(os.path.join(c.dir, "catalog.db"))
        stored = db.execute("select secret_hash from agents where id=?", (ids["db-1"],)).fetchone()[0]
        db.close()
        check(stored != c.identity("db-1")["secret"] and len(stored) == 64, "only a hash is stored")

        # kill -9 -> stale within the window (3 missed beats + one sweep step + slack).
        c.agents["db-1"].kill9()
        t0 = time.monotonic()
        wait_for(lambda: states(c)["db-1"] == "stale", HB * STALE + 2.0, "db-1 stale")
        stale_after = time.monotonic() - t0
        check(stale_after >= HB * (STALE - 1), f"not stale too early ({stale_after:.2f}s)")
        wait_for(lambda: states(c)["db-1"] == "lost", HB * LOST + 2.0, "db-1 lost")
        check(states(c)["db-2"] == "online" and states(c)["db-3"] == "online", "others stay online")
        print(f"  stale after {stale_after:.2f}s (window {HB * STALE:.1f}s)")

        # Restart -> same id, online.
        c.start_agent("db-1")
        wait_for(lambda: states(c)["db-1"] == "online", 10, "db-1 back online")
        check(c.agents_by_host()["db-1"]["id"] == ids["db-1"], "same id after restart")

        # State changes are recorded in the catalog.
        db = sqlite3.connect(os.path.join(c.dir, "catalog.db"))
        ev = [r[0] for r in db.execute(
            "select to_state from agent_events where agent_id=? order by id", (ids["db-1"],))]
        db.close()
        check(3 in ev and 4 in ev and ev[-1] == 2, f"events stale, lost, online recorded: {ev}")

        # Wrong token -> refused, catalog unchanged.
        before = catalog_agent_count(c)
        env = dict(c.env, TM_BAD="not-the-token")
        c.env, saved = env, c.env
        bad = c.start_agent("intruder", token_env="TM_BAD")
        c.env = saved
        wait_for(lambda: "register_refused" in bad.output(), 10, "intruder refused")
        check("invalid enrollment token" in bad.output(), "agent says why it was refused")
        check(catalog_agent_count(c) == before, "catalog unchanged by a wrong token")
        check("intruder" not in c.agents_by_host(), "intruder not listed")
        bad.stop()
        late = c.start_agent("latecomer", token_env="TM_ENROLL_OLD")
        wait_for(lambda: "expired at 2020-01-01T00:00:00Z" in late.output(), 10,
                 "an expired enrollment token is refused, with the date")
        check(catalog_agent_count(c) == before, "catalog unchanged by an expired token")
        late.stop()

        # 10,000 hostile payloads: the coordinator keeps serving everyone.
        r = subprocess.run([binary("tm_rpc_garbage"), c.url, "10000", "42"],
                           capture_output=True, text=True, timeout=120)
        check(r.returncode == 0, f"garbage tool ran: {r.stderr}")
        print("  " + r.stdout.strip())
        m = dict(kv.split("=") for kv in r.stdout.split())
        check(int(m["replies"]) >= 9900, f"hostile payloads got error replies: {r.stdout}")
        check(int(m["error_replies"]) >= 9900, f"and they were errors: {r.stdout}")
        check(c.coordinator.alive(), "coordinator survived the garbage")
        check(states(c) == {"db-1": "online", "db-2": "online", "db-3": "online"},
              "agents still online after the garbage")
        check(catalog_agent_count(c) == 3, "garbage wrote nothing")

        # Restart the coordinator: agents reconnect by themselves, nothing lost.
        rc = c.coordinator.stop()
        check(rc == 0, f"coordinator exits 0 on SIGTERM (got {rc}; -9 = still running after 10 s)")
        time.sleep(1.0)
        restarted = datetime.now(timezone.utc).replace(microsecond=0)
        c.start_coordinator()
        # A restarted coordinator gives every agent a fresh window, so "online"
        # alone proves nothing: wait for heartbeats seen after the restart.
        wait_for(lambda: all(iso(a["last_seen_at"]) >= restarted and a["state"] == "online"
                             for a in c.agents_by_host().values() if a["hostname"] != "intruder"),
                 15, "agents heartbeating again after coordinator restart")
        check({h: a["id"] for h, a in c.agents_by_host().items()} == ids, "same ids after restart")
        for n in ("db-1", "db-2", "db-3"):
            wait_for(lambda: "coordinator_reachable" in c.agents[n].output(), 5,
                     f"{n} logged the recovery")

        # Clean SIGTERM of an agent.
        check(c.agents["db-3"].stop() == 0, "agent exits 0 on SIGTERM")
        check("event=stopped" in c.agents["db-3"].output(), "agent logs its stop")


@test
def approval_and_removal():
    with Cluster(heartbeat="200ms") as c:
        c.start_coordinator()
        c.start_agent("manual-1", token_env="TM_ENROLL_MANUAL")
        wait_for(lambda: states(c).get("manual-1") == "pending", 10, "pending agent")
        r = c.ctl("agents", "list", "--state", "pending")
        check("manual-1" in r.stdout and "pending" in r.stdout, "pending shown in the table")
        # Approval takes the agent id: a hostname is the agent's own claim.
        r = c.ctl("agents", "approve", "manual-1", check=False)
        check(r.returncode == 1 and "agent id" in r.stderr, f"approve by hostname refused: {r.stderr}")
        pending_id = c.agents_by_host()["manual-1"]["id"]
        r = c.ctl("agents", "approve", pending_id)
        check("approved" in r.stdout, "approve says so")
        wait_for(lambda: states(c)["manual-1"] == "online", 5, "approved agent online")
        wait_for(lambda: "state=online" in c.agents["manual-1"].output(), 5,
                 "agent learns it was approved")
        old = c.agents_by_host()["manual-1"]["id"]
        show = c.ctl_json("agents", "show", old)
        check(show["hostname"] == "manual-1" and show["enrollment"] == "manual", "show by id")

        # Remove: forgotten; a still-running agent registers anew (pending again).
        c.ctl("agents", "remove", "manual-1")
        wait_for(lambda: states(c).get("manual-1") == "pending", 10, "re-registered as pending")
        check(c.agents_by_host()["manual-1"]["id"] != old, "a removed agent gets a new id")

        # Unknown agent, bad usage, wrong admin token.
        r = c.ctl("agents", "show", "nope", check=False)
        check(r.returncode == 1 and "NOT_FOUND" in r.stderr, f"unknown agent: {r.stderr}")
        r = c.ctl("agents", "frobnicate", check=False)
        check(r.returncode == 2, "usage error exits 2")
        r = c.ctl("status", env=dict(c.env, TIDEMARK_ADMIN_TOKEN="wrong"), check=False)
        check(r.returncode == 1 and "UNAUTHENTICATED" in r.stderr, f"wrong admin token: {r.stderr}")
        r = c.ctl("agents", "list", "--help")
        check("Usage: tidemarkctl agents" in r.stdout, "--help on a command")

        # A target can belong to one (approved) agent only.
        c.ctl("agents", "approve", c.agents_by_host()["manual-1"]["id"])
        c.start_agent("dup", targets=[("manual-1-pg", "postgres")])
        wait_for(lambda: "ALREADY_EXISTS" in c.agents["dup"].output(), 10, "target conflict refused")


@test
def status_and_metrics():
    with Cluster(heartbeat="200ms") as c:
        c.start_coordinator()
        c.start_agent("m-1")
        c.start_agent("m-2", targets=[("cache", "redis"), ("app", "sqlite")])
        wait_for(lambda: len(states(c)) == 2, 10, "2 agents")
        st = c.ctl_json("status")
        check(st["agents"]["online"] == 2 and st["targets"] == 3, f"status: {st}")
        check(st["schema_version"] >= 1, "schema version reported")
        text = c.ctl("status").stdout
        check("online 2" in text, "status table")

        m = wait_for(lambda: (lambda t: t if 'method="Coordinator.Heartbeat",code="OK"' in t else None)(c.metrics()),
                     5, "heartbeats counted")
        check(re.search(r'^tidemark_agents\{state="online"\} 2$', m, re.M), "agents by state")
        check(re.search(r'^tidemark_rpc_requests_total\{method="Coordinator.Heartbeat",code="OK"\} \d+', m, re.M),
              "rpc calls by method and code")
        check("tidemark_rpc_duration_seconds_bucket" in m, "rpc latency histogram")
        check("tidemark_catalog_size_bytes" in m and "tidemark_build_info" in m, "catalog size, build info")
        check(c.healthz() == (200, "ok\n"), "healthz ok")


@test
def config_errors():
    with Cluster() as c:
        bad = os.path.join(c.dir, "bad.yaml")
        with open(bad, "w") as f:
            f.write("listen: tcp://127.0.0.1:1\nadmin_token: env:TIDEMARK_ADMIN_TOKEN\n"
                    "enrollment:\n  - name: a\n    token: env:TM_ENROLL\n"
                    "heartbeat:\n  interval: 10s\n  stale_after_missed: 0\n  colour: blue\n")
        r = subprocess.run([binary("tidemark-coordinator"), "-c", bad, "--check-config"],
                           capture_output=True, text=True, env=c.env)
        check(r.returncode == 2, f"bad config exits 2 (got {r.returncode})")
        check(re.search(r"bad\.yaml:\d+:\d+: ", r.stderr), f"file:line:col in error: {r.stderr}")
        r = subprocess.run([binary("tidemark-coordinator"), "-c", c.coord_yaml, "--check-config"],
                           capture_output=True, text=True, env=c.env)
        check(r.returncode == 0, f"good config passes --check-config: {r.stderr}")
        path = c.agent_yaml("x")
        r = subprocess.run([binary("tidemark-agent"), "-c", path, "--check-config"],
                           capture_output=True, text=True, env=c.env)
        check(r.returncode == 0, f"agent --check-config: {r.stderr}")
        for b in ("tidemark-coordinator", "tidemark-agent", "tidemarkctl"):
            r = subprocess.run([binary(b), "--help"], capture_output=True, text=True)
            check(r.returncode == 0 and "Usage" in r.stdout, f"{b} --help")


if __name__ == "__main__":
    run()
