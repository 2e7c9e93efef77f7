"""A restore writes only inside its directory (issue #12, section 1), against
a real PostgreSQL initialised with `initdb --waldir` (pg_wal a symbolic link
to a directory outside PGDATA, as with WAL on another disk), a real
coordinator and one agent ("db-1") on the same host as the source.

  (a) backup, then restore on the same host into a scratch directory: the
      source's WAL directory is byte-identical before and after (every file
      hashed), the source still runs, the copy's pg_wal is a directory inside
      it (or, with --waldir, a link to that empty directory) and the copy
      starts;
  (b) backups whose manifests are hostile but validly sealed with the
      repository's key (tests/tools/tm_hostile_manifest): `../` and absolute
      paths, an over-long name, pg_tblspc/1 -> /etc, a link where PostgreSQL
      has none, a '..' in a link target: each restore fails naming the entry
      and nothing appears outside the target (a canary directory beside it);
  (c) a restore task to a directory outside the agent's restore_roots is
      refused; a --time that is not a time is refused also with --backup;
  (d) a drill's PostgreSQL does not have an environment variable of the
      agent (its /proc/<pid>/environ, read by the drill's own SQL check).
"""
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time

from tmtest import pg as pgmod
from tmtest.cluster import Cluster, binary, free_port
from tmtest.pg import Postgres
from tmtest.runner import check, run, setup, teardown, test, wait_for

SECRET = "tm-confine-secret-" + os.urandom(8).hex()

TASKS_YAML = """tasks:
  lease: 4s
  max_attempts: 1
  retry_backoff: 500ms
  poll_max: 5s
"""


class Ctx:
    pass


ctx = Ctx()


def agent_cli(*args, timeout=300):
    return subprocess.run([binary("tidemark-agent"), "--config", ctx.conf, *args],
                          capture_output=True, text=True, errors="replace", timeout=timeout,
                          env=ctx.c.env)


def tree_hashes(d):
    """{relative path: sha256} of every file below d (links as their target)."""
    out = {}
    for root, dirs, files in os.walk(d):
        for name in dirs + files:
            p = os.path.join(root, name)
            rel = os.path.relpath(p, d)
            if os.path.islink(p):
                out[rel] = "link:" + os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    out[rel] = hashlib.sha256(f.read()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def quiet_wal():
    """Wait until the source writes no more WAL (two equal snapshots 16 s
    apart: the background writer logs a snapshot every 15 s after activity),
    so a difference afterwards is the restore's doing."""
    prev = [tree_hashes(ctx.waldir)]

    def same():
        time.sleep(16)
        cur = tree_hashes(ctx.waldir)
        ok = cur == prev[0]
        prev[0] = cur
        return ok
    wait_for(same, 180, "the source's WAL directory is quiet", interval=0)
    return prev[0]


@setup
def setup_source_with_waldir_and_backup():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-confine-")
    os.chmod(ctx.tmp, 0o755)
    ctx.repo = os.path.join(ctx.tmp, "repo")
    ctx.key = os.path.join(ctx.tmp, "master.key")
    ctx.drills = os.path.join(ctx.tmp, "drills")
    ctx.roots = os.path.join(ctx.tmp, "roots")
    # Where the drill's server writes its environment (`env`, run by the
    # drill's own SQL check with COPY ... TO PROGRAM, as a superuser could).
    ctx.envdir = os.path.join(ctx.tmp, "envdump")
    ctx.envdump = os.path.join(ctx.envdir, "env.txt")
    for d in (ctx.drills, ctx.roots, ctx.envdir):
        os.makedirs(d)
        pgmod.chown_tree(d)
    ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=TASKS_YAML + """policies:
  - name: pg
    match:
      kind: postgres
    schedule:
      full: "0 3 * * *"
      incremental: ""
    drill:
      schedule: ""
      dir: %s
      checks:
        - "COPY (SELECT 1) TO PROGRAM 'env > %s'"
""" % (ctx.drills, ctx.envdump))
    ctx.c.__enter__()
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    # The source: pg_wal on "another disk" (initdb --waldir), quiet between
    # checkpoints (no autovacuum, long checkpoint_timeout).
    pg = Postgres(ctx.tmp, "src")
    ctx.waldir = os.path.join(ctx.tmp, "src-wal")
    os.makedirs(pg.datadir)
    os.makedirs(ctx.waldir)
    pgmod.chown_tree(pg.datadir)
    pgmod.chown_tree(ctx.waldir)
    pg._run([os.path.join(pg.bin, "initdb"), "-D", pg.datadir, "--waldir", ctx.waldir, "-A",
             "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"])
    pg.write_conf({"port": str(pg.port), "listen_addresses": "'127.0.0.1'",
                   "unix_socket_directories": f"'{pg.sockdir}'", "wal_level": "replica",
                   "max_wal_senders": "4", "logging_collector": "off", "autovacuum": "off",
                   "checkpoint_timeout": "1h"})
    pg.start()
    ctx.pg = pg
    check(os.path.islink(os.path.join(pg.datadir, "pg_wal")), "source pg_wal is a symlink")
    pg.psql("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g")

    repo = (f"repositories:\n  - name: r\n    type: posix\n    path: {ctx.repo}\n"
            f"encryption:\n  master_key_file: {ctx.key}\n"
            f"restore_roots:\n  - {ctx.drills}\n  - {ctx.roots}\n")
    pgyaml = (f"postgres:\n  pgdata: {pg.datadir}\n  host: 127.0.0.1\n  port: {pg.port}\n"
              f"  user: postgres\n")
    c = ctx.c
    c.env["TM_CONFINE_SECRET"] = SECRET  # in the agent's environment only
    c.start_coordinator()
    c.start_agent("db-1", targets=[("pg", "postgres", pgyaml)], extra=repo)
    ctx.conf = os.path.join(c.dir, "agents", "db-1", "agent.yaml")
    wait_for(lambda: c.agents_by_host().get("db-1", {}).get("state") == "online", 15,
             "agent online")
    r = c.ctl("backup", "run", "--target", "pg", "--type", "full", "--wait", "--json",
              timeout=300, check=False)
    check(r.returncode == 0, f"full backup: {r.stdout}{r.stderr}\n"
                             + c.agents["db-1"].output()[-3000:])
    ctx.full = json.loads(r.stdout)["result"]["backup_id"]
    # Move the source's WAL past the backup: the backup's segments are
    # recycled, so a restore writing them through the link would show.
    for _ in range(3):
        pg.psql("INSERT INTO t SELECT g FROM generate_series(1, 1000) g")
        pg.psql("SELECT pg_switch_wal()")
        pg.psql("CHECKPOINT")


@test
def a_restore_on_the_same_host_leaves_the_source_wal_alone():
    before = quiet_wal()
    check(len([f for f in before if len(f) == 24]) >= 1, f"WAL segments hashed: {sorted(before)}")
    dest = os.path.join(ctx.tmp, "scratch")
    port = free_port()
    r = agent_cli("restore", "--target", "pg", "--pgdata", dest, "--backup", ctx.full,
                  "--immediate", "--start", "--port", str(port))
    after = tree_hashes(ctx.waldir)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    check(changed == [], f"the source's WAL directory is byte-identical after the restore; "
                         f"changed: {changed[:10]}")
    check(r.returncode == 0, f"restore: {r.stdout}{r.stderr}")
    pg_wal = os.path.join(dest, "pg_wal")
    check(os.path.isdir(pg_wal) and not os.path.islink(pg_wal),
          "the copy's pg_wal is a directory inside it, not the source's link")
    check(any(len(f) == 24 for f in os.listdir(pg_wal)), "the backup's WAL went into it")
    check(ctx.pg.psql("SELECT count(*) FROM t") == "4000", "the source still runs and answers")
    # The copy recovered and answers (its WAL came from its own pg_wal).
    out = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                          "-Atqc", "SELECT count(*) FROM t"], capture_output=True, text=True)
    check(out.stdout.strip() == "1000", f"the copy answers with the backup's rows: {out.stdout}"
                                        f"{out.stderr}")
    rc = subprocess.run([os.path.join(ctx.pg.bin, "pg_ctl"), "-D", dest, "-m", "immediate",
                         "stop"], capture_output=True, **pgmod.as_user_kwargs())
    check(rc.returncode == 0, "the copy stops")
    # A restore into the running source is refused before anything is written.
    r = agent_cli("restore", "--target", "pg", "--pgdata", ctx.pg.datadir, "--backup", ctx.full,
                  "--delta")
    check(r.returncode != 0 and "running" in r.stderr, f"restore into the live data directory "
                                                       f"refused: {r.stderr}")
    # --waldir: pg_wal becomes a link to that (empty) directory; a non-empty
    # one (the source's WAL directory) is refused.
    dest2 = os.path.join(ctx.tmp, "scratch2")
    r = agent_cli("restore", "--target", "pg", "--pgdata", dest2, "--backup", ctx.full,
                  "--waldir", ctx.waldir)
    check(r.returncode != 0 and ("in use" in r.stderr or "not empty" in r.stderr),
          f"--waldir pointing at the live WAL directory refused: {r.stderr}")
    wal2 = os.path.join(ctx.tmp, "scratch2-wal")
    shutil.rmtree(dest2, ignore_errors=True)
    r = agent_cli("restore", "--target", "pg", "--pgdata", dest2, "--backup", ctx.full,
                  "--waldir", wal2)
    check(r.returncode == 0, f"restore with --waldir: {r.stderr}")
    check(os.readlink(os.path.join(dest2, "pg_wal")) == wal2
          and any(len(f) == 24 for f in os.listdir(wal2)), "pg_wal -> --waldir, WAL inside")
    after2 = tree_hashes(ctx.waldir)
    check(after2 == after, "the source's WAL still untouched")


@test
def a2_delta_removes_and_writes_only_beneath_the_directory():
    # Over the stopped copy of (a): an extra file, and a link planted where
    # the backup has a directory (global -> a canary outside).
    dest = os.path.join(ctx.tmp, "scratch")
    canary = os.path.join(ctx.tmp, "delta-canary")
    os.makedirs(canary)
    with open(os.path.join(canary, "keep"), "w") as f:
        f.write("canary")
    with open(os.path.join(dest, "extra"), "w") as f:
        f.write("not in the backup")
    shutil.rmtree(os.path.join(dest, "global"))
    os.symlink(canary, os.path.join(dest, "global"))
    # The engine-neutral --dir (the others here use the engine's --pgdata).
    r = agent_cli("restore", "--target", "pg", "--dir", dest, "--backup", ctx.full, "--delta")
    check(r.returncode == 0, f"--delta restore: {r.stdout}{r.stderr}")
    check(not os.path.exists(os.path.join(dest, "extra")), "the extra file removed")
    g = os.path.join(dest, "global")
    check(os.path.isdir(g) and not os.path.islink(g)
          and os.path.exists(os.path.join(g, "pg_control")),
          "the planted link replaced by the backup's directory")
    check(sorted(os.listdir(canary)) == ["keep"], f"nothing written or removed through the link: "
                                                  f"{os.listdir(canary)}")
    check(tree_hashes(ctx.waldir) == tree_hashes(ctx.waldir) and ctx.pg.psql("SELECT 1") == "1",
          "the source runs")


HOSTILE = [
    ("dotdot", "../canary/pwned"),
    ("absolute", "/canary/pwned"),
    ("longname", "longer than 255"),
    ("tslink", "pg_tblspc/1"),
    ("badlink", "base/evil"),
    ("dotlink", "pg_tblspc/2"),
]


@test
def b_hostile_manifests_are_refused_naming_the_entry():
    tool = binary("tm_hostile_manifest")
    for i, (case, needle) in enumerate(HOSTILE):
        box = os.path.join(ctx.tmp, f"hostile-{case}")
        canary = os.path.join(box, "canary")
        os.makedirs(canary)
        with open(os.path.join(canary, "keep"), "w") as f:
            f.write("canary")
        bid = f"20231114T22{i:02d}00Z-full"
        w = subprocess.run([tool, ctx.conf, "evil", bid, case, canary], capture_output=True,
                           text=True, env=ctx.c.env)
        check(w.returncode == 0, f"{case}: hostile manifest written: {w.stdout}{w.stderr}")
        etc_before = set(os.listdir("/etc"))
        r = agent_cli("restore", "--target", "evil", "--pgdata", os.path.join(box, "data"),
                      "--backup", bid)
        check(r.returncode != 0, f"{case}: restore refused (exit {r.returncode}): {r.stdout}")
        check(needle in r.stderr, f"{case}: the error names the entry ({needle!r}): "
                                  f"{r.stderr.strip()}")
        check(sorted(os.listdir(canary)) == ["keep"], f"{case}: nothing written into the canary "
                                                      f"beside the target: "
                                                      f"{os.listdir(canary)}")
        check(sorted(os.listdir(box)) in (["canary"], ["canary", "data"]),
              f"{case}: nothing else beside the target: {os.listdir(box)}")
        check(not os.path.exists("/etc/pwned") and set(os.listdir("/etc")) == etc_before,
              f"{case}: nothing written into /etc")
        print(f"  {case}: {r.stderr.strip().splitlines()[-1][:200]}")


@test
def c_restore_task_outside_restore_roots_is_refused():
    outside = os.path.join(ctx.tmp, "not-a-root", "data")
    r = ctx.c.ctl("restore", "--target", "pg", "--pgdata", outside, "--backup", ctx.full,
                  "--immediate", "--to", "db-1", "--wait", "--json", timeout=300, check=False)
    text = r.stdout + r.stderr
    check(r.returncode != 0, f"restore task outside restore_roots fails: {text}")
    check("restore_roots" in text, f"the error says why (restore_roots): {text[-800:]}")
    check(not os.path.exists(os.path.dirname(outside)), "nothing was created there")
    # Inside a root it works (the same task).
    inside = os.path.join(ctx.roots, "data")
    r = ctx.c.ctl("restore", "--target", "pg", "--pgdata", inside, "--backup", ctx.full,
                  "--immediate", "--to", "db-1", "--wait", "--json", timeout=300, check=False)
    check(r.returncode == 0, f"restore task under restore_roots: {r.stdout}{r.stderr}")
    # --time is validated also with --backup, and nothing is written.
    bad = os.path.join(ctx.tmp, "badtime")
    r = agent_cli("restore", "--target", "pg", "--pgdata", bad, "--backup", ctx.full, "--time",
                  "2026-01-01 00:00:00+00'\nrestore_command = 'touch /tmp/tm-pwned")
    check(r.returncode == 2 and "--time" in r.stderr, f"bad --time refused: {r.stderr}")
    check(not os.path.exists(bad), "nothing written for a refused --time")


@test
def d_drill_server_does_not_see_the_agent_environment():
    with open(f"/proc/{ctx.c.agents['db-1'].p.pid}/environ", "rb") as f:
        check(SECRET.encode() in f.read(), "the agent itself has the variable")
    r = ctx.c.ctl("drill", "run", "--target", "pg", "--to", "db-1", "--wait", "--json",
                  timeout=300, check=False)
    d = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
    check(os.path.exists(ctx.envdump), f"the drill's SQL check ran `env` on its server: "
                                       f"{r.stdout[-1500:]}{r.stderr}")
    with open(ctx.envdump) as f:
        env = f.read()
    names = sorted(v.split("=")[0] for v in env.splitlines() if "=" in v)
    print(f"  the drill server's environment: {names}")
    check("PATH" in names, f"the drill server's environment was read: {names}")
    check(SECRET not in env and "TM_CONFINE_SECRET" not in names,
          "the agent's variable is not in the drill server's environment")
    check("TM_ENROLL" not in names and "TIDEMARK_ADMIN_TOKEN" not in names,
          f"nor the agent's other secrets: {names}")
    check(r.returncode == 0 and d.get("ok") is True, f"drill passed: {r.stdout[-1500:]}"
                                                     f"{r.stderr}")
    check(os.listdir(ctx.drills) == [], f"drill dir removed: {os.listdir(ctx.drills)}")
    check(ctx.pg.psql("SELECT count(*) FROM t") == "4000", "the source still runs")


@teardown
def tear_down():
    ctx.pg.stop("immediate")
    ctx.c.__exit__(None, None, None)
    shutil.rmtree(ctx.tmp, ignore_errors=True)


if __name__ == "__main__":
    run()
