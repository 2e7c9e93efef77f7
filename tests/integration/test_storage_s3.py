"""Integration tests of common/storage against a real S3 server (Swift +
s3api on loopback, started here), through tests/tools/tm_storage_tool.

Covers: single and multipart objects (> 64 MiB, sha256 round trip), listing
of > 1,000 keys with pagination, batch delete, ranged reads, copy, prefix,
wrong secret -> clear 403 SignatureDoesNotMatch, retries through a
fault-injecting proxy (resets, 503 SlowDown, stalls), the connection or the
server dying mid-upload -> retried, clear failure, no visible object; and a
posix writer killed with SIGKILL mid-object -> no visible object.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from tmtest import runner
from tmtest.faultproxy import FaultProxy
from tmtest.runner import test
from tmtest.s3server import S3Server

BUILD = os.environ.get("TM_BUILD_DIR", "build")
TOOL = os.path.join(BUILD, "tests", "tm_storage_tool")
MIB = 1024 * 1024
BUCKET = "tmtest"


class Ctx:
    pass


ctx = Ctx()


def tool(*args, endpoint=None, secret_env="SK", extra=(), check=True, stdin=None,
         timeout=300):
    argv = [TOOL, "--backend", "s3", "--endpoint", endpoint or ctx.s3.endpoint,
            "--bucket", BUCKET, "--access-key-env", "AK", "--secret-key-env", secret_env,
            *extra, *args]
    r = subprocess.run(argv, env=ctx.env, capture_output=True, timeout=timeout, stdin=stdin)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(args), r.returncode,
                                                       r.stderr.decode(errors="replace")))
    return r


def write_random(path, size):
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left > 0:
            chunk = os.urandom(min(left, 4 * MIB))
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(4 * MIB), b""):
            h.update(chunk)
    return h.hexdigest()


def tmp(name):
    return os.path.join(ctx.dir, name)


def visible(key):
    return key in ctx.s3.list_keys(BUCKET)


@test
def single_object_roundtrip():
    digest = write_random(tmp("small"), 100_000)
    tool("put", "t1/small obj", tmp("small"))
    tool("get", "t1/small obj", tmp("small.out"))
    assert sha_file(tmp("small.out")) == digest
    out = tool("stat", "t1/small obj").stdout.decode().split("\t")
    assert int(out[0]) == 100_000, out
    assert int(out[1]) > 1_600_000_000, out
    # empty object
    open(tmp("empty"), "wb").close()
    tool("put", "t1/empty", tmp("empty"))
    tool("get", "t1/empty", tmp("empty.out"))
    assert os.path.getsize(tmp("empty.out")) == 0


@test
def multipart_over_64mib():
    size = 70 * MIB + 12345
    ctx.big_digest = write_random(tmp("big"), size)
    tool("put", "t2/big", tmp("big"))  # default part size 16 MiB -> 5 parts
    tool("get", "t2/big", tmp("big.out"))
    assert sha_file(tmp("big.out")) == ctx.big_digest
    assert int(tool("stat", "t2/big").stdout.split(b"\t")[0]) == size
    assert ctx.s3.list_uploads(BUCKET) == [], "multipart upload left open"


@test
def ranged_reads():
    with open(tmp("big"), "rb") as f:
        data = f.read()
    cases = [(0, 1), (17 * MIB - 3, 9 * MIB), (len(data) - 10, 0), (len(data) - 10, 100),
             (5, 0), (len(data), 0), (len(data) + 100, 10)]
    for off, length in cases:
        tool("get", "t2/big", tmp("range"), "--offset", str(off), "--length", str(length))
        with open(tmp("range"), "rb") as f:
            got = f.read()
        want = data[off:off + length] if length else data[off:]
        assert got == want, "range %d+%d: got %d bytes, want %d" % (off, length, len(got),
                                                                    len(want))


@test
def listing_over_1000_keys_and_batch_delete():
    keys = ["t3/k%05d" % i for i in range(1205)] + ["t3/sub/a", "t3/sub/b", "t3-other"]
    errors = []

    def put_range(ks):
        for k in ks:
            st, _, body = ctx.s3.request("PUT", "/%s/%s" % (BUCKET, k), body=b"x" * 3)
            if st != 200:
                errors.append((k, st, body[:200]))
    threads = [threading.Thread(target=put_range, args=(keys[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    want = sorted(k for k in keys if k.startswith("t3/"))
    for max_keys in ("1000", "7", "2500"):
        out = tool("ls", "t3/", "--max", max_keys).stdout.decode().splitlines()
        got = [ln.split("\t")[0] for ln in out]
        assert got == want, "max %s: %d keys, first diff at %s" % (
            max_keys, len(got), next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                                     None))
        assert all(ln.split("\t")[1] == "3" for ln in out)
    # batch delete: 1,207 keys in one call (two DeleteObjects requests), plus an absent key
    tool("rm", *want, "t3/absent")
    assert ctx.s3.list_keys(BUCKET, "t3/") == []
    assert ctx.s3.list_keys(BUCKET, "t3-") == ["t3-other"]


@test
def copy_stat_missing_and_prefix():
    tool("put", "t4/src", tmp("small"))
    tool("cp", "t4/src", "t4/dst")
    tool("get", "t4/dst", tmp("cp.out"))
    assert sha_file(tmp("cp.out")) == sha_file(tmp("small"))
    r = tool("stat", "t4/nope", check=False)
    assert r.returncode == 1 and b"404" in r.stderr and b"ENOENT" in r.stderr, r.stderr
    r = tool("get", "t4/nope", tmp("x"), check=False)
    assert r.returncode == 1 and b"404" in r.stderr and b"tmtest/t4/nope" in r.stderr, r.stderr
    # a backend prefix is applied on the way in and stripped on the way out
    tool("put", "k", tmp("small"), extra=("--prefix", "tenant-a/"))
    assert "tenant-a/k" in ctx.s3.list_keys(BUCKET, "tenant-a/")
    out = tool("ls", "", extra=("--prefix", "tenant-a")).stdout.decode()
    assert out.split("\t")[0] == "k", out
    r = tool("put", "../evil", tmp("small"), check=False)
    assert r.returncode == 1 and b"invalid key" in r.stderr, r.stderr


@test
def wrong_secret_is_a_clear_auth_error():
    fp = ctx.fp
    fp.pass_all()
    before = fp.requests
    r = tool("put", "t5/x", tmp("small"), secret_env="BADSK", check=False, endpoint=fp.endpoint)
    assert r.returncode == 1
    err = r.stderr.decode()
    assert "403 SignatureDoesNotMatch" in err and "tmtest/t5/x" in err and "EAUTH" in err, err
    assert "wrong-secret" not in err, "secret leaked into the message"
    # Counted at the proxy, not timed: one request, no retry of a 403.
    assert fp.requests - before == 1, "a 403 was retried: %d requests" % (fp.requests - before)
    r = tool("ls", "", secret_env="BADSK", check=False)
    assert r.returncode == 1 and "403 SignatureDoesNotMatch" in r.stderr.decode()
    assert not visible("t5/x")


@test
def retries_on_resets_and_slowdown():
    fp = ctx.fp
    fp.pass_all()
    fast = ("--max-retries", "5")
    for mode in ("reset", "slowdown"):
        before = fp.faults
        getattr(fp, mode + "_next")(3)
        tool("put", "t6/" + mode, tmp("small"), endpoint=fp.endpoint, extra=fast)
        assert fp.faults - before == 3, (mode, fp.faults - before)
        getattr(fp, mode + "_next")(2)
        tool("get", "t6/" + mode, tmp("r.out"), endpoint=fp.endpoint, extra=fast)
        assert sha_file(tmp("r.out")) == sha_file(tmp("small"))
        getattr(fp, mode + "_next")(2)
        out = tool("ls", "t6/", endpoint=fp.endpoint, extra=fast).stdout.decode()
        assert "t6/" + mode in out
    # multipart with faults in the middle: parts and completion are retried
    before = fp.faults
    fp.reset_next(1)
    stop = threading.Event()

    def inject():
        n = fp.requests
        while not stop.is_set():
            if fp.requests >= n + 3:
                fp.slowdown_next(2)
                return
            time.sleep(0.01)
    th = threading.Thread(target=inject)
    th.start()
    tool("put", "t6/multi", tmp("big"), endpoint=fp.endpoint,
         extra=fast + ("--part-size", str(5 * MIB)))
    stop.set()
    th.join()
    assert fp.faults - before >= 3
    tool("get", "t6/multi", tmp("multi.out"), endpoint=fp.endpoint)
    assert sha_file(tmp("multi.out")) == ctx.big_digest
    # too many faults: a clear failure naming the status and code
    fp.slowdown_next(100)
    r = tool("put", "t6/never", tmp("small"), endpoint=fp.endpoint,
             extra=("--max-retries", "2"), check=False)
    fp.pass_all()
    assert r.returncode == 1 and b"503 SlowDown" in r.stderr, r.stderr
    assert not visible("t6/never")


@test
def retries_on_stall():
    fp = ctx.fp
    fp.pass_all()
    # The stall outlasts the test: only the client's timeout can end it, so
    # a stored object after a second request proves the stalled one was cut
    # and retried (an event, not a stopwatch).
    fp.stall_next(1, 600)
    before, faults = fp.requests, fp.faults
    tool("put", "t7/stalled", tmp("small"), endpoint=fp.endpoint,
         extra=("--timeout-ms", "1000", "--max-retries", "3"), timeout=120)
    assert fp.faults - faults == 1, "the stall was injected"
    assert fp.requests - before >= 2, "stall not cut by the timeout and retried"
    assert visible("t7/stalled")


def upload_then_break(key, breaker, extra=()):
    """Start a multipart upload through the proxy; once 12 MiB went through,
    call breaker(). Returns the tool's CompletedProcess."""
    fp = ctx.fp
    fp.pass_all()
    start = fp.upstream_bytes
    p = subprocess.Popen([TOOL, "--backend", "s3", "--endpoint", fp.endpoint, "--bucket",
                          BUCKET, "--access-key-env", "AK", "--secret-key-env", "SK",
                          "--part-size", str(5 * MIB), "--max-retries", "2",
                          "--timeout-ms", "2000", *extra, "put", key, tmp("big")],
                         env=ctx.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while fp.upstream_bytes - start < 12 * MIB and time.monotonic() < deadline:
        if p.poll() is not None:
            break
        time.sleep(0.005)
    breaker()
    out, err = p.communicate(timeout=120)
    return p.returncode, err.decode(errors="replace")


@test
def connection_dies_mid_upload_leaves_nothing():
    rc, err = upload_then_break("t8/cut", ctx.fp.break_all)
    ctx.fp.pass_all()
    assert rc == 1, (rc, err)
    assert "s3 PUT tmtest/t8/cut" in err and "attempt" in err, err
    assert not visible("t8/cut")


@test
def server_stopped_mid_upload_leaves_nothing():
    rc, err = upload_then_break("t9/killed", lambda: ctx.s3.stop_proxy(signal.SIGKILL))
    ctx.s3.start_proxy()
    assert rc == 1, (rc, err)
    assert "tmtest/t9/killed" in err, err
    assert not visible("t9/killed")


@test
def posix_kill9_mid_write_leaves_nothing():
    repo = tmp("posix-repo")
    p = subprocess.Popen([TOOL, "--backend", "posix", "--path", repo, "put", "a/b/obj", "-"],
                         stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(os.urandom(3 * MIB))
    p.stdin.flush()
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = subprocess.run([TOOL, "--backend", "posix", "--path", repo, "ls"], capture_output=True)
    assert r.returncode == 0 and r.stdout == b"", r.stdout
    leftovers = os.listdir(os.path.join(repo, "a", "b"))
    assert all(n.startswith(".tmp.") for n in leftovers), leftovers
    r = subprocess.run([TOOL, "--backend", "posix", "--path", repo, "stat", "a/b/obj"],
                       capture_output=True)
    assert r.returncode == 1 and b"ENOENT" in r.stderr


def main():
    runner.require(TOOL)
    ctx.dir = tempfile.mkdtemp(prefix="tm-storage-s3-")
    try:
        t0 = time.monotonic()
        ctx.s3 = S3Server(os.path.join(ctx.dir, "swift")).start()
        print("S3 server ready in %.1fs at %s" % (time.monotonic() - t0, ctx.s3.endpoint))
        ctx.s3.create_bucket(BUCKET)
        ctx.fp = FaultProxy(ctx.s3.ports["proxy"])
        ctx.env = dict(os.environ, AK=ctx.s3.access_key, SK=ctx.s3.secret_key,
                       BADSK="wrong-secret")
        if sys.argv[1:]:
            os.environ["TM_TEST_ONLY"] = sys.argv[1]
        runner.run()
    finally:
        if hasattr(ctx, "fp"):
            ctx.fp.close()
        if hasattr(ctx, "s3"):
            ctx.s3.stop()
        shutil.rmtree(ctx.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
    runner.fail_all("runner.run() returned")
