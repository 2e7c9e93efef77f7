"""Tidemark vs pgBackRest on one PostgreSQL 15 cluster (see run.sh for what is measured)."""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from tmtest import pg as pgmod
from tmtest.cluster import Cluster, binary, free_port
from tmtest.pg import Postgres

ap = argparse.ArgumentParser(prog="tests/bench/pg/run.sh")
ap.add_argument("--scale", type=int, default=100)
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--wal-minutes", type=float, default=3.0)
ap.add_argument("--backlog-segments", type=int, default=150, help="WAL backlog (segments) per WAL-push mode")
ap.add_argument("--backlog-seconds", type=int, default=60, help="at most this long building the backlog")
ap.add_argument("--workers", type=int, default=4, help="tidemark wal-archiver workers (async)")
ap.add_argument("--skip-wal-push", action="store_true")
ap.add_argument("--skip-rto", action="store_true")
opt = ap.parse_args()

TASKS_YAML = "tasks:\n  lease: 60s\n  max_attempts: 1\n  retry_backoff: 500ms\n  poll_max: 1s\n"
PASS = "bench-cipher-passphrase-0123456789abcdef"
TICK = os.sysconf("SC_CLK_TCK")
T_START = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T_START:7.1f}s] {msg}", flush=True)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def du(path, exclude=None):
    total = 0
    for root, dirs, files in os.walk(path):
        if exclude and os.path.abspath(root) == os.path.abspath(exclude):
            dirs[:] = []
            continue
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


def mb(b):
    return b / 1e6


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def proc_hwm(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def timed(argv, timeout, env=None, as_pg=True):
    """Run argv (as the postgres user when root); wall seconds, CPU seconds and
    peak RSS (KiB of the largest process of the tree) from wait4."""
    kw = pgmod.as_user_kwargs(env) if as_pg else {"env": env or dict(os.environ)}
    out = tempfile.TemporaryFile()
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, **kw)
    deadline = t0 + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.01)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    text = out.read().decode(errors="replace")
    if p.returncode != 0:
        raise SystemExit(f"FAILED ({p.returncode}, {wall:.1f}s): {' '.join(argv)}\n{text[-3000:]}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024, text


def sync():
    os.sync()


class Bench:
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="tm-pgbench-", dir=os.environ.get("TM_BENCH_DIR"))
        os.chmod(self.tmp, 0o755)
        self.agent = os.path.realpath(binary("tidemark-agent"))
        self.tm_repo = os.path.join(self.tmp, "tm-repo")
        self.pb_repo = os.path.join(self.tmp, "pgbr-repo")
        self.restores = os.path.join(self.tmp, "restores")
        for d in (self.tm_repo, self.pb_repo, self.restores, os.path.join(self.tmp, "pgbr-lock"),
                  os.path.join(self.tmp, "pgbr-log"), os.path.join(self.tmp, "pgbr-spool")):
            os.makedirs(d)
        self.key = os.path.join(self.tmp, "master.key")
        subprocess.run([self.agent, "repo", "keygen", self.key], check=True, capture_output=True)
        pgmod.chown_tree(self.tmp)
        self.results = {}

    # ---- setup -------------------------------------------------------------------------
    def setup(self):
        # The cluster's dir inside ours: a shared machine's /tmp/tm-it-* cleaner once
        # removed it mid-run (agent.yaml gone, archive_command failing).
        tempfile.tempdir, saved = self.tmp, tempfile.tempdir
        try:
            self.c = Cluster(heartbeat="200ms", extra_coord_yaml=TASKS_YAML)
        finally:
            tempfile.tempdir = saved
        self.c.__enter__()
        c = self.c
        self.pg = Postgres(self.tmp, "src", env=c.env, conf={
            "archive_mode": "on", "archive_command": "'/bin/true'", "max_wal_size": "'4GB'",
            "checkpoint_timeout": "'15min'", "shared_buffers": "'256MB'"})
        self.pg.initdb()
        self.pgyaml = (f"postgres:\n  pgdata: {self.pg.datadir}\n  host: 127.0.0.1\n  port: {self.pg.port}\n"
                       f"  user: postgres\n  parallel: 2\n")
        self.repo_yaml = (f"repositories:\n  - name: bench\n    type: posix\n    path: {self.tm_repo}\n"
                          f"encryption:\n  master_key_file: {self.key}\n  compress_level: 3\n")
        self.conf = c.agent_yaml("db-1", targets=[("pg", "postgres", self.pgyaml)], extra=self.repo_yaml)
        self.pbconf = os.path.join(self.tmp, "pgbackrest.conf")
        self.pbconf_async = os.path.join(self.tmp, "pgbackrest-async.conf")
        for path, extra in ((self.pbconf, ""), (self.pbconf_async, "archive-async=y\n")):
            with open(path, "w") as f:
                f.write(f"""[global]
repo1-type=posix
repo1-path={self.pb_repo}
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass={PASS}
repo1-retention-full=99
compress-type=zst
compress-level=3
process-max=2
start-fast=y
lock-path={self.tmp}/pgbr-lock
log-path={self.tmp}/pgbr-log
spool-path={self.tmp}/pgbr-spool
log-level-console=warn
log-level-file=off
{extra}
[bench]
pg1-path={self.pg.datadir}
pg1-port={self.pg.port}
pg1-socket-path={self.pg.sockdir}
pg1-user=postgres
""")
        pgmod.chown_tree(self.tmp)
        self.pg.start()
        log(f"PostgreSQL 15 on port {self.pg.port}; pgbench -i -s {opt.scale} ...")
        t0 = time.monotonic()
        self.pg._run(["pgbench", "-h", "127.0.0.1", "-p", str(self.pg.port), "-U", "postgres", "-i", "-s",
                      str(opt.scale), "-q", "-I", "dtGvp", "postgres"], timeout=3600)
        self.pg.psql("CHECKPOINT")
        log(f"pgbench -i done in {time.monotonic() - t0:.0f}s")
        self.pb("stanza-create")
        self.set_archive(f"{self.tm_push('pg')} && {self.pb_push(self.pbconf)}")
        self.pg.psql("SELECT pg_switch_wal()")
        c.start_coordinator()
        self.agent_proc = c.start_agent("db-1", as_pg_user=True, targets=[("pg", "postgres", self.pgyaml)],
                                        extra=self.repo_yaml)
        deadline = time.time() + 30
        while time.time() < deadline:
            if [a["state"] for a in c.ctl_json("agents", "list")] == ["online"]:
                break
            time.sleep(0.2)
        else:
            raise SystemExit("agent did not come online")
        dbsize = int(self.pg.psql("SELECT sum(pg_database_size(oid)) FROM pg_database"))
        self.src_bytes = du(self.pg.datadir, exclude=os.path.join(self.pg.datadir, "pg_wal"))
        self.results["db"] = dbsize
        log(f"database size {mb(dbsize):.0f} MB (all databases); data directory without pg_wal "
            f"{mb(self.src_bytes):.0f} MB on disk")

    def tm_push(self, target, flag=""):
        return f"{self.agent} --config {self.conf} wal-push {flag}--target {target} %p"

    def pb_push(self, conf):
        return f"pgbackrest --config {conf} --stanza=bench archive-push %p"

    def set_archive(self, cmd):
        self.pg.psql("ALTER SYSTEM SET archive_command = '" + cmd.replace("'", "''") + "'")
        self.pg.psql("SELECT pg_reload_conf()")
        time.sleep(0.3)

    def pb(self, *args, timeout=1800):
        return timed(["pgbackrest", "--config", self.pbconf, "--stanza=bench", *args], timeout, self.c.env)

    # ---- backup / restore ---------------------------------------------------------------
    def pb_backup(self):
        before = set(os.listdir(os.path.join(self.pb_repo, "backup", "bench")))
        wall, cpu, rss, _ = self.pb("backup", "--type=full")
        new = sorted(set(os.listdir(os.path.join(self.pb_repo, "backup", "bench"))) - before)
        new = [n for n in new if re.match(r"\d{8}-\d{6}F$", n)]
        size = du(os.path.join(self.pb_repo, "backup", "bench", new[-1]))
        return dict(wall=wall, cpu=cpu, rss=rss, stored=size)

    def tm_backup(self):
        pid = self.agent_proc.p.pid
        cpu0 = proc_cpu(pid)
        logdir = os.path.join(self.tm_repo, "pg", "log")
        size0 = du(self.tm_repo, exclude=logdir)
        t0 = time.monotonic()
        r = self.c.ctl("backup", "run", "--target", "pg", "--type", "full", "--wait", "--json", timeout=1800,
                       check=False)
        wall = time.monotonic() - t0
        if r.returncode != 0:
            raise SystemExit(f"tidemark backup failed: {r.stdout}{r.stderr}\n{self.agent_proc.output()[-3000:]}")
        res = json.loads(r.stdout).get("result", {})
        cpu = proc_cpu(pid) - cpu0
        return dict(wall=wall, agent=res.get("duration_ms", 0) / 1000.0, cpu=cpu, rss=proc_hwm(pid),
                    stored=du(self.tm_repo, exclude=logdir) - size0, stored_bytes=res.get("stored_bytes", 0),
                    bytes=res.get("bytes", 0), stop_lsn=res.get("stop_position"))

    def fresh_dest(self, name):
        dest = os.path.join(self.restores, name)
        shutil.rmtree(dest, ignore_errors=True)
        return dest

    def pb_restore(self):
        dest = self.fresh_dest("pgbr")
        os.makedirs(dest, 0o700)
        pgmod.chown_tree(dest)
        sync()
        wall, cpu, rss, _ = self.pb("restore", f"--pg1-path={dest}", "--type=immediate")
        size = du(dest)
        shutil.rmtree(dest, ignore_errors=True)
        return dict(wall=wall, cpu=cpu, rss=rss, size=size)

    def tm_restore(self):
        dest = self.fresh_dest("tm")
        sync()
        wall, cpu, rss, _ = timed([self.agent, "--config", self.conf, "restore", "--target", "pg", "--pgdata",
                                   dest, "--immediate"], 1800, self.c.env)
        size = du(dest)
        shutil.rmtree(dest, ignore_errors=True)
        return dict(wall=wall, cpu=cpu, rss=rss, size=size)

    def backup_restore(self):
        rows = {k: [] for k in ("pb_b", "tm_b", "pb_r", "tm_r")}
        for i in range(opt.runs):
            order = [("pb_b", self.pb_backup), ("tm_b", self.tm_backup)]
            if i % 2:
                order.reverse()
            for k, fn in order:
                self.pg.psql("CHECKPOINT")
                sync()
                rows[k].append(fn())
            order = [("pb_r", self.pb_restore), ("tm_r", self.tm_restore)]
            if i % 2:
                order.reverse()
            for k, fn in order:
                rows[k].append(fn())
            tb, pb_, tr, pr = rows["tm_b"][-1], rows["pb_b"][-1], rows["tm_r"][-1], rows["pb_r"][-1]
            log(f"run {i + 1}: backup pgbackrest {pb_['wall']:.2f}s tidemark {tb['wall']:.2f}s "
                f"(agent {tb['agent']:.2f}s); restore pgbackrest {pr['wall']:.2f}s tidemark {tr['wall']:.2f}s")
        self.rows = rows

    def report_backup_restore(self):
        r = self.rows
        src = r["tm_b"][0]["bytes"] or self.src_bytes
        m = {k: med([x["wall"] for x in v]) for k, v in r.items()}
        cpu = {k: med([x["cpu"] for x in v]) for k, v in r.items()}
        rss = {k: max(x["rss"] for x in v) for k, v in r.items()}
        agent = med([x["agent"] for x in r["tm_b"]])
        print()
        print(f"== full backup and restore: scale {opt.scale}, {mb(src):.0f} MB read per backup, "
              f"{opt.runs} runs each, medians (zstd -3, encrypted, 2 processes, posix repo, same disk)")
        print(f"{'':28s}{'pgBackRest':>14s}{'Tidemark':>14s}{'ratio TM/PB':>14s}")
        print(f"{'full backup wall (s)':28s}{m['pb_b']:14.2f}{m['tm_b']:14.2f}{m['tm_b'] / m['pb_b']:14.2f}"
              f"   (goal <= 0.50)")
        print(f"{'  agent-side duration (s)':28s}{'':14s}{agent:14.2f}{agent / m['pb_b']:14.2f}"
              f"   (dispatch overhead {m['tm_b'] - agent:.2f}s)")
        print(f"{'  throughput (MB/s)':28s}{mb(src) / m['pb_b']:14.0f}{mb(src) / m['tm_b']:14.0f}")
        print(f"{'  CPU seconds':28s}{cpu['pb_b']:14.1f}{cpu['tm_b']:14.1f}")
        print(f"{'restore wall (s)':28s}{m['pb_r']:14.2f}{m['tm_r']:14.2f}{m['tm_r'] / m['pb_r']:14.2f}"
              f"   (goal <= 0.50)")
        print(f"{'  throughput (MB/s)':28s}{mb(src) / m['pb_r']:14.0f}{mb(src) / m['tm_r']:14.0f}")
        print(f"{'  CPU seconds':28s}{cpu['pb_r']:14.1f}{cpu['tm_r']:14.1f}")
        later = ", ".join("%.0f" % mb(x["stored"]) for x in r["tm_b"][1:]) or "-"
        pbs, tms = r["pb_b"][0]["stored"], r["tm_b"][0]["stored"]
        print(f"{'stored size, 1st full (MB)':28s}{mb(pbs):14.0f}{mb(tms):14.0f}{tms / pbs:14.2f}"
              f"   (Tidemark result stored_bytes {mb(r['tm_b'][0]['stored_bytes']):.0f} MB;"
              f" later fulls add {later} MB)")
        print(f"{'peak RSS backup (MB)':28s}{mb(rss['pb_b']):14.0f}{mb(rss['tm_b']):14.0f}"
              f"   (pgBackRest: largest process; Tidemark: agent daemon VmHWM since start)")
        print(f"{'peak RSS restore (MB)':28s}{mb(rss['pb_r']):14.0f}{mb(rss['tm_r']):14.0f}")
        for k, name in (("pb_b", "pgBackRest backup"), ("tm_b", "Tidemark backup"),
                        ("pb_r", "pgBackRest restore"), ("tm_r", "Tidemark restore")):
            print(f"  {name:20s} runs: {', '.join('%.2f' % x['wall'] for x in r[k])} s")
        print(f"  Tidemark agent-side    runs: {', '.join('%.2f' % x['agent'] for x in r['tm_b'])} s")
        sys.stdout.flush()

    # ---- WAL push ------------------------------------------------------------------------
    def ready(self):
        st = os.path.join(self.pg.datadir, "pg_wal", "archive_status")
        return {f[:-6] for f in os.listdir(st) if f.endswith(".ready")}

    def walpush(self, mode):
        kw = pgmod.as_user_kwargs(self.c.env)
        self.set_archive("")  # PostgreSQL keeps the .ready files: a backlog builds
        # A checkpoint first (full-page images follow, as in production after every
        # checkpoint) and asynchronous commit, so pgbench writes WAL at the disk's pace
        # rather than the commit-fsync rate: the backlog reaches --backlog-segments.
        self.pg.psql("CHECKPOINT")
        env = dict(kw["env"], PGOPTIONS="-c synchronous_commit=off")
        gen = subprocess.Popen(["pgbench", "-h", "127.0.0.1", "-p", str(self.pg.port), "-U", "postgres",
                                "-T", str(opt.backlog_seconds + 5), "-c", "4", "-j", "2", "-n", "postgres"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               **dict(kw, env=env))
        # Plus bulk inserts (md5 text, ~2:1 under zstd like pgbench's WAL) so that a
        # backlog of hundreds of segments builds in seconds on a small machine.
        self.pg.psql("CREATE TABLE IF NOT EXISTS bench_fill (id int, t text, at timestamptz)")
        t_end = time.monotonic() + opt.backlog_seconds
        while time.monotonic() < t_end and len(self.ready()) < opt.backlog_segments:
            self.pg.psql("INSERT INTO bench_fill SELECT g, md5(g::text), now() FROM generate_series(1, 100000) g")
        self.pg.psql("TRUNCATE bench_fill")
        gen.terminate()
        gen.wait()
        self.pg.psql("SELECT pg_switch_wal()")
        backlog = self.ready()
        helper = None
        if mode == "tidemark sync":
            cmd = self.tm_push("wp-sync")
        elif mode == "tidemark async":
            cmd = self.tm_push("wp-async", "--async ")
            helper = subprocess.Popen([self.agent, "--config", self.conf, "wal-archiver", "--target", "wp-async",
                                       "--pgdata", self.pg.datadir, "--workers", str(opt.workers),
                                       "--interval-ms", "50"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        elif mode == "pgbackrest sync":
            cmd = self.pb_push(self.pbconf)
        else:
            cmd = self.pb_push(self.pbconf_async)
        load = subprocess.Popen(["pgbench", "-h", "127.0.0.1", "-p", str(self.pg.port), "-U", "postgres",
                                 "-T", "900", "-c", "4", "-j", "2", "-n", "postgres"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        t0 = time.monotonic()
        self.set_archive(cmd)
        deadline = t0 + 600
        left = backlog
        while time.monotonic() < deadline:
            left = backlog & self.ready()
            if not left:
                break
            time.sleep(0.05)
        dt = time.monotonic() - t0
        load.terminate()
        load.wait()
        if helper:
            helper.terminate()
            helper.wait()
        n = len(backlog) - len(left)
        rate = n / dt
        log(f"WAL push {mode:16s}: {n}/{len(backlog)} backlog segments in {dt:.1f}s under pgbench load: "
            f"{rate:.1f} segments/s ({rate * 16:.0f} MiB/s)")
        return rate, len(backlog)

    # ---- RTO -----------------------------------------------------------------------------
    def rto(self):
        self.set_archive(self.tm_push("pg"))
        self.pg.psql("SELECT pg_switch_wal()")
        self.pg.psql("CHECKPOINT")
        b = self.tm_backup()
        lsn0 = self.pg.psql("SELECT pg_current_wal_lsn()")
        log(f"RTO: full backup {b['wall']:.1f}s (stop LSN {b['stop_lsn']}); pgbench writes for "
            f"{opt.wal_minutes:g} min ...")
        self.pg.pgbench("-T", str(int(opt.wal_minutes * 60)), "-c", "4", "-j", "2", "-n")
        lsn1 = self.pg.psql("SELECT pg_current_wal_lsn()")
        start = b["stop_lsn"] or lsn0
        wal = int(float(self.pg.psql(f"SELECT pg_wal_lsn_diff('{lsn1}', '{start}')")))
        self.pg.psql("SELECT pg_switch_wal()")
        t0 = time.monotonic()
        while self.ready() and time.monotonic() < t0 + 900:
            if self.pg.psql("SELECT failed_count > 0 AND last_failed_time > now() - interval '5 s' "
                            "AND (last_archived_time IS NULL OR last_failed_time > last_archived_time) "
                            "FROM pg_stat_archiver") == "t" and time.monotonic() > t0 + 30:
                raise SystemExit("archive_command is failing:\n" + self.pg.log_tail())
            time.sleep(0.2)
        log(f"RTO: {mb(wal):.0f} MB of WAL written after the backup ({wal / 16777216:.0f} segments); archive "
            f"drained {time.monotonic() - t0:.1f}s after the load stopped")
        dest = self.fresh_dest("rto")
        port = free_port()
        sync()
        t0 = time.monotonic()
        wall, cpu, rss, out = timed([self.agent, "--config", self.conf, "restore", "--target", "pg",
                                     "--pgdata", dest, "--start", "--port", str(port)], 3600, self.c.env)
        t_cmd = time.monotonic() - t0
        p = Postgres.__new__(Postgres)
        p.base, p.datadir, p.sockdir, p.port = self.restores, dest, self.pg.sockdir, port
        p.logfile, p.bin, p.env = os.path.join(dest, "rto.log"), self.pg.bin, None
        while time.monotonic() < t0 + 3600:
            if p.psql("SELECT pg_is_in_recovery()", check=False) == "f":
                break
            time.sleep(0.05)
        rto = time.monotonic() - t0
        p.stop("immediate")
        shutil.rmtree(dest, ignore_errors=True)
        print()
        print(f"== RTO: restore to the latest point (Tidemark standalone restore --start), "
              f"{opt.wal_minutes:g} min of pgbench WAL")
        print(f"  WAL to replay after the backup: {mb(wal):.0f} MB ({wal / 16777216:.0f} segments)")
        print(f"  restore command: {t_cmd:.1f}s; total until connections accepted and "
              f"pg_is_in_recovery() = false: {rto:.1f}s  ({mb(wal) / rto:.0f} MB/s of WAL incl. file restore)")
        print(f"  restore process CPU {cpu:.1f}s, peak RSS {mb(rss):.0f} MB")
        sys.stdout.flush()

    def close(self):
        if hasattr(self, "pg"):
            self.pg.stop("immediate")
        if hasattr(self, "c"):
            keep = os.environ.get("TM_BENCH_LOGS")
            if keep:
                os.makedirs(keep, exist_ok=True)
                for p in self.c.procs:
                    try:
                        shutil.copy(p.log_path, os.path.join(keep, p.name.replace(" ", "-") + ".log"))
                    except OSError as e:
                        print(f"cannot keep {p.log_path}: {e}")
            self.c.__exit__(None, None, None)
        if not os.environ.get("TM_KEEP_TMP"):
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print(f"kept {self.tmp}")


def main():
    ver = subprocess.run(["pgbackrest", "version"], capture_output=True, text=True).stdout.strip()
    pgver = subprocess.run([os.path.join(pgmod.bindir(), "postgres"), "--version"], capture_output=True,
                           text=True).stdout.strip()
    print(f"Tidemark PostgreSQL benchmark: {ver}, {pgver}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    print(f"scale {opt.scale}, {opt.runs} runs, WAL backlog {opt.backlog_segments} segments/mode, "
          f"RTO WAL {opt.wal_minutes:g} min")
    b = Bench()
    try:
        b.setup()
        b.backup_restore()
        b.report_backup_restore()
        if not opt.skip_wal_push:
            rates = {}
            for mode in ("tidemark sync", "tidemark async", "pgbackrest sync", "pgbackrest async"):
                rates[mode] = b.walpush(mode)
            print()
            print(f"== WAL push under pgbench load (-c 4 -j 2), backlog of up to {opt.backlog_segments} segments "
                  f"(at most {opt.backlog_seconds}s of pgbench) drained")
            for mode, (rate, n) in rates.items():
                print(f"  {mode:18s}{rate:8.1f} segments/s  ({rate * 16:5.0f} MiB/s, backlog {n} segments)")
            print(f"  ratio Tidemark/pgBackRest: sync {rates['tidemark sync'][0] / rates['pgbackrest sync'][0]:.2f}, "
                  f"async {rates['tidemark async'][0] / rates['pgbackrest async'][0]:.2f} (higher is better)")
            sys.stdout.flush()
        if not opt.skip_rto:
            b.rto()
        print(f"\nload average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
              f"total {time.monotonic() - T_START:.0f}s")
    finally:
        b.close()


if __name__ == "__main__":
    main()
