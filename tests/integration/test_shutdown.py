"""Shutdown is bounded whatever the peers do (issue 11).

An agent once logged event=stopped after SIGTERM and then hung 20 minutes in
nng_close() with its coordinator gone, and a coordinator once took more than
10 s to stop. Here coordinators and agents are stopped in every order, 20
cycles: coordinator first (the agents' long-polls and heartbeats then face a
dead peer), agents first (the coordinator has parked long-polls), interleaved,
an agent while its coordinator is down for a while, after the coordinator
was killed with SIGKILL, and with the peer frozen by SIGSTOP (connected, never
answering) on either side. Every SIGTERM'd
process must exit within 5 s, with status 0 (the shutdown watchdog's exit 1
would mean a teardown got stuck).
"""
import os
import signal
import time

from tmtest.cluster import Cluster
from tmtest.runner import check, run, test, wait_for

# nng 1.5.2 loses a request message when a connection closes just as a
# request is sent, which these stops provoke (tests/lsan.supp explains the
# nng bug). print_suppressions=0: a suppressed leak writes no report file.
os.environ["LSAN_OPTIONS"] = ":".join(
    o for o in (os.environ.get("LSAN_OPTIONS", ""),
                "suppressions=" + os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "..", "lsan.supp"),
                "print_suppressions=0") if o)

CYCLES = 20
BOUND_S = 5.0
ORDERS = ["coordinator_first", "agents_first", "interleaved", "coordinator_down_a_while",
          "coordinator_killed", "coordinator_frozen", "agent_frozen"]


def stop_checked(proc, what, timings):
    t0 = time.monotonic()
    rc = proc.stop(timeout=BOUND_S)  # raises, with the threads' stacks, if not stopped in time
    took = time.monotonic() - t0
    timings.append(took)
    check(rc == 0, f"{what} exited with status {rc} after SIGTERM:\n{proc.output()[-3000:]}")
    check("shutdown_stuck" not in proc.output(), f"{what}: the watchdog had to end it")


def registered(p, n):
    return p.output().count("event=registered") >= n


@test
def stop_in_every_order():
    timings = []
    with Cluster(heartbeat="200ms", stale=3, lost=10) as c:
        for cycle in range(CYCLES):
            order = ORDERS[cycle % len(ORDERS)]
            c.start_coordinator()
            agents = [c.start_agent(f"db-{cycle}-{i}") for i in range(2)]
            for a in agents:
                wait_for(lambda a=a: registered(a, 1), 15, f"{a.name} registered")
            # Let the task runners park their NextTask long-polls.
            time.sleep(0.5)
            coord = c.coordinator
            if order == "coordinator_first":
                stop_checked(coord, f"cycle {cycle} coordinator", timings)
                for a in agents:
                    stop_checked(a, f"cycle {cycle} {a.name}", timings)
            elif order == "agents_first":
                for a in agents:
                    stop_checked(a, f"cycle {cycle} {a.name}", timings)
                stop_checked(coord, f"cycle {cycle} coordinator", timings)
            elif order == "interleaved":
                stop_checked(agents[0], f"cycle {cycle} {agents[0].name}", timings)
                stop_checked(coord, f"cycle {cycle} coordinator", timings)
                stop_checked(agents[1], f"cycle {cycle} {agents[1].name}", timings)
            elif order == "coordinator_down_a_while":
                stop_checked(coord, f"cycle {cycle} coordinator", timings)
                # The agents retry (dialer reconnecting, calls timing out).
                wait_for(lambda: all("coordinator_unreachable" in a.output() for a in agents),
                         15, "agents noticed the coordinator is gone")
                for a in agents:
                    stop_checked(a, f"cycle {cycle} {a.name}", timings)
            elif order == "coordinator_killed":
                coord.kill9()
                time.sleep(0.3)
                for a in agents:
                    stop_checked(a, f"cycle {cycle} {a.name}", timings)
            elif order == "coordinator_frozen":
                coord.p.send_signal(signal.SIGSTOP)
                try:
                    time.sleep(0.5)  # heartbeats now wait on a peer that never answers
                    for a in agents:
                        stop_checked(a, f"cycle {cycle} {a.name}", timings)
                finally:
                    coord.p.send_signal(signal.SIGCONT)
                stop_checked(coord, f"cycle {cycle} coordinator", timings)
            else:  # agent_frozen
                agents[0].p.send_signal(signal.SIGSTOP)
                try:
                    time.sleep(0.5)
                    stop_checked(coord, f"cycle {cycle} coordinator", timings)
                finally:
                    agents[0].p.send_signal(signal.SIGCONT)
                for a in agents:
                    stop_checked(a, f"cycle {cycle} {a.name}", timings)
        timings.sort()
        print(f"  {len(timings)} stops: median {timings[len(timings) // 2]:.2f}s, "
              f"max {timings[-1]:.2f}s (bound {BOUND_S:.0f}s)")


if __name__ == "__main__":
    run()
