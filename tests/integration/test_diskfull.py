"""A full disk is a failure, never a success (issue #11 section 1).

Real parts: a 20 MiB tmpfs mounted by the test (CI runs as root) is the
only posix repository of a real PostgreSQL target. A first full backup fits;
then incompressible rows (random bytes from md5 chains, which zstd cannot
shrink) make the next full backup fill the disk. That backup must fail:
`tidemarkctl backup run --wait` exits non-zero, the task's error names the
repository, the path and "No space left on device", backup_failed fires, no
manifest and no listed backup for the attempt, the attempt's partial objects
and temp files are gone (the space is free again), and the previous backup
still verifies and restores to the same content.

Also here (issue #12 section 3): repository directories are created 0700 and
files 0600.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time

from tmtest.cluster import Cluster, binary, free_port
from tmtest.pg import Postgres
from tmtest.runner import check, run, setup, teardown, test, wait_for

COORD_YAML = """tasks:
  lease: 4s
  max_attempts: 1
  retry_backoff: 500ms
  poll_max: 5s
policies:
  - name: pg
    match:
      kind: postgres
    schedule:
      full: "0 3 * * *"
      incremental: ""
      jitter: 0s
alerts:
  evaluate_every: 1s
  repeat_interval: 1h
"""

CHECKSUM_SQL = "SELECT md5(string_agg(md5(b), '' ORDER BY id)) FROM blobs"

# One row = 64 KiB of random bytes: 4096 md5 digests of a random seed chain,
# decoded from hex. STORAGE EXTERNAL keeps TOAST from trying to compress it.
FILL_SQL = """INSERT INTO blobs
SELECT g, (SELECT string_agg(decode(md5(random()::text || g::text || i::text), 'hex'), ''::bytea)
           FROM generate_series(1, 4096) i)
FROM generate_series({lo}, {hi}) g"""


class Ctx:
    pass


ctx = Ctx()


def agent_cli(*args, timeout=300):
    return subprocess.run([binary("tidemark-agent"), "--config", ctx.conf, *args],
                          capture_output=True, text=True, timeout=timeout, env=ctx.c.env)


def used_bytes(path):
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def repo_ids():
    d = os.path.join(ctx.root, "pg", "backup")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def all_files(root):
    out = []
    for dp, dns, fns in os.walk(root):
        out += [os.path.join(dp, n) for n in dns + fns]
    return out


def backup_run():
    return ctx.c.ctl("backup", "run", "--target", "pg", "--type", "full", "--wait", "--json",
                     timeout=600, check=False)


@setup
def setup_and_good_backup():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-diskfull-")
    os.chmod(ctx.tmp, 0o755)
    ctx.repo = os.path.join(ctx.tmp, "repo")
    os.makedirs(ctx.repo)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m,mode=0755", "tmpfs", ctx.repo],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"mount a 20 MiB tmpfs (the test runs as root): {r.stderr}")
    ctx.mounted = True
    # The repository root is a directory below the mount point, so the
    # agent creates it (and its mode can be checked).
    ctx.root = os.path.join(ctx.repo, "tm")
    ctx.key = os.path.join(ctx.tmp, "master.key")
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    ctx.pg = Postgres(ctx.tmp, "src").initdb().start()
    ctx.pg.psql("CREATE TABLE blobs (id int PRIMARY KEY, b bytea)")
    ctx.pg.psql("ALTER TABLE blobs ALTER COLUMN b SET STORAGE EXTERNAL")
    ctx.pg.psql(FILL_SQL.format(lo=1, hi=16))  # 1 MiB
    ctx.pg.psql("CHECKPOINT")
    ctx.sum1 = ctx.pg.psql(CHECKSUM_SQL)

    ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=COORD_YAML)
    ctx.c.__enter__()
    pgyaml = (f"postgres:\n  pgdata: {ctx.pg.datadir}\n  host: 127.0.0.1\n  port: {ctx.pg.port}\n"
              f"  user: postgres\n  parallel: 2\n")
    repo = (f"repositories:\n  - name: small-disk\n    type: posix\n    path: {ctx.root}\n"
            f"encryption:\n  master_key_file: {ctx.key}\n")
    ctx.c.start_coordinator()
    ctx.c.start_agent("db-1", targets=[("pg", "postgres", pgyaml)], extra=repo)
    ctx.conf = os.path.join(ctx.c.dir, "agents", "db-1", "agent.yaml")
    wait_for(lambda: ctx.c.agents_by_host().get("db-1", {}).get("state") == "online", 30,
             "agent online")

    r = backup_run()
    check(r.returncode == 0, f"the first full backup fits on the disk: {r.stdout}\n{r.stderr}\n"
                             + ctx.c.agents["db-1"].output()[-3000:])
    ctx.good = json.loads(r.stdout)["result"]["backup_id"]
    ctx.used_good = used_bytes(ctx.repo)
    print(f"  good backup {ctx.good}: {ctx.used_good / 2**20:.1f} MiB of 20 MiB used")
    check(ctx.used_good < 12 * 2**20, f"room left for the test: {ctx.used_good} bytes used")


@test
def repository_is_private():
    # Issue #12 section 3: 0700 directories, 0600 files (was 0755 / 0644).
    bad = []
    for p in [ctx.root] + all_files(ctx.root):
        mode = os.stat(p).st_mode & 0o777
        want = 0o700 if os.path.isdir(p) else 0o600
        if mode != want:
            bad.append(f"{p}: {oct(mode)}, want {oct(want)}")
    check(not bad, "repository modes:\n" + "\n".join(bad[:10]))


@test
def full_disk_fails_the_backup():
    # 24 MiB of random bytes: the next full backup cannot fit in what is left.
    for lo in range(17, 17 + 384, 64):
        ctx.pg.psql(FILL_SQL.format(lo=lo, hi=lo + 63))
    ctx.pg.psql("CHECKPOINT")
    before = repo_ids()
    t0 = time.monotonic()
    r = backup_run()
    print(f"  the backup that fills the disk ended in {time.monotonic() - t0:.1f} s, "
          f"exit {r.returncode}")
    check(r.returncode != 0, f"`backup run --wait` exits non-zero when the disk fills: "
                             f"{r.stdout}\n{r.stderr}")
    tasks = [t for t in ctx.c.ctl_json("tasks", "list", "--target", "pg")
             if t.get("kind") in ("BACKUP", "backup", "TASK_KIND_BACKUP")]
    tasks.sort(key=lambda t: t.get("created_at", ""))
    last = ctx.c.ctl_json("task", "show", tasks[-1]["id"])
    err = last.get("error", "")
    print(f"  task error: {err[:300]}")
    check("FAILED" in str(last.get("state", "")).upper(), f"task failed: {last}")
    check("small-disk" in err, f"the error names the repository: {err}")
    check(ctx.root in err, f"the error names the path: {err}")
    check("No space left on device" in err, f"the error says the disk is full: {err}")
    outcomes = (last.get("result") or {}).get("repository_outcomes")
    if outcomes is not None:  # shown once the CLI prints them (coordinator side)
        check(len(outcomes) == 1 and not outcomes[0]["ok"]
              and outcomes[0]["error_class"] == "no_space", f"outcome: {outcomes}")

    ids = [b["id"] for b in ctx.c.ctl_json("backups", "list", "--target", "pg")]
    check(ids == [ctx.good], f"only the good backup is listed: {ids}")
    after = repo_ids()
    check(after == before == [ctx.good],
          f"the attempt left no backup directory behind: {before} -> {after}")
    keys = os.listdir(os.path.join(ctx.root, "pg", "keys"))
    check(keys == [ctx.good], f"the attempt left no key record: {keys}")
    tmps = [p for p in all_files(ctx.root) if os.path.basename(p).startswith(".tmp.")]
    check(not tmps, f"no temp files left: {tmps[:5]}")
    used = used_bytes(ctx.repo)
    check(used <= ctx.used_good + 256 * 1024,
          f"the space is free again: {used} bytes used, {ctx.used_good} after the good backup")

    alerts = wait_for(lambda: [a for a in ctx.c.ctl_json("alerts", "list")
                               if a["rule"] == "backup_failed" and a["target"] == "pg"
                               and a["state"] == "firing"], 60, "backup_failed firing")
    check(alerts, "backup_failed fires")


@test
def previous_backup_verifies_and_restores():
    r = agent_cli("repo", "verify")
    check(r.returncode == 0, f"repo verify passes: {r.stdout}\n{r.stderr}")
    rdir = os.path.join(ctx.tmp, "restored")
    port = free_port()
    r = agent_cli("restore", "--target", "pg", "--pgdata", rdir, "--backup", ctx.good,
                  "--immediate", "--start", "--port", str(port))
    check(r.returncode == 0, f"restore of the good backup: {r.stdout}\n{r.stderr}")
    p = Postgres.__new__(Postgres)
    p.base, p.datadir, p.sockdir, p.port = ctx.tmp, rdir, ctx.pg.sockdir, port
    p.logfile = os.path.join(rdir, "tidemark-restore.log")
    p.bin, p.env = ctx.pg.bin, None
    try:
        got = wait_for(lambda: p.psql(CHECKSUM_SQL, check=False), 60, "restored server answers")
        check(got == ctx.sum1, f"restored content {got} == {ctx.sum1} at the good backup")
    finally:
        p.stop("immediate")


@teardown
def tear_down():
    ctx.c.__exit__(None, None, None)
    ctx.pg.stop("immediate")
    if getattr(ctx, "mounted", False):
        subprocess.run(["umount", "-l", ctx.repo], capture_output=True)
    shutil.rmtree(ctx.tmp, ignore_errors=True)


if __name__ == "__main__":
    run()
