"""Turso engine figures against the STAND-IN (tests/lib/tmtest/turso_standin.py,
NOT Turso: a Python http.server on 127.0.0.1, so the provider side here is
slower than Turso's and the network is loopback). What it measures is
Tidemark's side: the dump streamed through the pipeline into two posix
repositories, the replay into a local SQLite file, and the load into a new
database in batches of 100 statements.

  TM_BUILD_DIR=build PYTHONPATH=tests/lib python3 tests/bench/turso/bench_turso.py [ROWS]
"""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

from tmtest.cluster import Cluster, binary
from tmtest.runner import wait_for
from tmtest.turso_standin import TursoStandin


def main():
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
    tmp = tempfile.mkdtemp(prefix="tm-tursobench-")
    t = TursoStandin(os.path.join(tmp, "standin")).start()
    c = None
    try:
        db = t.create_db("big")
        con = sqlite3.connect(db.path)
        con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, payload TEXT, n REAL)")
        con.executemany("INSERT INTO items (payload, n) VALUES (?, ?)",
                        ((f"row {i} " + "x" * 90, i * 0.5) for i in range(rows)))
        con.commit()
        con.close()
        token = os.path.join(tmp, "token")
        with open(os.open(token, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(t.api_token)
        key = os.path.join(tmp, "master.key")
        subprocess.run([binary("tidemark-agent"), "repo", "keygen", key], check=True,
                       capture_output=True)
        tempfile.tempdir, saved = tmp, tempfile.tempdir
        try:
            c = Cluster(heartbeat="200ms", extra_coord_yaml="tasks:\n  lease: 30s\n")
        finally:
            tempfile.tempdir = saved
        c.__enter__()
        c.start_coordinator()
        out = os.path.join(tmp, "out")
        os.makedirs(out)
        yaml = (f"turso:\n  organization: acme\n  database: big\n  api_token_file: {token}\n"
                f"  api_url: {t.url}\n  db_url: {t.url}/db/{{name}}\n")
        c.start_agent("db-1", targets=[("big", "turso", yaml)], extra=(
            f"repositories:\n  - name: a\n    type: posix\n    path: {tmp}/repo-a\n"
            f"  - name: b\n    type: posix\n    path: {tmp}/repo-b\n"
            f"encryption:\n  master_key_file: {key}\nrestore_roots:\n  - {out}\n"))
        wait_for(lambda: c.agents_by_host().get("db-1", {}).get("state") == "online", 15, "agent")
        conf = os.path.join(c.dir, "agents", "db-1", "agent.yaml")
        t0 = time.monotonic()
        r = c.ctl("backup", "run", "--target", "big", "--type", "snapshot", "--wait", "--json",
                  timeout=900)
        backup_s = time.monotonic() - t0
        res = json.loads(r.stdout)["result"]
        t0 = time.monotonic()
        subprocess.run([binary("tidemark-agent"), "--config", conf, "restore", "--target", "big",
                        "--output", os.path.join(out, "big.db")], check=True, env=c.env,
                       capture_output=True, timeout=900)
        local_s = time.monotonic() - t0
        t0 = time.monotonic()
        subprocess.run([binary("tidemark-agent"), "--config", conf, "restore", "--target", "big",
                        "--to-turso", "big-restored"], check=True, env=c.env,
                       capture_output=True, timeout=1800)
        remote_s = time.monotonic() - t0
        n = t.query("big-restored", "SELECT count(*) FROM items")[0][0]
        assert n == rows, (n, rows)
        mb = int(res["bytes"]) / 1e6
        print(f"rows {rows}: SQL dump {mb:.1f} MB, stored {int(res['stored_bytes']) / 1e6:.1f} MB "
              f"per repository")
        print(f"  backup (dump -> 2 repositories): {backup_s:.2f} s ({mb / backup_s:.1f} MB/s, "
              f"task round trip included)")
        print(f"  restore --output (local SQLite): {local_s:.2f} s ({mb / local_s:.1f} MB/s)")
        print(f"  restore --to-turso (stand-in):   {remote_s:.2f} s")
    finally:
        if c is not None:
            c.__exit__(None, None, None)
        t.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
