"""Redis AOF shipping and point-in-time restore through the engine's
building blocks (agent/engines/redis: aof_tail, aof_truncate, aof_manifest,
aof_config) driven by tests/tools/tm_aof_tool, against real redis-server 7.0
processes on loopback (multi-part AOF, appendonly yes, aof-timestamp-enabled
yes).

A writer logs (key, value, time) for every write across several seconds; the
tail ships the AOF into a directory of ranges while BGREWRITEAOF is forced
twice, once with the tail killed (SIGKILL) until Redis has deleted the old
incr file, then restarted: only the pin on disk keeps that file. The ranges must be gap-free per file and
hold every logged write exactly once. Then, for several target times, the
restore (newest base old enough + its incr files cut at the target) is
loaded into a fresh redis-server: exactly the writes up to the target exist.

Time resolution: "#TS:" annotations are whole unix seconds (of the server's
cached clock, refreshed at least every 100 ms). The writer therefore writes
only in the middle of each second (from .25 to .75) and a write whose send
and acknowledgement straddle that window is marked ambiguous; targets are
whole seconds T whose writes in T and T+1 are all unambiguous, and the check
is: every write of a second <= T exists with its value, none after."""
import os
import random
import shutil
import subprocess
import tempfile
import time

from tmtest.aof import AOF_CONF, Client, Tail, kv, parse_sets, range_bytes, ranges, state, tool
from tmtest.redis import Redis
from tmtest.runner import check, run, test, wait_for


def incr_files(ship):
    """{seq: bytes} assembled from the shipped incr ranges; gap-free or fail."""
    files = {}
    for r in sorted((r for r in ranges(ship) if r["type"] == "i"), key=lambda r: (r["seq"], r["start"])):
        have = files.setdefault(r["seq"], bytearray())
        check(r["start"] == len(have), f"gap in {r['file']}: shipped up to {len(have)}, next range at {r['start']}")
        data = range_bytes(ship, r)
        check(len(data) == r["bytes"] == r["end"] - r["start"], f"range {r} has {len(data)} bytes")
        have += data
    seqs = sorted(files)
    check(seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"incr files shipped: {seqs}")
    return files


class Writer:
    """Writes unique keys in the middle of each second; logs (key, value,
    second, ambiguous)."""

    def __init__(self, port):
        self.c = Client(port)
        self.log = []
        self.n = 0

    def second(self, count):
        """Wait for the next second's .25 and write up to count keys before .75."""
        now = time.time()
        s = int(now) + 1
        time.sleep(max(0.0, s + 0.25 - now))
        for _ in range(count):
            t0 = time.time()
            if t0 >= s + 0.75:
                break
            k, v = f"k:{self.n}", f"v{self.n}:{random.randrange(1 << 30)}"
            self.n += 1
            self.c.cmd("SET", k, v)
            t1 = time.time()
            amb = int(t0) != s or int(t1) != s or t1 - s > 0.9
            self.log.append((k, v, s, amb))
        return s


def wait_rewrite_done(r, timeout=120):
    wait_for(lambda: r.info("persistence").get("aof_rewrite_in_progress") == "0"
             and r.info("persistence").get("aof_rewrite_scheduled") == "0", timeout, "AOF rewrite done")


@test
def ship_across_rewrites_gap_free_and_restore_to_times():
    with tempfile.TemporaryDirectory(prefix="tm-aof-") as base, Redis(base, conf=AOF_CONF) as r:
        aofdir = os.path.join(r.dir, "appendonlydir")
        ship = os.path.join(base, "ship")
        tail = Tail(aofdir, ship)
        w = Writer(r.port)
        seconds = []
        for i in range(10):
            seconds.append(w.second(15))
            if i == 3:
                r.cli("BGREWRITEAOF")
            if i == 6:
                # Kill the tail (an agent crash), retire the incr file it
                # follows, and only then restart it: the pin on disk is all
                # that is left of that file's unshipped end.
                manifest_before = open(os.path.join(aofdir, "appendonly.aof.manifest")).read()
                tail.kill()
                seconds.append(w.second(15))
                r.cli("BGREWRITEAOF")
                wait_rewrite_done(r)
                old = [l.split()[1] for l in manifest_before.splitlines() if l.endswith("type i")]
                wait_for(lambda: not any(os.path.exists(os.path.join(aofdir, f)) for f in old), 60,
                         f"Redis deleting the retired incr files {old}")
                pinned = os.listdir(aofdir + ".tidemark-pin")
                check(set(old) <= set(pinned), f"retired {old} still pinned: {pinned}")
                tail = Tail(aofdir, ship)
        wait_rewrite_done(r)
        final = r.info("persistence")
        check(tail.stop() == 0, "tail exits cleanly")
        st = state(ship)
        check(st["timestamps"] == "1", f"timestamps seen: {st}")
        rs = ranges(ship)
        bases = [x for x in rs if x["type"] == "b"]
        check(len(bases) == 3, f"three bases shipped (start + two rewrites): {[b['file'] for b in bases]}")
        # Time spans: known for every range (also the first after the restart),
        # never backwards, within the writing.
        spans = [(x["first_ts"], x["last_ts"]) for x in sorted(rs, key=lambda x: (x["seq"], x["start"]))
                 if x["type"] == "i" and x["bytes"] > 0]
        check(all(seconds[0] - 1 <= a <= b <= seconds[-1] + 1 for a, b in spans), f"time spans {spans}")
        check(all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1)), f"spans in order {spans}")
        files = incr_files(ship)
        check(len(files) >= 3, f"at least three incr files: {sorted(files)}")
        # The followed file ends where Redis's current incr file ends.
        cur = st["position"].rsplit(":", 1)
        with open(os.path.join(aofdir, cur[0]), "rb") as f:
            check(f.read() == bytes(files[max(files)]), "the current incr file shipped to its end")
        shipped = [s for seq in sorted(files) for s in parse_sets(bytes(files[seq]))]
        logged = [(k, v) for k, v, _, _ in w.log]
        check(shipped == logged, f"every write shipped once, in order: {len(shipped)} shipped, {len(logged)} logged")
        # Finished files are unpinned; the followed one stays pinned for a restart.
        pins = os.listdir(aofdir + ".tidemark-pin")
        check(pins == [cur[0]], f"pins left after the tail stopped: {pins}, following {cur[0]}")
        # Targets: whole seconds whose writes (and the next second's) are unambiguous.
        by_sec = {}
        for k, v, s, amb in w.log:
            by_sec.setdefault(s, []).append(amb)
        good = [s for s in seconds[:-1] if s in by_sec and s + 1 in by_sec
                and not any(by_sec[s]) and not any(by_sec[s + 1])]
        check(len(good) >= 3, f"enough unambiguous seconds: {by_sec.keys()} -> {good}")
        targets = sorted(random.sample(good, 3)) + [seconds[-1] + 5]
        print(f"targets {targets} of seconds {seconds}; rewrites {final.get('aof_rewrites')}")
        for i, t in enumerate(targets):
            name = f"restore{i}"
            out = os.path.join(base, name, "appendonlydir")
            p = tool("truncate", ship, t, out)
            check(p.returncode == 0, f"truncate to {t}: {p.stderr}")
            res = kv(p.stdout)
            with Redis(base, name=name, conf=AOF_CONF) as fresh:
                c = Client(fresh.port)
                want = [(k, v) for k, v, s, _ in w.log if s <= t]
                present = sum(1 for k, v, s, _ in w.log if c.cmd("GET", k) is not None)
                wrong = [(k, v) for k, v in want if c.cmd("GET", k) != v]
                later = [k for k, v, s, _ in w.log if s > t and c.cmd("GET", k) is not None]
                dbsize = c.cmd("DBSIZE")
                c.close()
            check(not wrong, f"T={t} ({res}): {len(wrong)} writes up to T missing or wrong, e.g. {wrong[:3]}")
            check(not later, f"T={t} ({res}): {len(later)} writes after T present, e.g. {later[:3]}")
            check(dbsize == len(want) == present, f"T={t}: DBSIZE {dbsize}, want {len(want)}")
            print(f"T={t}: {len(want)} of {len(w.log)} writes, base {res['base']}, cut={res['cut']}")
        w.c.close()


@test
def torn_incr_tail_is_cut_at_the_last_complete_command():
    with tempfile.TemporaryDirectory(prefix="tm-aof-") as base:
        r = Redis(base, conf=AOF_CONF).start()
        c = Client(r.port)
        for i in range(50):
            c.cmd("SET", f"t:{i}", f"v{i}")
        c.close()
        aofdir = os.path.join(r.dir, "appendonlydir")
        r.stop()
        incr = sorted(f for f in os.listdir(aofdir) if f.endswith(".incr.aof"))[-1]
        path = os.path.join(aofdir, incr)
        whole = os.path.getsize(path)
        with open(path, "ab") as f:  # a crash in the middle of a write
            f.write(b"#TS:%d\r\n*3\r\n$3\r\nset\r\n$4\r\ntorn\r\n$5\r\nval" % int(time.time()))
        torn_bytes = os.path.getsize(path) - whole
        # The tail ships up to the last complete unit (the annotation), never the torn command.
        ship = os.path.join(base, "ship")
        p = tool("tail", aofdir, ship, "--once")
        check(p.returncode == 0, f"tail: {p.stderr}")
        incr_r = [x for x in ranges(ship) if x["type"] == "i"]
        check(incr_r[-1]["end"] < whole + torn_bytes and incr_r[-1]["end"] >= whole,
              f"shipped up to {incr_r[-1]['end']} of {whole}+{torn_bytes}")
        # The restore cuts it, says so, and the result loads with all 50 keys.
        out = os.path.join(base, "restored", "appendonlydir")
        p = tool("truncate-dir", aofdir, -1, out)
        check(p.returncode == 0, f"truncate-dir: {p.stderr}")
        res = kv(p.stdout)
        check(0 < int(res["torn"]) <= torn_bytes, f"torn tail reported: {res}")
        with Redis(base, name="restored", conf=AOF_CONF) as fresh:
            check(fresh.cli("DBSIZE") == "50", f"DBSIZE {fresh.cli('DBSIZE')}")
            check(fresh.cli("GET", "t:49") == "v49" and fresh.cli("EXISTS", "torn") == "0", "content")
        # Garbage in the middle is refused with the file and offset.
        with open(path, "r+b") as f:
            f.seek(whole // 2)
            f.write(b"!!!!")
        p = tool("truncate-dir", aofdir, -1, os.path.join(base, "bad"))
        check(p.returncode == 1 and incr in p.stderr and "offset" in p.stderr, f"garbage: {p.stderr}")


@test
def timestamps_off_is_reported_snapshot_only():
    with tempfile.TemporaryDirectory(prefix="tm-aof-") as base, \
            Redis(base, conf={**AOF_CONF, "aof-timestamp-enabled": "no"}) as r:
        p = tool("config", "127.0.0.1", r.port)
        check(p.returncode == 0 and "mode=snapshot-only" in p.stdout and "timestamps=0" in p.stdout,
              f"config: {p.stdout} {p.stderr}")
        r.cli("SET", "a", "1")
        ship = os.path.join(base, "ship")
        p = tool("tail", os.path.join(r.dir, "appendonlydir"), ship, "--once")
        check(p.returncode == 0, f"tail: {p.stderr}")
        check(state(ship)["timestamps"] == "0", f"no annotations seen: {state(ship)}")
        aofdir = os.path.join(r.dir, "appendonlydir")
        # A cut has no annotations to go by, and says so (the engine then
        # refuses to call it a restore to a time).
        p = tool("truncate-dir", aofdir, int(time.time()) - 3600, os.path.join(base, "to-time"))
        check(p.returncode == 0 and kv(p.stdout)["annotations"] == "0" and kv(p.stdout)["cut"] == "0",
              f"no annotations: {p.stdout} {p.stderr}")
        r.cli("CONFIG", "SET", "aof-timestamp-enabled", "yes")
        p = tool("config", "127.0.0.1", r.port)
        check("mode=pitr" in p.stdout, f"config after enabling: {p.stdout}")


@test
def truncation_equals_redis_check_aof():
    """Our cut and `redis-check-aof --truncate-to-timestamp`'s, on copies of
    the same AOF directory, give the same bytes; with an RDB base and with an
    AOF base (aof-use-rdb-preamble no)."""
    for preamble in ("yes", "no"):
        truncation_equals_redis_check_aof_with(preamble)


def truncation_equals_redis_check_aof_with(preamble):
    conf = {**AOF_CONF, "aof-use-rdb-preamble": preamble}
    with tempfile.TemporaryDirectory(prefix="tm-aof-") as base, Redis(base, conf=conf) as r:
        r.cli("SET", "before", "0")
        r.cli("BGREWRITEAOF")  # a base with data in it
        wait_rewrite_done(r)
        w = Writer(r.port)
        seconds = [w.second(10) for _ in range(4)]
        w.c.close()
        r.cli("SET", "last", "1")
        aofdir = os.path.join(r.dir, "appendonlydir")
        t = seconds[1]
        theirs = os.path.join(base, "theirs")
        shutil.copytree(aofdir, theirs)
        p = subprocess.run(["redis-check-aof", "--truncate-to-timestamp", str(t),
                            os.path.join(theirs, "appendonly.aof.manifest")],
                           capture_output=True, text=True, timeout=120)
        check(p.returncode == 0, f"redis-check-aof: {p.stdout[-500:]} {p.stderr}")
        ours = os.path.join(base, "ours")
        p = tool("truncate-dir", aofdir, t, ours)
        check(p.returncode == 0, f"truncate-dir: {p.stderr}")
        res = kv(p.stdout)
        check(res["cut"] == "1" and int(res["cut_ts"]) > t, f"cut after {t}: {res}")
        names = os.listdir(theirs)
        check(any(n.endswith(".base." + ("rdb" if preamble == "yes" else "aof")) for n in names),
              f"the base's kind: {names}")
        for name in names:
            if ".incr." in name or ".base." in name:
                with open(os.path.join(theirs, name), "rb") as a, open(os.path.join(ours, name), "rb") as b:
                    check(a.read() == b.read(), f"{name} differs from redis-check-aof's")


@test
def a_file_lost_unshipped_is_a_gap_and_shipping_goes_on():
    """Pins lost too (say, a host restore wiped them): the tail must say
    which file is gone, start a new chain at the current base, and a restore
    to after that base has everything."""
    with tempfile.TemporaryDirectory(prefix="tm-aof-") as base, Redis(base, conf=AOF_CONF) as r:
        aofdir = os.path.join(r.dir, "appendonlydir")
        ship = os.path.join(base, "ship")
        c = Client(r.port)
        c.cmd("SET", "a", "1")
        p = tool("tail", aofdir, ship, "--once")
        check(p.returncode == 0, f"first tail: {p.stderr}")
        followed = state(ship)["position"].rsplit(":", 1)[0]
        c.cmd("SET", "b", "2")  # never shipped
        for f in os.listdir(aofdir + ".tidemark-pin"):
            os.unlink(os.path.join(aofdir + ".tidemark-pin", f))
        r.cli("BGREWRITEAOF")
        wait_rewrite_done(r)
        wait_for(lambda: not os.path.exists(os.path.join(aofdir, followed)), 60, f"{followed} deleted")
        c.cmd("SET", "c", "3")
        p = tool("tail", aofdir, ship, "--once")
        check(p.returncode == 0, f"tail after the loss: {p.stderr}")
        with open(os.path.join(ship, "gaps")) as f:
            gaps = f.read()
        check("gap" in gaps and followed in gaps, f"the gap names {followed}: {gaps!r}")
        bases = [x["file"] for x in ranges(ship) if x["type"] == "b"]
        check(len(bases) == 2 and bases[0] != bases[1], f"a new chain at the new base: {bases}")
        c.close()
        out = os.path.join(base, "restored", "appendonlydir")
        p = tool("truncate", ship, int(time.time()) + 5, out)
        check(p.returncode == 0 and kv(p.stdout)["base"] == bases[1], f"restore: {p.stdout} {p.stderr}")
        with Redis(base, name="restored", conf=AOF_CONF) as fresh:
            got = [fresh.cli("GET", k) for k in ("a", "b", "c")]
        check(got == ["1", "2", "3"], f"everything from the new chain: {got}")


if __name__ == "__main__":
    run()
