"""The Redis engine end to end: a coordinator, an agent serving a real
redis-server (logged in as the minimal ACL user of README-acl.md), two posix
repositories, and a staging agent.

- snapshot: `backup run --type snapshot` -> an RDB fetched over SYNC,
  checked, stored in both repositories; the result records the RDB version
  and the keys per database;
- restore: `tidemark-agent restore --dir --start` and `tidemarkctl restore
  --dir --to staging` into new servers: the same keys per database and the
  same digest over every key, value and expire time (computed from per-type
  reads, not DEBUG DIGEST) as the source at the snapshot; a directory that
  already holds a dump.rdb or that a running server uses is refused and left
  alone; a restore to a time is refused loudly (the window is
  snapshot-only);
- drill on the staging agent: PASSED with RTO/RPO in `tidemarkctl drills`;
- AOF shipping and PITR: batches of writes, one per second, with a
  BGREWRITEAOF among them; restores to a random batch before and after the
  rewrite have exactly the batches up to it; a drill to a time passes; the
  shipping agent SIGKILLed and restarted loses nothing;
- faults: a wrong password is a final (not retried) failure; the server
  killed mid-SYNC is a retryable failure and leaves the previous backup
  intact."""
import json
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time

from tmtest.cluster import Cluster, binary, free_port
from tmtest.redis import Redis, Resp, dataset_digest, gen_password, mixed_dataset


def port_open(port):
    import socket
    with socket.socket() as so:
        so.settimeout(1)
        return so.connect_ex(("127.0.0.1", port)) == 0
from tmtest.runner import check, run, setup, teardown, test, wait_for

USER = "tmbackup"
SYNC_ACL = "-@all +sync +replconf"  # README-acl.md, the normal path, exactly
DBS = (0, 2, 3)

TASKS_YAML = """tasks:
  lease: 4s
  max_attempts: 2
  retry_backoff: 500ms
  poll_max: 5s
"""


class Ctx:
    pass


ctx = Ctx()


def agent_cli(*args, timeout=300):
    return subprocess.run([binary("tidemark-agent"), "--config", ctx.conf, *args],
                          capture_output=True, text=True, timeout=timeout, env=ctx.c.env)


def repo_yaml():
    return (f"repositories:\n"
            f"  - name: region-a\n    type: posix\n    path: {ctx.repo_a}\n"
            f"  - name: region-b\n    type: posix\n    path: {ctx.repo_b}\n"
            f"encryption:\n  master_key_file: {ctx.key}\n")


def redis_yaml(port, pass_file, extra=""):
    return (f"redis:\n  host: 127.0.0.1\n  port: {port}\n  user: {USER}\n"
            f"  password_file: {pass_file}\n  method: sync\n  timeout: 30s\n{extra}")


class Writer:
    """Writes keys of every type, with and without TTLs, in several
    databases, logging (db, key, command, time) after each acknowledged
    write."""

    def __init__(self, port, seed):
        self.port = port
        self.rnd = random.Random(seed)
        self.log = []
        self.n = 0

    def write(self, count):
        with Resp(self.port) as c:
            for _ in range(count):
                db = self.rnd.choice(DBS)
                i = self.n
                self.n += 1
                kind = i % 7
                k = f"w:{kind}:{i}"
                if kind == 0:
                    cmd = ("SET", k, f"v{i}-" + "x" * self.rnd.randint(0, 300))
                elif kind == 1:
                    cmd = ("HSET", k, "a", i, "b", "y" * (i % 50))
                elif kind == 2:
                    cmd = ("RPUSH", k, *[f"e{j}" for j in range(1 + i % 20)])
                elif kind == 3:
                    cmd = ("SADD", k, *range(i % 30 + 1))
                elif kind == 4:
                    cmd = ("ZADD", k, *sum(([j / 3, f"m{j}"] for j in range(1 + i % 9)), []))
                elif kind == 5:
                    cmd = ("XADD", k, "*", "f", i)
                else:
                    cmd = ("SET", k, i, "PX", 3600_000 + i)  # a TTL that survives the test
                c.call("SELECT", db)
                c.call(*cmd)
                self.log.append((db, k, cmd[0], time.time()))


def snapshot(expect_ok=True):
    r = ctx.c.ctl("backup", "run", "--target", "cache", "--type", "snapshot", "--wait", "--json",
                  timeout=300, check=False)
    if expect_ok:
        check(r.returncode == 0, f"snapshot: {r.stdout}\n{r.stderr}\n"
                                 + ctx.c.agents["db-1"].output()[-3000:])
    return r


@setup
def setup_cluster():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-redisit-")
    ctx.repo_a = os.path.join(ctx.tmp, "repo-a")
    ctx.repo_b = os.path.join(ctx.tmp, "repo-b")
    ctx.key = os.path.join(ctx.tmp, "master.key")
    ctx.drills = os.path.join(ctx.tmp, "drills")
    ctx.staging = os.path.join(ctx.tmp, "staging-data")
    os.makedirs(ctx.drills)
    os.makedirs(ctx.staging)
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    ctx.password = gen_password()
    ctx.pass_file = os.path.join(ctx.tmp, "redis.pass")
    with open(os.open(ctx.pass_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(ctx.password + "\n")
    ctx.src = Redis(ctx.tmp, "src", users={USER: (ctx.password, SYNC_ACL)},
                    conf={"repl-diskless-sync-delay": 0}).start()
    ctx.src.pipe(mixed_dataset(15, dbs=DBS))
    ctx.writer = Writer(ctx.src.port, seed=13)
    ctx.writer.write(300)
    # The AOF source: multi-part AOF with #TS: annotations, shipped by the
    # agent (aof_dir configured: the minimal ACL has no CONFIG GET).
    ctx.aof = Redis(ctx.tmp, "aofsrc", users={USER: (ctx.password, SYNC_ACL)},
                    conf={"appendonly": "yes", "aof-timestamp-enabled": "yes",
                          "appenddirname": "appendonlydir", "appendfsync": "always"}).start()

    # Multi-part AOF without "#TS:" annotations: shipped, but the window is
    # snapshot-only (status says so; a drill to a time fails loudly).
    ctx.notime = Redis(ctx.tmp, "notime", users={USER: (ctx.password, SYNC_ACL)},
                       conf={"appendonly": "yes", "aof-timestamp-enabled": "no",
                             "appenddirname": "appendonlydir"}).start()

    ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=TASKS_YAML + f"""policies:
  - name: cache
    match:
      kind: redis
    schedule:
      full: "0 3 1 1 *"
      incremental: ""
      snapshot: ""
    drill:
      schedule: ""
      dir: {ctx.drills}
""")
    ctx.c.__enter__()
    c = ctx.c
    c.start_coordinator()
    aof_extra = (f"  aof_dir: {os.path.join(ctx.aof.dir, 'appendonlydir')}\n"
                 f"  ship_interval: 200ms\n")
    ctx.db1 = dict(targets=[("cache", "redis", redis_yaml(ctx.src.port, ctx.pass_file)),
                            ("events", "redis", redis_yaml(ctx.aof.port, ctx.pass_file, aof_extra)),
                            ("notime", "redis", redis_yaml(
                                ctx.notime.port, ctx.pass_file,
                                f"  aof_dir: {os.path.join(ctx.notime.dir, 'appendonlydir')}\n"
                                f"  ship_interval: 200ms\n"))],
                   extra=repo_yaml())
    c.start_agent("db-1", **ctx.db1)
    roots = "".join(f"  - {d}\n" for d in (ctx.drills, ctx.staging))
    c.start_agent("staging", targets=[], extra=repo_yaml() + "restore_roots:\n" + roots)
    ctx.conf = os.path.join(c.dir, "agents", "db-1", "agent.yaml")
    wait_for(lambda: all(c.agents_by_host().get(h, {}).get("state") == "online"
                         for h in ("db-1", "staging")), 15, "agents online")
    ctx.servers = []


@teardown
def teardown_all():
    for s in getattr(ctx, "servers", []):
        if s.proc is None:
            # Started by the agent's restore --start, not by this test: no
            # process handle, so ask it to stop and see the port close.
            s._cli_raw(["SHUTDOWN", "NOSAVE"], check=False)
            wait_for(lambda: not port_open(s.port), 30, f"restored server on {s.port} stopped")
        else:
            s.stop()
    for name in ("src", "aof", "notime"):
        if getattr(ctx, name, None) is not None:
            getattr(ctx, name).stop()
    if getattr(ctx, "c", None) is not None:
        ctx.c.__exit__(None, None, None)
    shutil.rmtree(ctx.tmp, ignore_errors=True)


@test
def snapshot_to_both_repositories():
    ctx.want = dataset_digest(ctx.src.port)
    ctx.want_keyspace = ctx.src.keyspace()
    t0 = time.monotonic()
    task = json.loads(snapshot().stdout)
    dt = time.monotonic() - t0
    res = task["result"]
    ctx.snap = res["backup_id"]
    extra = res.get("extra", {})
    print(f"  snapshot {ctx.snap}: {dt:.2f} s wall, {int(res['bytes']) / 1e6:.2f} MB RDB, "
          f"{int(res['stored_bytes']) / 1e6:.2f} MB stored, {extra}")
    check(ctx.snap.endswith("-snapshot"), f"backup id: {ctx.snap}")
    oks = sorted(o["repository"] for o in res.get("repository_outcomes", []) if o.get("ok"))
    check(oks == ["region-a", "region-b"], f"complete in both repositories: {res}")
    check(extra.get("method") == "sync" and extra.get("rdb_version") in ("9", "10", "11"),
          f"fetched over SYNC, RDB version recorded: {extra}")
    for db, (keys, _) in ctx.want_keyspace.items():
        check(extra.get(f"keys_db{db}") == str(keys),
              f"keys of db{db} recorded {extra.get(f'keys_db{db}')} == INFO keyspace {keys}")
    for repo in (ctx.repo_a, ctx.repo_b):
        check(os.path.exists(os.path.join(repo, "cache", "backup", ctx.snap, "manifest")),
              f"manifest in {repo}")
    bl = {b["id"]: b for b in ctx.c.ctl_json("backups", "list", "--target", "cache")}
    check(ctx.snap in bl, f"the coordinator lists the snapshot: {list(bl)}")
    # Writes after the snapshot: a restore of it must not show them.
    ctx.writer.write(50)


def restored_server(name, dir, port):
    r = Redis.__new__(Redis)
    r.base, r.name, r.dir, r.port, r.proc = ctx.tmp, name, dir, port, None
    r.logfile = os.path.join(dir, "redis.log")
    return r


@test
def local_restore_with_start_gives_the_same_dataset():
    d = os.path.join(ctx.tmp, "local-restore")
    port = free_port()
    r = agent_cli("restore", "--target", "cache", "--dir", d, "--backup", ctx.snap, "--start",
                  "--port", str(port))
    check(r.returncode == 0, f"restore: {r.returncode}\n{r.stdout}\n{r.stderr}")
    print("  " + r.stdout.strip().replace("\n", "\n  "))
    got = dataset_digest(port)
    check(got == ctx.want, f"restored digest per db == source at the snapshot: {got} vs {ctx.want}")
    srv = restored_server("local", d, port)
    check(srv.keyspace() == ctx.want_keyspace, f"INFO keyspace {srv.keyspace()}")
    # The directory is now a running server's: a second restore is refused.
    r2 = agent_cli("restore", "--target", "cache", "--dir", d, "--backup", ctx.snap)
    check(r2.returncode != 0 and ("in use" in r2.stderr or "already holds" in r2.stderr),
          f"restore into a live server's directory refused: {r2.stderr}")
    check(dataset_digest(port) == ctx.want, "the live server is untouched")
    srv.cli("SHUTDOWN", "NOSAVE")
    # Stopped, but its dump.rdb is still there: refused, not overwritten.
    before = os.stat(os.path.join(d, "dump.rdb"))
    r3 = agent_cli("restore", "--target", "cache", "--dir", d)
    after = os.stat(os.path.join(d, "dump.rdb"))
    check(r3.returncode != 0 and "already holds" in r3.stderr and before.st_mtime_ns ==
          after.st_mtime_ns, f"an existing dump.rdb is refused and kept: {r3.stderr}")


def shipped(repo, target):
    """{rel: (first_ts, last_ts)} of the AOF objects complete (sidecar there)."""
    out = {}
    root = os.path.join(repo, target, "log")
    for dp, _, fs in os.walk(root):
        for f in fs:
            if f.endswith(".meta"):
                rel = os.path.relpath(os.path.join(dp, f[:-5]), root)
                parts = os.path.basename(rel).split("-")
                out[rel] = (int(parts[2]), int(parts[3]))
    return out


def next_second():
    time.sleep(1.02 - time.time() % 1)
    return int(time.time())


def write_batches(c, first, last, batches, between=None):
    for k in range(first, last + 1):
        sec = next_second()
        for db in (0, 2):
            c.call("SELECT", db)
            c.call("SET", f"b{k}:s", f"v{k}")
            c.call("HSET", f"b{k}:h", "k", k)
            c.call("RPUSH", f"b{k}:l", k, k + 1)
            c.call("ZADD", f"b{k}:z", k, "m")
            c.call("SET", f"b{k}:ttl", k, "EX", 86400)
        if int(time.time()) != sec:
            raise AssertionError("a batch spilled into the next second; machine too slow")
        batches.append(sec)
        if between is not None:
            between(k)


def pitr_check(k, total, batches, label):
    t = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(batches[k - 1]))
    d = os.path.join(ctx.tmp, f"pitr-{label}-{k}")
    port = free_port()
    r = agent_cli("restore", "--target", "events", "--dir", d, "--time", t, "--start",
                  "--port", str(port))
    check(r.returncode == 0, f"PITR to batch {k} ({t}): {r.stdout}\n{r.stderr}")
    srv = restored_server(f"pitr-{k}", d, port)
    try:
        for db in (0, 2):
            for j in range(1, total + 1):
                got = srv.cli("GET", f"b{j}:s", db=db)
                want = f"v{j}" if j <= k else ""
                check(got == want, f"PITR to batch {k}: db{db} b{j}:s = {got!r}, want {want!r}")
            check(int(srv.cli("DBSIZE", db=db)) == 5 * k,
                  f"PITR to batch {k}: db{db} holds exactly {5 * k} keys")
            ttl = int(srv.cli("TTL", f"b{k}:ttl", db=db))
            check(0 < ttl <= 86400, f"the TTL came back: {ttl}")
    finally:
        srv.cli("SHUTDOWN", "NOSAVE")
    print(f"  PITR to batch {k} of {total} ({t}, {label}): exactly batches 1..{k}")
    return t


def wait_shipped(sec):
    """Everything written up to second sec is shipped: a write in a later
    second (db 5, which the checks do not look at) is, and the tail ships in
    order."""
    sec = max(sec + 1, next_second())
    with Resp(ctx.aof.port) as c:
        c.call("SELECT", 5)
        c.call("SET", "sentinel", sec)
    wait_for(lambda: any(v[1] >= sec for v in shipped(ctx.repo_a, "events").values())
             and any(v[1] >= sec for v in shipped(ctx.repo_b, "events").values()),
             60, "everything up to the last batch shipped to both repositories")


@test
def pitr_across_a_rewrite_gives_exactly_the_writes_up_to_the_time():
    """Batches of writes, each in its own second, logged with that second; a
    BGREWRITEAOF in the middle (a new base and incr file while shipping).
    A restore to the second of batch k has batches 1..k and none after."""
    batches = []

    def between(k):
        if k == 4:
            ctx.aof.cli("BGREWRITEAOF")
            wait_for(lambda: ctx.aof.info("persistence").get("aof_rewrite_in_progress") == "0"
                     and ctx.aof.info("persistence").get("aof_rewrite_scheduled") == "0",
                     60, "rewrite done")
    with Resp(ctx.aof.port) as c:
        write_batches(c, 1, 8, batches, between)
    ctx.batches = batches
    wait_shipped(batches[-1])
    objs = shipped(ctx.repo_a, "events")
    chains = sorted({rel.split("/")[0] for rel in objs})
    print(f"  shipped {len(objs)} AOF objects in chains {chains}")
    check(len(chains) >= 2, f"the rewrite started a new chain: {sorted(objs)}")
    rnd = random.Random()
    picks = [rnd.randint(1, 3), rnd.randint(5, 7)]  # one before the rewrite, one after
    for k in picks:
        pitr_check(k, 8, batches, "rewrite")
    # A drill to a time on the staging agent: the same AOF, from the
    # repositories alone; RPO against the time asked for.
    t = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(batches[5]))
    r = ctx.c.ctl("drill", "run", "--target", "events", "--to", "staging", "--time", t, "--wait",
                  "--json", timeout=300, check=False)
    check(r.returncode == 0, f"PITR drill: {r.stdout}\n{r.stderr}\n"
                             + ctx.c.agents["staging"].output()[-3000:])
    d = json.loads(r.stdout)
    names = {x["name"]: x for x in d.get("checks", [])}
    check(d.get("ok") is True and names.get("dbsize:db2", {}).get("ok") is True,
          f"PITR drill passed with per-database checks: {d}")
    print(f"  PITR drill to {t}: RTO {d.get('rto_seconds')} s, RPO {d.get('rpo_seconds')} s")


@test
def agent_killed_mid_ship_and_restarted_loses_nothing():
    """SIGKILL the shipping agent between batches, write more while it is
    down, start it again: it resumes from its saved position and a restore
    to the last batch has every batch (runs after the PITR test: batches
    9..12 follow its 1..8)."""
    batches = list(ctx.batches)
    with Resp(ctx.aof.port) as c:
        def between(k):
            if k == 10:
                ctx.c.agents["db-1"].kill9()
        write_batches(c, 9, 12, batches, between)
    ctx.c.start_agent("db-1", **ctx.db1)
    wait_shipped(batches[-1])
    pitr_check(12, 12, batches, "after-kill")


@test
def restore_to_a_time_fails_loudly_while_snapshot_only():
    r = agent_cli("restore", "--target", "cache", "--dir", os.path.join(ctx.tmp, "pitr"),
                  "--time", time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime()))
    check(r.returncode != 0 and "snapshot-only" in r.stderr, f"PITR refused: {r.stderr}")
    check(not os.path.exists(os.path.join(ctx.tmp, "pitr", "dump.rdb")), "nothing written")


def status_rows():
    return {t["name"]: t for t in ctx.c.ctl_json("status")["target_status"]}


@test
def status_and_drill_say_snapshot_only_without_timestamps():
    """aof-timestamp-enabled no: the agent warns, `status` (text and --json)
    and /metrics say the window is snapshot-only, a target with "#TS:"
    annotations says point-in-time, and a drill to a time fails loudly."""
    ctx.notime.cli("SET", "k1", "v1")
    ctx.notime.cli("HSET", "h1", "f", "v")
    wait_for(lambda: status_rows().get("notime", {}).get("window") == "snapshot-only", 30,
             "status --json says notime is snapshot-only")
    rows = status_rows()
    why = rows["notime"].get("snapshot_only") or ""
    check("aof-timestamp-enabled" in why, f"the reason names the setting: {why!r}")
    wait_for(lambda: status_rows().get("events", {}).get("window") == "point-in-time", 30,
             "a target with timestamps is point-in-time")
    check(status_rows()["events"].get("snapshot_only") is None,
          f"no reason for events: {status_rows()['events']}")
    text = ctx.c.ctl("status").stdout
    check("window:       snapshot-only: aof-timestamp-enabled is no" in text,
          f"the text status says so: {text}")
    m = ctx.c.metrics()
    check('tidemark_pitr_snapshot_only{target="notime"} 1' in m
          and 'tidemark_pitr_snapshot_only{target="events"} 0' in m,
          "the metric: " + "\n".join(l for l in m.splitlines() if "snapshot_only" in l))
    log = ctx.c.agents["db-1"].output()
    check("event=aof_no_timestamps target=notime" in log, "the agent warned")
    # A snapshot to drill from, then a drill to a time: it fails, and says why.
    r = ctx.c.ctl("backup", "run", "--target", "notime", "--type", "snapshot", "--wait", "--json",
                  timeout=300, check=False)
    check(r.returncode == 0, f"snapshot of notime: {r.stdout}\n{r.stderr}")
    t = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())
    r = ctx.c.ctl("drill", "run", "--target", "notime", "--to", "staging", "--time", t, "--wait",
                  "--json", timeout=300, check=False)
    out = r.stdout + r.stderr
    check(r.returncode != 0 and "snapshot-only" in out,
          f"a PITR drill on a snapshot-only target fails loudly: rc={r.returncode} {out}")
    print(f"  notime: status window=snapshot-only ({why}); PITR drill refused: "
          f"{out.strip().splitlines()[-1][:200] if out.strip() else ''}")
    check(os.listdir(ctx.drills) == [], f"drill dir removed: {os.listdir(ctx.drills)}")


@test
def status_window_runs_on_through_the_shipped_aof():
    """The coordinator hears the shipped AOF's ranges (one run across the
    rewrite) and a snapshot's window runs on through them: RPO stays at
    seconds while writes go on, not the time since the snapshot."""
    wait_shipped(int(time.time()))
    r = ctx.c.ctl("backup", "run", "--target", "events", "--type", "snapshot", "--wait", "--json",
                  timeout=300, check=False)
    check(r.returncode == 0, f"snapshot of events: {r.stdout}\n{r.stderr}")
    time.sleep(5)
    rpo = []

    def fresh():
        with Resp(ctx.aof.port) as c:
            c.call("SELECT", 5)
            c.call("SET", "tick", time.time())
        row = status_rows()["events"]
        rpo.append(row.get("rpo_seconds"))
        return row.get("rpo_seconds") is not None and row["rpo_seconds"] <= 3
    wait_for(fresh, 30, "RPO of seconds from the shipped AOF")
    w = ctx.c.ctl_json("pitr", "window", "--target", "events")
    print(f"  events: RPO {rpo[-1]} s (5 s after its snapshot); pitr window ranges: "
          f"{[(x.get('repository'), x.get('first'), x.get('last')) for x in w.get('ranges', [])]}")
    per_repo = {}
    for x in w.get("ranges", []):
        per_repo.setdefault(x.get("repository"), []).append(x)
    check(sorted(per_repo) == ["region-a", "region-b"] and
          all(len(v) == 1 for v in per_repo.values()),
          f"one run per repository across the rewrite (no hole): {w.get('ranges')}")


@test
def coordinator_restore_to_staging():
    d = os.path.join(ctx.staging, "r1")
    port = free_port()
    r = ctx.c.ctl("restore", "--target", "cache", "--dir", d, "--to", "staging", "--start",
                  "--port", str(port), "--wait", "--json", timeout=300, check=False)
    check(r.returncode == 0, f"restore task: {r.stdout}\n{r.stderr}\n"
                             + ctx.c.agents["staging"].output()[-3000:])
    ctx.servers.append(restored_server("r1", d, port))
    check(dataset_digest(port) == ctx.want, "staging restore == source at the snapshot")
    # Outside restore_roots: refused by the agent.
    r = ctx.c.ctl("restore", "--target", "cache", "--dir", os.path.join(ctx.tmp, "elsewhere"),
                  "--to", "staging", "--wait", "--json", timeout=120, check=False)
    check(r.returncode != 0 and not os.path.exists(os.path.join(ctx.tmp, "elsewhere", "dump.rdb")),
          f"restore outside restore_roots refused: {r.stdout}")


@test
def drill_passes_with_rto_and_rpo():
    r = ctx.c.ctl("drill", "run", "--target", "cache", "--to", "staging", "--wait", "--json",
                  timeout=300, check=False)
    check(r.returncode == 0, f"drill: {r.stdout}\n{r.stderr}\n"
                             + ctx.c.agents["staging"].output()[-3000:])
    d = json.loads(r.stdout)
    check(d.get("ok") is True and d.get("rto_seconds") is not None, f"drill passed: {d}")
    names = {x["name"]: x for x in d.get("checks", [])}
    for db in DBS:
        check(names.get(f"dbsize:db{db}", {}).get("ok") is True, f"dbsize:db{db}: {names}")
        check(names.get(f"sample:db{db}", {}).get("ok") is True, f"sample:db{db}: {names}")
    check(names.get("keyspace", {}).get("ok") is True, f"keyspace check: {names}")
    listed = ctx.c.ctl_json("drills", "list", "--target", "cache")
    check(any(x.get("ok") for x in listed), f"drills list shows it: {listed}")
    print(f"  drill: RTO {d.get('rto_seconds')} s, RPO {d.get('rpo_seconds')} s, "
          f"phases {d.get('phases')}")
    check(os.listdir(ctx.drills) == [], f"drill dir removed: {os.listdir(ctx.drills)}")


@test
def wrong_password_is_final():
    with open(ctx.pass_file, "w") as f:
        f.write("not-the-password\n")
    try:
        # The agent reads its config at start: a one-shot agent config would
        # be needed to change the secret; instead change the user's password
        # on the server, which is what a rotation gone wrong looks like.
        ctx.src.cli("ACL", "SETUSER", USER, "resetpass", ">other-" + ctx.password)
        r = snapshot(expect_ok=False)
        check(r.returncode != 0, f"snapshot with a wrong password fails: {r.stdout}")
        t = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
        err = json.dumps(t)
        check("WRONGPASS" in err or "auth" in err.lower(), f"the error names the cause: {err}")
        check(t.get("state", "").lower() == "failed" and t.get("attempt") == 1,
              f"final: failed without another attempt: {t}")
    finally:
        with open(ctx.pass_file, "w") as f:
            f.write(ctx.password + "\n")
        ctx.src.cli("ACL", "SETUSER", USER, "resetpass", ">" + ctx.password)


@test
def server_killed_mid_sync_is_retryable_and_keeps_the_previous_backup():
    # A slow transfer (rdb-key-save-delay: 10 ms a key, ~500 keys), killed
    # with SIGKILL while the RDB streams.
    big = Redis(ctx.tmp, "big", users={USER: (ctx.password, SYNC_ACL)},
                conf={"repl-diskless-sync-delay": 0, "repl-diskless-sync": "yes",
                      "rdb-key-save-delay": 10000}).start()
    try:
        big.pipe(mixed_dataset(80, dbs=(0,), prefix="b"))
        # A second agent serves it (target "big"), writing to the same
        # repositories as the first.
        conf2 = ctx.c.agent_yaml("db-kill", targets=[("big", "redis",
                                                     redis_yaml(big.port, ctx.pass_file))],
                                 extra=repo_yaml())
        p = subprocess.Popen([binary("tidemark-agent"), "-c", conf2], env=ctx.c.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: ctx.c.agents_by_host().get("db-kill", {}).get("state") == "online",
                     15, "db-kill online")
            r = ctx.c.ctl("backup", "run", "--target", "big", "--type", "snapshot", "--json")
            tid = json.loads(r.stdout)["id"]

            def streaming():
                t = ctx.c.ctl_json("task", "show", tid)
                return (t.get("progress") or {}).get("bytes_done", 0) > 0
            # Kill once RDB bytes have reached the agent (the transfer is slowed
            # by rdb-key-save-delay), so the stream breaks in the middle.
            wait_for(streaming, 60, "RDB bytes flowing to the agent")
            big.kill9()
            wait_for(lambda: ctx.c.ctl_json("task", "show", tid).get("state") in
                     ("failed", "FAILED", "succeeded", "SUCCEEDED"), 120, "task finished")
            t = ctx.c.ctl_json("task", "show", tid)
            print(f"  killed mid-SYNC: state={t.get('state')} attempts={t.get('attempt')} "
                  f"error={t.get('error')!r} notes={t.get('notes')}")
            check(t.get("state", "").lower() == "failed", f"the backup failed: {t}")
            check(t.get("attempt") == 2, f"retried (retryable), attempt {t.get('attempt')}: {t}")
            for repo in (ctx.repo_a, ctx.repo_b):
                bdir = os.path.join(repo, "big", "backup")
                left = [os.path.join(dp, f) for dp, _, fs in os.walk(bdir) for f in fs]
                check(left == [], f"no file of the failed backup remains in {repo}: {left}")
                check(os.path.exists(os.path.join(repo, "cache", "backup", ctx.snap, "manifest")),
                      "the previous backup is intact")
        finally:
            p.terminate()
            p.wait(timeout=30)
    finally:
        big.kill9()


if __name__ == "__main__":
    run()
