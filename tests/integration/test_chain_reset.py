"""A log chain reset reaches a human: a real SQLite database in WAL mode
shipped by the agent daemon every 200 ms into a posix repository (encryption
on), a coordinator evaluating its rules every second with a webhook receiver
as its sink.

A different database is renamed over the target's file behind the agent's
back. The shipper cannot prove continuity, so it starts a new chain from a
fresh base; the agent reports it in its log status (ArchiverStatus
chain_resets, last_chain_reset_ms, chain_reset, chain_reset_from) and the
coordinator:
  - fires log_chain_reset (warning) at the webhook, its summary naming the
    target, why, where the old chain ended and the gap in the window
    (latency printed);
  - counts it in tidemark_log_chain_resets_total{target} (0 before, 1
    after) and not as a shipping failure (tidemark_log_archive_failures_total
    stays, log_shipping_failed stays quiet, status says "ok");
  - shows the last reset in `tidemarkctl status` (text and --json) and lists
    the alert as firing.
A second replacement while the alert fires is a second gap: the alert is
resolved and fires again naming the new old-chain end, and the counter says 2.

The same for a Redis target ("cache", a real redis-server whose multi-part
AOF the agent's own shipper follows): the agent is stopped, a write it never
shipped goes into the followed incr file, its pins are lost and an AOF
rewrite deletes that file; the restarted agent's shipper finds the gap and
starts a new chain at the current base, and log_chain_reset fires for
cache, naming the lost file and where the old chain ended.
"""
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time

from tmtest.alertmanager import WebhookReceiver
from tmtest.cluster import Cluster, binary
from tmtest.redis import Redis
from tmtest.runner import check, run, setup, teardown, test, wait_for


class Ctx:
    pass


ctx = Ctx()

COORD_YAML = """alerts:
  evaluate_every: 1s
  repeat_interval: 1h
  sinks:
    - name: hook
      kind: webhook
      url: {url}
policies:
""" + "".join(f"""  - name: {name}
    match:
      kind: {kind}
    schedule:
      full: "0 3 1 1 *"
      incremental: ""
      snapshot: ""
    rpo_goal: 1h
""" for name, kind in (("files", "sqlite"), ("cache", "redis")))


def new_db(path, rows, tag):
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB)")
    c.execute("BEGIN")
    for i in range(rows):
        c.execute("INSERT INTO t(tag, v) VALUES (?, randomblob(100))", (tag,))
    c.execute("COMMIT")
    c.close()


def write(n=5):
    c = sqlite3.connect(ctx.db, timeout=30, isolation_level=None)
    for _ in range(n):
        c.execute("INSERT INTO t(tag, v) VALUES ('live', randomblob(100))")
    c.close()


def chains(target="app"):
    """Chain directories of complete log objects (a sidecar there)."""
    root = os.path.join(ctx.repo, target, "log")
    out = set()
    for dp, _, fs in os.walk(root):
        if any(f.endswith(".meta") for f in fs):
            out.add(os.path.basename(dp))
    return out


def metric(name, target="app"):
    for line in ctx.c.metrics().splitlines():
        if line.startswith(name + f'{{target="{target}"}}'):
            return float(line.split()[-1])
    return None


def status_row(target="app"):
    doc = ctx.c.ctl_json("status")
    return next(t for t in doc["target_status"] if t["name"] == target)


def hook_events(rule, event, target="app"):
    return [b for b in ctx.hook.bodies("/hook") if b and b.get("rule") == rule
            and b.get("event") == event and b.get("target") == target]


def replace_database(tag):
    """A different database (its own rows) renamed over the target's file."""
    other = ctx.db + ".other"
    new_db(other, 50, tag)
    for side in ("-wal", "-shm"):
        if os.path.exists(ctx.db + side):
            os.unlink(ctx.db + side)
    os.rename(other, ctx.db)
    write()


@setup
def setup_all():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-chainreset-")
    ctx.repo = os.path.join(ctx.tmp, "repo")
    ctx.key = os.path.join(ctx.tmp, "master.key")
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    ctx.db = os.path.join(ctx.tmp, "data", "app.db")
    os.makedirs(os.path.dirname(ctx.db))
    new_db(ctx.db, 100, "first")
    ctx.hook = WebhookReceiver().__enter__()
    ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=COORD_YAML.format(url=ctx.hook.url("/hook")))
    ctx.c.__enter__()
    ctx.c.start_coordinator()
    repo = (f"repositories:\n  - name: local\n    type: posix\n    path: {ctx.repo}\n"
            f"encryption:\n  master_key_file: {ctx.key}\n")
    target = f"sqlite:\n  path: {ctx.db}\n  ship_interval: 200ms\n  busy_timeout: 5s\n"
    ctx.c.start_agent("db-1", targets=[("app", "sqlite", target)], extra=repo)
    write()
    wait_for(lambda: len(chains()) == 1, 60, "the first chain in the repository")
    wait_for(lambda: metric("tidemark_log_chain_resets_total") is not None, 30,
             "the log status reaches the coordinator")

    ctx.redis = Redis(ctx.tmp, "cache", conf={"appendonly": "yes", "aof-timestamp-enabled": "yes",
                                              "appenddirname": "appendonlydir"}).start()
    ctx.aofdir = os.path.join(ctx.redis.dir, "appendonlydir")
    ctx.ryaml = (f"redis:\n  host: 127.0.0.1\n  port: {ctx.redis.port}\n"
                 f"  aof_dir: {ctx.aofdir}\n  ship_interval: 200ms\n")
    ctx.rrepo = repo
    start_redis_agent()
    ctx.redis.cli("SET", "a", "1")
    wait_for(lambda: metric("tidemark_log_chain_resets_total", "cache") == 0, 30,
             "the Redis target's log status reaches the coordinator")


def start_redis_agent():
    ctx.c.start_agent("db-r", targets=[("cache", "redis", ctx.ryaml)], extra=ctx.rrepo)


@teardown
def teardown_all():
    if getattr(ctx, "c", None) is not None:
        ctx.c.__exit__(None, None, None)
    if getattr(ctx, "redis", None) is not None:
        ctx.redis.stop()
    if getattr(ctx, "hook", None) is not None:
        ctx.hook.__exit__(None, None, None)
    shutil.rmtree(ctx.tmp, ignore_errors=True)


@test
def quiet_while_the_chain_goes_on():
    write()
    time.sleep(3)  # three evaluations
    check(metric("tidemark_log_chain_resets_total") == 0, "no reset counted yet")
    check(not hook_events("log_chain_reset", "firing"), "no log_chain_reset yet")
    st = wait_for(lambda: (lambda t: t if t["log_shipping"] == "ok" else None)(status_row()), 30,
                  "status: log shipping ok")
    check(st["last_chain_reset"] is None, f"status: no reset known: {st}")


@test
def replaced_database_fires_log_chain_reset():
    failures = metric("tidemark_log_archive_failures_total")
    before = chains()
    t0 = time.monotonic()
    replace_database("second")
    body = wait_for(lambda: hook_events("log_chain_reset", "firing"), 60,
                    "log_chain_reset at the webhook", interval=0.1)[0]
    print(f"  log_chain_reset delivered {time.monotonic() - t0:.2f} s after the file was replaced")
    summary = body["summary"]
    check(body["target"] == "app" and body["severity"] == "warning", f"body: {body}")
    check(summary.startswith("log chain of app reset at "), f"names the target: {summary}")
    check("replaced" in summary, f"says why: {summary}")
    check("ended at " in summary and "gap" in summary,
          f"where the old chain ended and the gap: {summary}")
    print(f"  summary: {summary}")
    new = wait_for(lambda: chains() - before, 30, "a new chain in the repository")
    check(len(new) == 1, f"one new chain: {sorted(new)}")
    old_chain = sorted(before)[-1]
    check(f"ended at {old_chain}:" in summary.lower(),
          f"the old chain's end is in chain {old_chain}: {summary}")

    wait_for(lambda: metric("tidemark_log_chain_resets_total") == 1, 20,
             "tidemark_log_chain_resets_total{target=\"app\"} == 1")
    last = metric("tidemark_log_last_chain_reset_timestamp_seconds")
    check(last is not None and abs(last - time.time()) < 120, f"when it happened: {last}")
    # A reset is not a shipping failure: shipping goes on from the new base.
    check(metric("tidemark_log_archive_failures_total") == failures,
          f"not counted as a failure ({failures} before)")
    check(not hook_events("log_shipping_failed", "firing"), "log_shipping_failed stays quiet")

    alerts = ctx.c.ctl_json("alerts", "list")
    check(any(a["rule"] == "log_chain_reset" and a["target"] == "app" and a["state"] == "firing"
              for a in alerts), f"listed as firing: {alerts}")
    st = status_row()
    r = st["last_chain_reset"]
    check(r is not None and r["count"] == 1 and "replaced" in r["why"]
          and r["old_chain_end"].lower().startswith(old_chain + ":") and r["at"],
          f"status --json: the last reset: {st}")
    check(st["log_shipping"] == "ok", f"status: shipping ok: {st['log_shipping']}")
    text = ctx.c.ctl("status").stdout
    line = next((ln for ln in text.splitlines() if "chain reset:" in ln), "")
    check("replaced" in line and r["old_chain_end"] in line, f"status text: {line!r}")
    print(f"  status: {line.strip()}")
    ctx.first_end = r["old_chain_end"]


@test
def second_reset_notifies_again():
    before = chains()
    replace_database("third")
    wait_for(lambda: hook_events("log_chain_reset", "resolved"), 60,
             "the first reset's alert resolved", interval=0.1)
    fired = wait_for(lambda: (lambda v: v if len(v) >= 2 else None)(
        hook_events("log_chain_reset", "firing")), 30, "log_chain_reset fires again", interval=0.1)
    summary = fired[-1]["summary"]
    check(ctx.first_end not in summary, f"names the new old-chain end: {summary}")
    new = wait_for(lambda: chains() - before, 30, "another new chain")
    check(f"ended at {sorted(before)[-1]}:" in summary.lower(), f"{summary} vs {sorted(new)}")
    wait_for(lambda: metric("tidemark_log_chain_resets_total") == 2, 20,
             "tidemark_log_chain_resets_total{target=\"app\"} == 2")
    check(status_row()["last_chain_reset"]["count"] == 2, "status counts 2")


@test
def redis_aof_gap_fires_log_chain_reset():
    position = os.path.join(ctx.c.dir, "agents", "db-r", "state", "ship", "cache", "position")
    wait_for(lambda: os.path.exists(position) and chains("cache"), 30, "the AOF shipped")
    before = chains("cache")
    with open(position) as f:
        followed = f.readline().strip().rsplit(":", 1)[0]
    ctx.c.agents["db-r"].stop()
    ctx.redis.cli("SET", "b", "2")  # never shipped
    pins = ctx.aofdir + ".tidemark-pin"
    for f in os.listdir(pins):
        os.unlink(os.path.join(pins, f))
    ctx.redis.cli("BGREWRITEAOF")
    wait_for(lambda: not os.path.exists(os.path.join(ctx.aofdir, followed)), 60,
             f"{followed} deleted by the rewrite")
    t0 = time.monotonic()
    start_redis_agent()
    body = wait_for(lambda: hook_events("log_chain_reset", "firing", "cache"), 60,
                    "log_chain_reset of cache at the webhook", interval=0.1)[0]
    print(f"  cache: log_chain_reset delivered {time.monotonic() - t0:.2f} s after the agent "
          f"restarted: {body['summary']}")
    summary = body["summary"]
    check(body["severity"] == "warning" and summary.startswith("log chain of cache reset at "),
          f"body: {body}")
    check("gap" in summary and followed in summary, f"names the lost file {followed}: {summary}")
    check(f"ended at {sorted(before)[-1]}:" in summary, f"where the old chain ended: {summary}")
    wait_for(lambda: chains("cache") - before, 30, "a new chain at the current base")
    wait_for(lambda: metric("tidemark_log_chain_resets_total", "cache") == 1, 20,
             "tidemark_log_chain_resets_total{target=\"cache\"} == 1")
    check(metric("tidemark_log_chain_resets_total") == 2, "app's count is its own")
    r = status_row("cache")["last_chain_reset"]
    check(r is not None and r["count"] == 1 and followed in r["why"], f"status: {r}")


if __name__ == "__main__":
    run()
