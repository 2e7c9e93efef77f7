"""One hostile client costs only itself (issue 11, section 4).

A real coordinator serves 500 simulated agents (tm_rpc_fleet: one connection
and one real tm_rpc_client each, heartbeat every 1 s, stale after 3 missed)
while 200 hostile connections are held open against it (tmtest.hostile:
non-readers pipelining requests they never read, slowloris, half-open SP
handshakes, oversize length prefixes, random bytes; each one the server
closes is replaced at once). Checked, as events over the run:
  - no agent is ever stale or lost (sampled from /metrics every 0.5 s), and
    no agent went 3 s (5 under ASan) without a successful beat;
  - heartbeat p99 < 100 ms (2 s under ASan: on the shared 2-core machine at
    load 28, ASan alone put the p50 near 300 ms), or under twice the p99 the
    same fleet had in its first 8 s without hostile load when the machine
    is that busy;
  - the coordinator's RSS stays bounded (< 256 MiB, 768 MiB under ASan);
  - every kind of hostile connection is closed within its bound: slowloris
    within rpc.first_request_timeout (3 s here) + slack, oversize and random
    at once, half-open within nng's 10 s negotiation timeout + slack, and
    non-readers are closed at all (once their replies back up, within
    rpc.send_timeout or at rpc.max_calls_per_connection).
Before the fix the non-readers stalled every RPC worker and the fleet went
stale. A second test holds 50 half-open TLS handshakes against a TLS
coordinator: nng 1.5.2 never closes those (measured: still open after 25 s,
its 10 s negotiation timeout does not fire there), so the server's reaper
finds them among its sockets and shuts them down after
rpc.first_request_timeout; it failed before. A third checks the per-address
cap on pending connections.
"""
import json
import selectors
import shutil
import socket
import subprocess
import tempfile
import time

from tmtest import certs
from tmtest.cluster import Cluster, binary
from tmtest.hostile import SP_REQ_HEADER, Hostile
from tmtest.runner import check, run, test, wait_for

AGENTS = 500
HOSTILE = 200
SECONDS = 25
CLEAN = 8
# Missed beats before stale; more under ASan, whose slowness is not the
# hostile clients' doing.
STALE = 3
RPC_YAML = """rpc:
  send_timeout: 2s
  first_request_timeout: 3s
  idle_timeout: 10s
"""


def asan():
    with open(binary("tidemark-coordinator"), "rb") as f:
        return b"__asan_init" in f.read()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def agent_states(c):
    out = {}
    for line in c.metrics().splitlines():
        if line.startswith("tidemark_agents{"):
            state = line.split('state="', 1)[1].split('"', 1)[0]
            out[state] = float(line.rsplit(" ", 1)[1])
    return out


def read_line(proc, timeout, what):
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=0.5):
            line = proc.stdout.readline()
            if line:
                return line.strip()
            break
    raise AssertionError(f"no {what} from tm_rpc_fleet within {timeout}s (rc {proc.poll()})")


def fleet_under_fire(c, port, agents=AGENTS, hostile=HOSTILE, seconds=SECONDS):
    slow = asan()
    # CLEAN s of heartbeats first: the same machine's latency without hostile
    # load, the yardstick when the shared machine is loaded.
    fleet = subprocess.Popen([binary("tm_rpc_fleet"), c.url, str(agents), "1000", str(seconds),
                              "TM_ENROLL", str(CLEAN)],
                             stdout=subprocess.PIPE, env=c.env, text=True)
    try:
        ready = read_line(fleet, 180, "READY")
        check(ready == f"READY {agents}", f"all {agents} agents registered: {ready}")
        wait_for(lambda: agent_states(c).get("online", 0) == agents, 30, "fleet online")
        check(read_line(fleet, CLEAN + 30, "MARK") == "MARK", "clean phase done")
        h = Hostile(port, hostile).start()
        worst = {"stale": 0, "lost": 0}
        peak_rss = 0
        t_end = time.monotonic() + seconds - 1
        while time.monotonic() < t_end:
            st = agent_states(c)
            for k in worst:
                worst[k] = max(worst[k], st.get(k, 0))
            peak_rss = max(peak_rss, rss_kib(c.coordinator.p.pid))
            time.sleep(0.5)
        stats = h.stop()
        summary = json.loads(read_line(fleet, seconds + 60, "figures"))
        fleet.wait(30)
    finally:
        if fleet.poll() is None:
            fleet.kill()
            fleet.wait()
    print(f"  fleet: {json.dumps(summary)}")
    print(f"  hostile: {json.dumps(stats)}")
    print(f"  coordinator peak RSS {peak_rss // 1024} MiB; worst stale {worst['stale']:.0f}, "
          f"lost {worst['lost']:.0f}")
    check(c.coordinator.alive(), "the coordinator survived")
    check(worst["stale"] == 0 and worst["lost"] == 0, f"no agent stale or lost: {worst}")
    stale_ms = STALE * 1000
    check(summary["max_gap_ms"] < stale_ms,
          f"no agent went {stale_ms} ms without a beat: {summary}")
    check(summary["failed"] == 0, f"no heartbeat failed: {summary}")
    # 100 ms, or twice what the machine gave without hostile load when it is
    # so busy that the clean p99 is already near that.
    p99_bound = max(2000 if slow else 100, 2 * summary["clean_p99_ms"])
    check(summary["p99_ms"] < p99_bound, f"heartbeat p99 < {p99_bound:.0f} ms: {summary}")
    rss_bound = (768 if slow else 256) * 1024
    check(peak_rss < rss_bound, f"coordinator RSS {peak_rss} KiB < {rss_bound} KiB")
    return stats


def check_closed_within(stats, kind, bound_s):
    k = stats[kind]
    check(k["closed"] > 0, f"{kind}: the server closed some: {k}")
    check(k["max_lifetime_s"] <= bound_s, f"{kind}: closed within {bound_s}s: {k}")
    check(k["oldest_open_s"] is None or k["oldest_open_s"] <= bound_s,
          f"{kind}: none open longer than {bound_s}s: {k}")


@test
def fleet_survives_hostile_connections():
    global STALE
    STALE = 5 if asan() else 3
    with Cluster(heartbeat="1s", stale=STALE, lost=10, extra_coord_yaml=RPC_YAML) as c:
        c.start_coordinator()
        # Known limit (CHANGELOG, Known gaps): with hostile peers still
        # connected, nng 1.5's nng_close() can wait on them, and the 4 s
        # shutdown watchdog then ends the coordinator with status 1 after
        # logging event=shutdown_stuck. The stop is still bounded (the
        # harness fails a daemon not gone within its SIGTERM bound); exit 1
        # is accepted here only with that log line, checked below.
        c.coordinator.expect_exit(0, 1)
        coord = c.coordinator
        stats = fleet_under_fire(c, c.port)
        slack = 6 if asan() else 2  # ASan on a loaded machine slows both ends
        check_closed_within(stats, "slowloris", 3 + slack)
        check_closed_within(stats, "oversize", slack)
        check_closed_within(stats, "random", slack)
        check_closed_within(stats, "halfopen", 10 + slack)
        k = stats["nonreader"]
        check(k["closed"] > 0, f"non-readers are closed once their replies back up: {k}")
        coord.stop()  # fails the test if it is not gone within the SIGTERM bound
        rc = coord.p.returncode
        print(f"  coordinator stopped with status {rc}")
        check(rc == 0 or "event=shutdown_stuck" in coord.output(),
              f"coordinator exit {rc} without the watchdog's shutdown_stuck line")


@test
def tls_half_open_handshakes_are_closed():
    pki_dir = tempfile.mkdtemp(prefix="tm-pki-")
    pki = certs.make_pki(pki_dir)
    with Cluster(heartbeat="1s", stale=3, lost=10, extra_coord_yaml=RPC_YAML, tls=pki) as c:
        c.start_coordinator()
        h = Hostile(c.port, 50, tls_port=c.port)
        h.kinds = ["tls_halfopen"]
        h.start()
        # A real agent over mutual TLS keeps working meanwhile.
        a = c.start_agent("db-tls")
        try:
            wait_for(lambda: "event=registered" in a.output(), 60, "agent registered over TLS")
        except AssertionError:
            print(a.output()[-2000:])
            raise
        time.sleep(12)
        stats = h.stop()
        print(f"  hostile: {json.dumps(stats)}")
        check(a.alive() and "coordinator_unreachable" not in a.output(),
              "the TLS agent never lost the coordinator")
        # rpc.first_request_timeout (3 s) + the 1 s scan + slack.
        check_closed_within(stats, "tls_halfopen", 3 + 1 + (3 if asan() else 2))
    shutil.rmtree(pki_dir, ignore_errors=True)


@test
def pending_connections_are_capped_per_address():
    yaml = RPC_YAML + "  max_pending_connections_per_address: 8\n"
    with Cluster(heartbeat="1s", stale=3, lost=10, extra_coord_yaml=yaml) as c:
        c.start_coordinator()
        # Authenticated connections do not count: 20 agents from 127.0.0.1.
        fleet = subprocess.Popen([binary("tm_rpc_fleet"), c.url, "20", "1000", "8", "TM_ENROLL"],
                                 stdout=subprocess.PIPE, env=c.env, text=True)
        try:
            check(read_line(fleet, 60, "READY") == "READY 20", "20 agents registered")
            socks = []
            for _ in range(20):
                s = socket.create_connection(("127.0.0.1", c.port))
                s.sendall(SP_REQ_HEADER)
                socks.append(s)
            time.sleep(1.5)
            closed = 0
            for s in socks:
                s.settimeout(0.2)
                try:
                    data = s.recv(64)  # the server's SP header, then EOF if refused
                    if data and s.recv(64) == b"":
                        closed += 1
                    elif not data:
                        closed += 1
                except socket.timeout:
                    pass
                except OSError:
                    closed += 1
            for s in socks:
                s.close()
            summary = json.loads(read_line(fleet, 60, "figures"))
            fleet.wait(30)
        finally:
            if fleet.poll() is None:
                fleet.kill()
                fleet.wait()
        print(f"  {closed} of 20 idle unauthenticated connections refused; fleet {summary}")
        check(closed == 12, f"beyond 8 pending from 127.0.0.1, refused: {closed} of 20")
        check(summary["failed"] == 0, f"the 20 authenticated agents were not limited: {summary}")


if __name__ == "__main__":
    run()
