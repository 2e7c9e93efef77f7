"""Integration tests of PostgreSQL WAL archiving: a real PostgreSQL 15 with
archive_command = 'tidemark-agent wal-push', two posix repositories.

Covers: pgbench load -> every segment in both repositories, wal-show shows
one contiguous range; the same segment pushed twice -> ok; different content
under an archived name -> fails naming segment and repository; a repository
made unwritable during load -> PostgreSQL keeps .ready files and retries
(failed_count > 0), nothing lost once it comes back; wal-get round trip
byte-identical; a missing segment / history file -> exit 1, silent; async
mode: wal-archiver pushes ahead, wal-push --async answers fast for done
segments, and never acknowledges a segment that is not in every repository.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from tmtest import pg, runner
from tmtest.runner import check, test, wait_for

BUILD = os.environ.get("TM_BUILD_DIR", "build")
AGENT = os.path.abspath(os.path.join(BUILD, "agent", "tidemark-agent"))
TARGET = "pg"


class Ctx:
    pass


ctx = Ctx()


def agent(*args, check_rc=None, timeout=300, cwd=None):
    """Run the agent as the user PostgreSQL runs as, so the spool it creates
    stays writable by archive_command."""
    kw = pg.as_user_kwargs(dict(os.environ, TM_ENROLL="x"))
    r = subprocess.run([AGENT, "--config", ctx.conf, *args], capture_output=True, timeout=timeout,
                       cwd=cwd, **kw)
    r.out = r.stdout.decode(errors="replace")
    r.err = r.stderr.decode(errors="replace")
    if check_rc is not None and r.returncode != check_rc:
        raise runner.Failure("%s: exit %d, expected %d\nstdout: %s\nstderr: %s" % (
            " ".join(args), r.returncode, check_rc, r.out[-3000:], r.err[-3000:]))
    return r


def show():
    r = agent("wal-show", "--target", TARGET, "--pgdata", ctx.pg.datadir, "--json")
    try:
        return json.loads(r.out), r
    except ValueError:
        raise runner.Failure("wal-show not JSON (exit %d): %s %s" % (r.returncode, r.out, r.err))


def current_segment():
    return ctx.pg.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")


def switch_and_wait(timeout=120):
    """Switch to a new segment and wait until the previous one is archived."""
    # The name of the segment the switch closed (its end LSN is the
    # boundary, which pg_walfile_name maps to the segment before it).
    seg = ctx.pg.psql("SELECT pg_walfile_name(pg_switch_wal())")

    done = os.path.join(ctx.pg.datadir, "pg_wal", "archive_status", seg + ".done")

    def archived():
        # In both repositories and no longer waiting in archive_status
        # (pg_stat_archiver may lag behind by its stats flush interval).
        metas = [os.path.join(ctx.dir, r, TARGET, "log", seg[:8], seg + ".meta") for r in ("r1", "r2")]
        return all(os.path.exists(m) for m in metas) and not os.path.exists(done[:-5] + ".ready")
    wait_for(archived, timeout, "segment %s archived (%s)" % (seg, ctx.pg.log_tail(1500)), 0.1)
    return seg


def segments_present(repo, first, last):
    d = os.path.join(ctx.dir, repo, TARGET, "log", "00000001")
    names = set(os.listdir(d)) if os.path.isdir(d) else set()
    missing = []
    lo = int(first[8:16], 16) * 256 + int(first[16:], 16)
    hi = int(last[8:16], 16) * 256 + int(last[16:], 16)
    for n in range(lo, hi + 1):
        name = "00000001%08X%08X" % (n // 256, n % 256)
        if name not in names or name + ".meta" not in names:
            missing.append(name)
    return missing


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@runner.setup
def setup():
    ctx.dir = tempfile.mkdtemp(prefix="tm-wal-")
    os.chmod(ctx.dir, 0o755)
    ctx.key = os.path.join(ctx.dir, "master.key")
    subprocess.run([AGENT, "repo", "keygen", ctx.key], check=True, capture_output=True)
    for d in ("r1", "r2", "state", "work"):
        os.makedirs(os.path.join(ctx.dir, d))
    ctx.conf = os.path.join(ctx.dir, "agent.yaml")
    with open(ctx.conf, "w") as f:
        f.write("\n".join([
            "coordinator:",
            "  url: tcp://127.0.0.1:7800",
            "  enrollment_token: env:TM_ENROLL",
            "state_dir: %s/state" % ctx.dir,
            "repositories:",
            "  - name: r1",
            "    type: posix",
            "    path: %s/r1" % ctx.dir,
            "  - name: r2",
            "    type: posix",
            "    path: %s/r2" % ctx.dir,
            "encryption:",
            "  master_key_file: %s" % ctx.key,
        ]) + "\n")
    pg.chown_tree(ctx.dir)
    cmd = "'%s --config %s wal-push --target %s %%p'" % (AGENT, ctx.conf, TARGET)
    ctx.pg = pg.Postgres(ctx.dir, conf={
        "archive_mode": "on",
        "archive_command": cmd,
        "archive_timeout": "60",
        "max_wal_size": "'256MB'",
        # Keep archived segments in pg_wal: the round-trip and --async checks
        # compare against them, and must never be skipped because one was
        # recycled.
        "wal_keep_size": "'1GB'",
    }, env=dict(os.environ, TM_ENROLL="x"))
    ctx.pg.initdb().start()


@test
def test_archive_under_pgbench_load():
    ctx.pg.pgbench("-i", "-s", "5", "-q")
    ctx.pg.pgbench("-T", "8", "-c", "4", "-j", "2", "-n")
    last = switch_and_wait()
    ctx.last = last
    # Keep a copy of the newest archived segment while pg_wal still has it.
    src = os.path.join(ctx.pg.datadir, "pg_wal", last)
    check(os.path.exists(src), "%s still in pg_wal (wal_keep_size)" % last)
    ctx.copy = os.path.join(ctx.dir, "work", last)
    shutil.copy(src, ctx.copy)
    first = "000000010000000000000001"
    for repo in ("r1", "r2"):
        missing = segments_present(repo, first, last)
        check(not missing, "%s misses %s" % (repo, missing[:5]))
    js, r = show()
    check(r.returncode == 0, "wal-show exit %d: %s" % (r.returncode, r.out))
    for repo in js["repositories"]:
        tl = repo["timelines"]
        check(len(tl) == 1 and len(tl[0]["ranges"]) == 1 and not tl[0]["gaps"],
              "%s: expected one contiguous range: %s" % (repo["name"], tl))
        rg = tl[0]["ranges"][0]
        check(rg["first"] == first and rg["last"] >= last, "range %s, expected %s..%s" % (rg, first, last))
    text = agent("wal-show", "--target", TARGET).out
    print("    wal-show:\n      " + "\n      ".join(text.splitlines()[:8]))
    n = int(last[16:], 16)
    print("    %d segments archived under load" % n)


@test
def test_wal_get_round_trip_and_missing_is_silent():
    seg = ctx.last
    out = os.path.join(ctx.dir, "work", "got-" + seg)
    t0 = time.monotonic()
    agent("wal-get", "--target", TARGET, "--prefetch", "0", seg, out, check_rc=0)
    dt = time.monotonic() - t0
    check(sha(out) == sha(ctx.copy), "wal-get of %s differs from the pushed file" % seg)
    check(os.path.getsize(out) == 16 << 20, "size %d" % os.path.getsize(out))
    print("    wal-get %s: %.3fs, identical" % (seg, dt))
    for name in ("0000000100000000000000FF", "00000002.history"):
        r = agent("wal-get", "--target", TARGET, name, os.path.join(ctx.dir, "work", "x"))
        check(r.returncode == 1, "missing %s: exit %d" % (name, r.returncode))
        check(r.out == "" and r.err == "", "missing %s is not silent: %r %r" % (name, r.out, r.err))
        check(not os.path.exists(os.path.join(ctx.dir, "work", "x")), "a file appeared for a missing segment")
    # Prefetch: fetching segment 2 pulls the following ones into the spool.
    agent("wal-get", "--target", TARGET, "--prefetch", "3", "000000010000000000000002",
          os.path.join(ctx.dir, "work", "p2"), check_rc=0)
    pf = os.path.join(ctx.dir, "state", "wal", TARGET, "prefetch")
    wait_for(lambda: len([f for f in os.listdir(pf) if not ".tmp." in f]) >= 3, 30, "3 prefetched segments")
    agent("wal-get", "--target", TARGET, "--prefetch", "0", "000000010000000000000003",
          os.path.join(ctx.dir, "work", "p3"), check_rc=0)
    check(not os.path.exists(os.path.join(pf, "000000010000000000000003")), "prefetched file not consumed")
    ref = os.path.join(ctx.dir, "work", "p3b")
    agent("wal-get", "--target", TARGET, "--prefetch", "0", "000000010000000000000003", ref, check_rc=0)
    check(sha(ref) == sha(os.path.join(ctx.dir, "work", "p3")), "prefetched copy differs")


@test
def test_push_twice_same_ok_different_fails_loudly():
    seg = "000000010000000000000002"
    work = os.path.join(ctx.dir, "work", "again")
    os.makedirs(work)
    pg.chown_tree(work)
    path = os.path.join(work, seg)
    agent("wal-get", "--target", TARGET, "--prefetch", "0", seg, path, check_rc=0)
    pg.chown_tree(work)
    agent("wal-push", "--target", TARGET, path, check_rc=0)
    with open(path, "r+b") as f:
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0xFF]))
    r = agent("wal-push", "--target", TARGET, path)
    check(r.returncode == 1, "different content: exit %d (%s)" % (r.returncode, r.err))
    check(seg in r.err and "r1" in r.err and "r2" in r.err and "different content" in r.err,
          "message does not name segment and repositories: %s" % r.err)
    print("    " + r.err.strip()[:240])
    # The archive still holds the original.
    agent("wal-get", "--target", TARGET, "--prefetch", "0", seg, os.path.join(work, "orig"), check_rc=0)


@test
def test_repository_unwritable_then_back_nothing_lost():
    failed0 = int(ctx.pg.psql("SELECT failed_count FROM pg_stat_archiver"))
    r2 = os.path.join(ctx.dir, "r2")
    os.chmod(r2, 0)
    try:
        ctx.pg.pgbench("-T", "3", "-c", "2", "-n")
        ctx.pg.psql("SELECT pg_switch_wal()")
        wait_for(lambda: int(ctx.pg.psql("SELECT failed_count FROM pg_stat_archiver")) > failed0, 60,
                 "archive failures")
        status = os.path.join(ctx.pg.datadir, "pg_wal", "archive_status")
        ready = [f for f in os.listdir(status) if f.endswith(".ready")]
        check(ready, "no .ready file kept while the repository is unwritable")
        js, _ = show()
        check(js["queue"]["ready"] >= 1, "wal-show queue: %s" % js["queue"])
        print("    unwritable: failed_count %s, %d .ready kept, lag %.1fs" % (
            ctx.pg.psql("SELECT failed_count FROM pg_stat_archiver"), len(ready), js["queue"]["archive_lag_s"]))
    finally:
        os.chmod(r2, 0o755)
    last = switch_and_wait(180)
    cur = current_segment()
    for repo in ("r1", "r2"):
        missing = segments_present(repo, "000000010000000000000001", last)
        check(not missing, "%s misses %s after the repository came back" % (repo, missing[:5]))
    check(last <= cur, "archived %s, current %s" % (last, cur))
    js, r = show()
    check(r.returncode == 0, "wal-show after recovery: %s" % r.out)


@test
def test_async_archiver():
    # Switch archive_command to --async and start the archiver.
    cmd = "%s --config %s wal-push --async --target %s %%p" % (AGENT, ctx.conf, TARGET)
    ctx.pg.psql("ALTER SYSTEM SET archive_command = '%s'" % cmd)
    ctx.pg.psql("SELECT pg_reload_conf()")
    kw = pg.as_user_kwargs(dict(os.environ, TM_ENROLL="x"))
    arch = subprocess.Popen([AGENT, "--config", ctx.conf, "wal-archiver", "--target", TARGET,
                             "--pgdata", ctx.pg.datadir, "--workers", "4", "--interval-ms", "50"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
    try:
        ctx.pg.pgbench("-T", "5", "-c", "4", "-j", "2", "-n")
        last = switch_and_wait()
        for repo in ("r1", "r2"):
            missing = segments_present(repo, "000000010000000000000001", last)
            check(not missing, "%s misses %s in async mode" % (repo, missing[:5]))
        done = os.path.join(ctx.dir, "state", "wal", TARGET, "done")
        def counted():
            a = show()[0]["archiver"]
            return a is not None and a["pushed"] + a["already"] > 0 and a["queue"] == 0 and a
        wait_for(counted, 30, "archiver status with pushed segments")
        js, _ = show()
        print("    archiver: pushed %d, already %d, queue %d" % (
            js["archiver"]["pushed"], js["archiver"]["already"], js["archiver"]["queue"]))
        # wal-push --async for a segment the archiver finished: answered from
        # the spool; the sync form confirms with every repository.
        seg = sorted(f for f in os.listdir(done) if len(f) == 24)[-1]
        path = os.path.join(ctx.pg.datadir, "pg_wal", seg)
        check(os.path.exists(path), "%s still in pg_wal (wal_keep_size)" % seg)
        ta = min(timed(lambda: agent("wal-push", "--async", "--target", TARGET, path, check_rc=0))
                 for _ in range(3))
        ts = min(timed(lambda: agent("wal-push", "--target", TARGET, path, check_rc=0))
                 for _ in range(3))
        print("    wal-push of an archived segment: async %.1f ms, sync %.1f ms" % (ta * 1e3, ts * 1e3))
        # The event behind "async is fast": it answers from the spool
        # without touching a repository. With both repositories made
        # unusable (a file where the directory was), --async still says
        # 0 and the sync form fails.
        for repo in ("r1", "r2"):
            d = os.path.join(ctx.dir, repo)
            os.rename(d, d + ".away")
            open(d, "w").close()
        try:
            ra = agent("wal-push", "--async", "--target", TARGET, path)
            rs = agent("wal-push", "--target", TARGET, path)
        finally:
            for repo in ("r1", "r2"):
                d = os.path.join(ctx.dir, repo)
                os.unlink(d)
                os.rename(d + ".away", d)
        check(ra.returncode == 0, "async wal-push of an archived segment needed the "
                                  "repositories: %s" % ra.err)
        check(rs.returncode != 0, "sync wal-push succeeded without repositories")
    finally:
        arch.send_signal(signal.SIGTERM)
        try:
            arch.wait(30)
        except subprocess.TimeoutExpired:
            arch.kill()
            arch.wait()
    # The archiver is a daemon: it must stop on SIGTERM, cleanly.
    check(arch.returncode == 0, "wal-archiver exit %s on SIGTERM" % arch.returncode)


def timed(fn):
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


@test
def test_async_never_acknowledges_local_only():
    # A segment that is not in every repository gets no done marker, and
    # wal-push --async does not acknowledge it.
    r2 = os.path.join(ctx.dir, "r2")
    kw = pg.as_user_kwargs(dict(os.environ, TM_ENROLL="x"))
    os.chmod(r2, 0)
    try:
        ctx.pg.pgbench("-T", "2", "-c", "2", "-n")
        ctx.pg.psql("SELECT pg_switch_wal()")
        status = os.path.join(ctx.pg.datadir, "pg_wal", "archive_status")
        ready = wait_for(lambda: sorted(f[:-6] for f in os.listdir(status) if f.endswith(".ready")), 30,
                         ".ready files")
        arch = subprocess.run([AGENT, "--config", ctx.conf, "wal-archiver", "--target", TARGET,
                               "--pgdata", ctx.pg.datadir, "--once"], capture_output=True, timeout=120, **kw)
        check(arch.returncode != 0, "archiver --once succeeded with a repository unwritable")
        done = os.path.join(ctx.dir, "state", "wal", TARGET, "done")
        for seg in ready:
            check(not os.path.exists(os.path.join(done, seg)), "%s marked done while r2 is unwritable" % seg)
            path = os.path.join(ctx.pg.datadir, "pg_wal", seg)
            check(os.path.exists(path), "%s is .ready, so still in pg_wal" % seg)
            r = agent("wal-push", "--async", "--target", TARGET, path)
            check(r.returncode == 1, "%s acknowledged while only in r1: exit %d" % (seg, r.returncode))
    finally:
        os.chmod(r2, 0o755)
    # kill -9 the archiver mid-way: every done marker still names a segment
    # that is in both repositories.
    ctx.pg.pgbench("-T", "3", "-c", "4", "-j", "2", "-n")
    arch = subprocess.Popen([AGENT, "--config", ctx.conf, "wal-archiver", "--target", TARGET,
                             "--pgdata", ctx.pg.datadir, "--workers", "4"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    time.sleep(0.3)
    arch.kill()
    arch.wait()
    done = os.path.join(ctx.dir, "state", "wal", TARGET, "done")
    for seg in os.listdir(done):
        for repo in ("r1", "r2"):
            d = os.path.join(ctx.dir, repo, TARGET, "log", seg[:8])
            check(os.path.exists(os.path.join(d, seg + ".meta")),
                  "%s marked done but missing in %s" % (seg, repo))
    last = switch_and_wait(180)
    for repo in ("r1", "r2"):
        missing = segments_present(repo, "000000010000000000000001", last)
        check(not missing, "%s misses %s" % (repo, missing[:5]))


@runner.teardown
def teardown():
    if hasattr(ctx, "pg"):
        ctx.pg.stop("immediate")
    if os.environ.get("TM_KEEP") is None and hasattr(ctx, "dir"):
        shutil.rmtree(ctx.dir, ignore_errors=True)


if __name__ == "__main__":
    # PostgreSQL is part of what this tests (deploy/install-deps.sh --test):
    # without it the module fails, it does not pass or skip.
    runner.require(AGENT)
    if shutil.which("pg_config") is None:
        runner.fail_all("no PostgreSQL (pg_config): deploy/install-deps.sh --test")
    runner.run()
