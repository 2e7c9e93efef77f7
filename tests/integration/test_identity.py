"""Identity and trust, end to end on loopback: a real coordinator, real agents.

A pending (unapproved) agent has shown only an enrollment token: it cannot
squat a target name (its names are claims, bound on approval), cannot report
WAL ranges (the PITR window is untouched) nor take or finish tasks;
approval takes the agent id, never a self-reported hostname. An agent with
a valid stored credential rejoins after its enrollment token was rotated
and expired, and keeps backing up (real PostgreSQL). Short tokens are a
config error with file:line. An agent-chosen hostname cannot forge log
fields.
"""
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile

from tmtest.cluster import Cluster, Proc, binary
from tmtest.pg import Postgres
from tmtest.runner import check, run, test, wait_for


def agent_call(c, ident, method, *args):
    """One call with an agent credential: (ok, output)."""
    r = subprocess.run([binary("tm_agent_call"), c.url, ident["id"], ident["secret"], method,
                        *args], capture_output=True, text=True, timeout=60)
    return r.returncode == 0, (r.stdout + r.stderr).strip()


def start_agent_as(c, name, hostname, **kw):
    """start_agent, but with a hostname of the test's choosing."""
    path = c.agent_yaml(name, **kw)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace(f"hostname: {name}\n", f"hostname: {hostname}\n"))
    p = Proc(f"agent {name}", [binary("tidemark-agent"), "-c", path], c.env,
             os.path.join(c.dir, "agents", name, "agent.log")).start()
    c.procs.append(p)
    c.agents[name] = p
    return p


def by_id(c):
    return {a["id"]: a for a in c.ctl_json("agents", "list")}


def catalog(c, sql, *params):
    db = sqlite3.connect(os.path.join(c.dir, "catalog.db"))
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


@test
def pending_agent_cannot_squat_report_or_work():
    with Cluster(heartbeat="200ms") as c:
        c.start_coordinator()
        # The impostor comes first, with the manual (not auto-approved) token,
        # under the hostname the operator expects and the real host's target.
        start_agent_as(c, "impostor", "db-real", token_env="TM_ENROLL_MANUAL",
                       targets=[("orders-pg", "postgres")])
        wait_for(lambda: os.path.exists(os.path.join(c.dir, "agents", "impostor", "state",
                                                     "identity")), 10, "impostor registered")
        imp = c.identity("impostor")
        wait_for(lambda: by_id(c).get(imp["id"], {}).get("state") == "pending", 10, "pending")
        check(catalog(c, "select agent_id from targets where name = 'orders-pg'") == [],
              "a pending agent's target is not bound")
        show = c.ctl("agents", "show", imp["id"]).stdout
        check("claimed" in show and "orders-pg" in show, f"show lists the claim: {show}")

        # Nothing but heartbeats: WAL reports, tasks, progress, completion.
        ok, out = agent_call(c, imp, "ReportLog", "orders-pg", "local",
                             "000000010000000000000001", "000000010000000000000009")
        check(not ok and "PERMISSION_DENIED" in out and "pending" in out,
              f"pending ReportLog refused: {out}")
        for m in ("NextTask", "ReportProgress", "CompleteTask"):
            ok, out = agent_call(c, imp, m)
            check(not ok and "PERMISSION_DENIED" in out, f"pending {m} refused: {out}")
        check(catalog(c, "select count(*) from log_ranges where target = 'orders-pg'") == [(0,)],
              "no log range recorded for the pending agent")
        win = c.ctl("pitr", "window", "--target", "orders-pg", "--json", check=False)
        check("000000010000000000000009" not in win.stdout,
              f"pitr window shows no coverage from the pending agent: {win.stdout}")

        # Approval by hostname is refused (the hostname is the agent's claim).
        r = c.ctl("agents", "approve", "db-real", check=False)
        check(r.returncode == 1 and "agent id" in r.stderr, f"approve by hostname: {r.stderr}")
        check(by_id(c)[imp["id"]]["state"] == "pending", "still pending")

        # The real host arrives (auto-approved): it gets its target.
        start_agent_as(c, "real", "db-real", targets=[("orders-pg", "postgres")])
        wait_for(lambda: os.path.exists(os.path.join(c.dir, "agents", "real", "state",
                                                     "identity")), 10, "real agent registered")
        real = c.identity("real")
        wait_for(lambda: by_id(c).get(real["id"], {}).get("state") == "online", 10, "real online")
        check("ALREADY_EXISTS" not in c.agents["real"].output(), "the real agent was not refused")
        check(catalog(c, "select agent_id from targets where name = 'orders-pg'") == [(real["id"],)],
              "the target belongs to the real agent")
        ok, out = agent_call(c, real, "ReportLog", "orders-pg", "local",
                             "000000010000000000000001", "000000010000000000000002")
        check(ok, f"the approved owner may report: {out}")

        # Approving the impostor now is refused: the name is taken.
        r = c.ctl("agents", "approve", imp["id"], check=False)
        check(r.returncode == 1 and "ALREADY_EXISTS" in r.stderr and "orders-pg" in r.stderr,
              f"approve of a squatter refused: {r.stderr}")
        check(by_id(c)[imp["id"]]["state"] == "pending", "squatter still pending")
        check(catalog(c, "select agent_id from targets where name = 'orders-pg'") == [(real["id"],)],
              "ownership unchanged")


@test
def approve_by_id_binds_claims():
    with Cluster(heartbeat="200ms") as c:
        c.start_coordinator()
        c.start_agent("newhost", token_env="TM_ENROLL_MANUAL", targets=[("new-pg", "postgres")])
        wait_for(lambda: c.agents_by_host().get("newhost", {}).get("state") == "pending", 10,
                 "pending")
        aid = c.agents_by_host()["newhost"]["id"]
        r = c.ctl("agents", "approve", aid)
        check("approved" in r.stdout, r.stdout)
        wait_for(lambda: c.agents_by_host()["newhost"]["state"] == "online", 10, "online")
        check(catalog(c, "select agent_id from targets where name = 'new-pg'") == [(aid,)],
              "the claim is bound on approval")
        check(catalog(c, "select count(*) from pending_targets") == [(0,)], "no claim left")
        ok, out = agent_call(c, c.identity("newhost"), "ReportLog", "new-pg", "local",
                             "000000010000000000000001", "000000010000000000000001")
        check(ok, f"an approved agent reports: {out}")


@test
def hostname_cannot_forge_log_fields():
    with Cluster(heartbeat="200ms") as c:
        c.start_coordinator()
        forged = 'x" event=approved agent=agt-0000000000000000 y="'
        r = subprocess.run([binary("tm_agent_call"), c.url, "-", "-", "RegisterAgent",
                            c.manual_token, forged], capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, f"registered: {r.stdout}{r.stderr}")
        line = wait_for(lambda: next((l for l in c.coordinator.output().splitlines()
                                      if "event=registered" in l and "x\\\"" in l), None),
                        10, "registration logged")
        check('host="x\\" event=approved agent=agt-0000000000000000 y=\\""' in line,
              f"hostname escaped inside its quotes: {line}")
        # Read back as key=value with quotes honoured: exactly one event field.
        fields = re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line)
        check([v for k, v in fields if k == "event"] == ["registered"],
              f"no forged event field: {fields}")


@test
def rejoin_after_token_rotated_and_expired():
    tmp = tempfile.mkdtemp(prefix="tm-ident-")
    try:
        rejoin_in(tmp)
    finally:
        if not os.environ.get("TM_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)


def rejoin_in(tmp):
    os.chmod(tmp, 0o755)
    repo = os.path.join(tmp, "repo")
    key = os.path.join(tmp, "master.key")
    os.makedirs(repo)
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", key], check=True,
                   capture_output=True)
    check(oct(os.stat(key).st_mode & 0o777) == "0o600", "generated master key is 0600")
    with Cluster(heartbeat="200ms") as c, Postgres(tmp, "src") as pg:
        pg.initdb().start()
        pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")
        c.start_coordinator()
        pgyaml = (f"postgres:\n  pgdata: {pg.datadir}\n  host: 127.0.0.1\n  port: {pg.port}\n"
                  f"  user: postgres\n")
        extra = (f"repositories:\n  - name: local\n    type: posix\n    path: {repo}\n"
                 f"encryption:\n  master_key_file: {key}\n")
        c.start_agent("db-1", targets=[("pg", "postgres", pgyaml)], extra=extra)
        wait_for(lambda: c.agents_by_host().get("db-1", {}).get("state") == "online", 15,
                 "db-1 online")
        aid = c.agents_by_host()["db-1"]["id"]
        r = c.ctl("backup", "run", "--target", "pg", "--type", "full", "--wait", check=False,
                  timeout=300)
        check(r.returncode == 0, f"first backup: {r.stdout}{r.stderr}")

        # The operator rotates the fleet token and it expires; the host reboots.
        c.agents["db-1"].stop()
        c.coordinator.stop()
        with open(c.coord_yaml) as f:
            text = f.read()
        text = text.replace("    token: env:TM_ENROLL\n",
                            "    token: env:TM_ENROLL_ROTATED\n    expires: 2021-01-01T00:00:00Z\n", 1)
        with open(c.coord_yaml, "w") as f:
            f.write(text)
        c.env["TM_ENROLL_ROTATED"] = "r" * 40
        c.start_coordinator()
        # A new host with the old token is refused...
        r = subprocess.run([binary("tm_agent_call"), c.url, "-", "-", "RegisterAgent",
                            c.enroll_token, "newcomer"], capture_output=True, text=True, timeout=60)
        check(r.returncode == 1 and "UNAUTHENTICATED" in r.stdout, f"old token refused: {r.stdout}")
        # ...but the enrolled host (same old token in its env) rejoins.
        c.start_agent("db-1", targets=[("pg", "postgres", pgyaml)], extra=extra)
        # (The registry gives every known agent a fresh window after a
        # coordinator restart, so "online" alone would prove nothing.)
        wait_for(lambda: f"event=reregistered agent={aid}" in c.coordinator.output(), 15,
                 "db-1 re-registered with its stored credential")
        check(c.agents_by_host()["db-1"]["id"] == aid, "same agent id")
        check(c.agents_by_host()["db-1"]["state"] == "online", "online")
        r = c.ctl("backup", "run", "--target", "pg", "--type", "full", "--wait", check=False,
                  timeout=300)
        check(r.returncode == 0, f"backup after the rotation: {r.stdout}{r.stderr}")
        check(len(c.ctl_json("backups", "list", "--target", "pg")) == 2, "two backups")


@test
def short_tokens_refused_at_config_load():
    with Cluster() as c:
        bad = os.path.join(c.dir, "short.yaml")
        with open(bad, "w") as f:
            f.write("admin_token: env:SHORT_ADMIN\n"
                    "enrollment:\n  - name: a\n    token: env:TM_ENROLL\n")
        env = dict(c.env, SHORT_ADMIN="tooshort")
        r = subprocess.run([binary("tidemark-coordinator"), "-c", bad, "--check-config"],
                           capture_output=True, text=True, env=env)
        check(r.returncode == 2, f"short admin token refused (exit {r.returncode}): {r.stderr}")
        check(re.search(r"short\.yaml:1:\d+: admin_token: token is 8 characters, expected at "
                        r"least 32", r.stderr), f"file:line and the rule: {r.stderr}")
        check("tooshort" not in r.stderr, "the value is not echoed")
        with open(bad, "w") as f:
            f.write("admin_token: env:TIDEMARK_ADMIN_TOKEN\n"
                    "enrollment:\n  - name: a\n    token: env:SHORT_ADMIN\n")
        r = subprocess.run([binary("tidemark-coordinator"), "-c", bad, "--check-config"],
                           capture_output=True, text=True, env=env)
        check(r.returncode == 2 and re.search(r"short\.yaml:4:\d+: enrollment\[0\]\.token: token is",
                                              r.stderr), f"short enrollment token: {r.stderr}")


if __name__ == "__main__":
    run()
