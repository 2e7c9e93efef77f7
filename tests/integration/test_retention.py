"""Retention applied for real: a coordinator whose policies apply the GFS plan
every minute, one agent with two posix repositories ("regions" a and b) and
two targets, one of each engine that ships a log: "pg" (PostgreSQL: fulls,
incrementals, WAL) and "cache" (Redis: snapshots, shipped AOF objects). The
same checks run over both (TARGETS); what only one engine has (incrementals,
an orphan, holds on a chain) is checked on it alone.

Seeding (tests/tools/tm_retention_seed, which links the agent's repository
code and the coordinator's catalog code): 3 years and a month of daily fulls
at 03:00 UTC, a chain of two incrementals every 7th day and yesterday, each
a real backup (sealed manifest with its start WAL, data object, digest list,
key record) in BOTH repositories and a record in the catalog; WAL segments
for the last 40 days, a timeline-2 history file and segment; and one
incremental that exists only in the repositories (its catalog record lost),
built on an old full the plan drops. Holds are set with `tidemarkctl backup
keep` (a full and an incremental), and one is released again (`unkeep`).

Then:
 - the plan equals an independent restic-semantics GFS computed here;
 - `retention apply --wait` fails: the agent refuses, because the repo-only
   incremental stays and its parent is in the drop list; nothing is deleted;
 - with that orphan removed, the coordinator's own schedule applies the plan
   through the agent: exactly the GFS set remains in the catalog and in every
   repository (nothing of a dropped backup is left), holds and the newest
   remain, WAL older than the cutoff backup's start is gone on its timeline
   and newer WAL, history files and other timelines stay, the deletion log
   lists every removed backup with both repositories and a reason, and
   tidemark_retention_deletions_total counts them;
 - the Redis target: 3 years and a month of daily snapshots, each recording
   the shipped AOF position it was taken at (one AOF chain a day, a
   BGREWRITEAOF each night), and 40 days of shipped AOF objects (base + incr
   per chain, gap markers on two chains): the schedule drops exactly the
   snapshots outside the GFS set, and the AOF objects of the chains before
   the cutoff snapshot's (markers included), never one of its chain or
   later (what a restore to any time in the PITR window replays);
 - applying again deletes nothing more.
"""
import calendar
import os
import shutil
import subprocess
import tempfile
import time

from tmtest.cluster import Cluster, binary, free_port
from tmtest.runner import check, run, setup, teardown, test, wait_for

POLICY_YAML = """tasks:
  lease: 10s
  max_attempts: 2
  retry_backoff: 500ms
  poll_max: 5s
policies:
"""
POLICY = """  - name: gfs-{kind}
    match:
      kind: {kind}
    schedule:
      full: "0 3 1 1 *"
      incremental: ""{extra}
      jitter: 0s
    retention:
      keep_daily: 7
      keep_weekly: 4
      keep_monthly: 12
      keep_yearly: 7
      min_count: 1
      pitr_window: 7d
      apply: "* * * * *"
    drill:
      schedule: ""           # no scheduled drills: only retention runs on its own
"""

TARGET = "pg"      # PostgreSQL: fulls, incrementals, WAL
RTARGET = "cache"  # Redis: snapshots, shipped AOF
TARGETS = (TARGET, RTARGET)
DAY = 86400


class Ctx:
    pass


ctx = Ctx()


class B:
    def __init__(self, id, type, finished, parent, wal, full):
        self.id, self.type, self.finished, self.parent = id, type, finished, parent
        self.wal, self.full = wal, full  # start WAL name; the id of its full


def wal_name(tli, segno):
    return f"{tli:08X}{segno >> 8:08X}{segno & 0xFF:08X}"


def bid(t, kind):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t)) + "-" + kind


def gfs(backups, holds, now):
    """restic `forget --keep-daily 7 --keep-weekly 4 --keep-monthly 12
    --keep-yearly 7` over the fulls (or snapshots), plus holds, the newest
    and the PITR anchor (newest finished at or before now - 7d) with their
    fulls, and incrementals exactly with their full."""
    fulls = sorted((b for b in backups if b.type in ("full", "snapshot")),
                   key=lambda b: (b.finished, b.id), reverse=True)
    keep = set()
    for fmt, n in (("%Y-%m-%d", 7), ("%G-W%V", 4), ("%Y-%m", 12), ("%Y", 7)):
        buckets = []
        for b in fulls:
            k = time.strftime(fmt, time.gmtime(b.finished))
            if buckets and buckets[-1] == k:
                continue
            if len(buckets) == n:
                break
            buckets.append(k)
            keep.add(b.id)
    by_id = {b.id: b for b in backups}
    newest = max(backups, key=lambda b: (b.finished, b.id))
    anchor = max((b for b in backups if b.finished <= now - 7 * DAY),
                 key=lambda b: (b.finished, b.id))
    for b in [by_id[h] for h in holds] + [newest, anchor]:
        keep.add(b.full)
    keep |= {b.id for b in backups if b.type == "incremental" and b.full in keep}
    return keep, anchor


def repo_backups(repo, target=TARGET):
    """backup id -> files under it, for every backup dir of target."""
    out = {}
    root = os.path.join(repo, target, "backup")
    for bid_ in os.listdir(root) if os.path.isdir(root) else []:
        files = []
        for dp, _, fs in os.walk(os.path.join(root, bid_)):
            files += fs
        out[bid_] = files
    return out


def repo_manifests(repo, target=TARGET):
    return {b for b, files in repo_backups(repo, target).items() if "manifest" in files}


def repo_key_dirs(repo, target=TARGET):
    root = os.path.join(repo, target, "keys")
    return {d for d in os.listdir(root) if d != "log" and os.listdir(os.path.join(root, d))}


def repo_logs(repo, target=TARGET):
    out = set()
    root = os.path.join(repo, target, "log")
    for dp, _, fs in os.walk(root):
        for f in fs:
            out.add(os.path.relpath(os.path.join(dp, f), root))
    return out


@setup
def setup():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-retention-")
    # Repositories on tmpfs when there is one: seeding writes ~13,000
    # fsync'd objects.
    ctx.rdir = tempfile.mkdtemp(prefix="tm-retention-repos-",
                                dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else ctx.tmp)
    ctx.repos = {"region-a": os.path.join(ctx.rdir, "a"), "region-b": os.path.join(ctx.rdir, "b")}
    ctx.key = os.path.join(ctx.tmp, "master.key")
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    repo_yaml = "repositories:\n" + "".join(
        f"  - name: {n}\n    region: {n[-1]}\n    type: posix\n    path: {p}\n"
        for n, p in ctx.repos.items()) + f"encryption:\n  master_key_file: {ctx.key}\n"
    ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=POLICY_YAML + POLICY.format(
        kind="postgres", extra="") + POLICY.format(kind="redis", extra='\n      snapshot: ""'))
    ctx.c.__enter__()
    c = ctx.c
    c.start_coordinator()
    # The Redis target's server is not running: retention needs only the
    # repositories (its shipper waits, saying the AOF directory is unknown).
    c.start_agent("db1", targets=[(TARGET, "postgres"),
                                  (RTARGET, "redis", f"redis:\n  host: 127.0.0.1\n"
                                                     f"  port: {free_port()}\n")],
                  extra=repo_yaml)
    wait_for(lambda: c.agents_by_host().get("db1", {}).get("state") == "online", 15,
             "agent online")

    # The history: daily fulls for 3 years and a month, up to yesterday.
    now = time.time()
    today = int(now) // DAY * DAY
    days = 3 * 365 + 30
    seg = 2
    backups, script = [], []

    def add(kind, t, parent, full):
        nonlocal seg
        b = B(bid(t, kind), kind, t, parent, wal_name(1, seg), full)
        seg += 4
        backups.append(b)
        return b

    for d in range(days):
        day = today - (days - d) * DAY
        f = add("full", day + 3 * 3600, None, None)
        f.full = f.id
        if d % 7 == 0 or d == days - 1:
            i1 = add("incremental", day + 4 * 3600, f.id, f.id)
            add("incremental", day + 5 * 3600, i1.id, f.id)
    for b in backups:
        script.append(f"backup {TARGET} {b.id} {b.type} {b.parent or '-'} {b.finished - 600} "
                      f"{b.finished} {b.wal} both")
    # An incremental the catalog lost, built on an old full the plan drops.
    ctx.orphan_parent = [b for b in backups if b.type == "full"][30]
    ctx.orphan = bid(ctx.orphan_parent.finished + 3 * 3600, "incremental")
    script.append(f"backup {TARGET} {ctx.orphan} incremental {ctx.orphan_parent.id} "
                  f"{ctx.orphan_parent.finished + 3 * 3600 - 600} "
                  f"{ctx.orphan_parent.finished + 3 * 3600} {ctx.orphan_parent.wal} repo")
    # WAL: two segments from each backup's start, for the last 40 days.
    recent = [b for b in backups if b.finished >= today - 40 * DAY]
    ctx.wal = []
    for b in recent:
        s = int(b.wal[8:16], 16) * 256 + int(b.wal[16:], 16)
        for k in (0, 1):
            ctx.wal.append(f"00000001/{wal_name(1, s + k)}")
    ctx.wal += ["00000002/00000002.history", f"00000002/{wal_name(2, 5)}"]
    script += [f"wal {TARGET} {w}" for w in ctx.wal]
    # The Redis target: a snapshot a day at 03:00, taken in that day's AOF
    # chain (a rewrite at 02:00 starts chain k+1 on day k), recording the
    # shipped position; AOF objects (base + incr) of the last 40 days' chains,
    # and gap markers on two of them (one before the cutoff, one after).
    rbackups = []
    for d in range(days):
        day = today - (days - d) * DAY
        t = day + 3 * 3600
        b = B(bid(t, "snapshot"), "snapshot", t, None, None, None)
        b.full = b.id
        b.chain = d + 1
        b.pos = f"{d + 1:010d}:1i{d + 1:08d}-0000000000000000-{day + 2 * 3600:010d}-{t - 60:010d}"
        rbackups.append(b)
        script.append(f"backup {RTARGET} {b.id} snapshot - {t - 60} {t} {b.pos} both")
    ctx.aof = []
    for d in range(days - 40, days):
        c_, day = d + 1, today - (days - d) * DAY
        ctx.aof += [f"{c_:010d}/0r{c_:08d}-0000000000000000-{day + 7200:010d}-{day + 7200:010d}",
                    f"{c_:010d}/1i{c_:08d}-0000000000000000-{day + 7200:010d}-{day + DAY:010d}"]
        if d in (days - 38, days - 3):
            ctx.aof.append(f"{c_:010d}/0g{c_:08d}-0000000000000000-0000000000-0000000000")
    script += [f"wal {RTARGET} {a}" for a in ctx.aof]
    agent_yaml = os.path.join(c.dir, "agents", "db1", "agent.yaml")
    t0 = time.monotonic()
    # Seeded with the coordinator stopped: its policy applies retention every
    # minute, and a run over a half-seeded catalog (before the orphan below
    # exists, which makes the agent refuse every apply) would delete backups
    # the tests then look for. The agent stays up and reconnects.
    c.coordinator.stop()
    r = subprocess.run([binary("tm_retention_seed"), agent_yaml, os.path.join(c.dir, "catalog.db")],
                       input="\n".join(script) + "\n", capture_output=True, text=True, timeout=600,
                       env=c.env)
    check(r.returncode == 0, f"seeding: {r.stdout}\n{r.stderr}")
    c.start_coordinator()
    wait_for(lambda: c.agents_by_host().get("db1", {}).get("state") == "online", 30,
             "agent online again")
    print(f"  {r.stdout.strip()} in {time.monotonic() - t0:.1f} s "
          f"({len([b for b in backups if b.type == 'full'])} fulls, two repositories)")
    ctx.backups = backups
    ctx.by_id = {b.id: b for b in backups}
    ctx.rbackups = rbackups
    ctx.rby_id = {b.id: b for b in rbackups}
    ctx.seeded = {TARGET: backups, RTARGET: rbackups}


@test
def holds():
    c = ctx.c
    fulls = [b for b in ctx.backups if b.type == "full"]
    incs = [b for b in ctx.backups if b.type == "incremental"]
    ctx.hold_full = fulls[100].id
    ctx.hold_inc = [b for b in incs if b.finished > fulls[140].finished][0].id
    released = fulls[200].id
    for h in (ctx.hold_full, ctx.hold_inc, released):
        doc = c.ctl_json("backup", "keep", h)
        check(doc["keep"] is True and doc["id"] == h, f"held: {doc}")
    doc = c.ctl_json("backup", "unkeep", released)
    check(doc["keep"] is False, f"released: {doc}")
    check(c.ctl_json("backup", "show", ctx.hold_full)["keep"] is True, "show says held")
    r = c.ctl("backup", "keep", "20000101T000000Z-full", check=False)
    check(r.returncode == 1 and "no backup" in r.stderr, f"unknown backup: {r.returncode} {r.stderr}")
    r = c.ctl("backup", "keep", check=False)
    check(r.returncode == 2, "keep without an id is a usage error")
    for args in (("backup", "keep", "--help"), ("retention", "apply", "--help"),
                 ("retention", "log", "--help"), ("retention", "plan", "--help")):
        r = c.ctl(*args)
        check("Usage:" in r.stdout, f"{' '.join(args)}: {r.stdout}")
    ctx.holds = [ctx.hold_full, ctx.hold_inc]
    # Holds on the Redis target are not set: its first scheduled apply may
    # run before this test (nothing makes the agent refuse it, as the
    # orphan does for pg), and holds are the coordinator's, not an engine's.
    ctx.target_holds = {TARGET: ctx.holds, RTARGET: []}
    ctx.keeps, ctx.anchors = {}, {}
    for t in TARGETS:
        ctx.keeps[t], ctx.anchors[t] = gfs(ctx.seeded[t], ctx.target_holds[t], time.time())
    ctx.keep, ctx.anchor = ctx.keeps[TARGET], ctx.anchors[TARGET]


@test
def plan_is_the_gfs_set():
    for target in TARGETS:
        doc = ctx.c.ctl_json("retention", "plan", "--target", target)
        tgt = doc["plans"][0]["plan"]["targets"][0]
        kept = {b["id"] for b in tgt["backups"] if b["action"] == "keep"}
        want, anchor = ctx.keeps[target], ctx.anchors[target]
        check(kept == want, f"{target}: plan keeps the GFS set: extra {sorted(kept - want)[:5]}, "
                            f"missing {sorted(want - kept)[:5]}")
        check(tgt["log_cutoff_id"] == anchor.id, f"{target}: log cutoff {tgt['log_cutoff_id']} "
                                                 f"is the PITR anchor {anchor.id}")
        print(f"  {target} plan: keep {len(kept)} of {len(ctx.seeded[target])}, "
              f"log cutoff {anchor.id}")


@test
def agent_refuses_to_orphan_an_incremental():
    c = ctx.c
    before = {n: repo_manifests(p) for n, p in ctx.repos.items()}
    r = c.ctl("retention", "apply", "--target", TARGET, "--wait", "--wait-timeout", "120",
              check=False, timeout=150)
    check(r.returncode == 1, f"apply --wait fails: {r.returncode}\n{r.stdout}\n{r.stderr}")
    tasks = [t for t in c.ctl_json("tasks", "list", "--target", TARGET) if t["kind"] == "expire"]
    failed = [t for t in tasks if t["state"] == "failed"]
    check(failed, f"a failed EXPIRE task: {tasks}")
    err = failed[0].get("error", "")
    refused = failed[0]["expire"]["refused"]
    check(len(refused) == 2 and all(ctx.orphan in x for x in refused),
          f"refused in both repositories: {refused}")
    check(f"{ctx.orphan_parent.id} is the parent of {ctx.orphan}" in err,
          f"the refusal names the parent and the incremental that stays: {err}")
    after = {n: repo_manifests(p) for n, p in ctx.repos.items()}
    check(after == before, "nothing deleted in any repository")
    check(len(after["region-a"]) == len(ctx.backups) + 1, "every seeded backup still there")
    cat = {b["id"] for b in c.ctl_json("backups", "list", "--target", TARGET)}
    check(cat == set(ctx.by_id), "catalog unchanged")
    # The operator deals with the orphan (here: it goes).
    for p in ctx.repos.values():
        shutil.rmtree(os.path.join(p, TARGET, "backup", ctx.orphan))
        shutil.rmtree(os.path.join(p, TARGET, "keys", ctx.orphan))


def scheduled_success(target):
    """The scheduled EXPIRE of target that succeeded and deleted: the plan
    is applied every minute, so a slow run (ASan) can see a later one that
    found nothing left to drop."""
    done = [t for t in ctx.c.ctl_json("tasks", "list", "--target", target)
            if t["kind"] == "expire" and t["requested_by"] == "schedule"
            and t["state"] == "succeeded"]
    return max(done, key=lambda t: len((t.get("expire") or {}).get("drop") or []), default=None)


def logs_gone(target, anchor):
    """(log rels retention must delete, the first kept) for target's cutoff."""
    if target == TARGET:
        gone = [w for w in ctx.wal if w.startswith("00000001/") and w.split("/")[1] < anchor.wal]
        return gone, f"00000001/{anchor.wal}"
    # Redis: every object of a chain before the cutoff snapshot's chain.
    gone = [a for a in ctx.aof if int(a.split("/")[0]) < anchor.chain]
    return gone, min(a for a in ctx.aof if a not in gone)


@test
def schedule_applies_retention_in_every_repository():
    c = ctx.c
    total = 0
    for target in TARGETS:
        t = wait_for(lambda: scheduled_success(target), 150,
                     f"an EXPIRE task of {target} by the schedule that succeeded", interval=1)
        seeded = ctx.seeded[target]
        by_id = {b.id: b for b in seeded}
        now = time.time()
        keep, anchor = gfs(seeded, ctx.target_holds[target], now)
        check(keep == ctx.keeps[target] and anchor.id == ctx.anchors[target].id,
              f"{target}: the GFS set did not move meanwhile")
        dropped = set(by_id) - keep
        total += len(dropped)
        cat = {b["id"] for b in c.ctl_json("backups", "list", "--target", target)}
        check(cat == keep, f"{target}: catalog holds exactly the GFS set ({len(cat)} vs {len(keep)})")
        gone, first_kept = logs_gone(target, anchor)
        logs_all = ctx.wal if target == TARGET else ctx.aof
        check(0 < len(gone) < len(logs_all), f"{target}: the cutoff splits the log "
                                             f"({len(gone)} of {len(logs_all)} go)")
        for name, p in ctx.repos.items():
            got = repo_backups(p, target)
            check(set(got) == keep, f"{target} {name}: exactly the GFS set of backup dirs "
                                    f"(extra {sorted(set(got) - keep)[:3]})")
            check(all("manifest" in f for f in got.values()),
                  f"{target} {name}: every kept backup complete")
            check(repo_key_dirs(p, target) == keep,
                  f"{target} {name}: key records of dropped backups are gone")
            logs = repo_logs(p, target)
            for w in logs_all:
                for f in (w, w + ".meta"):
                    check((f in logs) != (w in gone), f"{target} {name}: {f} "
                          f"{'deleted' if w in gone else 'kept'} (cutoff {anchor.id})")
        for h in ctx.target_holds[target] + [max(seeded, key=lambda b: b.finished).id]:
            check(h in cat, f"{target}: held/newest {h} kept")
        ex = t["expire"]
        check(set(ex["drop"]) == dropped and ex["log_cutoff_id"] == anchor.id,
              f"{target}: the task carried the plan: {len(ex['drop'])} drops, "
              f"cutoff {ex['log_cutoff_id']}")
        for rr in ex["repositories"]:
            check(rr["backups"] == len(dropped) and rr["log_files"] == len(gone) and
                  rr["log_first_kept"] == first_kept,
                  f"{target}: per-repository report: {rr} (want {len(dropped)} backups, "
                  f"{len(gone)} logs, first kept {first_kept})")
        check(sorted(r["repository"] for r in ex["repositories"]) == ["region-a", "region-b"],
              f"{target}: both repositories reported")
        print(f"  {target}: scheduled EXPIRE {t['id']}: dropped {len(dropped)}, kept {len(keep)}, "
              f"{len(gone)} log objects; per repository {ex['repositories']}")
        log = c.ctl_json("retention", "log", "--target", target, "--limit", "100000")
        check({d["backup_id"] for d in log} == dropped,
              f"{target}: deletion log lists every removed backup ({len(log)} vs {len(dropped)})")
        check(all(sorted(d["repositories"]) == ["region-a", "region-b"] and d["reason"] and
                  d["task_id"] == t["id"] for d in log),
              f"{target}: repositories, reason, task: {log[:2]}")
        text = c.ctl("retention", "log", "--target", target, "--limit", "3").stdout
        check("REASON" in text and len(text.strip().splitlines()) == 4, f"text log: {text}")
        check(f"event=backup_deleted target={target} backup={sorted(dropped)[0]}" in
              c.coordinator.output(), f"{target}: a log line per deletion")
    m = c.metrics()
    check(f"tidemark_retention_deletions_total {total}" in m,
          f"tidemark_retention_deletions_total counts the deletions of both targets ({total})")


@test
def applying_again_deletes_nothing_more():
    c = ctx.c
    for target in TARGETS:
        before = {n: (repo_manifests(p, target), repo_logs(p, target))
                  for n, p in ctx.repos.items()}
        r = c.ctl("retention", "apply", "--target", target, "--wait", "--wait-timeout", "120",
                  timeout=150, check=False)
        # A scheduled run may be the open one: either way it must succeed.
        check(r.returncode == 0, f"{target}: second apply succeeds: {r.stdout}\n{r.stderr}")
        after = {n: (repo_manifests(p, target), repo_logs(p, target))
                 for n, p in ctx.repos.items()}
        check(after == before, f"{target}: nothing more deleted")
        cat = {b["id"] for b in c.ctl_json("backups", "list", "--target", target)}
        check(cat == ctx.keeps[target], f"{target}: catalog still the GFS set")


@teardown
def teardown():
    try:
        # Raises when a daemon ended badly (crash, sanitizer report, no stop).
        ctx.c.__exit__(None, None, None)
    finally:
        shutil.rmtree(ctx.rdir, ignore_errors=True)
        shutil.rmtree(ctx.tmp, ignore_errors=True)


if __name__ == "__main__":
    run()
