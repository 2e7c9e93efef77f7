"""Alert engine + sinks against a real Alertmanager (prometheus-alertmanager,
started here on loopback) and a real webhook receiver (http.server), driven
through tests/tools/tm_alert_tool with short intervals.

Covers: Alertmanager shows the alert firing, then resolved (and routes both
to its own webhook receiver); the generic webhook gets firing, repeat and
resolved JSON with the documented schema; the Slack body is one readable
line; per-sink toggles (min severity, send_resolved); a sink that is down
(closed port, or a server that never answers) never blocks the caller
(< 100 ms per call), its failures are counted, a full queue drops the
oldest; URLs with tokens never reach the logs.
"""
import json
import os
import re
import socket
import subprocess
import tempfile
import time

from tmtest.alertmanager import Alertmanager, WebhookReceiver, free_port
from tmtest.runner import check, run, test, wait_for

BUILD = os.environ.get("TM_BUILD_DIR", "build")
TOOL = os.path.join(BUILD, "tests", "tm_alert_tool")
SECRET = "s3cr3t-token-value"
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Tool:
    """tm_alert_tool as a co-process: one command line in, one line out."""

    def __init__(self, *args):
        self.stderr_path = tempfile.mktemp(prefix="tm_alert_tool.", suffix=".log")
        self.errf = open(self.stderr_path, "wb")
        self.p = subprocess.Popen([TOOL, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.errf, text=True, bufsize=1)

    def cmd(self, *fields):
        self.p.stdin.write("\t".join(str(f) for f in fields) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise AssertionError(f"tm_alert_tool died: {self.stderr()}")
        return line.rstrip("\n")

    def observe(self, rule, target, sev, firing, summary, **details):
        t0 = time.monotonic()
        out = self.cmd("observe", rule, target, sev, 1 if firing else 0, summary,
                       *[f"{k}={v}" for k, v in details.items()])
        wall = time.monotonic() - t0
        check(out.startswith("ok "), f"observe: {out}")
        kv = dict(x.split("=", 1) for x in out.split()[1:])
        return kv["action"], int(kv["us"]), wall

    def json(self, *fields):
        return json.loads(self.cmd(*fields))

    def stats(self):
        return {s["name"]: s for s in self.json("stats")["sinks"]}

    def stderr(self):
        self.errf.flush()
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def close(self):
        t0 = time.monotonic()
        if self.p.poll() is None:
            try:
                self.p.stdin.write("quit\n")
                self.p.stdin.flush()
            except BrokenPipeError:
                pass
            self.p.wait(30)
        took = time.monotonic() - t0
        err = self.stderr()
        self.errf.close()
        os.unlink(self.stderr_path)
        return took, err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def check_webhook_schema(b, status, event):
    keys = {"version", "status", "event", "rule", "target", "severity", "summary", "details",
            "labels", "starts_at", "ends_at", "sent_at", "fingerprint", "seq"}
    check(keys <= set(b), f"webhook body has every documented field: {sorted(b)}")
    check(b["version"] == "1" and b["status"] == status and b["event"] == event,
          f"status {status}/{event}: {b}")
    check(b["severity"] in ("info", "warning", "critical"), f"severity: {b}")
    check(isinstance(b["details"], dict) and all(isinstance(v, str) for v in b["details"].values()),
          f"details is a string map: {b['details']}")
    check(b["labels"]["alertname"] == b["rule"], f"labels: {b['labels']}")
    check(TS_RE.match(b["starts_at"]) and TS_RE.match(b["sent_at"]), f"times: {b}")
    check(re.fullmatch(r"[0-9a-f]{16}", b["fingerprint"]), f"fingerprint: {b['fingerprint']}")
    if status == "firing":
        check(b["ends_at"] is None, f"firing has ends_at null: {b}")
    else:
        check(TS_RE.match(b["ends_at"]) and b["ends_at"] >= b["starts_at"], f"ends_at: {b}")


@test
def alertmanager_webhook_slack_fire_repeat_resolve():
    with tempfile.TemporaryDirectory() as tmp, WebhookReceiver() as rx, \
            Alertmanager(tmp, webhook_url=rx.url("/am")) as am:
        tool = Tool("--repeat-ms", "1500", "--refresh-ms", "500", "--label", "env=test",
                    "--generator-url", "http://127.0.0.1:9/tidemark",
                    "--alertmanager", f"am={am.url}", "--ttl-ms", "60000",
                    "--webhook", f"hook={rx.url('/hook?token=' + SECRET)}",
                    "--slack", f"slack={rx.url('/slack/T0/B0/' + SECRET)}")
        with tool:
            t0 = time.monotonic()
            act, us, wall = tool.observe("backup_failed", "pg-main", "critical", True,
                                         "backup failed 3 times", kind="full",
                                         error="connection refused")
            check(act == "firing", f"fires at once without `for`: {act}")

            def am_active():
                return [a for a in am.alerts() if a["labels"].get("alertname") == "backup_failed"
                        and a["status"]["state"] == "active"]
            got = wait_for(am_active, 10, "Alertmanager shows the alert active")
            am_latency = time.monotonic() - t0
            a = got[0]
            check(a["labels"] == {"alertname": "backup_failed", "target": "pg-main",
                                  "severity": "critical", "env": "test"},
                  f"Alertmanager labels: {a['labels']}")
            check(a["annotations"]["summary"] == "backup failed 3 times"
                  and a["annotations"]["kind"] == "full"
                  and a["annotations"]["error"] == "connection refused",
                  f"annotations: {a['annotations']}")
            check(a["generatorURL"] == "http://127.0.0.1:9/tidemark", f"generatorURL: {a}")
            print(f"  notification latency observe -> visible in Alertmanager API: "
                  f"{am_latency * 1000:.0f} ms")

            firing = wait_for(lambda: rx.bodies("/hook"), 5, "webhook firing")
            check_webhook_schema(firing[0], "firing", "firing")
            b = firing[0]
            check(b["rule"] == "backup_failed" and b["target"] == "pg-main"
                  and b["severity"] == "critical" and b["seq"] == 1
                  and b["details"] == {"kind": "full", "error": "connection refused"}
                  and b["labels"]["env"] == "test"
                  and b["generator_url"] == "http://127.0.0.1:9/tidemark", f"webhook: {b}")
            post = rx.received("/hook")[0]
            check(post["query"] == "?token=" + SECRET, "the webhook URL's query is sent as is")
            check(post["headers"].get("Content-Type") == "application/json", post["headers"])
            slack = wait_for(lambda: rx.bodies("/slack/T0/B0/" + SECRET), 5, "slack firing")
            check(set(slack[0]) == {"text"} and slack[0]["text"] ==
                  "[FIRING] CRITICAL backup_failed on pg-main: backup failed 3 times "
                  "(kind=full, error=connection refused)", f"slack: {slack[0]}")

            # Keep the condition true (as the coordinator's 30 s loop would, faster):
            # one repeat after 1.5 s on the webhook and Slack, refreshes to Alertmanager.
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                tool.observe("backup_failed", "pg-main", "critical", True,
                             "backup failed 4 times", kind="full", error="connection refused")
                time.sleep(0.1)
            tool.cmd("flush", 5000)
            hook = rx.bodies("/hook")
            check(len(hook) == 2, f"firing + 1 repeat in 2 s with repeat 1.5 s: {len(hook)}")
            check_webhook_schema(hook[1], "firing", "repeat")
            check(hook[1]["seq"] == 2 and hook[1]["summary"] == "backup failed 4 times"
                  and hook[1]["starts_at"] == hook[0]["starts_at"]
                  and hook[1]["fingerprint"] == hook[0]["fingerprint"], f"repeat: {hook[1]}")
            slack = rx.bodies("/slack/T0/B0/" + SECRET)
            check(len(slack) == 2 and slack[1]["text"].startswith("[FIRING, reminder] CRITICAL"),
                  f"slack reminder: {slack}")
            am_posts = rx.received("/am")  # Alertmanager's own notification
            check(any(p["json"]["status"] == "firing" for p in am_posts),
                  "Alertmanager routed the firing alert to its receiver")

            # Resolve.
            t1 = time.monotonic()
            act, _, _ = tool.observe("backup_failed", "pg-main", "critical", False, "ok")
            check(act == "resolved", f"resolved: {act}")

            def am_resolved():
                live = [a for a in am.alerts() if a["labels"].get("alertname") == "backup_failed"]
                return not live or all(a["endsAt"] <= time.strftime("%Y-%m-%dT%H:%M:%S",
                                                                      time.gmtime()) + "Z"
                                       for a in live)
            wait_for(am_resolved, 10, "Alertmanager: alert resolved or gone")
            print(f"  resolve latency observe -> gone from Alertmanager API: "
                  f"{(time.monotonic() - t1) * 1000:.0f} ms")
            wait_for(lambda: len(rx.bodies("/hook")) == 3, 5, "webhook resolved")
            r = rx.bodies("/hook")[2]
            check_webhook_schema(r, "resolved", "resolved")
            check(r["seq"] == 3 and r["fingerprint"] == hook[0]["fingerprint"]
                  and r["details"]["kind"] == "full", f"resolved body: {r}")
            wait_for(lambda: len(rx.bodies("/slack/T0/B0/" + SECRET)) == 3, 5, "slack resolved")
            txt = rx.bodies("/slack/T0/B0/" + SECRET)[2]["text"]
            check(re.fullmatch(r"\[RESOLVED\] backup_failed on pg-main: backup failed 4 times "
                               r"\(after \d+s\)", txt), f"slack resolved: {txt}")
            wait_for(lambda: any(p["json"]["status"] == "resolved" for p in rx.received("/am")),
                     15, "Alertmanager routed the resolved alert to its receiver")

            # Resolved once: further false observations send nothing.
            for _ in range(5):
                tool.observe("backup_failed", "pg-main", "critical", False, "ok")
            tool.cmd("flush", 5000)
            check(len(rx.bodies("/hook")) == 3, "resolved is sent once")
            check(tool.json("list") == [], "no active alerts")
            st = tool.stats()
            check(st["hook"]["sent"] == 3 and st["slack"]["sent"] == 3
                  and st["am"]["sent"] >= 5 and all(s["failed"] == 0 for s in st.values()),
                  f"stats: {st}")
            took, err = tool.close()
            check(SECRET not in err, f"no token in the logs: {err}")
            check("alert firing rule=backup_failed target=pg-main" in err, f"logged: {err}")


@test
def per_sink_toggles():
    with WebhookReceiver() as rx:
        with Tool("--webhook", f"crit={rx.url('/crit')}", "--min-severity", "critical",
                  "--webhook", f"nores={rx.url('/nores')}", "--no-resolved",
                  "--webhook", f"all={rx.url('/all')}") as tool:
            tool.observe("backup_late", "pg-a", "warning", True, "late by 20m")
            tool.observe("agent_lost", "db-1", "critical", True, "no heartbeat for 5m")
            tool.observe("backup_late", "pg-a", "warning", False, "")
            tool.observe("agent_lost", "db-1", "critical", False, "")
            check(tool.cmd("flush", 5000) == "ok", "flushed")
            crit = [(b["rule"], b["status"]) for b in rx.bodies("/crit")]
            nores = [(b["rule"], b["status"]) for b in rx.bodies("/nores")]
            allb = [(b["rule"], b["status"]) for b in rx.bodies("/all")]
            check(crit == [("agent_lost", "firing"), ("agent_lost", "resolved")],
                  f"min_severity critical: {crit}")
            check(nores == [("backup_late", "firing"), ("agent_lost", "firing")],
                  f"send_resolved off: {nores}")
            check(len(allb) == 4, f"everything: {allb}")
            st = tool.stats()
            check(st["crit"]["filtered"] == 2 and st["nores"]["filtered"] == 2, f"stats: {st}")

            # A receiver answering 400 is not retried; 503 is, then counted failed.
            rx.status("/all", 400)
            tool.observe("x_rule", "t", "info", True, "s")
            tool.cmd("flush", 10000)
            d = [x for x in tool.json("deliveries") if x["sink"] == "all"][-1]
            check(not d["ok"] and d["attempts"] == 1 and d["status"] == 400
                  and "HTTP 400" in d["error"], f"400 is final: {d}")
            tool.close()

        with Tool("--webhook", f"flaky={rx.url('/flaky')}", "--retries", "2",
                  "--backoff-ms", "50") as tool:
            rx.status("/flaky", 503)
            tool.observe("x_rule", "t", "info", True, "s")
            tool.cmd("flush", 10000)
            d = tool.json("deliveries")[-1]
            check(not d["ok"] and d["attempts"] == 3 and d["status"] == 503,
                  f"503 retried twice then failed: {d}")
            check(tool.stats()["flaky"]["failed"] == 1, "failure counted")
            rx.status("/flaky", 200)
            tool.observe("x_rule", "t2", "info", True, "s")
            tool.cmd("flush", 10000)
            check(tool.stats()["flaky"]["sent"] == 1, "sent once the receiver is back")
            tool.close()


def blackhole():
    """A listening socket that never accepts: connects succeed (backlog), no
    request is ever answered."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


@test
def sink_down_never_blocks():
    closed = free_port()  # nothing listens there
    hole = blackhole()
    hport = hole.getsockname()[1]
    try:
        with Tool("--webhook", f"down={'http://127.0.0.1:%d/hook?token=%s' % (closed, SECRET)}",
                  "--retries", "3", "--backoff-ms", "50",
                  "--alertmanager", f"hole=http://127.0.0.1:{hport}", "--timeout-ms", "10000",
                  "--retries", "0", "--queue-cap", "2") as tool:
            walls, uss = [], []
            for i in range(10):
                _, us, wall = tool.observe("repo_unreachable", f"repo-{i}", "critical", True,
                                           "PUT failed")
                walls.append(wall)
                uss.append(us)
            walls.sort()
            print(f"  observe+enqueue with sinks down: in-process max {max(uss)} us; "
                  f"round trip median {walls[5] * 1000:.2f} ms, max {walls[-1] * 1000:.2f} ms")
            # Events, not a stopwatch: every call came back while the black
            # hole still holds the first delivery (it ends only by the 10 s
            # timeout), so none of them waited for a sink.
            st = tool.stats()
            check(st["hole"]["failed"] == 0,
                  f"all 10 calls returned before the black hole's delivery ended: {st['hole']}")
            check(st["hole"]["dropped"] >= 7,
                  f"the black hole's queue (cap 2) dropped the oldest: {st['hole']}")
            check(tool.cmd("flush", 60000) == "ok", "the closed-port sink gives up in time")
            st = tool.stats()
            check(st["down"]["failed"] == 10 and st["down"]["sent"] == 0
                  and st["down"]["retries"] == 30, f"closed port: failures counted: {st['down']}")
            d = [x for x in tool.json("deliveries") if x["sink"] == "down"]
            check(all("Couldn't connect" in x["error"] or "connect" in x["error"].lower()
                      for x in d), f"errors say why: {d[0]}")
            check(SECRET not in json.dumps(d), "no token in delivery errors")
            check(st["hole"]["failed"] >= 1, f"timeouts counted: {st['hole']}")
            dd = [x for x in tool.json("deliveries") if x["sink"] == "hole" and not x["ok"]
                  and not x["dropped"]]
            check(dd and "timed out" in dd[0]["error"].lower(), f"timeout error: {dd[:1]}")

            # Shutdown with a request in flight to the black hole: prompt.
            tool.observe("repo_unreachable", "repo-late", "critical", True, "PUT failed")
            time.sleep(0.2)
            took, err = tool.close()
            print(f"  shutdown with a request in flight: {took * 1000:.0f} ms")
            check(took < 10.0, f"stops without waiting for the in-flight request's 10 s "
                               f"timeout: {took:.2f}s")
            check(SECRET not in err, "no token in the logs")
            check("sink delivery failed sink=down" in err and "queue full" in err,
                  f"failures and drops are logged: {err[-800:]}")
    finally:
        hole.close()


if __name__ == "__main__":
    run()
