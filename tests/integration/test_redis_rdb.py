"""Redis RDB snapshots through the engine's building blocks (agent/engines/
redis: rdb_stream, rdb_check, bgsave) driven by tests/tools/tm_redis_tool,
against real redis-server processes on loopback.

Every fetch logs in as an ACL user with exactly the documented minimal rules
(agent/engines/redis/README-acl.md): SYNC_ACL for the replication protocol,
BGSAVE_ACL for the fallback. A snapshot counts when the validator's
per-database counts equal INFO keyspace and the snapshot, loaded into a fresh
redis-server, gives the same DEBUG DIGEST (every key, value and expire time)
as the source, and as `redis-cli --rdb`'s file does."""
import os
import random
import subprocess
import tempfile
import time

from tmtest.redis import Redis, gen_password, mixed_dataset, write_secret
from tmtest.runner import check, run, test, wait_for

TOOL = os.path.join(os.environ.get("TM_BUILD_DIR", "build"), "tests", "tm_redis_tool")
USER = "tmbackup"
SYNC_ACL = "-@all +sync +replconf"
BGSAVE_ACL = "-@all +replconf +bgsave +lastsave +config|get +info"


def fetch(r, out, user=USER, pass_file=None, extra=(), timeout=300):
    with open(out, "wb") as f:
        p = subprocess.run([TOOL, "rdb-fetch", "127.0.0.1", str(r.port), "--user", user,
                            "--pass-file", pass_file, *extra],
                           stdout=f, stderr=subprocess.PIPE, text=True, timeout=timeout)
    return p.returncode, p.stderr


def parse_counts(text):
    """{db: (keys, expires)} and the fetch line's fields from tool output."""
    dbs, fields = {}, {}
    for line in text.splitlines():
        kv = dict(x.split("=", 1) for x in line.split() if "=" in x)
        if line.startswith("db="):
            dbs[int(kv["db"])] = (int(kv["keys"]), int(kv["expires"]))
        elif line.startswith("fetch ") or line.startswith("ok "):
            fields.update(kv)
    return dbs, fields


def check_tool(path):
    p = subprocess.run([TOOL, "rdb-check", path], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def loaded_state(base, name, rdb):
    """Load rdb into a fresh server: its keyspace and digest."""
    with Redis(base, name=name, rdb=rdb) as fresh:
        return fresh.keyspace(), fresh.digest()


class Env:
    """A temp dir with a password file for the ACL user."""

    def __enter__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="tm-redis-")
        self.base = self.tmp.name
        self.password = gen_password()
        self.pass_file = write_secret(os.path.join(self.base, "pass"), self.password)
        return self

    def __exit__(self, *exc):
        self.tmp.cleanup()

    def users(self, rules=SYNC_ACL):
        return {USER: (self.password, rules)}


@test
def fetch_both_transfer_forms_equals_source_and_redis_cli():
    with Env() as e, Redis(e.base, users=e.users(), conf={"repl-diskless-sync-delay": 0}) as r:
        r.pipe(mixed_dataset(40))
        want_keys, want_digest = r.keyspace(), r.digest()
        check(len(want_keys) == 3 and all(v[1] > 0 for v in want_keys.values()),
              f"dataset has three databases with TTLs: {want_keys}")
        ref = r.redis_cli_rdb(os.path.join(e.base, "ref.rdb"))
        rc, out, err = check_tool(ref)
        check(rc == 0, f"redis-cli's RDB passes the validator: {err}")
        ref_counts, _ = parse_counts(out)
        check(ref_counts == want_keys, f"validator counts of redis-cli's RDB {ref_counts} != {want_keys}")
        check(loaded_state(e.base, "ref-load", ref) == (want_keys, want_digest),
              "redis-cli's RDB loads back to the source's digest")
        for diskless in ("no", "yes"):
            r.cli("CONFIG", "SET", "repl-diskless-sync", diskless)
            out = os.path.join(e.base, f"fetch-{diskless}.rdb")
            rc, err = fetch(r, out, pass_file=e.pass_file)
            check(rc == 0, f"fetch (diskless {diskless}) succeeded: {err}")
            counts, fields = parse_counts(err)
            check(fields["diskless"] == ("1" if diskless == "yes" else "0"),
                  f"the {'EOF-marker' if diskless == 'yes' else '$len'} form was used: {err}")
            check(int(fields["bytes"]) == os.path.getsize(out), "every byte reached the callback")
            with open(out, "rb") as f:
                f.seek(-8, os.SEEK_END)
                check(f.read(8) != b"\0" * 8, "the checksum trailer is there (marker trimmed)")
            check(counts == want_keys, f"validator counts {counts} == INFO keyspace {want_keys}")
            check(loaded_state(e.base, f"load-{diskless}", out) == (want_keys, want_digest),
                  f"fetched RDB (diskless {diskless}) loads back to the same digest")


@test
def diskless_delay_is_waited_out_not_failed():
    # The delay Redis adds before a diskless transfer (keepalive newlines
    # meanwhile) must cost time, never the fetch, even with a short idle
    # timeout.
    with Env() as e, Redis(e.base, users=e.users(),
                           conf={"repl-diskless-sync": "yes", "repl-diskless-sync-delay": 3}) as r:
        r.pipe(mixed_dataset(5))
        rc, err = fetch(r, os.path.join(e.base, "f.rdb"), pass_file=e.pass_file,
                        extra=("--idle-ms", "2000"))
        check(rc == 0, f"fetch succeeded across the delay: {err}")
        _, fields = parse_counts(err)
        check(fields["diskless"] == "1" and int(fields["wait_ms"]) >= 2500,
              f"the delay was waited out: {err}")


@test
def corrupted_bytes_fail_the_validator_with_an_offset():
    with Env() as e:
        with Redis(e.base, users=e.users()) as r:
            r.pipe(mixed_dataset(10))
            good = os.path.join(e.base, "good.rdb")
            rc, err = fetch(r, good, pass_file=e.pass_file)
            check(rc == 0, f"fetch: {err}")
        with open(good, "rb") as f:
            data = f.read()
        corrupt_checks(data, os.path.join(e.base, "bad.rdb"))


def corrupt_checks(data, bad):

    def verdict(blob):
        with open(bad, "wb") as f:
            f.write(blob)
        return check_tool(bad)

    rc, _, err = verdict(b"X" + data[1:])
    check(rc == 1 and "rdb offset 0:" in err, f"bad magic named at offset 0: {err}")
    rc, _, err = verdict(data[:-1])
    check(rc == 1 and "truncated" in err, f"a truncated RDB fails: {err}")
    rc, _, err = verdict(data + b"\0")
    check(rc == 1 and f"rdb offset {len(data)}:" in err, f"trailing bytes fail: {err}")
    rnd = random.Random(7)
    for pos in sorted(rnd.sample(range(9, len(data)), 40)):
        blob = bytearray(data)
        blob[pos] ^= 1 << rnd.randrange(8)
        rc, _, err = verdict(bytes(blob))
        check(rc == 1 and "rdb offset " in err, f"a flipped bit at {pos} fails with an offset: {err!r}")
        off = int(err.split("rdb offset ")[1].split(":")[0])
        check(off <= len(data), f"the offset {off} is inside the file")


@test
def minimal_acl_and_auth_failures_are_final():
    with Env() as e:
        users = {USER: (e.password, SYNC_ACL), "nosync": (e.password, "-@all +replconf"),
                 "noreplconf": (e.password, "-@all +sync")}
        with Redis(e.base, users=users) as r:
            r.pipe(mixed_dataset(3))
            out = os.path.join(e.base, "f.rdb")
            rc, err = fetch(r, out, pass_file=e.pass_file)
            check(rc == 0, f"exactly '{SYNC_ACL}' is enough: {err}")
            for user in ("nosync", "noreplconf"):
                rc, err = fetch(r, out, user=user, pass_file=e.pass_file)
                check(rc == 1 and "verdict=final code=EPERM" in err and "NOPERM" in err,
                      f"{user}: a missing ACL rule is a final NOPERM error: {err}")
            wrong = write_secret(os.path.join(e.base, "wrong"), "not-the-password")
            rc, err = fetch(r, out, pass_file=wrong)
            check(rc == 1 and "verdict=final code=EAUTH" in err and "WRONGPASS" in err,
                  f"a wrong password is a final auth error: {err}")
            check(e.password not in err, "the password never appears in messages")


@test
def fetch_from_a_replica():
    with Env() as e, Redis(e.base, name="primary", users=e.users()) as p:
        p.pipe(mixed_dataset(20))
        with Redis(e.base, name="replica", users=e.users(), replicaof=p) as rep:
            rep.wait_replica_up()
            wait_for(lambda: rep.digest() == p.digest(), 60, "replica caught up")
            out = os.path.join(e.base, "f.rdb")
            rc, err = fetch(rep, out, pass_file=e.pass_file)
            check(rc == 0, f"fetch from the replica: {err}")
            counts, _ = parse_counts(err)
            check(counts == p.keyspace(), f"replica snapshot counts {counts} == primary {p.keyspace()}")
            check(loaded_state(e.base, "load", out)[1] == p.digest(),
                  "the replica's snapshot has the primary's digest")
            # A replica that lost its primary asks us to come back later.
            p.stop()
            wait_for(lambda: rep.info("replication").get("master_link_status") == "down", 30,
                     "replica link down")
            rc, err = fetch(rep, out, pass_file=e.pass_file)
            check(rc == 1 and "verdict=retry" in err, f"no primary: a retried error: {err}")


@test
def server_refusing_sync_falls_back_to_bgsave():
    with Env() as e, Redis(e.base, users=e.users(BGSAVE_ACL), conf={"rename-command": 'SYNC ""'}) as r:
        r.pipe(mixed_dataset(20))
        want = (r.keyspace(), r.digest())
        out = os.path.join(e.base, "f.rdb")
        rc, err = fetch(r, out, pass_file=e.pass_file)
        check(rc == 1 and "verdict=fallback" in err, f"refused SYNC reports fallback needed: {err}")
        before = int(r.cli("LASTSAVE"))
        rc, err = fetch(r, out, pass_file=e.pass_file, extra=("--fallback",))
        check(rc == 0, f"the BGSAVE fallback with exactly '{BGSAVE_ACL}': {err}")
        counts, fields = parse_counts(err)
        check(fields["mode"] == "bgsave" and int(r.cli("LASTSAVE")) > before,
              f"a new BGSAVE was made and read: {err}")
        check(counts == want[0], f"counts {counts} == {want[0]}")
        check(loaded_state(e.base, "load", out) == want, "the BGSAVE file loads to the same digest")


@test
def loading_server_is_retried():
    with Env() as e:
        with Redis(e.base, name="src", users=e.users()) as r:
            r.pipe(mixed_dataset(40))
            src = os.path.join(e.base, "src.rdb")
            rc, err = fetch(r, src, pass_file=e.pass_file)
            check(rc == 0, f"fetch: {err}")
        # A server that takes seconds to load (a delay per key, events served
        # every KiB while loading).
        slow = Redis(e.base, name="slow", users=e.users(), rdb=src,
                     conf={"key-load-delay": 3000, "loading-process-events-interval-bytes": 1024})
        slow.start(wait_loaded=False)
        try:
            rc, err = fetch(slow, os.path.join(e.base, "f.rdb"), pass_file=e.pass_file)
            check(rc == 1 and "verdict=retry" in err and "LOADING" in err,
                  f"a loading server is a retried error: {err}")
            wait_for(lambda: slow._cli_raw(["PING"]).stdout.strip() == "PONG", 120, "loaded")
            rc, err = fetch(slow, os.path.join(e.base, "f.rdb"), pass_file=e.pass_file)
            check(rc == 0, f"the retry after loading succeeds: {err}")
        finally:
            slow.stop()


@test
def replica_link_killed_mid_transfer_is_retried():
    # client-output-buffer-limit closes a replica link the way CLIENT KILL
    # does: the fetch sees the connection end before the RDB does. A per-key
    # save delay keeps the diskless transfer going for seconds; the kill
    # comes once bytes have arrived.
    with Env() as e, Redis(e.base, users=e.users(),
                           conf={"repl-diskless-sync": "yes", "repl-diskless-sync-delay": 0,
                                 "rdb-key-save-delay": 2000}) as r:
        r.pipe(mixed_dataset(40))
        out = os.path.join(e.base, "f.rdb")
        with open(out, "wb") as f:
            p = subprocess.Popen([TOOL, "rdb-fetch", "127.0.0.1", str(r.port), "--user", USER,
                                  "--pass-file", e.pass_file], stdout=f, stderr=subprocess.PIPE,
                                 text=True)
            try:
                wait_for(lambda: os.path.getsize(out) > 0, 60, "the first RDB bytes")
                r.cli("CLIENT", "KILL", "TYPE", "replica")
                _, err = p.communicate(timeout=120)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        check(p.returncode == 1 and "verdict=retry" in err and "closed the replica link" in err,
              f"a link closed mid-transfer is a retried error: {err}")


@test
def snapshot_during_aof_rewrite_waits_it_out():
    # Mid-rewrite, Redis forks no second child: SYNC waits (with keepalive
    # newlines) and BGSAVE is scheduled behind the rewrite. Both paths must
    # wait, then deliver a whole snapshot. A per-key delay keeps the rewrite
    # (an RDB preamble) running for seconds.
    slow = {"appendonly": "yes", "rdb-key-save-delay": 1000, "repl-diskless-sync-delay": 0}
    for name, rules, conf, extra in (
            ("sync", SYNC_ACL, slow, ()),
            ("bgsave", BGSAVE_ACL, dict(slow, **{"rename-command": 'SYNC ""'}), ("--fallback",))):
        with Env() as e, Redis(e.base, name=name, users=e.users(rules), conf=conf) as r:
            r.pipe(mixed_dataset(40))
            want = r.keyspace()
            wait_for(lambda: r.info("persistence").get("aof_rewrite_in_progress") == "0", 120,
                     "the startup rewrite is over")
            r.cli("BGREWRITEAOF")
            check(r.info("persistence").get("aof_rewrite_in_progress") == "1",
                  "a rewrite is running when the fetch starts")
            rc, err = fetch(r, os.path.join(e.base, "f.rdb"), pass_file=e.pass_file, extra=extra,
                            timeout=600)
            check(rc == 0, f"{name}: the snapshot waits the rewrite out: {err}")
            counts, fields = parse_counts(err)
            check(fields["mode"] == name and counts == want, f"{name}: {counts} == {want}: {err}")


if __name__ == "__main__":
    run()
