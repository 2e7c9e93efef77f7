"""PostgreSQL backups and restores end to end, against a real PostgreSQL 15
(initdb --data-checksums, pgbench -s 5) and a real coordinator with two
agents: "db-1" serves target "pg", "staging" only restores. Both write to
two posix repositories ("region-a", "region-b") with one master key.

Covers: full and incremental backups through `tidemarkctl backup run
--wait`, `backups list --json` (LSNs, parent), restore of the incremental to
its consistent point (--immediate) with the standalone command and --start
(markers and a table checksum as recorded before the incremental), --delta
over a dirty directory, restore through the coordinator onto the staging
agent, a same-second change caught by the incremental, page checksums
validated while reading, a time outside the recoverable window refused,
a flipped byte naming the object, a wrong master key, and kill -9 of the
agent mid-backup (no manifest, next run succeeds, no backup left open).
"""
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

TASKS_YAML = """tasks:
  lease: 4s
  max_attempts: 3
  retry_backoff: 500ms
  poll_max: 5s
"""

CHECKSUM_SQL = ("SELECT md5(string_agg(md5(a::text), '' ORDER BY aid)) FROM pgbench_accounts a")


class Ctx:
    pass


ctx = Ctx()


def agent_cli(*args, conf=None, check_rc=None, timeout=300):
    r = subprocess.run([binary("tidemark-agent"), "--config", conf or ctx.conf, *args],
                       capture_output=True, text=True, timeout=timeout, env=ctx.c.env)
    if check_rc is not None and r.returncode != check_rc:
        raise AssertionError(f"tidemark-agent {' '.join(args)}: exit {r.returncode}, expected "
                             f"{check_rc}\nstdout: {r.stdout[-3000:]}\nstderr: {r.stderr[-3000:]}")
    return r


def repo_yaml(key):
    return (f"repositories:\n"
            f"  - name: region-a\n    type: posix\n    path: {ctx.repo_a}\n"
            f"  - name: region-b\n    type: posix\n    path: {ctx.repo_b}\n"
            f"encryption:\n  master_key_file: {key}\n")


def restored_pg(datadir, port):
    """A Postgres handle on a restored directory (already started)."""
    p = Postgres.__new__(Postgres)
    p.base = os.path.dirname(datadir)
    p.datadir = datadir
    p.sockdir = ctx.pg.sockdir
    p.port = port
    p.logfile = os.path.join(datadir, "tidemark-restore.log")
    p.bin = ctx.pg.bin
    p.env = None
    return p


def check_restored(p, label, ts_dest):
    markers = p.psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM markers")
    check(markers == "1,2,3", f"{label}: markers before the incremental exist, later ones do not: "
                              f"{markers!r}")
    got = p.psql(CHECKSUM_SQL)
    check(got == ctx.sum_incr, f"{label}: pgbench_accounts checksum {got} == {ctx.sum_incr} "
                               "(recorded right before the incremental)")
    check(p.psql("SELECT pg_is_in_recovery()") == "f", f"{label}: promoted")
    with open(os.path.join(p.datadir, "tidemark_probe")) as f:
        check(f.read() == "B" * 64, f"{label}: the same-second rewrite of tidemark_probe was "
                                    "caught by the incremental")
    check(p.psql("SELECT sum(id) FROM ts_rows") == "500500", f"{label}: the tablespace's table")
    link = os.path.join(p.datadir, "pg_tblspc", ctx.ts_oid)
    check(os.readlink(link) == ts_dest and os.path.realpath(link) != os.path.realpath(ctx.ts_src),
          f"{label}: pg_tblspc/{ctx.ts_oid} -> {os.readlink(link)}, relocated to {ts_dest}")
    # PostgreSQL renames tablespace_map to .old once recovery has used it.
    with open(os.path.join(p.datadir, "tablespace_map.old")) as f:
        tsmap = f.read()
    check(tsmap.strip() == f"{ctx.ts_oid} {ts_dest}",
          f"{label}: tablespace_map written with the relocated path: {tsmap!r}")
    st = os.stat(p.datadir)
    check(oct(st.st_mode & 0o777) == "0o700", f"{label}: data dir mode 0700: {oct(st.st_mode)}")
    u = pgmod.run_user()
    if u is not None:
        check(st.st_uid == u.pw_uid, f"{label}: data dir owned by postgres")


def task_result(tid):
    return ctx.c.ctl_json("task", "show", tid)


def backup(kind):
    t0 = time.monotonic()
    r = ctx.c.ctl("backup", "run", "--target", "pg", "--type", kind, "--wait", "--json",
                  timeout=300, check=False)
    dt = time.monotonic() - t0
    check(r.returncode == 0, f"{kind} backup: {r.stdout}\n{r.stderr}\n"
                             + ctx.c.agents["db-1"].output()[-3000:])
    return json.loads(r.stdout), dt


@setup
def setup_cluster_and_full_backup():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-pgit-")
    os.chmod(ctx.tmp, 0o755)
    ctx.repo_a = os.path.join(ctx.tmp, "repo-a")
    ctx.repo_b = os.path.join(ctx.tmp, "repo-b")
    ctx.key = os.path.join(ctx.tmp, "master.key")
    ctx.drills = os.path.join(ctx.tmp, "drills")
    os.makedirs(ctx.drills)
    pgmod.chown_tree(ctx.drills)
    ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=TASKS_YAML + f"""policies:
  - name: pg
    match:
      kind: postgres
    schedule:
      full: "0 3 * * *"
      incremental: ""
    drill:
      schedule: ""
      dir: {ctx.drills}
      checks:
        - "SELECT sum(id) = 500500 FROM ts_rows"
""")
    ctx.c.__enter__()
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    ctx.pg = Postgres(ctx.tmp, "src").initdb().start()
    t0 = time.monotonic()
    ctx.pg.pgbench("-i", "-s", "5", "-q")
    print(f"  pgbench -i -s 5: {time.monotonic() - t0:.1f} s, database "
          f"{ctx.pg.psql('SELECT pg_size_pretty(pg_database_size(current_database()))')}")
    ctx.pg.psql("CREATE TABLE markers (id int PRIMARY KEY, at timestamptz DEFAULT now())")
    # A tablespace outside PGDATA, with a table in it.
    ctx.ts_src = os.path.join(ctx.tmp, "ts-src")
    os.makedirs(ctx.ts_src)
    pgmod.chown_tree(ctx.ts_src)
    ctx.pg.psql(f"CREATE TABLESPACE ts1 LOCATION '{ctx.ts_src}'")
    ctx.pg.psql("CREATE TABLE ts_rows TABLESPACE ts1 AS SELECT g AS id FROM generate_series(1, 1000) g")
    ctx.ts_oid = ctx.pg.psql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'")
    ctx.ts_all = os.path.join(ctx.tmp, "ts-restored")
    # Let the files settle: a file modified within TM_PG_MTIME_SLACK_S (2 s)
    # of a backup's start is always copied again by the next incremental,
    # and this test wants most of them referenced.
    ctx.pg.psql("CHECKPOINT")
    time.sleep(3)
    ctx.probe = os.path.join(ctx.pg.datadir, "tidemark_probe")

    pgyaml = (f"postgres:\n  pgdata: {ctx.pg.datadir}\n  host: 127.0.0.1\n  port: {ctx.pg.port}\n"
              f"  user: postgres\n  parallel: 2\n  checksum_validation: true\n")
    c = ctx.c
    c.start_coordinator()
    c.start_agent("db-1", targets=[("pg", "postgres", pgyaml)], extra=repo_yaml(ctx.key))
    # Restore and drill tasks write only under restore_roots.
    roots = "".join(f"  - {os.path.join(ctx.tmp, d)}\n"
                    for d in ("drills", "staging-data", "staging-ts1"))
    c.start_agent("staging", targets=[], extra=repo_yaml(ctx.key) + "restore_roots:\n" + roots)
    ctx.conf = os.path.join(c.dir, "agents", "db-1", "agent.yaml")
    wait_for(lambda: all(c.agents_by_host().get(h, {}).get("state") == "online"
                         for h in ("db-1", "staging")), 15, "agents online")
    time.sleep(0.5)

    # The probe file: written right before the full starts, so its mtime is
    # within the slack of the full's start (written before the cluster
    # started, an ASan run with another module beside it was 2+ s late and
    # the incremental rightly did not re-copy it).
    with open(ctx.probe, "w") as f:
        f.write("A" * 64)
    ctx.probe_mtime = int(time.time())
    os.utime(ctx.probe, (ctx.probe_mtime, ctx.probe_mtime))
    task, dt = backup("full")
    res = task["result"]
    ctx.full = res["backup_id"]
    print(f"  full backup {ctx.full}: {dt:.2f} s wall (task {res.get('duration_ms')} ms), "
          f"{int(res['bytes']) / 1e6:.1f} MB read, {int(res['stored_bytes']) / 1e6:.1f} MB stored, "
          f"{res['files']} files")
    check(ctx.full.endswith("-full"), f"backup id format: {ctx.full}")
    extra = res.get("extra", {})
    check(int(extra["pages_checked"]) > 1000 and extra["checksum_errors"] == "0",
          f"page checksums validated on every relation page, none failed: {extra}")
    check(int(extra["wal_segments"]) >= 1, f"the WAL for consistency is in the backup: {extra}")
    for repo in (ctx.repo_a, ctx.repo_b):
        check(os.path.exists(os.path.join(repo, "pg", "backup", ctx.full, "manifest")),
              f"manifest in {repo}")
    names = os.listdir(os.path.join(ctx.repo_a, "pg", "backup", ctx.full, "data", "pgdata"))
    ts_stored = os.path.join(ctx.repo_a, "pg", "backup", ctx.full, "data", "pgdata", "pg_tblspc",
                             ctx.ts_oid)
    check(os.path.isdir(ts_stored) and any(files for _, _, files in os.walk(ts_stored)),
          f"the tablespace's files are stored under pg_tblspc/{ctx.ts_oid}")
    check("postmaster.pid" not in names and "postmaster.opts" not in names,
          f"excluded files are not stored: {names}")
    wal = os.listdir(os.path.join(ctx.repo_a, "pg", "backup", ctx.full, "data", "pgdata", "pg_wal")) \
        if os.path.exists(os.path.join(ctx.repo_a, "pg", "backup", ctx.full, "data", "pgdata", "pg_wal")) else []
    check(wal == [], f"pg_wal contents are not copied with the data files: {wal}")


@test
def incremental_backup_and_listing():
    pg = ctx.pg
    pg.psql("INSERT INTO markers (id) VALUES (1), (2), (3)")
    pg.psql("UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE aid % 97 = 0")
    # A same-second change: same size, mtime put back to what the full saw.
    with open(ctx.probe, "w") as f:
        f.write("B" * 64)
    os.utime(ctx.probe, (ctx.probe_mtime, ctx.probe_mtime))
    pg.psql("CHECKPOINT")
    ctx.sum_incr = pg.psql(CHECKSUM_SQL)
    task, dt = backup("incremental")
    res = task["result"]
    ctx.incr = res["backup_id"]
    extra = res.get("extra", {})
    print(f"  incremental backup {ctx.incr}: {dt:.2f} s wall, copied {extra['files_copied']} files "
          f"({int(res['bytes']) / 1e6:.1f} MB), referenced {extra['files_referenced']} "
          f"({int(extra['bytes_referenced']) / 1e6:.1f} MB)")
    check(ctx.incr.endswith("-incr"), f"incremental id: {res}")
    check(int(extra["files_referenced"]) > 100, f"unchanged files are referenced: {extra}")
    # Later changes that a restore of the incremental must not show.
    pg.psql("INSERT INTO markers (id) VALUES (4), (5)")
    pg.psql("UPDATE pgbench_accounts SET abalance = abalance - 1 WHERE aid % 13 = 0")

    bl = {b["id"]: b for b in ctx.c.ctl_json("backups", "list", "--target", "pg")}
    check(set(bl) >= {ctx.full, ctx.incr}, f"both backups listed: {list(bl)}")
    for bid in (ctx.full, ctx.incr):
        b = bl[bid]
        check(b.get("start_position") and b.get("stop_position") and "/" in b["stop_position"]
              and b.get("chain") == 1 and len(b.get("stop_log") or "") == 24,
              f"log positions (LSNs), chain (timeline) and stop segment recorded for {bid}: {b}")
        check(sorted(b.get("repositories", [])) == ["region-a", "region-b"],
              f"{bid} complete in both repositories: {b}")
    check(bl[ctx.incr].get("parent_id") == ctx.full, f"parent recorded: {bl[ctx.incr]}")


@test
def restore_immediate_with_start():
    ctx.rdir = os.path.join(ctx.tmp, "restored")
    ctx.rport = free_port()
    r = agent_cli("restore", "--target", "pg", "--pgdata", ctx.rdir, "--backup", ctx.incr,
                  "--immediate", check_rc=None)
    check(r.returncode != 0 and "--tablespace-map" in r.stderr and ctx.ts_src in r.stderr,
          f"the running cluster's tablespace directory is not overwritten: {r.stderr}")
    shutil.rmtree(ctx.rdir, ignore_errors=True)
    r = agent_cli("restore", "--target", "pg", "--pgdata", ctx.rdir, "--backup", ctx.incr,
                  "--immediate", "--start", "--port", str(ctx.rport),
                  "--tablespace-map-all", ctx.ts_all, check_rc=0)
    print("  " + r.stdout.strip().replace("\n", "\n  "))
    check("verify:" in r.stdout and "databases=" in r.stdout, f"verification query ran: {r.stdout}")
    with open(os.path.join(ctx.rdir, "postgresql.auto.conf")) as f:
        auto = f.read()
    want = (f"restore_command = '{os.path.realpath(binary('tidemark-agent'))} --config "
            f"{os.path.realpath(ctx.conf)} wal-get --target pg %f %p'")
    check(want in auto, f"restore_command is the wal-get CLI:\n{auto}")
    check("recovery_target = 'immediate'" in auto and "recovery_target_action = 'promote'" in auto,
          f"recovery settings:\n{auto}")
    p = restored_pg(ctx.rdir, ctx.rport)
    check_restored(p, "restore --immediate", os.path.join(ctx.ts_all, ctx.ts_oid))
    ctx.rpg = p


@test
def restore_delta_over_dirty_directory():
    p = ctx.rpg
    p.stop()
    dbdir = os.path.join(ctx.rdir, "base")
    some_db = max(os.listdir(dbdir), key=lambda d: len(os.listdir(os.path.join(dbdir, d))))
    files = sorted(f for f in os.listdir(os.path.join(dbdir, some_db)) if f.isdigit())
    with open(os.path.join(dbdir, some_db, files[0]), "r+b") as f:   # modified
        f.seek(100)
        f.write(b"\xff" * 64)
    os.unlink(os.path.join(dbdir, some_db, files[1]))                  # deleted
    with open(os.path.join(ctx.rdir, "base", some_db, "999999"), "wb") as f:  # added
        f.write(b"junk" * 100)
    os.makedirs(os.path.join(ctx.rdir, "extra_dir"), exist_ok=True)
    r = agent_cli("restore", "--target", "pg", "--pgdata", ctx.rdir, "--backup", ctx.incr,
                  "--immediate", check_rc=None)
    check(r.returncode != 0 and "not empty" in r.stderr and "--delta" in r.stderr,
          f"a non-empty directory needs --delta: {r.stderr}")
    r = agent_cli("restore", "--target", "pg", "--pgdata", ctx.rdir, "--backup", ctx.incr,
                  "--immediate", "--delta", "--start", "--port", str(ctx.rport),
                  "--tablespace-map-all", ctx.ts_all, check_rc=0)
    print("  " + r.stdout.strip().replace("\n", "\n  "))
    check(" reused" in r.stdout and "0 reused" not in r.stdout, f"delta reused files: {r.stdout}")
    check(not os.path.exists(os.path.join(ctx.rdir, "base", some_db, "999999")) and
          not os.path.exists(os.path.join(ctx.rdir, "extra_dir")), "files not in the backup removed")
    check_restored(p, "restore --delta", os.path.join(ctx.ts_all, ctx.ts_oid))
    p.stop()


@test
def restore_through_coordinator_to_staging():
    d = os.path.join(ctx.tmp, "staging-data")
    ts_dest = os.path.join(ctx.tmp, "staging-ts1")
    port = free_port()
    t0 = time.monotonic()
    r = ctx.c.ctl("restore", "--target", "pg", "--pgdata", d, "--backup", ctx.incr, "--immediate",
                  "--start", "--port", str(port), "--to", "staging", "--wait", "--json",
                  "--tablespace-map", f"{ctx.ts_oid}={ts_dest}",
                  timeout=300, check=False)
    check(r.returncode == 0, f"restore task on staging: {r.stdout}\n{r.stderr}\n"
                             + ctx.c.agents["staging"].output()[-3000:])
    t = json.loads(r.stdout)
    extra = t["result"].get("extra", {})
    print(f"  restore via coordinator to staging: {time.monotonic() - t0:.2f} s wall; files "
          f"{extra.get('restore_files_s')} s, recovery {extra.get('recovery_s')} s, total "
          f"{extra.get('total_s')} s; {extra.get('verify')}")
    p = restored_pg(d, port)
    check_restored(p, "restore on staging", ts_dest)
    p.stop()


@test
def drill_with_a_tablespace_on_the_same_host():
    # The staging agent shares this host with the source: the drill must
    # relocate the tablespace (its original directory is in use) and take
    # it away again.
    r = ctx.c.ctl("drill", "run", "--target", "pg", "--to", "staging", "--wait", "--json",
                  timeout=300, check=False)
    check(r.returncode == 0, f"drill: {r.stdout}\n{r.stderr}\n"
                             + ctx.c.agents["staging"].output()[-3000:])
    d = json.loads(r.stdout)
    print(f"  drill with a tablespace: RTO {d.get('rto_seconds')} s, ok={d.get('ok')}")
    check(d.get("ok") is True, f"drill passed, its check read the tablespace's table: {d}")
    check(os.listdir(ctx.drills) == [], f"drill dir and tablespace copy removed: "
                                        f"{os.listdir(ctx.drills)}")
    check(ctx.pg.psql("SELECT sum(id) FROM ts_rows") == "500500", "the source is untouched")


@test
def time_outside_window_refused():
    r = agent_cli("restore", "--target", "pg", "--pgdata", os.path.join(ctx.tmp, "never"),
                  "--time", "2001-01-01 00:00:00+00")
    check(r.returncode != 0 and "outside the recoverable window" in r.stderr
          and ctx.full in r.stderr, f"refused with the window: {r.stderr}")
    check(not os.path.exists(os.path.join(ctx.tmp, "never")), "nothing written")


@test
def flipped_byte_and_wrong_key():
    # An object the incremental references from the full: PG_VERSION.
    obj = os.path.join(ctx.repo_a, "pg", "backup", ctx.full, "data", "pgdata", "PG_VERSION")
    with open(obj, "r+b") as f:
        data = f.read()
        f.seek(len(data) // 2)
        f.write(bytes([data[len(data) // 2] ^ 0x01]))
    r = agent_cli("restore", "--target", "pg", "--pgdata", os.path.join(ctx.tmp, "corrupt"),
                  "--backup", ctx.incr, "--immediate", "--tablespace-map-all",
                  os.path.join(ctx.tmp, "corrupt-ts"))
    check(r.returncode == 1 and "PG_VERSION" in r.stderr and "frame" in r.stderr,
          f"restore fails naming the object and frame: {r.stderr}")
    with open(obj, "r+b") as f:
        f.seek(len(data) // 2)
        f.write(bytes([data[len(data) // 2]]))
    # Wrong master key.
    other = os.path.join(ctx.tmp, "other.key")
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", other], check=True,
                   capture_output=True)
    conf2 = os.path.join(ctx.tmp, "wrongkey.yaml")
    with open(ctx.conf) as f:
        text = f.read()
    with open(conf2, "w") as f:
        f.write(text.replace(ctx.key, other))
    r = agent_cli("restore", "--target", "pg", "--pgdata", os.path.join(ctx.tmp, "wk"),
                  "--backup", ctx.incr, "--immediate", conf=conf2)
    check(r.returncode != 0 and "master key" in r.stderr, f"wrong key: clear error: {r.stderr}")


@test
def kill9_mid_backup():
    c = ctx.c
    before = set(os.listdir(os.path.join(ctx.repo_a, "pg", "backup")))
    # A bigger relation so the copy takes a moment.
    ctx.pg.psql("CREATE TABLE filler AS SELECT g, md5(g::text) AS m FROM generate_series(1, 600000) g")
    task = c.ctl_json("backup", "run", "--target", "pg", "--type", "full")
    bdir = os.path.join(ctx.repo_a, "pg", "backup")

    def started():
        for b in set(os.listdir(bdir)) - before:
            d = os.path.join(bdir, b, "data", "pgdata")
            if os.path.isdir(d):
                return b
        return None
    victim = wait_for(started, 30, "backup copying", interval=0.005)
    c.agents["db-1"].kill9()
    time.sleep(0.5)
    for repo in (ctx.repo_a, ctx.repo_b):
        check(not os.path.exists(os.path.join(repo, "pg", "backup", victim, "manifest")),
              f"killed backup {victim} has no manifest in {repo}")
    check(ctx.full in os.listdir(bdir) and ctx.incr in os.listdir(bdir), "previous backups untouched")
    wait_for(lambda: ctx.pg.psql("SELECT count(*) FROM pg_replication_slots") == "0", 10,
             "the temporary slot went with the session")
    check(ctx.pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                      "'tidemark-agent'") == "0", "no backup session left open")
    bl = [b["id"] for b in c.ctl_json("backups", "list", "--target", "pg")]
    check(victim not in bl, f"the killed backup is not in the catalog: {bl}")
    # The agent comes back; the next run succeeds.
    c.start_agent("db-1", targets=[("pg", "postgres",
                                    f"postgres:\n  pgdata: {ctx.pg.datadir}\n  host: 127.0.0.1\n"
                                    f"  port: {ctx.pg.port}\n")], extra=repo_yaml(ctx.key))
    wait_for(lambda: c.ctl_json("task", "show", task["id"])["state"] in ("succeeded", "failed"),
             120, "the interrupted task decided")
    t2, dt = backup("incremental")
    check(t2["state"] == "succeeded", f"next run succeeds: {t2}")
    bl = [b["id"] for b in c.ctl_json("backups", "list", "--target", "pg")]
    check(t2["result"]["backup_id"] in bl, "and is listed")


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
