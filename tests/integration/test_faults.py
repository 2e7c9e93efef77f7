"""Fault injection: every write, pwrite, fsync, close, rename, mkdir and
unlink of an operation fails in turn (tests/fault/tm_fault.so, LD_PRELOAD),
with ENOSPC, EIO or EDQUOT, or a write comes back short.

Operations walked: `tidemark-agent repo put` of a 3 MiB file, and a WAL
push (`wal-push`), both into two posix repositories with the faults in one
of them (r1). Each run must end either

  ok     exit 0, and the new backup / segment verifies in every repository;
  clean  exit non-zero, stderr names the repository or path and the errno
         text, nothing half-visible in r1 (no manifest whose backup does not
         verify, no visible object that differs from the good copy in r2),
         and the same command run again without the fault succeeds;

and in both cases the backup made before still verifies. The table of
(operation, op, N, errno, outcome) is printed. N walks every call the
operation makes (TM_FAULT_REPORT counts them first); when an op has more
than TM_FAULT_MAX_N calls (default 40) the first ones, the middle and the
last ones are walked and the table says so.

The coordinator's catalog is walked the same way while a backup is
recorded (pwrite and fdatasync on catalog.db and its WAL; TM_FAULT_ARM
counts only the calls made while the backup runs, not the coordinator's
start): the call fails or succeeds, and then the catalog passes SQLite's
integrity_check, holds a backup row for exactly each backup task that
succeeded, the next coordinator opens it, and a last backup is recorded.

A BAD row names what went wrong (an unchecked result, a partial backup
reported as success) and fails the module.
"""
import errno
import glob
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile

from tmtest import runner
from tmtest.runner import check, test, wait_for

BUILD = os.environ.get("TM_BUILD_DIR", "build")
AGENT = os.path.join(BUILD, "agent", "tidemark-agent")
SHIM = os.path.join(BUILD, "tests", "tm_fault.so")
OPS = ("write", "write-short", "pwrite", "fsync", "fdatasync", "close", "rename", "renameat",
       "mkdir", "unlink")
ERRNOS = ("ENOSPC", "EIO", "EDQUOT")
MAX_N = int(os.environ.get("TM_FAULT_MAX_N", "40"))
SEG = "000000010000000000000007"
# What a BAD row means, named in its message. Both were found on main before
# the write paths were checked and before the coordinator knew "partial";
# they stay as the failure each check reports.
NEEDS_FIX = "an unchecked write, fsync or close result"
# A backup complete in some repositories only, reported as a plain success.
NEEDS_PARTIAL = "a partial backup reported as a plain success"


class Ctx:
    pass


ctx = Ctx()
table = []


def agent(*args, env=None):
    r = subprocess.run([AGENT, "--config", ctx.conf, *args], capture_output=True, text=True,
                       env=env or ctx.env, timeout=300)
    return r


def with_fault(op, n, err):
    short = op == "write-short"
    e = dict(ctx.env, LD_PRELOAD=SHIM, TM_FAULT_OP="write" if short else op, TM_FAULT_N=str(n),
             TM_FAULT_PATH=ctx.r1 + "/", TM_FAULT_ERRNO=err,
             TM_FAULT_REPORT=os.path.join(ctx.reports, "rep"))
    if short:
        e["TM_FAULT_SHORT"] = "1"
    # An ASan build wants its runtime first in the library list; the shim
    # carries no sanitizer runtime of its own.
    e["ASAN_OPTIONS"] = ":".join(o for o in (os.environ.get("ASAN_OPTIONS", ""),
                                             "verify_asan_link_order=0") if o)
    return e


def reports():
    """(calls, injected path or None) summed over the processes of a run."""
    calls, path = 0, None
    for f in glob.glob(os.path.join(ctx.reports, "rep.*")):
        with open(f) as fh:
            kv = dict(p.split("=", 1) for p in fh.read().split() if "=" in p)
        calls += int(kv.get("calls", 0))
        if kv.get("injected") == "1":
            path = kv.get("path", "?")
        os.unlink(f)
    return calls, path


def walk(count):
    if count <= MAX_N:
        return list(range(1, count + 1)), False
    k = MAX_N // 3
    ns = set(range(1, k + 1)) | set(range(count // 2 - k // 2, count // 2 + k // 2 + 1)) \
        | set(range(count - k + 1, count + 1))
    return sorted(ns), True


def visible_files(root):
    out = []
    for dp, _, fs in os.walk(root):
        for f in fs:
            if not f.startswith(".tmp."):
                out.append(os.path.relpath(os.path.join(dp, f), root))
    return sorted(out)


def same_bytes(a, b):
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            return fa.read() == fb.read()
    except OSError:
        return False


def clean_failure(r, err_name, injected):
    """Problems with how a failed run reported itself ([] when clean)."""
    out = []
    text = os.strerror(getattr(errno, err_name))
    if err_name and text not in r.stderr:
        out.append(f"stderr lacks the errno text {text!r}")
    names = {"r1", ctx.r1}
    if injected:
        names |= {os.path.basename(injected), os.path.basename(os.path.dirname(injected))}
    if not any(n and n in r.stderr for n in names):
        out.append(f"stderr names neither the repository nor the path ({injected})")
    return out


def half_visible(sub):
    """Objects in r1 under sub that are visible but not the good copy of r2."""
    bad = []
    for rel in visible_files(os.path.join(ctx.r1, sub)):
        if not same_bytes(os.path.join(ctx.r1, sub, rel), os.path.join(ctx.r2, sub, rel)):
            bad.append(os.path.join(sub, rel))
    return bad


def record(operation, op, n, err, outcome, detail=""):
    table.append((operation, op, n, err, outcome, detail))


# -- repo put --------------------------------------------------------------

def put_case(op, n, err, i):
    bid = f"20270101T{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}Z-full"
    r = agent("repo", "put", "--target", "t", "--name", "obj", "--backup-id", bid, ctx.file,
              env=with_fault(op, n, err))
    calls, injected = reports()
    problems = []
    sub = os.path.join("t", "backup", bid)
    if r.returncode == 0:
        v = agent("repo", "verify", "--target", "t", "--backup", bid)
        if v.returncode != 0:
            problems.append(f"exit 0 but verify fails: {v.stdout[-500:]}{v.stderr[-500:]}")
        outcome = "ok"
    else:
        outcome = "clean"
        err_name = None if op == "write-short" else err
        problems += clean_failure(r, err_name, injected)
        if os.path.exists(os.path.join(ctx.r1, sub, "manifest")):
            v = agent("repo", "verify", "--target", "t", "--backup", bid, "--repo", "r1")
            if v.returncode != 0:
                problems.append(f"manifest in r1 but the backup does not verify there: "
                                f"{v.stdout[-500:]}")
        hv = half_visible(sub)
        if hv:
            problems.append(f"visible objects in r1 that are not the good copy: {hv}")
    prev = agent("repo", "verify", "--target", "t", "--backup", ctx.prev)
    if prev.returncode != 0:
        problems.append(f"the previous backup no longer verifies: {prev.stdout[-500:]}")
    if r.returncode == 0 and injected and op != "write-short":
        # Success although a call failed: e.g. a directory fsync whose
        # result is dropped, so the new name may not survive a crash.
        problems.append(f"exit 0 although {op} of {injected} failed ({NEEDS_FIX})")
    if problems:
        outcome = "BAD"
    record("repo put", op, n, err, outcome, "; ".join(problems)
           + ("" if outcome != "clean" else r.stderr.strip().splitlines()[-1][:160]))
    return calls, injected


# -- wal-push ---------------------------------------------------------------

def wal_case(op, n, err, i):
    seg = "00000001000000%02X%08X" % (1 + i // 200, i % 200 + 16)
    path = os.path.join(ctx.work, seg)
    shutil.copy(ctx.segment, path)
    r = agent("wal-push", "--target", "pg", path, env=with_fault(op, n, err))
    calls, injected = reports()
    problems = []
    sub = os.path.join("pg", "log", seg[:8])
    if r.returncode == 0:
        outcome = "ok"
    else:
        outcome = "clean"
        err_name = None if op == "write-short" else err
        problems += clean_failure(r, err_name, injected)
        for rel in visible_files(os.path.join(ctx.r1, sub)):
            if rel.startswith(seg) and not same_bytes(os.path.join(ctx.r1, sub, rel),
                                                      os.path.join(ctx.r2, sub, rel)):
                problems.append(f"visible {rel} in r1 differs from r2's copy")
        again = agent("wal-push", "--target", "pg", path)
        if again.returncode != 0:
            problems.append(f"pushing again without the fault fails: {again.stderr[-400:]}")
    out = os.path.join(ctx.work, seg + ".got")
    g = agent("wal-get", "--target", "pg", "--prefetch", "0", seg, out)
    if g.returncode != 0 or not same_bytes(out, ctx.segment):
        problems.append(f"wal-get after the push: exit {g.returncode} {g.stderr[-300:]}")
    for f in (path, out):
        if os.path.exists(f):
            os.unlink(f)
    if r.returncode == 0 and injected and op != "write-short":
        problems.append(f"exit 0 although {op} of {injected} failed ({NEEDS_FIX})")
    if problems:
        outcome = "BAD"
    record("wal-push", op, n, err, outcome, "; ".join(problems)
           + ("" if outcome != "clean" else r.stderr.strip().splitlines()[-1][:160]))
    return calls, injected


def walk_operation(name, case, ops=OPS):
    i = 0
    for op in ops:
        calls, _ = case(op, 0, "ENOSPC", i)
        i += 1
        table.pop()  # the counting run is not a case
        if calls == 0:
            record(name, op, 0, "-", "never called")
            continue
        ns, sampled = walk(calls)
        for k, n in enumerate(ns):
            case(op, n, ERRNOS[k % len(ERRNOS)], i)
            i += 1
        if sampled:
            record(name, op, f"{len(ns)} of {calls}", "-", "sampled")


@runner.setup
def setup():
    ctx.dir = tempfile.mkdtemp(prefix="tm-faults-")
    ctx.r1 = os.path.join(ctx.dir, "r1")
    ctx.r2 = os.path.join(ctx.dir, "r2")
    ctx.reports = os.path.join(ctx.dir, "reports")
    ctx.work = os.path.join(ctx.dir, "work")
    for d in (ctx.r1, ctx.r2, ctx.reports, ctx.work, os.path.join(ctx.dir, "state")):
        os.makedirs(d)
    ctx.env = dict(os.environ, TM_ENROLL="unused")
    key = ctx.key = os.path.join(ctx.dir, "master.key")
    subprocess.run([AGENT, "repo", "keygen", key], check=True, capture_output=True)
    ctx.conf = os.path.join(ctx.dir, "agent.yaml")
    with open(ctx.conf, "w") as f:
        f.write(f"""coordinator:
  url: tcp://127.0.0.1:7800
  enrollment_token: env:TM_ENROLL
state_dir: {ctx.dir}/state
repositories:
  - name: r1
    type: posix
    path: {ctx.r1}
  - name: r2
    type: posix
    path: {ctx.r2}
encryption:
  master_key_file: {key}
""")
    ctx.file = os.path.join(ctx.dir, "payload")
    with open(ctx.file, "wb") as f:
        f.write(os.urandom(1024 * 1024) + b"compressible text " * 100000)
    ctx.prev = "20260101T000000Z-full"
    r = agent("repo", "put", "--target", "t", "--name", "obj", "--backup-id", ctx.prev, ctx.file)
    check(r.returncode == 0, f"the first backup: {r.stderr}")
    # A WAL segment's worth of bytes (wal-push stores any file named as one).
    ctx.segment = os.path.join(ctx.dir, SEG)
    with open(ctx.segment, "wb") as f:
        f.write(os.urandom(4 * 1024 * 1024) + bytes(12 * 1024 * 1024))
    r = agent("wal-push", "--target", "pg", ctx.segment)
    check(r.returncode == 0, f"the first segment: {r.stderr}")


@test
def repo_put_under_faults():
    walk_operation("repo put", put_case)
    bad = [t for t in table if t[0] == "repo put" and t[4] == "BAD"]
    check(not bad, "\n".join(f"{t[1]} N={t[2]} {t[3]}: {t[5]}" for t in bad))


@test
def wal_push_under_faults():
    walk_operation("wal-push", wal_case)
    bad = [t for t in table if t[0] == "wal-push" and t[4] == "BAD"]
    check(not bad, "\n".join(f"{t[1]} N={t[2]} {t[3]}: {t[5]}" for t in bad))


# -- a PostgreSQL backup through the agent daemon, and its restore ---------

def pg_env_faults(op, n, err):
    e = with_fault(op, n, err)
    return {k: v for k, v in e.items() if k.startswith(("TM_FAULT", "LD_PRELOAD", "ASAN_OPTIONS"))}


def restart_agent(extra_env):
    c = ctx.c
    if "db-1" in c.agents:
        c.agents["db-1"].stop()
    saved = c.env
    c.env = dict(saved, **extra_env)
    try:
        c.start_agent("db-1", targets=[("pg", "postgres", ctx.pgyaml)], extra=ctx.repo_yaml)
    finally:
        c.env = saved
    wait_for(lambda: c.agents_by_host().get("db-1", {}).get("state") == "online", 30,
             "agent online")


def pg_manifests():
    """(repo, backup id) of every pg backup with a manifest, and its mtime."""
    out = {}
    for repo, root in (("r1", ctx.r1), ("r2", ctx.r2)):
        for p in glob.glob(os.path.join(root, "pg", "backup", "*", "manifest")):
            out[(repo, p.split(os.sep)[-2])] = os.stat(p).st_mtime_ns
    return out


def pg_backup_case(op, n, err, i):
    before = pg_manifests()
    restart_agent(pg_env_faults(op, n, err) if op else {})
    r = ctx.c.ctl("backup", "run", "--target", "pg", "--type", "full", "--wait", "--json",
                  timeout=600, check=False)
    problems = []
    # A partial backup makes the coordinator queue a check and a repair COPY
    # at once. Let them finish with this agent (the fault is spent on the
    # backup, which made its calls first), so no repair of this case runs
    # inside the next case's backup or is cut by the stop below.
    try:
        wait_for(lambda: not [t for t in ctx.c.ctl_json("tasks", "list", "--target", "pg")
                              if t["state"] in ("queued", "running")], 180,
                 "no queued or running task for pg", interval=0.5)
    except runner.Failure as e:
        problems.append(str(e))
    try:
        ctx.c.agents["db-1"].stop()  # the report is complete once the agent ended
    except AssertionError as e:
        # A daemon that ends badly is a finding of its own; keep walking.
        problems.append(str(e).splitlines()[0])
        ctx.c.agents["db-1"].kill9()
    calls, injected = reports()
    try:
        task = json.loads(r.stdout)
    except ValueError:
        task = {}
    text = json.dumps(task) + r.stdout + r.stderr
    if r.returncode == 0:
        outcome = "ok"
    else:
        outcome = "clean"
        want = os.strerror(getattr(errno, err)) if op != "write-short" else ""
        if want not in text:
            problems.append(f"the task's error lacks {want!r}: {text[-300:]}")
    # Every manifest this case made visible (its backup, a repair's copy of
    # an earlier partial one) must verify in its repository, and the good
    # backup still verifies. Backups untouched since their own case were
    # verified then: verifying every backup of both repositories in every
    # case made the walk quadratic (23 min under ASan).
    after = pg_manifests()
    for repo, bid_v in sorted(k for k, m in after.items() if before.get(k) != m):
        v = agent("repo", "verify", "--target", "pg", "--repo", repo, "--backup", bid_v)
        if v.returncode != 0:
            problems.append(f"a backup with a manifest in {repo} does not verify: "
                            f"{(v.stdout + v.stderr)[-400:]}")
    v = agent("repo", "verify", "--target", "pg", "--backup", ctx.good)
    if v.returncode != 0:
        problems.append(f"the good backup {ctx.good} no longer verifies: "
                        f"{(v.stdout + v.stderr)[-400:]}")
    bid = (task.get("result") or {}).get("backup_id")
    if r.returncode == 0 and injected and bid and f"/backup/{bid}/" not in injected \
            and "/backup/" in injected and not problems:
        # The fault hit another backup's object: the coordinator's repair
        # COPY of an earlier case's partial backup, run by this agent while
        # the backup of this case ran. This backup was not faulted; the
        # table says where the fault went.
        record("pg backup", op, n, err, "elsewhere", f"the fault hit {injected}, not {bid}")
        return calls, injected
    if r.returncode == 0 and injected and op != "write-short":
        # The backup is complete in r2 only. That is a success only if the
        # task says r1 failed and why (the "partial" outcome); a plain
        # success hides the failed repository.
        want = os.strerror(getattr(errno, err))
        if "r1" in text and want in text:
            outcome = "partial"
        else:
            problems.append(f"success although {op} of {injected} failed, and the task does not "
                            f"say r1 failed ({NEEDS_PARTIAL}): {text[-300:]}")
    if problems:
        outcome = "BAD"
    record("pg backup", op, n, err, outcome, "; ".join(problems)
           + ("" if outcome != "clean" else (task.get("error") or text)[-160:]))
    return calls, injected


def restore_case(op, n, err, i):
    d = os.path.join(ctx.dir, "restore-%d" % i)
    e = with_fault(op, n, err)
    e["TM_FAULT_PATH"] = d + "/"
    r = agent("restore", "--target", "pg", "--pgdata", d, "--backup", ctx.good, env=e)
    calls, injected = reports()
    problems = []
    if r.returncode == 0:
        outcome = "ok"
        if not os.path.exists(os.path.join(d, "PG_VERSION")):
            problems.append("exit 0 without PG_VERSION in the restored directory")
    else:
        outcome = "clean"
        problems += clean_failure(r, None if op == "write-short" else err, injected)
    v = agent("repo", "verify", "--target", "pg", "--backup", ctx.good)
    if v.returncode != 0:
        problems.append(f"the backup no longer verifies: {v.stdout[-300:]}")
    if r.returncode == 0 and injected and op != "write-short":
        problems.append(f"exit 0 although {op} of {injected} failed ({NEEDS_FIX})")
    shutil.rmtree(d, ignore_errors=True)
    if problems:
        outcome = "BAD"
    record("restore", op, n, err, outcome, "; ".join(problems)
           + ("" if outcome != "clean" else r.stderr.strip().splitlines()[-1][:160]))
    return calls, injected


PG_OPS = ("write", "fsync", "close", "rename", "mkdir")


# -- the coordinator's catalog while a backup is recorded ------------------

# SQLite writes its WAL with pwrite64 and syncs it with fdatasync (Debian 12
# build; its fsync was never called while a backup was recorded: measured).
CAT_OPS = ("pwrite", "fdatasync")
BACKUP_KIND, SUCCEEDED, PARTIAL = 1, 3, 6


def restart_coordinator(extra_env):
    """The coordinator again, with extra_env (a fault or nothing); the
    problems of the one stopped ([] when it ended well)."""
    c, problems = ctx.c, []
    try:
        c.coordinator.stop()
    except AssertionError as e:
        problems.append(str(e)[:600])
    saved = c.env
    c.env = dict(saved, **extra_env)
    try:
        c.start_coordinator()
    finally:
        c.env = saved
    wait_for(lambda: c.agents_by_host().get("db-1", {}).get("state") == "online", 60,
             "agent online again")
    return problems


def catalog_rows():
    """(backup ids of pg, {task rowid: state} of pg's backup tasks, problems)
    read from the catalog file of the stopped coordinator."""
    db = sqlite3.connect(ctx.catalog)
    try:
        problems = []
        ic = db.execute("PRAGMA integrity_check").fetchall()
        if ic != [("ok",)]:
            problems.append(f"integrity_check: {ic[:5]}")
        fk = db.execute("PRAGMA foreign_key_check").fetchall()
        if fk:
            problems.append(f"foreign_key_check: {fk[:5]}")
        ids = {r[0] for r in db.execute("SELECT id FROM backups WHERE target = 'pg'")}
        tasks = dict(db.execute("SELECT rowid, state FROM tasks WHERE target = 'pg' AND kind = ?",
                                (BACKUP_KIND,)).fetchall())
        return ids, tasks, problems
    finally:
        db.close()


def catalog_case(op, n, err, i):
    """A backup recorded while the Nth op on the catalog's files fails
    (counted only while the backup runs: TM_FAULT_ARM). The call fails or
    succeeds; after it, with the coordinator stopped, the catalog passes
    integrity_check, and a backup row exists exactly for each backup task
    that ended succeeded or partial (no row of a failed task, no success
    without its row); a new backup verifies; the next coordinator opens the
    catalog (the next case, or the end of the walk)."""
    arm = os.path.join(ctx.dir, "arm")
    e = pg_env_faults(op, n, err)
    e.update(TM_FAULT_PATH=ctx.catalog, TM_FAULT_ARM=arm)
    problems = []
    before_ids, before_tasks, _ = ctx.cat_state
    log = os.path.join(ctx.c.dir, "coordinator.log")
    log_at = os.path.getsize(log)
    problems += restart_coordinator(e)
    open(arm, "w").close()
    try:
        r = ctx.c.ctl("backup", "run", "--target", "pg", "--type", "full", "--wait", "--json",
                      timeout=300, check=False)
    finally:
        os.unlink(arm)
    try:
        ctx.c.coordinator.stop()
    except AssertionError as ex:
        problems.append(str(ex)[:600])
    calls, injected = reports()
    ids, tasks, p = catalog_rows()
    problems += p
    ctx.cat_state = (ids, tasks, p)
    lost = before_ids - ids
    if lost:
        problems.append(f"backups gone from the catalog: {sorted(lost)}")
    new_ids = ids - before_ids
    new_tasks = {k: v for k, v in tasks.items() if k not in before_tasks}
    done = [k for k, v in new_tasks.items() if v in (SUCCEEDED, PARTIAL)]
    if len(new_ids) != len(done):
        problems.append(f"half recorded: {len(new_ids)} new backup rows {sorted(new_ids)} but "
                        f"{len(done)} backup tasks succeeded (states {new_tasks})")
    for bid in new_ids:
        v = agent("repo", "verify", "--target", "pg", "--backup", bid)
        if v.returncode != 0:
            problems.append(f"recorded backup {bid} does not verify: {v.stdout[-300:]}")
    text = r.stdout + r.stderr
    with open(log, "rb") as f:
        f.seek(log_at)
        said = [l for l in f.read().decode(errors="replace").splitlines()
                if " error " in l and ("catalog" in l or "write_failed" in l)]
    if r.returncode == 0:
        outcome = "ok" if not injected else "ok (retried)"
        if not new_ids:
            problems.append(f"exit 0 but no backup recorded: {text[-300:]}")
    else:
        outcome = "clean"
        if not text.strip():
            problems.append("the call failed without saying why")
    if problems:
        outcome = "BAD"
    # What the coordinator logged of the failed write, else the call's end.
    what = said[0].split(" ", 2)[-1] if said else (text.strip().splitlines() or [""])[-1]
    record("catalog", op, n, err, outcome, "; ".join(problems)
           + ("" if outcome == "BAD" else f"{os.path.basename(injected or '-')}: {what[:160]}"))
    return calls, injected


@test
def pg_backup_and_restore_under_faults():
    """A real PostgreSQL, backed up by the agent daemon through the
    coordinator (faults in r1), then restored by `tidemark-agent restore`
    (faults in the target directory), then the catalog walk. Fewer N per
    op, each case being a whole backup or restore: the restore walks the
    first, middle and last call (TM_FAULT_MAX_N_PG, default 3); the backup
    (an agent restart each) and the catalog walk (a coordinator restart
    each) the middle one (TM_FAULT_MAX_N_PG_BACKUP, TM_FAULT_MAX_N_CAT,
    default 2), so the module stays within its time under ASan."""
    global MAX_N
    if shutil.which("pg_config") is None:
        runner.fail_all("no PostgreSQL (pg_config): deploy/install-deps.sh --test")
    from tmtest.cluster import Cluster
    from tmtest.pg import Postgres
    saved_max = MAX_N
    MAX_N = int(os.environ.get("TM_FAULT_MAX_N_PG", "3"))
    os.chmod(ctx.dir, 0o755)
    ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml="""tasks:
  lease: 30s
  max_attempts: 1
  poll_max: 5s
policies:
  - name: pg
    match:
      kind: postgres
    schedule:
      full: "0 3 * * *"
      incremental: ""
""")
    ctx.c.__enter__()
    try:
        ctx.pg = Postgres(ctx.dir, "src").initdb().start()
        ctx.pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g")
        ctx.pgyaml = (f"postgres:\n  pgdata: {ctx.pg.datadir}\n  host: 127.0.0.1\n"
                      f"  port: {ctx.pg.port}\n  user: postgres\n")
        ctx.repo_yaml = (f"repositories:\n"
                         f"  - name: r1\n    type: posix\n    path: {ctx.r1}\n"
                         f"  - name: r2\n    type: posix\n    path: {ctx.r2}\n"
                         f"encryption:\n  master_key_file: {ctx.key}\n")
        ctx.c.start_coordinator()
        restart_agent({})
        r = ctx.c.ctl("backup", "run", "--target", "pg", "--type", "full", "--wait", "--json",
                      timeout=600)
        ctx.good = json.loads(r.stdout)["result"]["backup_id"]
        MAX_N = int(os.environ.get("TM_FAULT_MAX_N_PG_BACKUP", "2"))
        walk_operation("pg backup", pg_backup_case, PG_OPS)
        MAX_N = int(os.environ.get("TM_FAULT_MAX_N_PG", "3"))
        walk_operation("restore", restore_case, PG_OPS)
        MAX_N = int(os.environ.get("TM_FAULT_MAX_N_CAT", "2"))
        ctx.catalog = os.path.join(ctx.c.dir, "catalog.db")
        ctx.c.coordinator.stop()
        ctx.cat_state = catalog_rows()
        check(not ctx.cat_state[2], f"the catalog before the walk: {ctx.cat_state[2]}")
        ctx.c.start_coordinator()
        restart_agent({})  # the pg backup walk left it stopped
        walk_operation("catalog", catalog_case, CAT_OPS)
        # The catalog opens, and records the next backup.
        ctx.c.start_coordinator()
        wait_for(lambda: ctx.c.agents_by_host().get("db-1", {}).get("state") == "online", 60,
                 "agent online after the catalog walk")
        r = ctx.c.ctl("backup", "run", "--target", "pg", "--type", "full", "--wait", "--json",
                      timeout=300, check=False)
        if r.returncode != 0:
            record("catalog", "-", "-", "-", "BAD", f"a backup after the walk fails: "
                   f"{(r.stdout + r.stderr)[-300:]}")
    finally:
        MAX_N = saved_max
        try:
            ctx.pg.stop("immediate")
        finally:
            ctx.c.__exit__(None, None, None)
    bad = [t for t in table if t[0] in ("pg backup", "restore", "catalog") and t[4] == "BAD"]
    check(not bad, "\n".join(f"{t[0]} {t[1]} N={t[2]} {t[3]}: {t[5]}" for t in bad))


@runner.teardown
def print_table():
    print(f"  {'operation':10} {'op':12} {'N':>10} {'errno':7} outcome")
    for operation, op, n, err, outcome, detail in table:
        print(f"  {operation:10} {op:12} {str(n):>10} {err:7} {outcome:12} {detail[:200]}")
    if not os.environ.get("TM_KEEP_TMP"):
        shutil.rmtree(ctx.dir, ignore_errors=True)


if __name__ == "__main__":
    runner.require(AGENT, SHIM)
    runner.run()
