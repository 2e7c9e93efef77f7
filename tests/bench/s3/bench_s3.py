"""Benchmark (not a test): PUT and GET of a 100 MiB object through
common/storage (tests/tools/tm_storage_tool) against the loopback S3 server
(Swift + s3api), the multipart path included. Prints MiB/s; asserts only that
the bytes came back. Moved here from tests/integration/test_storage_s3.py so
that no test reports a machine's speed as a result.
  PYTHONPATH=tests/lib TM_BUILD_DIR=build python3 tests/bench/s3/bench_s3.py [MiB]
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

from tmtest.s3server import S3Server

BUILD = os.environ.get("TM_BUILD_DIR", "build")
TOOL = os.path.join(BUILD, "tests", "tm_storage_tool")
MIB = 1024 * 1024


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(4 * MIB), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    d = tempfile.mkdtemp(prefix="tm-bench-s3-")
    try:
        s3 = S3Server(os.path.join(d, "swift")).start()
        s3.create_bucket("bench")
        env = dict(os.environ, AK=s3.access_key, SK=s3.secret_key)
        src, out = os.path.join(d, "src"), os.path.join(d, "out")
        with open(src, "wb") as f:
            for _ in range(size):
                f.write(os.urandom(MIB))

        def tool(*args):
            subprocess.run([TOOL, "--backend", "s3", "--endpoint", s3.endpoint, "--bucket", "bench",
                            "--access-key-env", "AK", "--secret-key-env", "SK", *args],
                           env=env, check=True, capture_output=True, timeout=900)
        t0 = time.monotonic()
        tool("put", "obj", src)
        put = size / (time.monotonic() - t0)
        t0 = time.monotonic()
        tool("get", "obj", out)
        get = size / (time.monotonic() - t0)
        if sha(out) != sha(src):
            sys.exit("GET returned different bytes")
        print("%d MiB object on loopback Swift: PUT %.0f MiB/s, GET %.0f MiB/s" % (size, put, get))
        s3.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
