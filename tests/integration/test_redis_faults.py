"""Redis snapshot faults end to end: a coordinator (alerts to a webhook every
second), an agent serving two real redis-servers, a posix repository.

- client-output-buffer-limit during SYNC: the agent asks for the RDB only
  (REPLCONF rdb-only 1), so Redis 7 feeds no write stream to its link and the
  limit has nothing to count: 4 MB written during a slowed transfer, with a
  256 kB hard limit, and the snapshot succeeds with every key. This is the
  protection, measured; a link the server does close mid-transfer (CLIENT
  KILL TYPE replica, what the limit does to a replica that takes the stream)
  is a clear, retried error ("closed the replica link"), backup_failed fires
  at the webhook naming the target, and the next snapshot resolves it;
- BGSAVE fallback: a server whose config renames SYNC away (and whose ACL
  user has exactly the fallback's rules) is backed up by BGSAVE + LASTSAVE +
  the file named by CONFIG GET dir/dbfilename, recorded as method=bgsave, and
  `tidemark-agent restore --start` gives the same dataset digest.
"""
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

from tmtest.alertmanager import WebhookReceiver
from tmtest.cluster import Cluster, binary, free_port
from tmtest.redis import Redis, Resp, dataset_digest, gen_password, mixed_dataset
from tmtest.runner import check, run, setup, teardown, test, wait_for

USER = "tmbackup"
SYNC_ACL = "-@all +sync +replconf"  # README-acl.md
BGSAVE_ACL = "-@all +replconf +bgsave +lastsave +config|get +info"  # README-acl.md, fallback


class Ctx:
    pass


ctx = Ctx()


def coord_yaml(hook_url):
    return f"""tasks:
  lease: 4s
  max_attempts: 2
  retry_backoff: 500ms
  poll_max: 5s
alerts:
  evaluate_every: 1s
  repeat_interval: 1h
  sinks:
    - name: hook
      kind: webhook
      url: {hook_url}
policies:
  - name: cache
    match:
      kind: redis
    schedule:
      full: "0 3 1 1 *"
      incremental: ""
      snapshot: ""
"""


def redis_yaml(r, method):
    return (f"redis:\n  host: 127.0.0.1\n  port: {r.port}\n  user: {USER}\n"
            f"  password_file: {ctx.pass_file}\n  method: {method}\n  timeout: 30s\n")


def hook_events(rule, event, target):
    return [b for b in ctx.hook.bodies("/hook")
            if b and b.get("rule") == rule and b.get("event") == event
            and b.get("target") == target]


def snapshot(target, wait=True):
    args = ["backup", "run", "--target", target, "--type", "snapshot", "--json"]
    r = ctx.c.ctl(*args, *(["--wait"] if wait else []), timeout=300, check=False)
    return r


@setup
def setup():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-redisfault-")
    ctx.repo = os.path.join(ctx.tmp, "repo")
    ctx.key = os.path.join(ctx.tmp, "master.key")
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    ctx.password = gen_password()
    ctx.pass_file = os.path.join(ctx.tmp, "redis.pass")
    with open(os.open(ctx.pass_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(ctx.password + "\n")
    # A transfer slowed to seconds (a delay per key), a tiny replica
    # output buffer limit.
    ctx.slow = Redis(ctx.tmp, "slow", users={USER: (ctx.password, SYNC_ACL)},
                     conf={"repl-diskless-sync": "yes", "repl-diskless-sync-delay": 0,
                           "rdb-key-save-delay": 20000,
                           "client-output-buffer-limit": "replica 256kb 64kb 1"}).start()
    ctx.slow.pipe(mixed_dataset(40, dbs=(0, 1)))
    # SYNC renamed away: the server refuses the replication protocol.
    ctx.nosync = Redis(ctx.tmp, "nosync", users={USER: (ctx.password, BGSAVE_ACL)},
                       conf={"rename-command": 'SYNC ""'}).start()
    ctx.nosync.pipe(mixed_dataset(25, dbs=(0, 3)))
    ctx.hook = WebhookReceiver().__enter__()
    ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=coord_yaml(ctx.hook.url("/hook")))
    ctx.c.__enter__()
    c = ctx.c
    c.start_coordinator()
    repo = (f"repositories:\n  - name: local\n    type: posix\n    path: {ctx.repo}\n"
            f"encryption:\n  master_key_file: {ctx.key}\n")
    ctx.targets = [("slow", "redis", redis_yaml(ctx.slow, "sync")),
                   ("nosync", "redis", redis_yaml(ctx.nosync, "auto"))]
    c.start_agent("db-r", targets=ctx.targets, extra=repo)
    ctx.conf = os.path.join(c.dir, "agents", "db-r", "agent.yaml")
    wait_for(lambda: c.agents_by_host().get("db-r", {}).get("state") == "online", 15,
             "agent online")


@test
def output_buffer_limit_cannot_kill_an_rdb_only_fetch():
    """4 MB of writes while the RDB streams; the limit's hard 256 kB would
    close a replica link that took the write stream."""
    r = snapshot("slow", wait=False)
    tid = json.loads(r.stdout)["id"]
    wait_for(lambda: (ctx.c.ctl_json("task", "show", tid).get("progress") or {})
             .get("bytes_done", 0) > 0, 60, "RDB bytes flowing to the agent", interval=0.05)
    with Resp(ctx.slow.port) as cl:
        for i in range(400):
            cl.call("SET", f"big{i}", "x" * 10000)
    t = wait_for(lambda: (lambda t: t if t.get("state") in ("succeeded", "failed") else None)(
        ctx.c.ctl_json("task", "show", tid)), 120, "snapshot finished")
    check(t["state"] == "succeeded" and t.get("attempt") == 1,
          f"the snapshot succeeded at the first attempt: {t}")
    log = open(ctx.slow.logfile).read()
    check("overcoming of output buffer limits" not in log,
          "Redis closed no client for its output buffer")
    print(f"  4 MB written during the transfer (limit 256 kB): snapshot "
          f"{t['result']['backup_id']} in one attempt, {t['result']['extra'].get('keys')} keys")


@test
def replica_link_closed_mid_transfer_is_retried_and_alerted():
    r = snapshot("slow", wait=False)
    tid = json.loads(r.stdout)["id"]
    stop = threading.Event()
    kills = []

    def killer():
        # Each attempt's link, once RDB bytes of that attempt reached the
        # agent (its progress moved past what the attempt started with).
        seen = {}
        while not stop.is_set():
            t = ctx.c.ctl_json("task", "show", tid)
            a, done = t.get("attempt", 0), (t.get("progress") or {}).get("bytes_done", 0)
            if t.get("state") == "running" and a > len(kills):
                start = seen.setdefault(a, done)
                if done > start or (start == 0 and done > 0):
                    ctx.slow.cli("CLIENT", "KILL", "TYPE", "replica")
                    kills.append(time.monotonic())
            time.sleep(0.05)

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    try:
        t = wait_for(lambda: (lambda t: t if t.get("state") in ("succeeded", "failed") else None)(
            ctx.c.ctl_json("task", "show", tid)), 180, "snapshot finished")
        t_end = time.monotonic()
    finally:
        stop.set()
        th.join(timeout=10)
    print(f"  link closed {len(kills)} times: state={t.get('state')} attempts={t.get('attempt')} "
          f"error={t.get('error')!r}")
    check(t["state"] == "failed" and t.get("attempt") == 2 and len(kills) == 2,
          f"retried once (a retryable error), then failed: {t}")
    check("closed the replica link" in (t.get("error") or ""),
          f"the error says what happened: {t.get('error')}")
    body = wait_for(lambda: hook_events("backup_failed", "firing", "slow"), 60,
                    "backup_failed at the webhook", interval=0.1)[0]
    print(f"  backup_failed delivered {time.monotonic() - t_end:.2f} s after the task failed: "
          f"{body['summary']}")
    left = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(ctx.repo, "slow", "backup"))
            for f in fs if tid in f]
    check(not left, f"nothing of the failed backup visible: {left}")
    # The next snapshot succeeds and the alert resolves.
    r = snapshot("slow")
    check(r.returncode == 0, f"snapshot after the fault: {r.stdout}{r.stderr}")
    wait_for(lambda: hook_events("backup_failed", "resolved", "slow"), 60,
             "backup_failed resolved", interval=0.1)


@test
def bgsave_fallback_backs_up_and_restores():
    want = dataset_digest(ctx.nosync.port)
    before = int(ctx.nosync.cli("LASTSAVE"))
    r = snapshot("nosync")
    check(r.returncode == 0, f"snapshot of a server refusing SYNC: {r.stdout}{r.stderr}")
    res = json.loads(r.stdout)["result"]
    extra = res.get("extra", {})
    check(extra.get("method") == "bgsave" and int(ctx.nosync.cli("LASTSAVE")) > before,
          f"fell back to a new BGSAVE: {extra}")
    log = ctx.c.agents["db-r"].output()
    check("event=sync_refused target=nosync" in log, "the agent said why it fell back")
    d = os.path.join(ctx.tmp, "restored")
    port = free_port()
    p = subprocess.run([binary("tidemark-agent"), "--config", ctx.conf, "restore", "--target",
                        "nosync", "--dir", d, "--backup", res["backup_id"], "--start", "--port",
                        str(port)], capture_output=True, text=True, timeout=300, env=ctx.c.env)
    check(p.returncode == 0, f"restore: {p.stdout}{p.stderr}")
    try:
        got = dataset_digest(port)
    finally:
        subprocess.run(["redis-cli", "-p", str(port), "SHUTDOWN", "NOSAVE"], capture_output=True)
    check(got == want, f"restored digest per database == source: {got} vs {want}")
    print(f"  BGSAVE fallback: {res['backup_id']}, {int(res['bytes'])} bytes, restored with the "
          f"same digest over {sum(k for k, _ in want.values())} keys")


@teardown
def teardown():
    try:
        for s in ("slow", "nosync"):
            if getattr(ctx, s, None) is not None:
                getattr(ctx, s).stop()
        if getattr(ctx, "hook", None) is not None:
            ctx.hook.__exit__(None, None, None)
    finally:
        if getattr(ctx, "c", None) is not None:
            ctx.c.__exit__(None, None, None)
        shutil.rmtree(ctx.tmp, ignore_errors=True)


if __name__ == "__main__":
    run()
