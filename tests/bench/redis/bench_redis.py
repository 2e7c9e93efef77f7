"""The Redis snapshot benchmark (see run.sh)."""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from tmtest.redis import Redis, gen_password, mixed_dataset, resp, write_secret

TOOL = os.path.join(os.environ["TM_BUILD_DIR"], "tests", "tm_redis_tool")
ACL = "-@all +sync +replconf"


def timed(argv, timeout=3600):
    """Wall seconds and peak RSS (KiB) of argv, stdout to /dev/null."""
    t0 = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + argv, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {p.stderr[-2000:]}")
    rss = int(p.stderr.strip().splitlines()[-1])
    return wall, rss, p.stderr


def wait_idle(r):
    """No snapshot child left: a SYNC that finds one waits for the next
    replicationCron tick (up to 1 s), which would be charged to whoever
    came second."""
    while r.info("persistence").get("rdb_bgsave_in_progress") != "0" or \
            r.info("server").get("current_fork_perc", "0") not in ("0", "0.00"):
        time.sleep(0.05)
    time.sleep(0.2)


def fill(r, size_mb):
    """Mixed types first (about a third of used_memory), then strings of
    random bytes (DEBUG POPULATE's zero padding would compress to nothing)."""
    target = size_mb << 20
    seed = 0
    while int(r.info("memory")["used_memory"]) < target // 3:
        seed += 1
        r.pipe(mixed_dataset(100, dbs=(0, 1, 2), seed=seed, prefix=f"b{seed}:"))
    while int(r.info("memory")["used_memory"]) < target:
        seed += 1
        r.pipe(b"".join(resp("SET", f"r{seed}:{i}", os.urandom(300 + i % 1500)) for i in range(20000)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--disk", action="store_true")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tm-bench-redis-")
    try:
        pw = gen_password()
        pass_file = write_secret(os.path.join(tmp, "pass"), pw)
        conf = {"repl-diskless-sync": "no" if a.disk else "yes", "repl-diskless-sync-delay": 0}
        with Redis(tmp, users={"tmbackup": (pw, ACL)}, conf=conf) as r:
            t0 = time.monotonic()
            fill(r, a.size_mb)
            used = int(r.info("memory")["used_memory"]) >> 20
            print(f"dataset: used_memory {used} MB, keys {r.keyspace()}, "
                  f"filled in {time.monotonic() - t0:.0f} s; "
                  f"transfer {'disk ($len)' if a.disk else 'diskless (EOF marker)'}")
            tidemark = [TOOL, "rdb-fetch", "127.0.0.1", str(r.port), "--user", "tmbackup",
                        "--pass-file", pass_file]
            cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(r.port), "--rdb", "-"]
            timed(cli)  # warm-up, not counted: the first snapshot after the fill is slower
            tm, rc = [], []
            for i in range(a.runs):
                # Interleaved, alternating which goes first.
                order = [("tm", tidemark), ("cli", cli)]
                for name, argv in order if i % 2 == 0 else order[::-1]:
                    wait_idle(r)
                    w, rss, err = timed(argv)
                    if name == "tm":
                        size = int([x for x in err.split() if x.startswith("bytes=")][0][6:])
                        tm.append((w, rss, size))
                    else:
                        rc.append((w, rss))
                print(f"run {i + 1}: tidemark {tm[-1][0]:.2f} s ({tm[-1][1]} KiB RSS), "
                      f"redis-cli {rc[-1][0]:.2f} s ({rc[-1][1]} KiB RSS), RDB {size >> 20} MB")
            size = tm[-1][2]
            mt = statistics.median(x[0] for x in tm)
            mr = statistics.median(x[0] for x in rc)
            print(f"median tidemark fetch+check: {mt:.2f} s, {size / mt / 2**20:.0f} MB/s, "
                  f"peak RSS {statistics.median(x[1] for x in tm) / 1024:.1f} MiB")
            print(f"median redis-cli --rdb -:   {mr:.2f} s, {size / mr / 2**20:.0f} MB/s, "
                  f"peak RSS {statistics.median(x[1] for x in rc) / 1024:.1f} MiB")
            print(f"ratio tidemark / redis-cli: {mt / mr:.2f}x")
    finally:
        if not os.environ.get("TM_KEEP_TMP"):
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
