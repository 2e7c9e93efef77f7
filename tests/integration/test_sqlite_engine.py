"""The SQLite engine end to end: a coordinator, an agent serving real
SQLite databases in WAL mode (a writer process inserting (id, time) rows in
small transactions all along), two posix repositories, and a staging agent.

- snapshot: `backup run --type snapshot` with the writer running -> one
  consistent copy in both repositories; `tidemark-agent restore --backup`
  gives exactly the rows 1..k of the writer for some k between the rows
  committed before the backup started and after it ended, byte for byte
  the same values, integrity_check ok, still in WAL mode;
- the destination: an existing file is refused without --force and kept;
  a file another process has open (a live database) is refused without
  --force; --force replaces it (and removes its stale -wal);
- `tidemarkctl restore --to staging` into a restore root; outside the
  restore roots refused;
- a database in rollback-journal mode is refused with what to do and left
  in its mode; with set_wal: true it is switched and backed up;
- a wrong master key: a clear error naming the key, nothing written;
- restores to random times while the writer runs: exactly rows 1..k, none
  committed after the time, every one committed a ship interval (and a
  margin) before it; the latest;
- a drill through the coordinator: integrity_check, tables counted, the
  policy's SQL checks, RTO and RPO recorded;
- a damaged copy of the chain's base and of a segment in one repository:
  the other's are taken, the same bytes; a segment damaged in both: the
  restore fails naming it, nothing written;
- libSQL: a file written by the embedded library (npm @libsql/client,
  installed by the test; unreachable npm fails the test) while the agent
  ships it: snapshot and latest restore hold exactly its rows.
"""
import calendar
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

from tmtest.cluster import Cluster, binary
from tmtest.runner import check, run, setup, teardown, test, wait_for

SHIP_MS = 200
# A restore to T holds the commits the shipper saw at or before T: a commit
# is seen within one ship interval (plus the tick itself), so every commit
# older than T - SLACK_MS must be there. Generous for a loaded host; the
# test prints the largest gap it saw.
SLACK_MS = 1500

TASKS_YAML = """tasks:
  lease: 4s
  max_attempts: 2
  retry_backoff: 500ms
  poll_max: 5s
"""

# The writer: one row (id, t_ms, pad) per transaction, the commit time
# logged after COMMIT returns. It dies with the test (PR_SET_PDEATHSIG).
WRITER = r"""
import ctypes, os, signal, sqlite3, sys, time
ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
db, log, every_ms = sys.argv[1], sys.argv[2], float(sys.argv[3])
c = sqlite3.connect(db, isolation_level=None, timeout=30)
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, t_ms INTEGER, pad BLOB)")
n = c.execute("SELECT coalesce(max(id), 0) FROM rows").fetchone()[0]
out = open(log, "a", buffering=1)
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
while not stop:
    n += 1
    c.execute("BEGIN IMMEDIATE")
    c.execute("INSERT INTO rows VALUES (?, ?, randomblob(200))", (n, int(time.time() * 1000)))
    c.execute("COMMIT")
    out.write(f"{n} {int(time.time() * 1000)}\n")
    time.sleep(every_ms / 1000)
"""


# libSQL: the embedded library (npm @libsql/client) writing a file: database
# in WAL mode, one row per write batch, logging each commit; runs until
# SIGTERM. Node has no PR_SET_PDEATHSIG: the test kills it in teardown, and
# it exits by itself when its parent (the test) is gone.
LIBSQL_WRITER = r"""
import { createClient } from "@libsql/client";
import { appendFileSync } from "node:fs";
const [db, log] = process.argv.slice(1);
const c = createClient({ url: "file:" + db });
// As with any WAL shipper: the agent takes the write lock for a few ms
// each tick, so writers need a busy timeout.
await c.execute("PRAGMA busy_timeout = 5000");
await c.execute("PRAGMA journal_mode=WAL");
await c.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT, t_ms INTEGER)");
let stop = false;
process.on("SIGTERM", () => { stop = true; });
const parent = process.ppid;
for (let i = 1; !stop; i++) {
  await c.batch([{ sql: "INSERT INTO notes VALUES (?, ?, ?)",
                   args: [i, "note " + i + " " + "x".repeat(i % 97), Date.now()] }], "write");
  appendFileSync(log, i + " " + Date.now() + "\n");
  if (process.ppid !== parent) break;
  await new Promise((r) => setTimeout(r, 10));
}
c.close();
"""


class Ctx:
    pass


ctx = Ctx()


def agent_cli(*args, conf=None, timeout=300):
    return subprocess.run([binary("tidemark-agent"), "--config", conf or ctx.conf, *args],
                          capture_output=True, text=True, timeout=timeout, env=ctx.c.env)


def repo_yaml(key=None):
    return (f"repositories:\n"
            f"  - name: region-a\n    type: posix\n    path: {ctx.repo_a}\n"
            f"  - name: region-b\n    type: posix\n    path: {ctx.repo_b}\n"
            f"encryption:\n  master_key_file: {key or ctx.key}\n")


def make_db(path, rows, wal=True):
    c = sqlite3.connect(path, isolation_level=None)
    if wal:
        c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, t_ms INTEGER, pad BLOB)")
    c.execute("BEGIN")
    for i in range(1, rows + 1):
        c.execute("INSERT INTO rows VALUES (?, ?, randomblob(300))", (i, int(time.time() * 1000)))
    c.execute("COMMIT")
    c.close()


def start_writer(db, every_ms=5):
    log = db + ".writer.log"
    p = subprocess.Popen([sys.executable, "-c", WRITER, db, log, str(every_ms)])
    ctx.writers.append(p)
    wait_for(lambda: os.path.exists(log) and os.path.getsize(log) > 0, 15, "writer commits")
    return p, log


def writer_log(log):
    """[(id, commit_ms)] as the writer logged them, in order."""
    with open(log) as f:
        return [tuple(int(x) for x in line.split()) for line in f if line.endswith("\n")]


def rows_of(path):
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return c.execute("SELECT id, t_ms, pad FROM rows ORDER BY id").fetchall()
    finally:
        c.close()


def journal_mode(path):
    c = sqlite3.connect(path)
    try:
        return c.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        c.close()


def snapshot(target, expect_ok=True):
    r = ctx.c.ctl("backup", "run", "--target", target, "--type", "snapshot", "--wait", "--json",
                  timeout=300, check=False)
    if expect_ok:
        check(r.returncode == 0, f"snapshot of {target}: {r.stdout}\n{r.stderr}\n"
                                 + ctx.c.agents["db-1"].output()[-3000:])
    return r


def setup_libsql():
    """npm install @libsql/client (once per build tree) and start the libSQL
    writer; the error, or None. npm unreachable fails the libSQL test (it
    does not skip)."""
    mods = os.path.join(os.environ.get("TM_BUILD_DIR", ctx.tmp), "tests", "libsql-node")
    if not os.path.exists(os.path.join(mods, "node_modules", "@libsql", "client")):
        os.makedirs(mods, exist_ok=True)
        try:
            r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", mods,
                                "@libsql/client"], capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"npm install @libsql/client: {e}"
        if r.returncode != 0:
            return f"npm install @libsql/client failed: {r.stderr[-1500:]}"
    ctx.libsql_log = ctx.libsql + ".writer.log"
    p = subprocess.Popen(["node", "--input-type=module", "-e", LIBSQL_WRITER, ctx.libsql,
                          ctx.libsql_log], cwd=mods)
    ctx.writers.append(p)
    ctx.libsql_writer = p
    try:
        wait_for(lambda: os.path.exists(ctx.libsql_log) and len(writer_log(ctx.libsql_log)) > 50,
                 30, "libSQL writer commits")
    except AssertionError as e:
        return f"the libSQL writer did not write: {e}"
    return None


@setup
def setup_cluster():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-sqliteng-")
    ctx.writers = []
    ctx.repo_a = os.path.join(ctx.tmp, "repo-a")
    ctx.repo_b = os.path.join(ctx.tmp, "repo-b")
    ctx.key = os.path.join(ctx.tmp, "master.key")
    ctx.drills = os.path.join(ctx.tmp, "drills")
    ctx.staging = os.path.join(ctx.tmp, "staging-data")
    ctx.data = os.path.join(ctx.tmp, "data")
    for d in (ctx.drills, ctx.staging, ctx.data):
        os.makedirs(d)
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    ctx.app = os.path.join(ctx.data, "app.db")
    make_db(ctx.app, 2000)
    ctx.legacy = os.path.join(ctx.data, "legacy.db")
    make_db(ctx.legacy, 50, wal=False)
    ctx.switch = os.path.join(ctx.data, "switch.db")
    make_db(ctx.switch, 50, wal=False)

    ctx.tenants = os.path.join(ctx.data, "tenants")
    os.makedirs(ctx.tenants)
    for t in ("acme", "globex"):
        make_db(os.path.join(ctx.tenants, f"{t}.db"), 20)
    # A libSQL server's layout: one "data" file per namespace directory.
    ctx.sqld = os.path.join(ctx.data, "sqld", "dbs")
    for ns in ("ns1", "ns2"):
        os.makedirs(os.path.join(ctx.sqld, ns))
        make_db(os.path.join(ctx.sqld, ns, "data"), 5)
    with open(os.path.join(ctx.tenants, "notes.txt"), "w") as f:
        f.write("not a database\n")
    ctx.libsql = os.path.join(ctx.data, "libsql.db")
    ctx.libsql_error = setup_libsql()

    ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=TASKS_YAML + f"""policies:
  - name: files
    match:
      kind: sqlite
    schedule:
      full: "0 3 1 1 *"
      incremental: ""
      snapshot: ""
    drill:
      schedule: ""
      dir: {ctx.drills}
      checks:
        - "SELECT count(*) > 2000 FROM rows"
        - "SELECT min(id) = 1 AND max(id) = count(*) FROM rows"
""")
    ctx.c.__enter__()
    c = ctx.c
    c.start_coordinator()
    targets = [("app", "sqlite", f"sqlite:\n  path: {ctx.app}\n  busy_timeout: 10s\n"
                                 f"  ship_interval: {SHIP_MS}ms\n"),
               ("legacy", "sqlite", f"sqlite:\n  path: {ctx.legacy}\n"),
               ("tenants", "sqlite", f"sqlite:\n  path: {ctx.tenants}/*\n"),
               ("sqld", "sqlite", f"sqlite:\n  path: {ctx.sqld}/*/data\n"),
               ("notes", "sqlite", f"sqlite:\n  path: {ctx.libsql}\n"
                                   f"  ship_interval: {SHIP_MS}ms\n"),
               ("switch", "sqlite", f"sqlite:\n  path: {ctx.switch}\n  set_wal: true\n")]
    c.start_agent("db-1", targets=targets, extra=repo_yaml())
    roots = "".join(f"  - {d}\n" for d in (ctx.drills, ctx.staging))
    c.start_agent("staging", targets=[], extra=repo_yaml() + "restore_roots:\n" + roots)
    ctx.conf = os.path.join(c.dir, "agents", "db-1", "agent.yaml")
    ctx.staging_conf = os.path.join(c.dir, "agents", "staging", "agent.yaml")
    wait_for(lambda: all(c.agents_by_host().get(h, {}).get("state") == "online"
                         for h in ("db-1", "staging")), 15, "agents online")
    ctx.writer, ctx.wlog = start_writer(ctx.app)


@teardown
def teardown_all():
    for p in getattr(ctx, "writers", []):
        if p.poll() is None:
            p.kill()
        p.wait()
    if getattr(ctx, "c", None) is not None:
        ctx.c.__exit__(None, None, None)
    shutil.rmtree(ctx.tmp, ignore_errors=True)


@test
def snapshot_while_writing_restores_a_consistent_prefix():
    wait_for(lambda: len(writer_log(ctx.wlog)) >= 50, 30, "writer running")
    before = len(writer_log(ctx.wlog))
    t0 = time.monotonic()
    task = json.loads(snapshot("app").stdout)
    dt = time.monotonic() - t0
    after = rows_of(ctx.app)[-1][0]
    res = task["result"]
    ctx.snap = res["backup_id"]
    extra = res.get("extra", {})
    print(f"  snapshot {ctx.snap}: {dt:.2f} s wall, {int(res['bytes']) / 1e6:.2f} MB, "
          f"{int(res['stored_bytes']) / 1e6:.2f} MB stored, {extra}")
    check(ctx.snap.endswith("-snapshot"), f"backup id: {ctx.snap}")
    oks = sorted(o["repository"] for o in res.get("repository_outcomes", []) if o.get("ok"))
    check(oks == ["region-a", "region-b"], f"complete in both repositories: {res}")
    for repo in (ctx.repo_a, ctx.repo_b):
        check(os.path.exists(os.path.join(repo, "app", "backup", ctx.snap, "manifest")),
              f"manifest in {repo}")
    spool = os.path.join(ctx.c.dir, "agents", "db-1", "state", "sqlite", "app")
    check(os.listdir(spool) == [], f"the spool file is removed: {os.listdir(spool)}")
    bl = {b["id"]: b for b in ctx.c.ctl_json("backups", "list", "--target", "app")}
    check(ctx.snap in bl, f"the coordinator lists the snapshot: {list(bl)}")

    out = os.path.join(ctx.tmp, "restored", "app.db")
    r = agent_cli("restore", "--target", "app", "--output", out, "--backup", ctx.snap, "--json")
    check(r.returncode == 0, f"restore: {r.returncode}\n{r.stdout}\n{r.stderr}")
    rep = json.loads(r.stdout)
    print(f"  restore: {rep}")
    check(rep["integrity"] == "ok" and rep["backup_id"] == ctx.snap, f"report: {rep}")
    got = rows_of(out)
    k = len(got)
    check([g[0] for g in got] == list(range(1, k + 1)), "rows 1..k, no hole")
    check(2000 + before <= k <= after,
          f"k={k} between the rows before the backup ({2000 + before}) and after ({after})")
    src = rows_of(ctx.app)
    check(got == src[:k], "the restored rows are the source's rows 1..k, byte for byte")
    check(journal_mode(out) == "wal", "the restored file is in WAL mode")
    names = sorted(os.listdir(os.path.dirname(out)))
    check(names == ["app.db"], f"nothing else left beside it: {names}")
    ctx.restored = out


@test
def destination_rules_existing_live_force():
    out = ctx.restored
    before = os.stat(out)
    r = agent_cli("restore", "--target", "app", "--output", out)
    check(r.returncode == 1 and "already exists" in r.stderr and "--force" in r.stderr,
          f"an existing file is refused: {r.returncode} {r.stderr}")
    check(os.stat(out).st_mtime_ns == before.st_mtime_ns, "and kept")
    # A process holding it open: live.
    holder = sqlite3.connect(out)
    holder.execute("SELECT count(*) FROM rows").fetchone()
    try:
        r = agent_cli("restore", "--target", "app", "--output", out)
        check(r.returncode == 1, f"refused: {r.stderr}")
        r2 = agent_cli("restore", "--target", "app", "--dir", os.path.dirname(out))
        check(r2.returncode == 1 and "already exists" in r2.stderr, f"--dir too: {r2.stderr}")
    finally:
        holder.close()
    # The live source itself (the writer holds it): refused as live, even
    # named by --output.
    r = agent_cli("restore", "--target", "app", "--output", ctx.app)
    check(r.returncode == 1 and "already exists" in r.stderr, f"the live source: {r.stderr}")
    # A file with a stale -wal beside it: --force replaces both.
    with open(out + "-wal", "wb") as f:
        f.write(b"\0" * 4096)
    r = agent_cli("restore", "--target", "app", "--output", out, "--force", "--json")
    check(r.returncode == 0, f"--force: {r.stderr}")
    check(not os.path.exists(out + "-wal"), "the stale -wal is gone")
    check(len(rows_of(out)) > 2000, "the replaced file reads")


@test
def live_database_rules():
    live = os.path.join(ctx.tmp, "live", "other.db")
    os.makedirs(os.path.dirname(live))
    make_db(live, 3)
    holder = sqlite3.connect(live)
    holder.execute("SELECT 1 FROM rows").fetchone()
    try:
        r = agent_cli("restore", "--target", "app", "--output", live, "--force")
        check(r.returncode == 0, f"--force over a live file goes ahead: {r.stderr}")
        os.unlink(live)
        make_db(live, 3)
        holder2 = sqlite3.connect(live)
        holder2.execute("BEGIN")
        holder2.execute("SELECT 1 FROM rows").fetchone()
        os.unlink(live)  # gone by name; its -wal/-shm still open
        r = agent_cli("restore", "--target", "app", "--output", live)
        check(r.returncode == 1 and "open" in r.stderr and "live" in r.stderr,
              f"a database whose -wal/-shm a process holds is live: {r.stderr}")
        holder2.close()
    finally:
        holder.close()


@test
def coordinator_restore_to_staging():
    d = os.path.join(ctx.staging, "app-1")
    r = ctx.c.ctl("restore", "--target", "app", "--dir", d, "--to", "staging", "--wait",
                  "--json", timeout=300, check=False)
    check(r.returncode == 0, f"ctl restore: {r.stdout}\n{r.stderr}\n"
                             + ctx.c.agents["staging"].output()[-3000:])
    res = json.loads(r.stdout)["result"]
    out = os.path.join(d, "app.db")
    check(res.get("extra", {}).get("output") == out, f"restored to {out}: {res}")
    check(res.get("extra", {}).get("integrity") == "ok", f"integrity recorded: {res}")
    got = rows_of(out)
    check(len(got) > 2000 and got == rows_of(ctx.app)[:len(got)], "the source's rows 1..k")
    bad = os.path.join(ctx.tmp, "not-a-root")
    r = ctx.c.ctl("restore", "--target", "app", "--dir", bad, "--to", "staging", "--wait",
                  "--json", timeout=300, check=False)
    check(r.returncode != 0 and "restore_roots" in (r.stdout + r.stderr),
          f"outside the restore roots refused: {r.stdout} {r.stderr}")
    check(not os.path.exists(bad), "nothing created there")


def fmt_ms(ms):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}+00"


def shipped_until(ms):
    shipped_until_target("app", ms)


def shipped_until_target(target, ms):
    """Wait until the shipper has stored commits seen after ms in both
    repositories (segment names end with the last commit's time)."""
    def newest(repo):
        best = 0
        for dp, _, fs in os.walk(os.path.join(repo, target, "log")):
            for f in fs:
                if f.endswith(".wal.meta"):
                    best = max(best, int(f.split(".")[2], 16))
        return best
    wait_for(lambda: newest(ctx.repo_a) > ms and newest(ctx.repo_b) > ms, 30,
             f"log shipped past {ms}")


def check_restore_at(t_ms, label):
    out = os.path.join(ctx.tmp, "pitr", f"{label}.db")
    r = agent_cli("restore", "--target", "app", "--output", out, "--time", fmt_ms(t_ms), "--json")
    check(r.returncode == 0, f"restore to {fmt_ms(t_ms)}: {r.stdout}\n{r.stderr}")
    rep = json.loads(r.stdout)
    got = rows_of(out)
    ids = [g[0] for g in got]
    k = len(ids)
    check(ids == list(range(1, k + 1)), f"{label}: rows 1..{k}, no hole")
    log = dict(writer_log(ctx.wlog))
    late = [i for i in ids if i in log and log[i] > t_ms + 50]
    check(not late, f"{label}: no row committed after T: {late[:5]} (T={t_ms})")
    missing = [i for i, ms in log.items() if ms <= t_ms - SLACK_MS and i > k]
    check(not missing, f"{label}: every row committed by T - {SLACK_MS} ms is there: "
                       f"missing {missing[:5]}; k={k}")
    gap = t_ms - max((log[i] for i in ids if i in log), default=t_ms)
    check(rep["integrity"] == "ok", f"integrity: {rep}")
    src = rows_of(ctx.app)
    check(got == src[:k], f"{label}: byte-identical to the source's rows 1..{k}")
    return rep, gap


@test
def restore_to_random_times_gives_exactly_the_commits_before():
    import random
    rnd = random.Random(15)
    # A second snapshot, later, so that times fall before and after it.
    time.sleep(2)
    json.loads(snapshot("app").stdout)
    time.sleep(2)
    log = writer_log(ctx.wlog)
    lo, hi = log[0][1], log[-1][1]
    shipped_until(hi)
    gaps = []
    for j in range(6):
        t = rnd.randint(lo, hi)
        rep, gap = check_restore_at(t, f"t{j}")
        gaps.append(gap)
        print(f"  restore to {fmt_ms(t)}: {rep['source']}, chain {rep['chain']}, "
              f"{rep['frames']} frames, recovered to {rep['recovered_to']}, "
              f"newest row {gap} ms before T, {rep['total_s']} s")
    print(f"  largest gap between T and the newest restored commit: {max(gaps)} ms")
    # The coordinator's window runs through the shipped log past the
    # newest snapshot (its stop_log names where the log continues it).
    def window():
        return ctx.c.ctl_json("pitr", "window", "--target", "app")
    wait_for(lambda: window().get("rpo_seconds", 99) <= 5, 30, "RPO of seconds in the window")
    w = window()
    print(f"  PITR window: {w['start']} .. {w['end']}, RPO {w['rpo_seconds']} s, "
          f"{len(w.get('ranges', []))} ranges")
    # The latest: everything shipped so far.
    out = os.path.join(ctx.tmp, "pitr", "latest.db")
    r = agent_cli("restore", "--target", "app", "--output", out, "--json")
    check(r.returncode == 0, f"latest: {r.stderr}")
    k = len(rows_of(out))
    check(k >= len(writer_log(ctx.wlog)) - 1000, f"latest has {k} rows")


@test
def drill_passes_with_rto_and_rpo():
    r = ctx.c.ctl("drill", "run", "--target", "app", "--to", "staging", "--wait", "--json",
                  timeout=300, check=False)
    check(r.returncode == 0, f"drill: {r.stdout}\n{r.stderr}\n"
                             + ctx.c.agents["staging"].output()[-3000:])
    d = json.loads(r.stdout)
    check(d.get("ok") is True and d.get("rto_seconds") is not None
          and d.get("rpo_seconds") is not None, f"drill passed with RTO and RPO: {d}")
    names = {x["name"]: x for x in d.get("checks", [])}
    for n in ("integrity_check", "tables", "sql:1", "sql:2"):
        check(names.get(n, {}).get("ok") is True, f"check {n}: {names}")
    check("1 tables" in names["tables"]["detail"], f"tables counted: {names['tables']}")
    listed = ctx.c.ctl_json("drills", "list", "--target", "app")
    check(any(x.get("ok") for x in listed), f"drills list shows it: {listed}")
    print(f"  drill: RTO {d.get('rto_seconds')} s, RPO {d.get('rpo_seconds')} s, "
          f"phases {d.get('phases')}")
    check(os.listdir(ctx.drills) == [], f"drill dir removed: {os.listdir(ctx.drills)}")
    # tidemarkctl status: the sqlite target as any other (snapshot, window
    # through the shipped log, shipping ok, the drill's RTO).
    st = ctx.c.ctl_json("status")
    row = next(t for t in st["target_status"] if t["name"] == "app")
    print(f"  status: {row}")
    check(row["kind"] == "sqlite" and row["last_full_at"] and row["pitr_end"]
          and row["log_shipping"] == "ok" and row["rpo_seconds"] is not None
          and row["rpo_seconds"] <= 10 and row["rto_seconds"] is not None
          and row["last_drill_ok"] is True, f"status of app: {row}")


@test
def drill_fails_on_a_failed_check():
    # switch.db has 50 rows: the policy's "count(*) > 2000" is false there.
    snapshot("switch")
    r = ctx.c.ctl("drill", "run", "--target", "switch", "--to", "staging", "--wait", "--json",
                  timeout=300, check=False)
    check(r.returncode != 0, f"the drill fails: {r.stdout}")
    d = json.loads(r.stdout)
    names = {x["name"]: x for x in d.get("checks", [])}
    check(d.get("ok") is False and names.get("sql:1", {}).get("ok") is False
          and "returned false" in names["sql:1"].get("detail", ""),
          f"failed on sql:1, saying what it returned: {d}")
    check(names.get("integrity_check", {}).get("ok") is True
          and names.get("sql:2", {}).get("ok") is True, f"the other checks ran: {names}")
    check(os.listdir(ctx.drills) == [], f"drill dir removed: {os.listdir(ctx.drills)}")


@test
def not_wal_refused_and_set_wal_switches():
    r = snapshot("legacy", expect_ok=False)
    check(r.returncode != 0, "a rollback-journal database is refused")
    msg = r.stdout + r.stderr
    check("not WAL" in msg and "set_wal: true" in msg, f"saying what to do: {msg}")
    check(journal_mode(ctx.legacy) == "delete", "and left in its mode")
    task = json.loads(snapshot("switch").stdout)
    check(task["result"]["backup_id"].endswith("-snapshot"), "set_wal: backed up")
    check(journal_mode(ctx.switch) == "wal", "set_wal: switched to WAL")
    out = os.path.join(ctx.tmp, "restored", "switch.db")
    r = agent_cli("restore", "--target", "switch", "--output", out)
    check(r.returncode == 0 and rows_of(out) == rows_of(ctx.switch), f"restored: {r.stderr}")


@test
def libsql_file_backed_up_and_restored():
    check(ctx.libsql_error is None, f"libSQL client: {ctx.libsql_error}")
    check(journal_mode(ctx.libsql) == "wal", "libSQL wrote the file in WAL mode")
    before = len(writer_log(ctx.libsql_log))
    task = json.loads(snapshot("notes").stdout)
    snap = task["result"]["backup_id"]
    out = os.path.join(ctx.tmp, "restored", "notes-snap.db")
    r = agent_cli("restore", "--target", "notes", "--output", out, "--backup", snap, "--json")
    check(r.returncode == 0, f"restore: {r.stderr}")

    def notes(path):
        c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return c.execute("SELECT id, body, t_ms FROM notes ORDER BY id").fetchall()
        finally:
            c.close()
    got = notes(out)
    check(len(got) >= before and [g[0] for g in got] == list(range(1, len(got) + 1)),
          f"the snapshot holds rows 1..{len(got)} (>= {before} written before it)")
    # Stop the writer, wait for the shipper, restore the latest: every row.
    p = ctx.libsql_writer
    p.terminate()
    p.wait(timeout=30)
    want = notes(ctx.libsql)
    # Its t_ms was read before its commit, which the shipper saw after.
    shipped_until_target("notes", want[-1][2])
    out2 = os.path.join(ctx.tmp, "restored", "notes-latest.db")
    r = agent_cli("restore", "--target", "notes", "--output", out2, "--json")
    check(r.returncode == 0, f"restore latest: {r.stderr}")
    rep = json.loads(r.stdout)
    got2 = notes(out2)
    check(got2 == want, f"the latest restore holds every row the libSQL client wrote: "
                        f"{len(got2)} of {len(want)}; {rep}")
    print(f"  libSQL: snapshot {len(got)} rows; latest {len(got2)} rows from {rep['source']} "
          f"({rep['frames']} frames) in {rep['total_s']} s")


def served_targets():
    a = ctx.c.agents_by_host().get("db-1", {})
    return sorted(t["name"] for t in a.get("targets", []))


@test
def glob_target_one_target_per_file_and_new_files_discovered():
    got = served_targets()
    check("tenants-acme" in got and "tenants-globex" in got and "tenants" not in got
          and not any(n.startswith("tenants-notes") for n in got),
          f"one target per database file of the glob, the text file left out: {got}")
    check("sqld-ns1.data" in got and "sqld-ns2.data" in got,
          f"a libSQL server's namespaces, named by directory: {got}")
    # A new database appears: the agent sees it and serves it.
    make_db(os.path.join(ctx.tenants, "initech.db"), 7)
    wait_for(lambda: "tenants-initech" in served_targets(), 30, "tenants-initech served")
    wait_for(lambda: ctx.c.agents_by_host().get("db-1", {}).get("state") == "online", 15,
             "agent back online after the restart")
    task = json.loads(snapshot("tenants-initech").stdout)
    out = os.path.join(ctx.tmp, "restored", "initech.db")
    r = agent_cli("restore", "--target", "tenants-initech", "--output", out,
                  "--backup", task["result"]["backup_id"])
    check(r.returncode == 0, f"restore of a discovered target: {r.stderr}")
    check(len(rows_of(out)) == 7, "its rows")
    log = ctx.c.agents["db-1"].output()
    check("event=targets_changed" in log, "the agent said why it restarted")


@test
def wrong_key_is_a_clear_error():
    other = os.path.join(ctx.tmp, "other.key")
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", other], check=True,
                   capture_output=True)
    conf = os.path.join(ctx.tmp, "wrongkey.yaml")
    with open(ctx.staging_conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(text.replace(ctx.key, other))
    out = os.path.join(ctx.tmp, "wrongkey", "app.db")
    r = agent_cli("restore", "--target", "app", "--engine", "sqlite", "--output", out, conf=conf)
    check(r.returncode == 1 and "master key" in r.stderr and "master_key_file" in r.stderr,
          f"names the key: {r.returncode} {r.stderr}")
    check(not os.path.exists(out), "nothing written")


def flip_middle(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0x55]))


@test
def a_damaged_copy_is_passed_over_and_a_damaged_segment_named():
    """The restore's direct path (the chain's base written straight into the
    output's temporary file, segments read into memory): the base and a
    segment damaged in region-a -> region-b's copies are taken, the same
    bytes as before; the segment damaged in both -> the restore fails naming
    it, nothing written."""
    logdir = os.path.join(ctx.repo_a, "app", "log")
    chain = sorted(d for d in os.listdir(logdir)
                   if any(f.endswith(".gen") for f in os.listdir(os.path.join(logdir, d))))[0]
    names = sorted(os.listdir(os.path.join(logdir, chain)))
    gen = next(f for f in names if f.endswith(".gen"))
    base = next(f for f in names if f.endswith(".db"))
    base_frame = int(gen.split(".")[1].split("-")[1], 16)
    segs = [f for f in names if f.endswith(".wal")
            and (int(f.split(".")[0], 16) > 0 or int(f.split(".")[1].split("-")[1], 16) > base_frame)]
    check(segs, f"segments after the base of chain {chain}: {names[:6]}")
    out = os.path.join(ctx.tmp, "damaged", "app.db")

    def restore(label, t_ms):
        target = os.path.join(os.path.dirname(out), label + ".db")
        return target, agent_cli("restore", "--target", "app", "--output", target,
                                 "--time", fmt_ms(t_ms), "--json")

    # The newest segment whose time a restore reaches from the chain's base
    # (a restore to a time after the first snapshot backup starts from it).
    seg = None
    for cand in segs:
        t = int(cand.split(".")[2], 16)
        got, r = restore("good", t)
        check(r.returncode == 0, f"restore to {fmt_ms(t)}: {r.stderr}")
        rep = json.loads(r.stdout)
        if rep["source"] != "chain base+log":
            break
        good, seg, t_ms, last = got, cand, t, rep
        os.rename(got, got + ".keep")
    if seg is None:
        check(False, f"no segment of chain {chain} is restored from its base: {rep}")
    for f in os.listdir(os.path.dirname(out)):
        if f == "good.db":
            os.unlink(os.path.join(os.path.dirname(out), f))
    os.rename(good + ".keep", good)
    rep = last
    print(f"  chain {chain}, {seg}: {rep['source']}, {rep['frames']} frames, {rep['total_s']} s")
    check(f"{rep['chain']:08x}" == chain, f"restored from the chain's base and its log: {rep}")
    kept = {}
    for repo, rel in ((ctx.repo_a, base), (ctx.repo_a, seg), (ctx.repo_b, seg)):
        p = os.path.join(repo, "app", "log", chain, rel)
        with open(p, "rb") as f:
            kept[p] = f.read()
    try:
        flip_middle(os.path.join(ctx.repo_a, "app", "log", chain, base))
        flip_middle(os.path.join(ctx.repo_a, "app", "log", chain, seg))
        other, r = restore("other", t_ms)
        check(r.returncode == 0, f"region-b's copies taken: {r.stderr}")
        with open(good, "rb") as a, open(other, "rb") as b:
            check(a.read() == b.read(), "the same bytes as from region-a's good copies")
        flip_middle(os.path.join(ctx.repo_b, "app", "log", chain, seg))
        bad, r = restore("bad", t_ms)
        check(r.returncode == 1 and f"{chain}/{seg}" in r.stderr,
              f"the damaged segment named: {r.returncode} {r.stderr}")
        check(not os.path.exists(bad), "nothing written")
        left = sorted(os.listdir(os.path.dirname(out)))
        check(left == ["good.db", "other.db"], f"no temporary file left: {left}")
    finally:
        for p, b in kept.items():
            with open(p, "wb") as f:
                f.write(b)


if __name__ == "__main__":
    run()
