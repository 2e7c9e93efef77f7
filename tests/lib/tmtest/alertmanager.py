"""A real Prometheus Alertmanager on loopback, and a webhook receiver.

Alertmanager is the Debian package `prometheus-alertmanager` (binary of the
same name). Everything lives in a temp dir: config, storage, log. Clustering
is off (`--cluster.listen-address=`), so nothing listens beyond the one
loopback port.

    with Alertmanager(tmpdir, webhook_url=receiver.url("/am")) as am:
        am.alerts()            # GET /api/v2/alerts
        am.url                 # http://127.0.0.1:PORT

    with WebhookReceiver() as rx:
        rx.url("/hook?token=x"); rx.bodies("/hook")   # parsed JSON POST bodies
"""

import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

BINARY = "prometheus-alertmanager"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebhookReceiver:
    """Collects every POST (path without query, headers, parsed JSON, arrival
    time). status() sets the HTTP status answered per path (default 200)."""

    def __init__(self):
        self.posts = []
        self.statuses = {}
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                path = self.path.split("?", 1)[0]
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with outer.lock:
                    outer.posts.append({"path": path, "query": self.path[len(path):],
                                        "headers": dict(self.headers), "raw": raw,
                                        "json": body, "t": time.monotonic()})
                    code = outer.statuses.get(path, 200)
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def status(self, path, code):
        with self.lock:
            self.statuses[path] = code

    def bodies(self, path):
        with self.lock:
            return [p["json"] for p in self.posts if p["path"] == path]

    def received(self, path):
        with self.lock:
            return [p for p in self.posts if p["path"] == path]

    def __enter__(self):
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.srv.shutdown()
        self.srv.server_close()


class Alertmanager:
    def __init__(self, tmpdir, webhook_url=None, group_wait="0s", group_interval="1s",
                 repeat_interval="1h"):
        self.dir = os.path.join(tmpdir, "alertmanager")
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        recv = "receivers:\n  - name: hook\n"
        if webhook_url:
            recv += (f"    webhook_configs:\n      - url: '{webhook_url}'\n"
                     f"        send_resolved: true\n")
        self.config = os.path.join(self.dir, "alertmanager.yml")
        with open(self.config, "w") as f:
            f.write("route:\n  receiver: hook\n  group_by: ['alertname', 'target']\n"
                    f"  group_wait: {group_wait}\n  group_interval: {group_interval}\n"
                    f"  repeat_interval: {repeat_interval}\n" + recv)
        self.proc = None
        self.log = os.path.join(self.dir, "alertmanager.log")

    def start(self):
        if shutil.which(BINARY) is None:
            raise RuntimeError(f"{BINARY} not found: apt-get install -y prometheus-alertmanager")
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [BINARY, f"--config.file={self.config}",
             f"--storage.path={os.path.join(self.dir, 'data')}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
             "--log.level=info"],
            stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"alertmanager exited {self.proc.returncode}: "
                                   + open(self.log, errors="replace").read()[-2000:])
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("alertmanager not ready after 20 s")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "logf", None):
            self.logf.close()
            self.logf = None

    def alerts(self, **filters):
        q = "&".join(f"{k}={v}" for k, v in filters.items())
        with urllib.request.urlopen(self.url + "/api/v2/alerts" + ("?" + q if q else ""),
                                    timeout=5) as r:
            return json.loads(r.read())

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
