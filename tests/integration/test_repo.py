"""Integration tests of the repository set and `tidemark-agent repo`: one
posix repository plus two buckets ("eu-west", "us-east") of a real S3 server
(Swift + s3api on loopback, started here).

Covers: a >100 MiB object fanned out to all three in one pass, identical
stored bytes everywhere, get round trip; verify with and without the key; a
flipped byte in one copy and a deleted object in one region reported by
repository/object/frame; one unwritable repository (wrong credentials) ->
the others complete, per-repository failure, no manifest there; wrong master
key -> clear error; key rotation; kill -9 mid-put -> no manifest anywhere.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

from tmtest import runner
from tmtest.runner import check, test
from tmtest.s3server import S3Server

BUILD = os.environ.get("TM_BUILD_DIR", "build")
AGENT = os.path.join(BUILD, "agent", "tidemark-agent")
MIB = 1024 * 1024
BUCKETS = {"eu-west": "tm-eu", "us-east": "tm-us"}


class Ctx:
    pass


ctx = Ctx()


def config(name, key_file, old_keys=(), us_secret_env="SK", extra_posix=""):
    lines = [
        "coordinator:",
        "  url: tcp://127.0.0.1:7800",
        "  enrollment_token: env:TM_ENROLL",
        "repositories:",
        "  - name: local",
        "    type: posix",
        "    path: %s" % ctx.posix,
    ]
    for repo, bucket in BUCKETS.items():
        lines += [
            "  - name: %s" % repo,
            "    type: s3",
            "    endpoint: %s" % ctx.s3.endpoint,
            "    signing_region: us-east-1",
            "    bucket: %s" % bucket,
            "    access_key: env:AK",
            "    secret_key: env:%s" % (us_secret_env if repo == "us-east" else "SK"),
            "    part_size: 8MiB",
            "    max_retries: 1",
            "    timeout: 20s",
        ]
    lines += ["encryption:", "  master_key_file: %s" % key_file]
    if old_keys:
        lines.append("  old_master_key_files: [%s]" % ", ".join(old_keys))
    path = os.path.join(ctx.dir, name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def agent(*args, conf=None, check_rc=None, stdin=None, timeout=600):
    argv = [AGENT, "--config", conf or ctx.conf, "repo", *args]
    r = subprocess.run(argv, env=ctx.env, capture_output=True, timeout=timeout, stdin=stdin)
    r.out = r.stdout.decode(errors="replace")
    r.err = r.stderr.decode(errors="replace")
    if check_rc is not None and r.returncode != check_rc:
        raise runner.Failure("repo %s: exit %d, expected %d\nstdout: %s\nstderr: %s" % (
            " ".join(args), r.returncode, check_rc, r.out[-3000:], r.err[-3000:]))
    return r


def js(r):
    """stdout as JSON, or a failure that shows what the command said."""
    try:
        return json.loads(r.out)
    except ValueError:
        raise runner.Failure("not JSON (exit %d)\nstdout: %s\nstderr: %s" % (
            r.returncode, r.out[-2000:], r.err[-4000:]))


def sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(4 * MIB), b""):
            h.update(chunk)
    return h.hexdigest()


def write_mixed(path, size):
    """Mixed compressibility: random blocks and repetitive text."""
    with open(path, "wb") as f:
        left, i = size, 0
        while left > 0:
            n = min(left, MIB)
            f.write(os.urandom(n) if i % 2 else (b"row %08d some text, " % i) * (n // 24 + 1))
            left -= n
            i += 1
    with open(path, "r+b") as f:
        f.truncate(size)
    return sha_file(path)


def s3_get(bucket, key):
    status, _, body = ctx.s3.request("GET", "/%s/%s" % (bucket, key), timeout=120)
    check(status == 200, "GET %s/%s: %s" % (bucket, key, status))
    return body


def s3_put(bucket, key, body):
    status, _, resp = ctx.s3.request("PUT", "/%s/%s" % (bucket, key), body=body, timeout=120)
    check(status == 200, "PUT %s/%s: %s %s" % (bucket, key, status, resp[:200]))


def s3_delete(bucket, key):
    status, _, _ = ctx.s3.request("DELETE", "/%s/%s" % (bucket, key))
    check(status in (200, 204), "DELETE %s/%s: %s" % (bucket, key, status))


def put(target, name, path, backup_id=None, conf=None, rc=0):
    args = ["put", "--json", "--target", target, "--name", name, path]
    if backup_id:
        args[1:1] = ["--backup-id", backup_id]
    r = agent(*args, conf=conf, check_rc=rc)
    return js(r), r


def manifests(target, backup_id):
    """Which repositories hold the manifest (read independently of the C code)."""
    key = "%s/backup/%s/manifest" % (target, backup_id)
    have = []
    if os.path.exists(os.path.join(ctx.posix, key)):
        have.append("local")
    for repo, bucket in BUCKETS.items():
        if key in ctx.s3.list_keys(bucket, "%s/" % target):
            have.append(repo)
    return have


@test
def fanout_100mib_identical_everywhere():
    ctx.big = os.path.join(ctx.dir, "big")
    ctx.big_sha = write_mixed(ctx.big, 100 * MIB + 12345)
    res, _ = put("pg-main", "base/16384/big", ctx.big, backup_id="20260101T000000Z-full")
    check(res["ok"] and all(r["ok"] for r in res["repos"]), res)
    check([r["name"] for r in res["repos"]] == ["local", "eu-west", "us-east"], res)
    ctx.id = res["backup_id"]
    key = "pg-main/backup/%s/data/base/16384/big" % ctx.id
    local = sha_file(os.path.join(ctx.posix, key))
    check(local == res["sha256"], "posix copy sha256 %s != reported %s" % (local, res["sha256"]))
    for bucket in BUCKETS.values():
        remote = hashlib.sha256(s3_get(bucket, key)).hexdigest()
        check(remote == local, "%s copy differs from the posix copy" % bucket)
    check(manifests("pg-main", ctx.id) == ["local", "eu-west", "us-east"], "manifests")
    for repo in ("local", "eu-west", "us-east"):
        out = os.path.join(ctx.dir, "big.out")
        agent("get", "--target", "pg-main", "--backup", ctx.id, "--name", "base/16384/big",
              "--repo", repo, out, check_rc=0)
        check(sha_file(out) == ctx.big_sha, "get from %s: plaintext differs" % repo)
        os.unlink(out)
    # stdout form
    r = agent("get", "--target", "pg-main", "--backup", ctx.id, "--name", "base/16384/big", "-",
              check_rc=0)
    check(hashlib.sha256(r.stdout).hexdigest() == ctx.big_sha, "get - differs")


@test
def ls_lists_backup_in_every_repo():
    r = agent("ls", "--json", check_rc=0)
    data = js(r)
    rows = [b for b in data["backups"] if b["backup_id"] == ctx.id]
    check(len(rows) == 1, data)
    check(rows[0]["repos"] == ["local", "eu-west", "us-east"] and rows[0]["complete"], rows)
    check(rows[0]["stored_bytes"] > 50 * MIB, rows)
    r = agent("ls", check_rc=0)
    check(ctx.id in r.out and "local,eu-west,us-east" in r.out, r.out)
    r = agent("ls", "--repo", "nope", check_rc=2)


@test
def verify_ok_with_and_without_key():
    r = agent("verify", "--json", check_rc=0)
    data = js(r)
    check(data["problems"] == 0 and data["checked"] >= 3 and data["with_key"], data)
    r = agent("verify", "--no-key", "--json", check_rc=0)
    data = js(r)
    check(data["problems"] == 0 and not data["with_key"], data)
    # keyless verify needs no key at all: point the config at a missing one
    conf = config("nokey.yaml", os.path.join(ctx.dir, "does-not-exist.key"))
    agent("verify", "--no-key", conf=conf, check_rc=0)


@test
def flipped_byte_in_one_repo():
    small = os.path.join(ctx.dir, "small")
    write_mixed(small, 3 * MIB + 7)
    res, _ = put("flip", "obj", small, backup_id="20260102T000000Z-full")
    key = "flip/backup/%s/data/obj" % res["backup_id"]
    body = bytearray(s3_get(BUCKETS["eu-west"], key))
    body[len(body) // 2] ^= 0x01  # inside frame 1 of ~3
    s3_put(BUCKETS["eu-west"], key, bytes(body))
    r = agent("verify", "--target", "flip", check_rc=1)
    fails = [l for l in r.out.splitlines() if l.startswith("FAIL")]
    check(len(fails) == 1, r.out)
    check("eu-west" in fails[0] and key in fails[0] and "frame" in fails[0], fails)
    check(any(l.startswith("ok") and "local" in l for l in r.out.splitlines()), r.out)
    check(any(l.startswith("ok") and "us-east" in l for l in r.out.splitlines()), r.out)
    r = agent("verify", "--target", "flip", "--no-key", "--json", check_rc=1)
    data = js(r)
    bad = [i for i in data["items"] if not i["ok"]]
    check(len(bad) == 1 and bad[0]["repo"] == "eu-west" and bad[0]["object"] == key, bad)
    check("SHA-256" in bad[0]["problem"], bad)
    # reading from a healthy copy still works; from the damaged one it fails loudly
    out = os.path.join(ctx.dir, "flip.out")
    agent("get", "--target", "flip", "--backup", res["backup_id"], "--name", "obj",
          "--repo", "us-east", out, check_rc=0)
    r = agent("get", "--target", "flip", "--backup", res["backup_id"], "--name", "obj",
              "--repo", "eu-west", out + "2", check_rc=1)
    check("eu-west" in r.err and "frame" in r.err, r.err)
    check(not os.path.exists(out + "2"), "a failed get left its output")


@test
def deleted_object_in_one_region_is_a_gap():
    small = os.path.join(ctx.dir, "gap")
    write_mixed(small, MIB)
    res, _ = put("gap", "obj", small, backup_id="20260103T000000Z-full")
    key = "gap/backup/%s/data/obj" % res["backup_id"]
    s3_delete(BUCKETS["us-east"], key)
    for mode in ((), ("--no-key",)):
        r = agent("verify", "--target", "gap", "--json", *mode, check_rc=1)
        bad = [i for i in js(r)["items"] if not i["ok"]]
        check(len(bad) == 1 and bad[0]["repo"] == "us-east" and "missing" in bad[0]["problem"],
              bad)
    # the whole backup gone from one region (manifest too) -> replication gap
    s3_delete(BUCKETS["us-east"], "gap/backup/%s/manifest" % res["backup_id"])
    r = agent("verify", "--target", "gap", "--no-key", "--json", check_rc=1)
    bad = [i for i in js(r)["items"] if not i["ok"]]
    check(len(bad) == 1 and bad[0]["repo"] == "us-east" and "gap" in bad[0]["problem"], bad)


@test
def one_repo_unwritable_others_complete():
    conf = config("badcred.yaml", ctx.key, us_secret_env="BADSK")
    small = os.path.join(ctx.dir, "part")
    write_mixed(small, 20 * MIB)  # multipart in S3 (8 MiB parts)
    res, r = put("fail", "obj", small, backup_id="20260104T000000Z-full", conf=conf, rc=1)
    byname = {x["name"]: x for x in res["repos"]}
    check(byname["local"]["ok"] and byname["eu-west"]["ok"], res)
    check(not byname["us-east"]["ok"], res)
    err = byname["us-east"]["error"]
    check("403" in err or "SignatureDoesNotMatch" in err or "AccessDenied" in err, err)
    check("us-east" in r.err and "does not exist" in r.err, r.err)
    check(manifests("fail", res["backup_id"]) == ["local", "eu-west"], "manifests")
    agent("verify", "--target", "fail", "--backup", res["backup_id"], "--repo", "local",
          check_rc=0)
    r = agent("verify", "--target", "fail", "--json", check_rc=1)
    bad = [i for i in js(r)["items"] if not i["ok"]]
    check(len(bad) == 1 and bad[0]["repo"] == "us-east", bad)


@test
def wrong_master_key_is_a_clear_error():
    other = os.path.join(ctx.dir, "other.key")
    agent("keygen", other, check_rc=0)
    conf = config("wrongkey.yaml", other)
    r = agent("get", "--target", "pg-main", "--backup", ctx.id, "--name", "base/16384/big",
              os.path.join(ctx.dir, "x"), conf=conf, check_rc=1)
    check("master key" in r.err and "configured" in r.err, r.err)
    r = agent("verify", "--target", "pg-main", conf=conf, check_rc=1)
    check("wrapped by master key" in r.out, r.out)


@test
def rotate_key_then_new_key_only():
    new = os.path.join(ctx.dir, "new.key")
    r = agent("keygen", new, check_rc=0)
    new_id = r.out.split()[-1]
    old_id = ctx.key_id
    r = agent("rotate-key", "--new-key-file", new, "--keep-old", "--json", check_rc=0)
    st = js(r)
    check(st["rewrapped"] > 0 and st["deleted"] == 0 and st["failed"] == 0, st)
    # old key still reads everything while records under it remain
    agent("verify", "--target", "pg-main", check_rc=0)
    # idempotent, then remove the old records
    r = agent("rotate-key", "--new-key-file", new, "--json", check_rc=0)
    st = js(r)
    check(st["rewrapped"] == 0 and st["already"] > 0 and st["deleted"] > 0, st)
    keys = ctx.s3.list_keys(BUCKETS["eu-west"], "pg-main/keys/")
    check(keys and all(k.endswith("/" + new_id) for k in keys), keys)
    # the old key no longer opens anything; the new one alone does
    agent("verify", "--target", "pg-main", check_rc=1)
    ctx.conf = config("agent-new.yaml", new)
    ctx.key, ctx.key_id = new, new_id
    check(old_id != new_id, "ids")
    agent("verify", "--target", "pg-main", check_rc=0)
    out = os.path.join(ctx.dir, "rot.out")
    agent("get", "--target", "pg-main", "--backup", ctx.id, "--name", "base/16384/big",
          "--repo", "us-east", out, check_rc=0)
    check(sha_file(out) == ctx.big_sha, "after rotation")
    os.unlink(out)


@test
def kill_mid_put_leaves_no_manifest():
    before = agent("ls", "--json", check_rc=0).out
    p = subprocess.Popen([AGENT, "--config", ctx.conf, "repo", "put", "--target", "pg-main",
                          "--backup-id", "20260105T000000Z-full", "--name", "big", "-"],
                         env=ctx.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    for _ in range(40):
        p.stdin.write(os.urandom(MIB))
    p.stdin.flush()
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    check(manifests("pg-main", "20260105T000000Z-full") == [], "manifest after kill -9")
    data = json.loads(agent("ls", "--json", "--target", "pg-main", check_rc=0).out)
    row = [b for b in data["backups"] if b["backup_id"] == "20260105T000000Z-full"]
    check(not row or not row[0]["complete"], row)
    # previous backups untouched and verifiable
    old = [b for b in json.loads(before)["backups"] if b["target"] == "pg-main"]
    now = [b for b in data["backups"] if b["complete"]]
    check(old == now, "previous backups changed: %s vs %s" % (old, now))
    agent("verify", "--target", "pg-main", "--backup", ctx.id, check_rc=0)


@test
def usage_and_help():
    for cmd in ("ls", "put", "get", "verify", "rotate-key", "keygen"):
        r = agent(cmd, "--help", check_rc=0)
        check("Usage:" in r.out, r.out)
    agent("put", "--target", "x", check_rc=2)
    agent("bogus", check_rc=2)


def main():
    runner.require(AGENT)
    ctx.dir = tempfile.mkdtemp(prefix="tm-repo-")
    try:
        t0 = time.monotonic()
        ctx.s3 = S3Server(os.path.join(ctx.dir, "swift")).start()
        print("S3 server ready in %.1fs at %s" % (time.monotonic() - t0, ctx.s3.endpoint))
        for bucket in BUCKETS.values():
            ctx.s3.create_bucket(bucket)
        ctx.posix = os.path.join(ctx.dir, "posix-repo")
        ctx.env = dict(os.environ, AK=ctx.s3.access_key, SK=ctx.s3.secret_key,
                       BADSK="wrong-secret", TM_ENROLL="enroll")
        ctx.key = os.path.join(ctx.dir, "master.key")
        r = subprocess.run([AGENT, "repo", "keygen", ctx.key], capture_output=True, env=ctx.env)
        assert r.returncode == 0, r.stderr
        ctx.key_id = r.stdout.decode().split()[-1]
        ctx.conf = config("agent.yaml", ctx.key)
        runner.run()
    finally:
        if hasattr(ctx, "s3"):
            ctx.s3.stop()
        shutil.rmtree(ctx.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
    # runner.run() exits with the result; reaching here is a harness bug.
    runner.fail_all("runner.run() returned")
