#!/usr/bin/env python3
"""SQLite WAL shipping: Tidemark's agent against Litestream 0.3.13, side by
side on the same database, writer and machine (issue 15, section 4).

Per tool and run: a fresh copy of a SIZE_MB database; a writer process
committing one small transaction (an (id, time) row) every 10 ms and logging
each commit's begin/end wall time and latency; the tool started on it
(Tidemark: coordinator + agent with a sqlite target, one posix repository,
encryption on; Litestream: `litestream replicate` to a file replica, no
encryption: it has none); both ship every INTERVAL_MS.
  - snapshot: seconds from start until the tool's base snapshot is stored,
    and the writer's commit latency (p99, max) meanwhile;
  - RPO while shipping: now minus the store time of the newest log object
    (Tidemark: its sidecar, written last; Litestream: its WAL segment file),
    sampled every 100 ms for STEADY_S seconds: the same definition for both;
  - the writer's commit latency while shipping (p99, max);
  - restore of the latest state and to a time TBACK_S seconds before the
    writer stopped: wall time of the product's restore command (Tidemark:
    `tidemark-agent restore --target app --output FILE [--time T] --json`
    with the agent's config, from the repository alone: fetch, verify,
    decrypt, apply, integrity_check, fsync, rename, its phases reported
    beside; Litestream: `litestream restore`);
  - exactness of the restore to a time T: rows missing (COMMIT returned
    before T - INTERVAL_MS... see below) and extra (began after T);
  - the tool's peak RSS (VmHWM) and CPU seconds (utime + stime).
Exactness: a restore to T holds the commits each tool saw by its last batch
at or before T; commits of the last interval before T may be missing by
design (both tools time a batch, not a commit). Reported: rows missing that
committed before T, of which those older than T - interval (real losses),
and rows present that began after T (never acceptable).

Usage: PYTHONPATH=tests/lib TM_BUILD_DIR=build python3 tests/bench/sqlite/run.py
Env: SIZE_MB (1024), RUNS (3), STEADY_S (30), INTERVAL_MS (1000), TBACK_S (15),
     TOOLS (tidemark,litestream: which to run), KEEP_RUNS (1: keep each run's
     directory under OUT, with Tidemark's agent.yaml, for profiling),
     RESTORE_AB (N: after the runs, restore the latest N more times with each
     tool in turn, Tidemark then Litestream, from what each run stored: paired
     ratios that load changes on a shared machine disturb less; default 0),
     REPLAY_TOOL (1: also time tests/tools/tm_sqlite_tool replay, the engine's
     base + replay without the command's check and rename; default 0),
     LITESTREAM (path to the binary; default: npm's @flydotio/litestream-linux-x64
     under /tmp/sqlitewal-ls), OUT (a directory kept for inspection; default temp)."""
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../lib"))
from tmtest.cluster import Cluster, binary  # noqa: E402

SIZE_MB = int(os.environ.get("SIZE_MB", "1024"))
RUNS = int(os.environ.get("RUNS", "3"))
STEADY_S = float(os.environ.get("STEADY_S", "30"))
INTERVAL_MS = int(os.environ.get("INTERVAL_MS", "1000"))
TBACK_S = float(os.environ.get("TBACK_S", "15"))
REPLAY_TOOL = os.environ.get("REPLAY_TOOL", "0") == "1"
TOOLS = os.environ.get("TOOLS", "tidemark,litestream").split(",")
KEEP_RUNS = os.environ.get("KEEP_RUNS", "0") == "1"
RESTORE_AB = int(os.environ.get("RESTORE_AB", "0"))
LITESTREAM = os.environ.get("LITESTREAM",
                            "/tmp/sqlitewal-ls/node_modules/@flydotio/litestream-linux-x64/litestream")

WRITER = textwrap.dedent("""
    import ctypes, os, signal, sqlite3, sys, time
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        sys.exit(4)
    db, log = sys.argv[1], sys.argv[2]
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    c = sqlite3.connect(db, timeout=30, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE IF NOT EXISTS w(id INTEGER PRIMARY KEY, ms INTEGER)")
    i = 1
    out = open(log, "w", buffering=1)
    nxt = time.monotonic()
    while not stop:
        t0 = time.time()
        m0 = time.monotonic()
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO w VALUES (?, ?)", (i, int(t0 * 1000)))
        c.execute("COMMIT")
        m1 = time.monotonic()
        out.write(f"{i} {t0 * 1000:.1f} {time.time() * 1000:.1f} {(m1 - m0) * 1e6:.0f}\\n")
        i += 1
        nxt += 0.010
        d = nxt - time.monotonic()
        if d > 0:
            time.sleep(d)
        else:
            nxt = time.monotonic()
""")


def make_base(path):
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB)")
    rows = SIZE_MB * 1024 // 1
    c.execute("BEGIN")
    c.execute(f"WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM r WHERE i<{rows}) "
              "INSERT INTO big SELECT i, randomblob(900) FROM r")
    c.execute("COMMIT")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()


def proc_stats(pid):
    with open(f"/proc/{pid}/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return hwm / 1024.0, cpu


def newest_mtime(root, suffix):
    best = 0.0
    for dp, _, fs in os.walk(root):
        for f in fs:
            if f.endswith(suffix):
                try:
                    best = max(best, os.stat(os.path.join(dp, f)).st_mtime)
                except FileNotFoundError:
                    pass
    return best


def exists(root, suffix):
    return newest_mtime(root, suffix) > 0


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))] if v else float("nan")


class Writer:
    def __init__(self, db, log):
        self.log = log
        self.p = subprocess.Popen([sys.executable, "-c", WRITER, db, log])

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(60)

    def rows(self):
        out = []
        with open(self.log) as f:
            for line in f:
                x = line.split()
                if len(x) == 4:
                    out.append((int(x[0]), float(x[1]), float(x[2]), int(x[3])))
        return out


def ids_of(db):
    c = sqlite3.connect(db)
    ids = [r[0] for r in c.execute("SELECT id FROM w ORDER BY id")]
    c.close()
    return ids


def exactness(ids, rows, t_ms):
    present = set(ids)
    missing = [i for i, b, e, _ in rows if e < t_ms and i not in present]
    lost = [i for i, b, e, _ in rows if e < t_ms - INTERVAL_MS and i not in present]
    extra = [i for i, b, e, _ in rows if b > t_ms and i in present]
    return len(missing), len(lost), len(extra)


class Tidemark:
    name = "tidemark"

    def __init__(self, work, db):
        self.work, self.db = work, db
        self.repo = os.path.join(work, "repo")
        self.key = os.path.join(work, "master.key")
        subprocess.run([binary("tidemark-agent"), "repo", "keygen", self.key], check=True,
                       capture_output=True)
        self.c = Cluster(heartbeat="1s")
        self.c.__enter__()
        self.c.start_coordinator()

    def start(self):
        t = (f"sqlite:\n  path: {self.db}\n  ship_interval: {INTERVAL_MS}ms\n")
        extra = (f"repositories:\n  - name: local\n    type: posix\n    path: {self.repo}\n"
                 f"encryption:\n  master_key_file: {self.key}\n")
        self.p = self.c.start_agent("bench", targets=[("app", "sqlite", t)], extra=extra)
        self.conf = os.path.join(self.c.dir, "agents", "bench", "agent.yaml")
        self.env = self.c.env
        return self.p.p.pid

    def log_root(self):
        return os.path.join(self.repo, "app", "log")

    def snapshot_done(self):
        return exists(self.log_root(), ".gen.meta")

    def newest(self):
        return newest_mtime(self.log_root(), ".wal.meta")

    def chain(self):
        return sorted(os.listdir(self.log_root()))[-1]

    def restore(self, out, t_ms):
        """The product's restore: `tidemark-agent restore` with the agent's
        config, from the repository alone (snapshot or chain base, the
        shipped log up to T, integrity_check, fsync, rename)."""
        argv = [binary("tidemark-agent"), "-c", self.conf, "restore", "--target", "app",
                "--output", out, "--json"]
        if t_ms:
            argv += ["--time", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t_ms / 1000)) +
                     f".{int(t_ms % 1000):03d}+00"]
        t0 = time.monotonic()
        p = subprocess.run(argv, capture_output=True, text=True, env=self.env)
        dt = time.monotonic() - t0
        if p.returncode != 0:
            raise RuntimeError(p.stderr)
        rep = json.loads(p.stdout.strip().splitlines()[-1])
        self.phases = {k: rep[k] for k in ("files_s", "replay_s", "check_s")}
        if REPLAY_TOOL:
            # The engine's pieces alone (base + replay, no integrity_check,
            # no rename): tests/tools/tm_sqlite_tool replay.
            t1 = time.monotonic()
            p = subprocess.run([binary("tm_sqlite_tool"), self.conf, "replay", "app",
                                self.chain(), str(int(t_ms)), out + ".tool"],
                               capture_output=True, text=True, env=self.c.env)
            self.phases["tool_replay_s"] = round(time.monotonic() - t1, 2)
            if p.returncode != 0:
                raise RuntimeError(p.stderr)
            os.unlink(out + ".tool")
        return dt

    def stop(self):
        self.p.stop()

    def close(self):
        if KEEP_RUNS or RESTORE_AB:
            # The restore needs only the repositories and the key: kept for
            # the paired restores (RESTORE_AB) and for profiling.
            shutil.copy(self.conf, os.path.join(self.work, "agent.yaml"))
            self.conf = os.path.join(self.work, "agent.yaml")
        self.c.__exit__(None, None, None)


class Litestream:
    name = "litestream"

    def __init__(self, work, db):
        self.work, self.db = work, db
        self.replica = os.path.join(work, "replica")
        self.conf = os.path.join(work, "litestream.yml")
        with open(self.conf, "w") as f:
            f.write(f"dbs:\n  - path: {db}\n    replicas:\n      - type: file\n"
                    f"        path: {self.replica}\n        sync-interval: {INTERVAL_MS}ms\n")

    def start(self):
        self.log = open(os.path.join(self.work, "litestream.log"), "w")
        self.p = subprocess.Popen([LITESTREAM, "replicate", "-config", self.conf],
                                  stdout=self.log, stderr=subprocess.STDOUT)
        return self.p.pid

    def snapshot_done(self):
        return exists(self.replica, ".snapshot.lz4")

    def newest(self):
        return newest_mtime(self.replica, ".wal.lz4")

    def restore(self, out, t_ms):
        argv = [LITESTREAM, "restore", "-config", self.conf, "-o", out]
        if t_ms:
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_ms / 1000)) + \
                f".{int(t_ms % 1000):03d}Z"
            argv += ["-timestamp", ts]
        t0 = time.monotonic()
        p = subprocess.run(argv + [self.db], capture_output=True, text=True)
        dt = time.monotonic() - t0
        if p.returncode != 0:
            raise RuntimeError(p.stderr + p.stdout)
        return dt

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(60)
        self.log.close()

    def close(self):
        pass


def one_run(tool_cls, base, work, keep=None):
    os.makedirs(work)
    db = os.path.join(work, "app.db")
    shutil.copy(base, db)
    writer = Writer(db, os.path.join(work, "writer.log"))
    time.sleep(1.0)
    tool = tool_cls(work, db)
    r = {"tool": tool.name}
    try:
        t_start = time.time()
        pid = tool.start()
        deadline = time.time() + 600
        while not tool.snapshot_done():
            if time.time() > deadline:
                raise RuntimeError(f"{tool.name}: no snapshot after 600 s")
            time.sleep(0.05)
        t_snap = time.time()
        r["snapshot_s"] = round(t_snap - t_start, 2)
        rpo = []
        t_end = t_snap + STEADY_S
        while time.time() < t_end:
            m = tool.newest()
            if m > 0:
                rpo.append((time.time() - m) * 1000)
            time.sleep(0.1)
        writer.stop()
        rows = writer.rows()
        last_end = rows[-1][2]
        deadline = time.time() + 60
        while tool.newest() * 1000 < last_end + 1 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(INTERVAL_MS / 1000 + 0.5)
        r["rss_mb"], r["cpu_s"] = proc_stats(pid)
        r["rss_mb"] = round(r["rss_mb"], 1)
        tool.stop()
        lat_snap = [x[3] / 1000 for x in rows if t_start * 1000 <= x[1] <= t_snap * 1000]
        lat_ship = [x[3] / 1000 for x in rows if x[1] > t_snap * 1000]
        r["snap_commit_p99_ms"] = round(pct(lat_snap, 0.99), 1)
        r["snap_commit_max_ms"] = round(max(lat_snap, default=float("nan")), 1)
        r["ship_commit_p99_ms"] = round(pct(lat_ship, 0.99), 1)
        r["ship_commit_max_ms"] = round(max(lat_ship, default=float("nan")), 1)
        r["rpo_p50_ms"] = round(pct(rpo, 0.5))
        r["rpo_p99_ms"] = round(pct(rpo, 0.99))
        r["commits"] = len(rows)
        out = os.path.join(work, "latest.db")
        r["load_before_restore"] = round(os.getloadavg()[0], 1)
        r["restore_latest_s"] = round(tool.restore(out, 0), 2)
        for k, v in getattr(tool, "phases", {}).items():
            r[f"latest_{k}"] = v
        ids = ids_of(out)
        r["latest_missing"] = len(rows) - len(ids)
        t_back = last_end - TBACK_S * 1000
        out = os.path.join(work, "back.db")
        r["restore_back_s"] = round(tool.restore(out, t_back), 2)
        for k, v in getattr(tool, "phases", {}).items():
            r[f"back_{k}"] = v
        r["back_missing"], r["back_lost"], r["back_extra"] = exactness(ids_of(out), rows, t_back)
        if keep is not None:
            keep.append(tool)
    finally:
        if writer.p.poll() is None:
            writer.p.kill()
        try:
            tool.close()
        except Exception as e:  # the bench reports what it measured
            print(f"close {tool.name}: {e}", file=sys.stderr)
    return r


def restore_ab(tools):
    """The latest restored RESTORE_AB more times by each tool in turn:
    [(tidemark_s, litestream_s, load)]."""
    out = []
    for i in range(RESTORE_AB):
        load = os.getloadavg()[0]
        dt = []
        for tool in tools:
            f = os.path.join(tool.work, f"ab-{i}.db")
            dt.append(tool.restore(f, 0))
            for x in os.listdir(tool.work):
                if x.startswith(f"ab-{i}.db"):
                    os.unlink(os.path.join(tool.work, x))
        out.append((dt[0], dt[1], load))
    return out


def main():
    keep = os.environ.get("OUT")
    top = keep or tempfile.mkdtemp(prefix="tm-sqlitebench-")
    os.makedirs(top, exist_ok=True)
    base = os.path.join(top, "base.db")
    t0 = time.monotonic()
    if not os.path.exists(base):
        make_base(base)
    print(f"base: {os.path.getsize(base) / 1e6:.0f} MB in {time.monotonic() - t0:.0f} s; "
          f"interval {INTERVAL_MS} ms, steady {STEADY_S:.0f} s, restore to T-{TBACK_S:.0f} s, {RUNS} runs",
          flush=True)
    results = []
    pairs = []
    try:
        for k in range(RUNS):
            kept = []
            for cls in (Tidemark, Litestream):
                if cls.name not in TOOLS:
                    continue
                r = one_run(cls, base, os.path.join(top, f"{cls.name}-{k}"), kept)
                print(json.dumps(r), flush=True)
                results.append(r)
            if RESTORE_AB and len(kept) == 2:
                pairs += restore_ab(kept)
            if not KEEP_RUNS:
                for cls in (Tidemark, Litestream):
                    shutil.rmtree(os.path.join(top, f"{cls.name}-{k}"), ignore_errors=True)
    finally:
        if not keep:
            shutil.rmtree(top, ignore_errors=True)
    keys = [k for k in results[0] if k != "tool"]
    print("\nmedians of", RUNS, "runs")
    print(f"{'':22s} {'tidemark':>10s} {'litestream':>10s}")
    for k in keys:
        row = []
        for name in ("tidemark", "litestream"):
            v = [r[k] for r in results if r["tool"] == name and k in r]
            row.append(statistics.median(v) if v else float("nan"))
        print(f"{k:22s} {row[0]:10g} {row[1]:10g}")
    # Ratios within each run (the machine may be shared: a ratio of the same
    # run is steadier than a ratio of medians).
    for k in ("restore_latest_s", "restore_back_s"):
        ratios = []
        per = len(TOOLS)
        for i in range(RUNS):
            t = [r[k] for r in results[per * i:per * i + per] if r["tool"] == "tidemark"]
            ls = [r[k] for r in results[per * i:per * i + per] if r["tool"] == "litestream"]
            if t and ls and ls[0] > 0:
                ratios.append(t[0] / ls[0])
        if ratios:
            print(f"{k} tidemark/litestream per run: " +
                  " ".join(f"{x:.2f}" for x in ratios) + f" (median {statistics.median(ratios):.2f})")
    if pairs:
        ratios = [t / ls for t, ls, _ in pairs]
        print(f"paired restores of the latest ({len(pairs)}), tidemark / litestream s (load): " +
              ", ".join(f"{t:.2f}/{ls:.2f} ({ld:.1f})" for t, ls, ld in pairs))
        print(f"  median tidemark {statistics.median(p[0] for p in pairs):.2f} s, litestream "
              f"{statistics.median(p[1] for p in pairs):.2f} s, median ratio "
              f"{statistics.median(ratios):.2f}")
    print("load average at the end: %.1f %.1f %.1f" % os.getloadavg())


if __name__ == "__main__":
    main()
