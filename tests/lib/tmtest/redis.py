"""A real redis-server for tests: a config file in a temp dir, started on a
free 127.0.0.1 port, stopped at the end.

    with Redis(base, users={"tmbackup": (password, "-@all +sync +replconf")}) as r:
        populate(r, keys=200)
        r.cli("DBSIZE")

Options: conf (extra redis.conf directives, name -> value), users (ACL users:
name -> (password, rules)), replicaof (another Redis: this one starts as its
replica), rdb (a file copied in as the dump loaded at start). The default user
stays open (no password) for the test's own admin commands; the users the
code under test logs in as are the ACL users. DEBUG is enabled so tests can
compare DEBUG DIGEST (the whole dataset, TTLs included).
"""
import os
import random
import shutil
import signal
import subprocess
import time

from tmtest.cluster import free_port


def write_secret(path, secret):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return path


def gen_password():
    return os.urandom(16).hex()


class Redis:
    def __init__(self, base, name="redis", port=None, conf=None, users=None, replicaof=None, rdb=None):
        self.base = base
        self.name = name
        self.dir = os.path.join(base, name)
        self.port = port or free_port()
        self.conf = conf or {}
        self.users = users or {}
        self.replicaof = replicaof
        self.rdb = rdb
        self.proc = None
        self.logfile = os.path.join(self.dir, "server.log")
        self.conffile = os.path.join(self.dir, "redis.conf")
        os.makedirs(self.dir, exist_ok=True)

    def write_conf(self):
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.dir}",
            "dbfilename dump.rdb",
            f"logfile {self.logfile}",
            "daemonize no",
            'save ""',
            "appendonly no",
            "enable-debug-command yes",
            "databases 16",
        ]
        if self.replicaof is not None:
            lines.append(f"replicaof 127.0.0.1 {self.replicaof.port}")
        for k, v in self.conf.items():
            lines.append(f"{k} {v}")
        for user, (password, rules) in self.users.items():
            lines.append(f"user {user} on >{password} {rules}")
        fd = os.open(self.conffile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout=60, wait_loaded=True):
        if self.rdb is not None:
            shutil.copyfile(self.rdb, os.path.join(self.dir, "dump.rdb"))
        self.write_conf()
        self.proc = subprocess.Popen(["redis-server", self.conffile], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.proc.returncode}\n{self.log_tail()}")
            r = self._cli_raw(["PING"], check=False)
            out = r.stdout.strip()
            if out == "PONG" or (not wait_loaded and out.startswith("LOADING")):
                return self
            time.sleep(0.05)
        raise AssertionError(f"redis-server on {self.port} not ready after {timeout}s\n{self.log_tail()}")

    def _cli_raw(self, args, db=0, check=True, input=None):
        argv = ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "-n", str(db)] + [str(a) for a in args]
        r = subprocess.run(argv, capture_output=True, text=input is None or isinstance(input, str),
                           input=input, timeout=600)
        if check and r.returncode != 0:
            raise AssertionError(f"redis-cli {args}: {r.stderr}")
        return r

    def cli(self, *args, db=0):
        """One command as the default user; its reply (redis-cli's plain output)."""
        out = self._cli_raw(args, db=db).stdout.strip()
        if out.startswith("ERR") or out.startswith("(error)"):
            raise AssertionError(f"redis-cli {args}: {out}")
        return out

    def pipe(self, resp_bytes):
        """Mass insertion: RESP commands through redis-cli --pipe."""
        r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "--pipe"],
                           input=resp_bytes, capture_output=True, timeout=1800)
        if r.returncode != 0 or b"errors: 0" not in r.stdout:
            raise AssertionError(f"redis-cli --pipe: {r.stdout[-500:]!r} {r.stderr[-500:]!r}")

    def info(self, section=""):
        out = self._cli_raw(["INFO", section] if section else ["INFO"]).stdout
        d = {}
        for line in out.splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                d[k] = v.strip()
        return d

    def keyspace(self):
        """{db: (keys, expires)} from INFO keyspace."""
        out = {}
        for k, v in self.info("keyspace").items():
            if k.startswith("db"):
                f = dict(x.split("=") for x in v.split(","))
                out[int(k[2:])] = (int(f["keys"]), int(f["expires"]))
        return out

    def digest(self):
        """DEBUG DIGEST: one hash over every key, value and expire time."""
        return self.cli("DEBUG", "DIGEST")

    def wait_replica_up(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            i = self.info("replication")
            if i.get("master_link_status") == "up" and i.get("master_sync_in_progress") == "0":
                return
            time.sleep(0.1)
        raise AssertionError(f"replica {self.port} link not up after {timeout}s\n{self.log_tail()}")

    def redis_cli_rdb(self, path, timeout=600):
        """The reference: redis-cli --rdb (as the default user)."""
        r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "--rdb", path],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"redis-cli --rdb: {r.stdout} {r.stderr}")
        return path

    def log_tail(self, n=3000):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self._cli_raw(["SHUTDOWN", "NOSAVE"], check=False)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def resp(*args):
    """One command in RESP."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def mixed_dataset(keys, dbs=(0, 1, 5), seed=1, big=True, prefix=""):
    """RESP for a dataset with every type and encoding Redis 7.0 writes:
    strings (integers, short, long compressible = LZF, random), hashes, lists,
    sets (intset and hashtable) and sorted sets, each both small (listpack)
    and large; streams with consumer groups and pending entries; a share of
    keys with a TTL (long enough not to expire during a test); several
    databases. keys = keys per type per database; prefix makes the names of
    another batch distinct."""
    rnd = random.Random(seed)
    cmds = []
    for db in dbs:
        cmds.append(resp("SELECT", db))
        for i in range(keys):
            p = f"{prefix}d{db}:{i}"
            kind = i % 4
            cmds.append(resp("SET", f"s:{p}", [i, f"v{i}", "x" * (30 + i % 200),
                                               rnd.randbytes(40 + i % 300)][kind]))
            n = 3 + i % 10 if kind < 3 or not big else 300
            cmds.append(resp("HSET", f"h:{p}", *sum(([f"f{j}", f"val{j}" * (1 + j % 3)] for j in range(n)), [])))
            cmds.append(resp("RPUSH", f"l:{p}", *[f"e{j}" * (1 + j % 4) for j in range(n if kind < 3 else 2000)]))
            if kind % 2 == 0:
                cmds.append(resp("SADD", f"si:{p}", *range(i, i + n)))
            else:
                cmds.append(resp("SADD", f"ss:{p}", *[f"m{j}" for j in range(n)]))
            cmds.append(resp("ZADD", f"z:{p}", *sum(([j * 1.5, f"z{j}"] for j in range(n)), [])))
            if i % 10 == 0:
                cmds.append(resp("EXPIRE", f"s:{p}", 100000 + i))
                cmds.append(resp("PEXPIRE", f"h:{p}", 200000000 + i))
        for i in range(max(1, keys // 20)):
            s = f"x:{prefix}d{db}:{i}"
            for j in range(50):
                cmds.append(resp("XADD", s, "*", "f", j, "g", "w" * (j % 7)))
            cmds.append(resp("XGROUP", "CREATE", s, "grp", "0"))
            cmds.append(resp("XREADGROUP", "GROUP", "grp", "alice", "COUNT", 5, "STREAMS", s, ">"))
            cmds.append(resp("XREADGROUP", "GROUP", "grp", "bob", "COUNT", 3, "STREAMS", s, ">"))
            cmds.append(resp("XACK", s, "grp", "0-1"))
    return b"".join(cmds)


class Resp:
    """A minimal RESP2 client over one socket (the harness has no redis-py):
    enough for the per-type reads of dataset_digest and the logging writer."""

    def __init__(self, port, host="127.0.0.1", timeout=60):
        import socket
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.f = self.s.makefile("rb")

    def close(self):
        self.f.close()
        self.s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise AssertionError(f"redis error: {rest.decode()}")
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError(f"bad RESP line {line!r}")

    def call(self, *args):
        self.s.sendall(resp(*args))
        return self._read()


def dataset_digest(port, dbs=range(16)):
    """{db: (keys, sha256)} over every key, its type, its value read by type
    (sorted where Redis's order is not part of the value) and its absolute
    expire time (PEXPIRETIME, so the digest does not move with the clock).
    No DEBUG DIGEST: it is what a production server would not allow."""
    import hashlib
    out = {}
    with Resp(port) as c:
        for db in dbs:
            c.call("SELECT", db)
            keys, cursor = [], b"0"
            while True:
                cursor, batch = c.call("SCAN", cursor, "COUNT", 1000)
                keys += batch
                if cursor == b"0":
                    break
            if not keys:
                continue
            h = hashlib.sha256()
            for k in sorted(set(keys)):
                t = c.call("TYPE", k)
                if t == "string":
                    v = [c.call("GET", k)]
                elif t == "hash":
                    v = c.call("HGETALL", k)
                    v = sorted(zip(v[0::2], v[1::2]))
                elif t == "list":
                    v = c.call("LRANGE", k, 0, -1)
                elif t == "set":
                    v = sorted(c.call("SMEMBERS", k))
                elif t == "zset":
                    v = c.call("ZRANGE", k, 0, -1, "WITHSCORES")
                elif t == "stream":
                    v = c.call("XRANGE", k, "-", "+")
                    v = v + [c.call("XINFO", "GROUPS", k)]
                else:
                    v = [t]
                h.update(repr((k, t, v, c.call("PEXPIRETIME", k))).encode())
            out[db] = (len(set(keys)), h.hexdigest())
    return out
