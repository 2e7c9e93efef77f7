"""A real PostgreSQL for tests: initdb in a temp dir, started on a free
127.0.0.1 port, stopped at the end.

PostgreSQL refuses to run as root, and CI runs as root: then the server, its
archive_command and restore_command run as the `postgres` system user (made
by Debian's postgresql package), and the data dir is owned by it. Programs
are found with `pg_config --bindir`, never by a fixed path.
"""
import os
import pwd
import shutil
import signal
import subprocess
import time

from tmtest.cluster import free_port


def bindir():
    d = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
    # libpq-dev's pg_config may name /usr/bin; the server programs live beside postgres.
    if not os.path.exists(os.path.join(d, "postgres")):
        for cand in sorted(os.listdir("/usr/lib/postgresql"), reverse=True):
            p = os.path.join("/usr/lib/postgresql", cand, "bin")
            if os.path.exists(os.path.join(p, "postgres")):
                return p
    return d


def run_user():
    """The user PostgreSQL runs as: ourselves, or `postgres` when we are root."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam("postgres")


def as_user_kwargs(env=None):
    u = run_user()
    env = dict(env or os.environ)
    if u is None:
        return {"env": env}
    env["HOME"] = u.pw_dir
    env["USER"] = env["LOGNAME"] = u.pw_name

    def demote():
        os.setgid(u.pw_gid)
        os.initgroups(u.pw_name, u.pw_gid)
        os.setuid(u.pw_uid)
    return {"env": env, "preexec_fn": demote}


def chown_tree(path):
    """Give path (and everything below it) to the PostgreSQL user."""
    u = run_user()
    if u is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, u.pw_uid, u.pw_gid)
        for f in files:
            os.chown(os.path.join(root, f), u.pw_uid, u.pw_gid)


class Postgres:
    def __init__(self, base, name="pg", port=None, checksums=True, conf=None, env=None):
        self.base = base
        self.datadir = os.path.join(base, name)
        self.sockdir = os.path.join(base, name + "-sock")
        self.port = port or free_port()
        self.logfile = os.path.join(self.sockdir, "server.log")
        self.bin = bindir()
        self.env = env
        self.checksums = checksums
        self.conf = conf or {}
        os.makedirs(self.sockdir, exist_ok=True)
        os.chmod(base, 0o755)
        chown_tree(self.sockdir)

    def _run(self, argv, check=True, **kw):
        kwargs = as_user_kwargs(self.env)
        kwargs.update(kw)
        return subprocess.run(argv, capture_output=True, text=True, check=check, **kwargs)

    def initdb(self):
        os.makedirs(self.datadir, exist_ok=True)
        chown_tree(self.datadir)
        args = [os.path.join(self.bin, "initdb"), "-D", self.datadir, "-A", "trust", "-U", "postgres",
                "--no-sync", "-E", "UTF8", "--locale=C"]
        if self.checksums:
            args.append("--data-checksums")
        self._run(args)
        self.write_conf(dict({
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.sockdir}'",
            "wal_level": "replica",
            "max_wal_senders": "4",
            "fsync": "on",
            "logging_collector": "off",
        }, **self.conf))
        return self

    def write_conf(self, settings):
        with open(os.path.join(self.datadir, "postgresql.auto.conf"), "a") as f:
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")

    def start(self, timeout=60):
        r = self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.datadir, "-l", self.logfile, "-w",
                       "-t", str(timeout), "start"], check=False)
        if r.returncode != 0:
            raise AssertionError(f"pg_ctl start failed: {r.stdout}{r.stderr}\n{self.log_tail()}")
        return self

    def stop(self, mode="fast"):
        if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.datadir, "-m", mode, "-w", "stop"],
                      check=False)

    def kill9(self):
        pid_file = os.path.join(self.datadir, "postmaster.pid")
        if os.path.exists(pid_file):
            with open(pid_file) as f:
                pid = int(f.readline())
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)

    def log_tail(self, n=3000):
        try:
            with open(self.logfile) as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def psql(self, sql, db="postgres", check=True):
        r = self._run(["psql", "-X", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
                       "-v", "ON_ERROR_STOP=1", "-Atq", "-c", sql], check=False)
        if check and r.returncode != 0:
            raise AssertionError(f"psql failed: {sql}\n{r.stderr}")
        return r.stdout.strip()

    def pgbench(self, *args, db="postgres"):
        return self._run(["pgbench", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", *args, db])

    def conninfo(self):
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop("immediate")
        return False
