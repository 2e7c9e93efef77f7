"""AOF shipping lag under a steady write load (see aof_lag.sh)."""
import argparse
import os
import statistics
import tempfile
import time

from tmtest.aof import AOF_CONF, Client, Tail, parse_sets, range_bytes, ranges
from tmtest.redis import Redis


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=1000, help="writes per second")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--interval-ms", type=int, default=100, help="tail poll interval")
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--rewrite-every", type=int, default=20, help="BGREWRITEAOF every N s (0 = never)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tm-aof-lag-") as base, Redis(base, conf=AOF_CONF) as r:
        aofdir = os.path.join(r.dir, "appendonlydir")
        ship = os.path.join(base, "ship")
        tail = Tail(aofdir, ship, interval_ms=a.interval_ms)
        c = Client(r.port)
        ack = {}
        value = "x" * a.value_bytes
        batch = max(1, a.rate // 100)  # paced in 10 ms slots
        t_start = time.monotonic()
        n = 0
        next_rewrite = a.rewrite_every
        late_slots = 0
        while time.monotonic() - t_start < a.seconds:
            slot = t_start + n / a.rate
            now = time.monotonic()
            if slot > now:
                time.sleep(slot - now)
            elif now - slot > 0.05:
                late_slots += 1
            for _ in range(batch):
                k = f"lag:{n}"
                c.cmd("SET", k, value)
                ack[k] = time.time() * 1000.0
                n += 1
            if a.rewrite_every and time.monotonic() - t_start >= next_rewrite:
                r.cli("BGREWRITEAOF")
                next_rewrite += a.rewrite_every
        elapsed = time.monotonic() - t_start
        time.sleep(1.0 + a.interval_ms / 1000.0)
        rss = tail.peak_rss_kib()
        tail.stop()
        shipped = {}
        for rg in ranges(ship):
            if rg["type"] != "i":
                continue
            for k, _ in parse_sets(range_bytes(ship, rg)):
                shipped.setdefault(k, rg["shipped_ms"])
        lags = [shipped[k] - t for k, t in ack.items() if k in shipped]
        missing = len(ack) - len(lags)
        c.close()
    print(f"writes={len(ack)} in {elapsed:.1f}s ({len(ack) / elapsed:.0f}/s, late slots {late_slots}) "
          f"poll={a.interval_ms}ms rewrites every {a.rewrite_every}s")
    print(f"lag_ms p50={statistics.median(lags):.0f} p99={pct(lags, 99):.0f} max={max(lags):.0f} "
          f"missing={missing} tail_peak_rss_kib={rss}")
    print("goal p99 <= 1000 ms: " + ("met" if pct(lags, 99) <= 1000 and missing == 0 else "NOT met"))


if __name__ == "__main__":
    main()
