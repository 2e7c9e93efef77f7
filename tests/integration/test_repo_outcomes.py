"""Per-repository outcomes of a backup (issue #11 section 2, the agent side).

Real parts: a PostgreSQL target backed up by a real agent to two
repositories, a posix one ("local") and a real S3 server (Swift + s3api)
given a wrong secret ("remote"). The backup completes in "local" (manifest
last) and leaves nothing in "remote"; the agent names the failing repository,
the operation and the S3 error with what to check, and keeps the error's
class: the wrong secret is "auth" in the backup's outcome and in the
repository probe (before: "unreachable" in the probe, and no outcome).
"""
import json
import os
import shutil
import subprocess
import tempfile

from tmtest.cluster import Cluster, binary
from tmtest.pg import Postgres
from tmtest.runner import check, run, setup, teardown, test, wait_for
from tmtest.s3server import S3Server

BUCKET = "tm-outcomes"

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
"""


class Ctx:
    pass


ctx = Ctx()


@setup
def set_up():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-outcomes-")
    os.chmod(ctx.tmp, 0o755)
    ctx.s3 = S3Server(os.path.join(ctx.tmp, "swift")).start()
    ctx.s3.create_bucket(BUCKET)
    ctx.local = os.path.join(ctx.tmp, "local")
    ctx.key = os.path.join(ctx.tmp, "master.key")
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    ctx.pg = Postgres(ctx.tmp, "src").initdb().start()
    ctx.pg.psql("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g")
    ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=COORD_YAML)
    ctx.c.__enter__()
    ctx.c.env["TM_AK"] = ctx.s3.access_key
    ctx.c.env["TM_BADSK"] = "wrong-" + os.urandom(8).hex()
    pgyaml = (f"postgres:\n  pgdata: {ctx.pg.datadir}\n  host: 127.0.0.1\n  port: {ctx.pg.port}\n"
              f"  user: postgres\n")
    repos = (f"repositories:\n"
             f"  - name: local\n    type: posix\n    path: {ctx.local}\n"
             f"  - name: remote\n    type: s3\n    endpoint: {ctx.s3.endpoint}\n"
             f"    signing_region: us-east-1\n    bucket: {BUCKET}\n"
             f"    access_key: env:TM_AK\n    secret_key: env:TM_BADSK\n"
             f"    max_retries: 1\n    timeout: 20s\n"
             f"encryption:\n  master_key_file: {ctx.key}\n")
    ctx.c.start_coordinator()
    ctx.c.start_agent("db-1", targets=[("pg", "postgres", pgyaml)], extra=repos)
    wait_for(lambda: ctx.c.agents_by_host().get("db-1", {}).get("state") == "online", 30,
             "agent online")


@test
def wrong_secret_fails_one_repository_others_complete():
    r = ctx.c.ctl("backup", "run", "--target", "pg", "--type", "full", "--wait", "--json",
                  timeout=300, check=False)
    task = json.loads(r.stdout)
    res = task.get("result") or {}
    bid = res.get("backup_id")
    log = ctx.c.agents["db-1"].output()
    check(bid, f"the backup exists where it is complete: {r.stdout}\n{r.stderr}\n{log[-3000:]}")
    check(os.path.exists(os.path.join(ctx.local, "pg", "backup", bid, "manifest")),
          "manifest in the healthy posix repository")
    keys = ctx.s3.list_keys(BUCKET, "pg/")
    check(keys == [], f"nothing of the backup in the repository that refused it: {keys[:5]}")
    # The agent names the repository, the operation, the server's answer and
    # what to check; the secret itself never appears.
    check("repository remote: put data key record: " in log, f"names repository and operation:\n"
                                                             f"{log[-3000:]}")
    check("SignatureDoesNotMatch" in log and "check the access key and secret key" in log,
          f"the S3 error and the hint:\n{log[-3000:]}")
    check(ctx.c.env["TM_BADSK"] not in log, "the secret is not logged")
    outcomes = res.get("repository_outcomes")
    if outcomes is not None:  # shown once the CLI prints them (coordinator side)
        by = {o["repository"]: o for o in outcomes}
        check(by["local"]["ok"] and not by["remote"]["ok"], f"outcomes: {outcomes}")
        check(by["remote"]["error_class"] == "auth", f"the wrong secret is auth: {outcomes}")
    print(f"  task {task['id']} {task['state']}: {task.get('error') or ''}"[:300])


@test
def probe_says_auth_not_unreachable():
    log = wait_for(lambda: (lambda s: s if "event=repository_failed repository=remote" in s
                            else None)(ctx.c.agents["db-1"].output()), 60,
                   "the probe reports the remote repository")
    line = [ln for ln in log.splitlines() if "event=repository_failed repository=remote" in ln][0]
    print("  " + line[:300])
    check("class=auth" in line and "SignatureDoesNotMatch" in line,
          f"the probe keeps the class of a wrong secret: {line}")


@test
def wal_push_needs_every_repository():
    wal = os.path.join(ctx.pg.datadir, "pg_wal")
    seg = sorted(n for n in os.listdir(wal) if len(n) == 24)[0]
    src = os.path.join(ctx.tmp, seg)
    shutil.copyfile(os.path.join(wal, seg), src)
    conf = os.path.join(ctx.c.dir, "agents", "db-1", "agent.yaml")
    r = subprocess.run([binary("tidemark-agent"), "--config", conf, "wal-push", "--target", "pg",
                        src], capture_output=True, text=True, timeout=120, env=ctx.c.env)
    print(f"  wal-push exit {r.returncode}: {r.stderr.strip()[:300]}")
    check(r.returncode != 0, f"wal-push fails while one repository cannot take the segment: "
                             f"{r.stdout}\n{r.stderr}")
    check("remote" in r.stderr and "403" in r.stderr and "secret key" in r.stderr,
          f"the message names the failing repository and why: {r.stderr}")


@teardown
def tear_down():
    ctx.c.__exit__(None, None, None)
    ctx.pg.stop("immediate")
    ctx.s3.stop()
    shutil.rmtree(ctx.tmp, ignore_errors=True)


if __name__ == "__main__":
    run()
