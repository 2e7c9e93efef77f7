"""Snapshot and restore of one SQLite database of N MB (default 100)
through a real coordinator and agent, two posix repositories, encryption
on: the snapshot's wall time and copy time, a 10 ms writer's commit
latency with shipping only and during the snapshot, and the time of a
restore of the latest state (snapshot + shipped WAL + integrity_check).
Not a test (no pass/fail): a figure for docs/SQLITE.md and the report.

    TM_BUILD_DIR=build python3 tests/bench/sqlite_snapshot/run.py 100
"""
import json, os, sqlite3, subprocess, sys, tempfile, time, threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "lib"))
os.environ.setdefault("TM_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
os.environ.setdefault("TM_BUILD_DIR", os.path.join(os.environ["TM_SOURCE_DIR"], "build"))
from tmtest.cluster import Cluster, binary
MB = int(sys.argv[1]) if len(sys.argv) > 1 else 100
tmp = tempfile.mkdtemp(prefix="tm-sqlite-bench-")
db = os.path.join(tmp, "big.db")
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
c.execute("BEGIN")
for i in range(MB * 1024):
    c.execute("INSERT INTO t (v) VALUES (randomblob(1000))")
c.execute("COMMIT")
c.close()
key = os.path.join(tmp, "k")
subprocess.run([binary("tidemark-agent"), "repo", "keygen", key], check=True, capture_output=True)
repo = (f"repositories:\n  - name: a\n    type: posix\n    path: {tmp}/ra\n"
        f"  - name: b\n    type: posix\n    path: {tmp}/rb\nencryption:\n  master_key_file: {key}\n")
lat = []
stop = False
def writer():
    w = sqlite3.connect(db, isolation_level=None, timeout=30)
    w.execute("PRAGMA busy_timeout=30000")
    while not stop:
        t0 = time.monotonic()
        w.execute("BEGIN IMMEDIATE"); w.execute("INSERT INTO t (v) VALUES (randomblob(100))"); w.execute("COMMIT")
        lat.append(time.monotonic() - t0)
        time.sleep(0.01)
with Cluster(heartbeat="200ms", extra_coord_yaml='policies:\n  - name: p\n    match:\n      kind: sqlite\n    schedule:\n      full: "0 3 1 1 *"\n      incremental: ""\n      snapshot: ""\n') as cl:
    cl.start_coordinator()
    cl.start_agent("db", targets=[("big", "sqlite", f"sqlite:\n  path: {db}\n")], extra=repo)
    time.sleep(3)
    th = threading.Thread(target=writer); th.start()
    time.sleep(1); lat.clear()
    time.sleep(3)
    base = sorted(lat); lat.clear()
    print(f"shipping only: commit latency p99 {base[int(len(base)*.99)-1]*1000:.1f} ms max {base[-1]*1000:.1f} ms over {len(base)} commits")
    t0 = time.monotonic()
    r = cl.ctl("backup", "run", "--target", "big", "--type", "snapshot", "--wait", "--json", timeout=600)
    dt = time.monotonic() - t0
    snaplat = sorted(lat); lat.clear()
    stop = True; th.join()
    res = json.loads(r.stdout)["result"]
    conf = os.path.join(cl.dir, "agents", "db", "agent.yaml")
    time.sleep(2)
    t1 = time.monotonic()
    rr = subprocess.run([binary("tidemark-agent"), "--config", conf, "restore", "--target", "big", "--output", f"{tmp}/out.db", "--json"], capture_output=True, text=True, env=cl.env)
    rt = time.monotonic() - t1
    print(f"db {MB} MB: snapshot {dt:.2f} s wall (copy_ms {res['extra'].get('copy_ms')}), stored {int(res['stored_bytes'])/1e6:.1f} MB; "
          f"writer commit latency during it: p99 {snaplat[int(len(snaplat)*.99)-1]*1000:.1f} ms max {snaplat[-1]*1000:.1f} ms over {len(snaplat)} commits")
    print(f"restore latest: {rt:.2f} s wall: {rr.stdout.strip() or rr.stderr}")
subprocess.run(["rm", "-rf", tmp])
