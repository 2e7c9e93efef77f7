"""Helpers for the Redis AOF tests and the shipping-lag benchmark: a minimal
RESP client, the tail tool (tests/tools/tm_aof_tool) as a process, and
readers for what it ships (ranges.log, range files, SET commands in AOF
bytes)."""
import os
import signal
import subprocess

from tmtest.redis import Resp

TOOL = os.path.join(os.environ.get("TM_BUILD_DIR", "build"), "tests", "tm_aof_tool")
AOF_CONF = {"appendonly": "yes", "aof-timestamp-enabled": "yes", "appenddirname": "appendonlydir"}


class Client(Resp):
    """The RESP client of tmtest.redis with bulk replies as text (enough for
    SET/GET)."""

    def cmd(self, *args):
        r = self.call(*args)
        return r.decode() if isinstance(r, bytes) else r


class Tail:
    """tm_aof_tool tail AOFDIR SHIP as a process; stop() asks it to finish."""

    def __init__(self, aofdir, ship, interval_ms=50):
        self.ship = ship
        self.err = open(ship + ".stderr", "a")
        self.p = subprocess.Popen([TOOL, "tail", aofdir, ship, "--interval-ms", str(interval_ms)],
                                  stderr=self.err)

    def peak_rss_kib(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def kill(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(timeout=60)
        self.err.close()

    def stop(self):
        open(os.path.join(self.ship, "stop"), "w").close()
        rc = self.p.wait(timeout=120)
        self.err.close()
        return rc


def tool(*args, timeout=300):
    return subprocess.run([TOOL, *[str(a) for a in args]], capture_output=True, text=True, timeout=timeout)


def kv(line):
    return dict(x.split("=", 1) for x in line.split() if "=" in x)


def ranges(ship):
    """ranges.log as dicts (numbers as ints)."""
    out = []
    with open(os.path.join(ship, "ranges.log")) as f:
        for line in f:
            d = kv(line)
            for k in ("n", "seq", "start", "end", "first_ts", "last_ts", "bytes", "final", "torn",
                      "shipped_ms"):
                d[k] = int(d[k])
            out.append(d)
    return out


def range_bytes(ship, r):
    with open(os.path.join(ship, "r%06d" % r["n"]), "rb") as f:
        return f.read()


def state(ship):
    with open(os.path.join(ship, "state")) as f:
        return kv(f.read())


def parse_sets(data):
    """Every SET key value in AOF bytes (whole commands), in order."""
    out, i = [], 0
    while i < len(data):
        if data[i:i + 1] == b"#":
            i = data.index(b"\r\n", i) + 2
            continue
        j = data.index(b"\r\n", i)
        argc = int(data[i + 1:j])
        i = j + 2
        args = []
        for _ in range(argc):
            j = data.index(b"\r\n", i)
            n = int(data[i + 1:j])
            args.append(data[j + 2:j + 2 + n])
            i = j + 2 + n + 2
        if args[0].lower() == b"set":
            out.append((args[1].decode(), args[2].decode()))
    return out
