#!/usr/bin/env python3
"""Make the seed corpus of fuzz_rdb_check: small RDB files written by a real
redis-server (redis-cli --rdb), one per type and encoding, so the fuzzer
starts from valid files and mutates its way into every branch.

    PYTHONPATH=tests/lib python3 tests/fuzz/gen_rdb_corpus.py tests/fuzz/corpus/rdb_check
"""
import os
import sys
import tempfile

from tmtest.redis import Redis, mixed_dataset, resp

VARIANTS = {
    "empty": b"",
    "strings": resp("SET", "int", 12345) + resp("SET", "short", "hello") +
               resp("SET", "lzf", "abc" * 40) + resp("SET", "raw", os.urandom(64)),
    "hash": resp("HSET", "small", "a", 1, "b", "two") +
            resp("HSET", "big", *sum(([f"f{i}", f"v{i}"] for i in range(200)), [])),
    "list": resp("RPUSH", "small", "a", 1, "b") +
            resp("RPUSH", "nodes", *[f"element-{i}" for i in range(1200)]) +
            resp("RPUSH", "plain", "p" * 9000),
    "set": resp("SADD", "intset", 1, 5, -7, 100000, 2 ** 40) +
           resp("SADD", "strs", *[f"m{i}" for i in range(20)]),
    "zset": resp("ZADD", "small", 1, "a", 2.5, "b") +
            resp("ZADD", "big", *sum(([i / 3, f"z{i}"] for i in range(200)), [])),
    "stream": b"".join(resp("XADD", "s", "*", "f", i) for i in range(30)) +
              resp("XGROUP", "CREATE", "s", "g", "0") +
              resp("XREADGROUP", "GROUP", "g", "c1", "COUNT", 4, "STREAMS", "s", ">"),
    "ttl-dbs": resp("SET", "a", 1, "EX", 100000) + resp("SELECT", 3) +
               resp("SET", "b", 2, "PX", 999999999) + resp("SELECT", 15) + resp("SET", "c", 3),
    "mixed": mixed_dataset(2, dbs=(0, 2), big=False),
}


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    with tempfile.TemporaryDirectory() as base:
        for name, cmds in VARIANTS.items():
            with Redis(base, name=name) as r:
                if cmds:
                    r.pipe(cmds)
                r.redis_cli_rdb(os.path.join(outdir, name))
            print(name, os.path.getsize(os.path.join(outdir, name)))


if __name__ == "__main__":
    main(sys.argv[1])
