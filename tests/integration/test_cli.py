"""The command line tried as a new on-call engineer would (issue #17 §4),
against a real coordinator, an agent serving a real redis-server, and two
posix repositories in two regions.

- `replication check --wait` says what it found per repository, which copies
  it queued to repair a gap (followed to their end), and the verdict after
  them: an object removed from one region is reported missing, copied back,
  and the check ends "every required repository holds every item" (exit 0);
  an item no repository holds is reported as not repairable;
  --json carries the same;
- `tidemark-agent repo ls` and a local `restore` work from the repository
  configuration alone: no enrollment token in the environment;
- a restore through the coordinator (`restore --wait`, table output) shows
  its timings, not only under --json;
- `--wait` on a terminal (a pty) shows a live progress line on stderr and
  prints nothing there when piped; Ctrl-C stops the waiting with exit 130
  and says how to follow or cancel the task, which goes on;
- every tidemarkctl command's --help exits 0 and shows an example, and the
  exit codes are documented in `tidemarkctl --help` and docs/CLI.md."""
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time

from tmtest.cluster import Cluster, binary
from tmtest.redis import Redis, mixed_dataset
from tmtest.runner import check, run, setup, teardown, test, wait_for

SRC = os.environ.get("TM_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))


class Ctx:
    pass


ctx = Ctx()

COORD_YAML = """tasks:
  lease: 10s
  max_attempts: 1
  retry_backoff: 500ms
  poll_max: 5s
policies:
  - name: cache
    match:
      kind: redis
    schedule:
      snapshot: ""
      jitter: 0s
    replication:
      repositories: [eu, us]
      min_regions: 2
      check: "0 0 1 1 *"
      lag_threshold: 1h
"""


def repo_yaml():
    return (f"repositories:\n"
            f"  - name: eu\n    type: posix\n    path: {ctx.eu}\n    region: eu-west\n"
            f"  - name: us\n    type: posix\n    path: {ctx.us}\n    region: us-east\n"
            f"encryption:\n  master_key_file: {ctx.key}\n")


def agent_cli(*args, env=None, timeout=120):
    return subprocess.run([binary("tidemark-agent"), "--config", ctx.conf, *args],
                          capture_output=True, text=True, timeout=timeout, env=env or ctx.c.env)


@setup
def setup_cluster():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-cli-")
    ctx.eu, ctx.us = os.path.join(ctx.tmp, "eu"), os.path.join(ctx.tmp, "us")
    ctx.key = os.path.join(ctx.tmp, "master.key")
    ctx.restores = os.path.join(ctx.tmp, "restores")
    os.makedirs(ctx.restores)
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    ctx.redis = Redis(ctx.tmp, "src", conf={"repl-diskless-sync-delay": 0}).start()
    ctx.redis.pipe(mixed_dataset(30, dbs=(0, 2)))
    ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=COORD_YAML)
    ctx.c.__enter__()
    ctx.c.start_coordinator()
    ctx.c.start_agent("db-1", targets=[("cache", "redis",
                                        f"redis:\n  host: 127.0.0.1\n  port: {ctx.redis.port}\n")],
                      extra=repo_yaml() + f"restore_roots:\n  - {ctx.restores}\n")
    ctx.conf = os.path.join(ctx.c.dir, "agents", "db-1", "agent.yaml")
    wait_for(lambda: ctx.c.agents_by_host().get("db-1", {}).get("state") == "online", 15,
             "agent online")
    r = ctx.c.ctl("backup", "run", "--target", "cache", "--type", "snapshot", "--wait", "--json",
                  timeout=300)
    ctx.backup = json.loads(r.stdout)["result"]["backup_id"]


@teardown
def teardown_all():
    if getattr(ctx, "c", None) is not None:
        ctx.c.__exit__(None, None, None)
    if getattr(ctx, "redis", None) is not None:
        ctx.redis.stop()
    shutil.rmtree(ctx.tmp, ignore_errors=True)


def settle():
    """Wait until no task of the target is queued or running: the checks the
    coordinator queues by itself (after a backup, after a copy) end first.
    One check is queued at a time, so a check asked for while one is queued
    is that one, and it may have started before the damage a case makes."""
    wait_for(lambda: not [t for t in ctx.c.ctl_json("tasks", "list", "--target", "cache")
                          if t["state"] in ("queued", "running")], 60, "no task of cache left")


@test
def replication_check_wait_reports_found_repaired_and_after():
    settle()
    # One object of the backup gone from the us region.
    bdir = os.path.join(ctx.us, "cache", "backup", ctx.backup)
    objs = sorted(os.path.join(d, f) for d, _, fs in os.walk(bdir) for f in fs if f != "manifest")
    check(objs, f"the backup has objects besides its manifest: {os.listdir(bdir)}")
    os.unlink(objs[0])
    r = ctx.c.ctl("replication", "check", "--target", "cache", "--wait", check=False, timeout=300)
    out = r.stdout
    check(r.returncode == 0, f"exit 0 once repaired: {r.returncode}\n{out}\n{r.stderr}")
    check(re.search(r"^found:\n(?:  .*\n)*  us +us-east +gap +1 missing", out, re.M),
          f"found: the us repository misses one item:\n{out}")
    check(re.search(r"^repair:\n  copy task-\S+ eu -> us: 1 backups, 0 log files: succeeded", out, re.M),
          f"repair: the copy from eu to us, followed to its end:\n{out}")
    check(re.search(r"^now:\n(?:  .*\n)*  us +us-east +ok", out, re.M), f"now: us is ok:\n{out}")
    check("every required repository holds every item" in out, f"the verdict:\n{out}")
    check(os.path.exists(objs[0]), "the object is back in us")
    # --json: the same story for a script; nothing missing now.
    j = json.loads(ctx.c.ctl("replication", "check", "--target", "cache", "--wait", "--json",
                             timeout=300).stdout)
    check(j["ok"] is True and j["check"]["state"] == "succeeded" and j["copies"] == []
          and {s["repository"]: s["state"] for s in j["found"]} == {"eu": "ok", "us": "ok"},
          f"--json: {j}")


@test
def replication_check_wait_says_what_it_cannot_repair():
    settle()
    bdir = os.path.join(ctx.eu, "cache", "backup", ctx.backup)
    obj = sorted(os.path.join(d, f) for d, _, fs in os.walk(bdir) for f in fs if f != "manifest")[0]
    rel = os.path.relpath(obj, ctx.eu)
    with open(obj, "rb") as f:
        good = f.read()
    for repo in (ctx.eu, ctx.us):
        os.unlink(os.path.join(repo, rel))
    try:
        r = ctx.c.ctl("replication", "check", "--target", "cache", "--wait", check=False, timeout=300)
        out = r.stdout
        check(r.returncode == 0, f"the check ran: {r.returncode}\n{out}{r.stderr}")
        check(re.search(r"^  eu +eu-west +gap +1 missing", out, re.M)
              and re.search(r"^  us +us-east +gap +1 missing", out, re.M), f"both gaps found:\n{out}")
        check("repair: no copy could be queued" in out and "NOT every required repository" in out,
              f"says it cannot repair:\n{out}")
        check(re.search(r"^  us +us-east +gap +UNRESOLVED: no repository holds a good copy", out, re.M),
              f"now: why, per repository:\n{out}")
    finally:
        for repo in (ctx.eu, ctx.us):
            with open(os.path.join(repo, rel), "wb") as f:
                f.write(good)
    ctx.c.ctl("replication", "check", "--target", "cache", "--wait", timeout=300)


@test
def repository_commands_and_local_restore_need_no_enrollment_token():
    env = {k: v for k, v in ctx.c.env.items() if k != "TM_ENROLL"}
    r = agent_cli("repo", "ls", env=env)
    check(r.returncode == 0 and ctx.backup in r.stdout,
          f"repo ls without the token lists the backup: {r.returncode}\n{r.stdout}{r.stderr}")
    d = os.path.join(ctx.tmp, "local-restore")
    r = agent_cli("restore", "--target", "cache", "--dir", d, env=env, timeout=300)
    check(r.returncode == 0 and os.path.exists(os.path.join(d, "dump.rdb")),
          f"local restore without the token: {r.returncode}\n{r.stdout}{r.stderr}")
    # The daemon still needs it: the check says which key and why.
    r = subprocess.run([binary("tidemark-agent"), "--config", ctx.conf, "--check-config"],
                       capture_output=True, text=True, env=env, timeout=30)
    check(r.returncode == 2 and "enrollment_token" in r.stderr and "TM_ENROLL" in r.stderr,
          f"--check-config names the missing token: {r.returncode} {r.stderr}")


@test
def restore_wait_table_shows_timings():
    d = os.path.join(ctx.restores, "via-coordinator")
    r = ctx.c.ctl("restore", "--target", "cache", "--dir", d, "--to", "db-1", "--wait",
                  timeout=300, check=False)
    check(r.returncode == 0, f"restore: {r.returncode}\n{r.stdout}{r.stderr}")
    m = re.search(r"^timings: +(.*)$", r.stdout, re.M)
    check(m is not None and "total" in m.group(1) and re.search(r"\d+\.\d\d s", m.group(1)),
          f"a timings line with the total:\n{r.stdout}")


def pty_run(argv, env, until, timeout=30, interrupt=False):
    """argv on a pseudo-terminal (stdout and stderr both the pty): what it
    printed and its exit code. With interrupt, SIGINT once until(text)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(argv[0], argv, env)
    out, sent, deadline = b"", False, time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if interrupt and not sent and until(out.decode(errors="replace")):
            os.kill(pid, signal.SIGINT)
            sent = True
    else:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return out.decode(errors="replace"), os.waitstatus_to_exitcode(status)


@test
def wait_shows_progress_on_a_terminal_only_and_ctrl_c_leaves_the_task():
    # A task that cannot start: its agent is stopped, so it stays queued.
    ctx.c.agents["db-1"].stop()
    r = ctx.c.ctl("backup", "run", "--target", "cache", "--type", "snapshot", "--json")
    tid = json.loads(r.stdout)["id"]
    argv = [binary("tidemarkctl"), "--url", ctx.c.url, "task", "wait", tid]
    out, code = pty_run(argv, ctx.c.env, until=lambda t: f"{tid} queued" in t, interrupt=True)
    check(f"{tid} queued" in out, f"a progress line on the terminal:\n{out!r}")
    check(code == 130, f"Ctrl-C: exit 130, got {code}\n{out}")
    check("goes on" in out and f"tidemarkctl task wait {tid}" in out
          and f"tidemarkctl task cancel {tid}" in out, f"says how to follow or cancel:\n{out}")
    t = ctx.c.ctl_json("task", "show", tid)
    check(t["state"] == "queued", f"the task goes on: {t['state']}")
    # Piped: stderr stays quiet while waiting.
    p = subprocess.Popen(argv + ["--wait-timeout", "2"], env=ctx.c.env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    so, se = p.communicate(timeout=30)
    check(p.returncode == 1 and "queued" not in se.split("\n")[0] and "--wait-timeout" in se,
          f"piped: no progress line, only the timeout: {p.returncode} {se!r}")
    ctx.c.ctl("task", "cancel", tid)
    ctx.c.start_agent("db-1", targets=[("cache", "redis",
                                        f"redis:\n  host: 127.0.0.1\n  port: {ctx.redis.port}\n")],
                      extra=repo_yaml() + f"restore_roots:\n  - {ctx.restores}\n")


@test
def every_command_help_has_an_example_and_exit_codes_are_documented():
    top = subprocess.run([binary("tidemarkctl"), "--help"], capture_output=True, text=True)
    check(top.returncode == 0, "tidemarkctl --help exits 0")
    check(re.search(r"Exit codes: 0 ok, 1 failure, 2 usage, 3 partial.*130", top.stdout, re.S),
          f"exit codes in --help:\n{top.stdout[-400:]}")
    cmds = set()
    section = top.stdout.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    for line in section.splitlines():
        m = re.match(r"  ([a-z]+)(?: ([a-z|]+))?\s", line)
        if m and not line.startswith("  -"):
            for sub in (m.group(2) or "").split("|"):
                cmds.add((m.group(1),) + ((sub,) if sub and sub.isalpha() and m.group(1) not in
                                          ("status",) else ()))
    check(len(cmds) >= 15, f"commands found in --help: {sorted(cmds)}")
    missing = []
    for cmd in sorted(cmds):
        r = subprocess.run([binary("tidemarkctl"), *cmd, "--help"], capture_output=True, text=True)
        if r.returncode != 0 or "Example" not in r.stdout:
            missing.append(f"{' '.join(cmd)} (exit {r.returncode})")
    check(not missing, f"--help without an example: {missing}")
    with open(os.path.join(SRC, "docs", "CLI.md")) as f:
        doc = f.read()
    for prog in ("tidemarkctl", "tidemark-agent", "tidemark-coordinator"):
        check(prog in doc, f"docs/CLI.md covers {prog}")
    check("130" in doc and "partial" in doc, "docs/CLI.md lists every exit code")


if __name__ == "__main__":
    run()
