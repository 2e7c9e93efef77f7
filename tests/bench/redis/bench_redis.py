"""The Redis snapshot benchmark (see run.sh)."""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time

from tmtest.cluster import Cluster, binary
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


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def proc_cpu(pid):
    """CPU seconds (user + system, every thread) a live process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def shell_timed(cmd, timeout=3600):
    """Wall seconds and CPU seconds (every process of it) of a shell pipeline."""
    t0, c0 = time.monotonic(), children_cpu()
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    if p.returncode != 0:
        raise SystemExit(f"pipeline failed: {p.stderr[-2000:]}")
    return time.monotonic() - t0, children_cpu() - c0


def ops(r):
    return int(r.info("stats")["total_commands_processed"])


class Load:
    """redis-benchmark against the primary for the whole full-backup phase
    (SET/GET, 64-byte values over 10,000 keys in db 0, CLIENTS connections,
    looping). throughput(fn) runs fn and returns (fn's result, the primary's
    commands per second meanwhile, from INFO stats)."""

    def __init__(self, r, clients):
        self.r = r
        self.p = subprocess.Popen(["redis-benchmark", "-h", "127.0.0.1", "-p", str(r.port),
                                   "-t", "set,get", "-d", "64", "-r", "10000", "-c", str(clients),
                                   "-n", "1000000000", "-l", "-q"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2)

    def throughput(self, fn):
        o0, t0 = ops(self.r), time.monotonic()
        res = fn()
        return res, (ops(self.r) - o0) / (time.monotonic() - t0)

    def idle(self, seconds=5):
        return self.throughput(lambda: time.sleep(seconds))[1]

    def stop(self):
        self.p.kill()
        self.p.wait()


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def full_backup(a, r, tmp, pass_file):
    """The whole Tidemark backup (coordinator -> agent: RDB over SYNC, RDB
    check, zstd, AES-GCM frames, one posix repository, manifest) against
    redis-cli --rdb - | zstd -3 | openssl enc -aes-256-ctr to a file on the
    same disk. Tidemark's time is the task's duration as the agent measured
    it (the coordinator's dispatch latency is printed apart)."""
    key = os.path.join(tmp, "master.key")
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", key], check=True,
                   capture_output=True)
    repo = os.path.join(tmp, "repo")
    with Cluster(heartbeat="500ms", extra_coord_yaml="""policies:
  - name: cache
    match:
      kind: redis
    schedule:
      full: "0 3 1 1 *"
      incremental: ""
      snapshot: ""
""") as c:
        c.start_coordinator()
        ryaml = (f"redis:\n  host: 127.0.0.1\n  port: {r.port}\n  user: tmbackup\n"
                 f"  password_file: {pass_file}\n  method: sync\n  timeout: 600s\n")
        agent = c.start_agent("db", targets=[("cache", "redis", ryaml)],
                              extra=f"repositories:\n  - name: local\n    type: posix\n"
                                    f"    path: {repo}\nencryption:\n  master_key_file: {key}\n")
        deadline = time.monotonic() + 30
        while c.agents_by_host().get("db", {}).get("state") != "online":
            if time.monotonic() > deadline:
                raise SystemExit("agent not online")
            time.sleep(0.1)
        enc_key = os.path.join(tmp, "enc.pass")
        write_secret(enc_key, gen_password())
        out = os.path.join(tmp, "cli.rdb.zst.enc")
        pipeline = (f"redis-cli -h 127.0.0.1 -p {r.port} --rdb - 2>/dev/null | zstd -3 -q -c | "
                    f"openssl enc -aes-256-ctr -pbkdf2 -pass file:{enc_key} -out {out}")
        tm, ctl_wall, cli, phases, tm_cpu, cli_cpu = [], [], [], [], [], []
        load = Load(r, a.load_clients) if a.load else None
        base_ops, tm_ops, cli_ops = [], [], []

        def run_tm():
            c0 = proc_cpu(agent.p.pid)
            t0 = time.monotonic()
            p = c.ctl("backup", "run", "--target", "cache", "--type", "snapshot", "--wait",
                      "--json", timeout=3600)
            ctl_wall.append(time.monotonic() - t0)
            tm_cpu.append(proc_cpu(agent.p.pid) - c0)
            res = json.loads(p.stdout)["result"]
            tm.append((res["duration_ms"] / 1000.0, res["bytes"], res["stored_bytes"]))
            ex = res.get("extra", {})
            phases.append(f"wait {ex.get('wait_ms', '?')} ms, fetch {ex.get('fetch_ms', '?')} ms, "
                          f"close {ex.get('close_ms', '?')} ms, {ex.get('chunks', '?')} chunks")
        def run_cli():
            wall, cpu = shell_timed(pipeline)
            cli.append(wall)
            cli_cpu.append(cpu)
        try:
            for i in range(a.runs):
                order = ["tm", "cli"] if i % 2 == 0 else ["cli", "tm"]
                if load:
                    wait_idle(r)
                    base_ops.append(load.idle())
                for name in order:
                    wait_idle(r)
                    fn = run_cli if name == "cli" else run_tm
                    if load:
                        (tm_ops if name == "tm" else cli_ops).append(load.throughput(fn)[1])
                    else:
                        fn()
                print(f"run {i + 1}: tidemark backup {tm[-1][0]:.2f} s (tidemarkctl --wait "
                      f"{ctl_wall[-1]:.2f} s), RDB {tm[-1][1] >> 20} MB -> stored "
                      f"{tm[-1][2] >> 20} MB ({phases[-1]}; agent CPU {tm_cpu[-1]:.2f} s); "
                      f"redis-cli|zstd|openssl {cli[-1]:.2f} s (CPU {cli_cpu[-1]:.2f} s) -> "
                      f"{os.path.getsize(out) >> 20} MB" +
                      (f"; primary ops/s: idle {base_ops[-1]:.0f}, during tidemark "
                       f"{tm_ops[-1]:.0f}, during redis-cli pipeline {cli_ops[-1]:.0f}"
                       if load else ""))
        finally:
            if load:
                load.stop()
        rss = vm_hwm_kib(agent.p.pid)
        mt = statistics.median(x[0] for x in tm)
        mc = statistics.median(cli)
        print(f"median tidemark full backup (agent task): {mt:.2f} s; tidemarkctl --wait: "
              f"{statistics.median(ctl_wall):.2f} s")
        print(f"median redis-cli --rdb - | zstd -3 | openssl enc -aes-256-ctr: {mc:.2f} s")
        gb = tm[-1][1] / 2**30
        print(f"median CPU per GB of RDB: tidemark agent {statistics.median(tm_cpu) / gb:.2f} s, "
              f"redis-cli|zstd|openssl {statistics.median(cli_cpu) / gb:.2f} s")
        print(f"ratio tidemark / pipeline: {mt / mc:.2f}x; agent peak RSS {rss / 1024:.1f} MiB "
              f"(VmHWM over the agent's life: {a.runs} backups)")
        if load:
            mb, mtt, mcc = (statistics.median(x) for x in (base_ops, tm_ops, cli_ops))
            print(f"median primary throughput (redis-benchmark -c {a.load_clients} SET/GET): "
                  f"idle {mb:.0f} ops/s, during tidemark {mtt:.0f} ops/s ({mtt / mb:.2f}x), "
                  f"during redis-cli|zstd|openssl {mcc:.0f} ops/s ({mcc / mb:.2f}x)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=64)
    ap.add_argument("--mode", choices=("fetch", "full", "both"), default="both",
                    help="fetch: tm_redis_tool fetch+check vs redis-cli --rdb; full: the whole "
                         "backup through coordinator and agent vs redis-cli|zstd|openssl")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--disk", action="store_true")
    ap.add_argument("--load", action="store_true",
                    help="full mode: redis-benchmark runs against the primary throughout; its "
                         "throughput idle and during each tool is printed")
    ap.add_argument("--load-clients", type=int, default=4)
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
            if a.mode in ("full", "both"):
                full_backup(a, r, tmp, pass_file)
            if a.mode == "full":
                return
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
