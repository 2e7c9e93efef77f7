"""Start real Tidemark processes on loopback for tests: a coordinator with its
catalog in a temp dir, agents with their state dirs, and tidemarkctl.

Everything binds 127.0.0.1 on free ports, lives under one temp dir, and is
stopped (SIGTERM, then SIGKILL) when the Cluster context exits; a daemon that
exits non-zero, dies by a signal, ignores SIGTERM or leaves a sanitizer
report fails the test (Proc.stop, Cluster.close).
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import traceback
import urllib.request

BUILD = os.environ.get("TM_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../../build"))
SOURCE = os.environ.get("TM_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../../.."))


def binary(name):
    for sub in ("coordinator", "agent", "coordinator/ctl", "tests"):
        p = os.path.join(BUILD, sub, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"{name} not found under {BUILD}")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A daemon under test. stop() checks how it ended: it must exit 0 on
    SIGTERM within the bound, not die by a signal, and leave no sanitizer
    report (AddressSanitizer, UndefinedBehaviorSanitizer "runtime error",
    LeakSanitizer) in its log; otherwise stop() raises AssertionError, and
    Cluster.close() fails the test. kill9() is a deliberate end: only the
    sanitizer check applies then. expect_exit(codes) allows other codes for
    a daemon a test expects to give up by itself."""

    SIGTERM_BOUND = 20

    def __init__(self, name, argv, env, log_path, popen_kw=None):
        self.popen_kw = popen_kw or {}
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.p = None
        self.expected = {0}
        self.killed = False
        self.verdict = None

    def start(self):
        self.log = open(self.log_path, "ab")
        kw = dict(self.popen_kw)
        kw.setdefault("env", self.env)
        self.p = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT, **kw)
        return self

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def expect_exit(self, *codes):
        self.expected = set(codes)
        return self

    def kill9(self):
        if self.alive():
            self.killed = True
            self.p.send_signal(signal.SIGKILL)
            self.p.wait()

    def problems(self):
        """Why this daemon's end is a failure ([] when it is not); the
        daemon must have ended."""
        out = []
        rc = self.p.returncode
        if not self.killed and rc not in self.expected:
            if rc < 0:
                out.append(f"{self.name} died by signal {-rc} ({signal.Signals(-rc).name})")
            else:
                out.append(f"{self.name} exited {rc} (expected {sorted(self.expected)})")
        text = self.output()
        for marker in ("AddressSanitizer", "runtime error", "LeakSanitizer"):
            if marker in text:
                i = text.index(marker)
                out.append(f"{self.name} log has a {marker} report:\n"
                           + text[max(0, i - 500):i + 3000])
                break
        return out

    def stop(self, timeout=SIGTERM_BOUND):
        if self.p is None:
            return None
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                stacks = ""
                if shutil.which("gdb"):
                    g = subprocess.run(["gdb", "-p", str(self.p.pid), "-batch", "-ex",
                                        "thread apply all bt 15"], capture_output=True, text=True,
                                       timeout=60)
                    stacks = "\n".join(l for l in g.stdout.splitlines()
                                       if l.startswith(("Thread", "#")))
                self.killed = True
                self.p.kill()
                self.p.wait()
                self.verdict = [f"{self.name} did not stop within {timeout}s of SIGTERM; "
                                f"threads:\n{stacks}"] + self.problems()
                raise AssertionError("\n".join(self.verdict))
        if self.verdict is None:
            self.verdict = self.problems()
            if self.verdict:
                raise AssertionError("\n".join(self.verdict))
        return self.p.returncode

    def output(self):
        # A log deleted under the test (its directory removed by someone
        # else) must not stop the other daemons from being stopped.
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError as e:
            return f"(log {self.log_path} unreadable: {e})"


class Cluster:
    """A coordinator + agents + ctl under one temp dir."""

    def __init__(self, heartbeat="200ms", stale=3, lost=10, auto_approve=True, tls=None,
                 extra_coord_yaml=""):
        self.dir = tempfile.mkdtemp(prefix="tm-it-")
        self.port = free_port()
        self.http_port = free_port()
        self.url = f"{'tls+tcp' if tls else 'tcp'}://127.0.0.1:{self.port}"
        self.admin_token = secrets.token_hex(16)
        self.enroll_token = secrets.token_hex(16)
        self.manual_token = secrets.token_hex(16)
        self.old_token = secrets.token_hex(16)
        self.tls = tls
        self.procs = []
        self.agents = {}
        self.env = dict(os.environ, TIDEMARK_ADMIN_TOKEN=self.admin_token,
                        TM_ENROLL=self.enroll_token, TM_ENROLL_MANUAL=self.manual_token,
                        TM_ENROLL_OLD=self.old_token)
        self.coord_yaml = os.path.join(self.dir, "coordinator.yaml")
        tls_yaml = ""
        if tls:
            tls_yaml = ("tls:\n"
                        f"  cert_file: {tls['server_cert']}\n"
                        f"  key_file: {tls['server_key']}\n"
                        f"  ca_file: {tls['ca']}\n"
                        f"  require_client_cert: true\n")
        with open(self.coord_yaml, "w") as f:
            f.write(f"""listen: {self.url}
http:
  listen: http://127.0.0.1:{self.http_port}
catalog:
  path: catalog.db
admin_token: env:TIDEMARK_ADMIN_TOKEN
enrollment:
  - name: fleet
    token: env:TM_ENROLL
    auto_approve: {'true' if auto_approve else 'false'}
  - name: manual
    token: env:TM_ENROLL_MANUAL
    auto_approve: false
  - name: old
    token: env:TM_ENROLL_OLD
    auto_approve: true
    expires: 2020-01-01T00:00:00Z
heartbeat:
  interval: {heartbeat}
  stale_after_missed: {stale}
  lost_after_missed: {lost}
log:
  level: info
{tls_yaml}{extra_coord_yaml}""")
        self.coordinator = None

    # -- coordinator --
    def start_coordinator(self):
        # free_port() releases the port before the coordinator binds it, so a
        # busy machine can hand it to someone else first. Before any agent
        # knows the URL, a clash is retried on fresh ports.
        for attempt in range(3):
            self.coordinator = Proc("coordinator", [binary("tidemark-coordinator"), "-c", self.coord_yaml],
                                    self.env, os.path.join(self.dir, "coordinator.log")).start()
            self.procs.append(self.coordinator)
            try:
                self.wait_http()
                return self.coordinator
            except AssertionError:
                clash = "Address in use" in self.coordinator.output()
                if not clash or self.agents or attempt == 2:
                    raise
                self.coordinator.kill9()
                self._move_ports()
        return self.coordinator

    def _move_ports(self):
        old_port, old_http = self.port, self.http_port
        self.port, self.http_port = free_port(), free_port()
        self.url = self.url.replace(f":{old_port}", f":{self.port}")
        with open(self.coord_yaml) as f:
            text = f.read()
        text = text.replace(f"127.0.0.1:{old_port}", f"127.0.0.1:{self.port}")
        text = text.replace(f"127.0.0.1:{old_http}", f"127.0.0.1:{self.http_port}")
        with open(self.coord_yaml, "w") as f:
            f.write(text)

    def wait_http(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.coordinator.alive():
                raise AssertionError("coordinator exited:\n" + self.coordinator.output()[-3000:])
            try:
                if self.healthz()[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("coordinator /healthz not ready:\n" + self.coordinator.output()[-3000:])

    def healthz(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
            return r.read().decode()

    # -- agents --
    def agent_yaml(self, name, token_env="TM_ENROLL", targets=None, extra=""):
        adir = os.path.join(self.dir, "agents", name)
        os.makedirs(adir, exist_ok=True)
        targets = targets if targets is not None else [(f"{name}-pg", "postgres")]
        # A target is (name, kind) or (name, kind, yaml): yaml is added under
        # the target as is (e.g. "postgres:\n  pgdata: /x\n"), indented here.
        tyaml = ""
        for t in targets:
            tyaml += f"  - name: {t[0]}\n    kind: {t[1]}\n"
            if len(t) > 2 and t[2]:
                tyaml += "".join(f"    {line}\n" for line in t[2].splitlines())
        tyaml = tyaml or "  []\n"
        tls_yaml = ""
        if self.tls:
            tls_yaml = (f"  tls:\n    ca_file: {self.tls['ca']}\n"
                        + (f"    cert_file: {self.tls['client_cert']}\n    key_file: {self.tls['client_key']}\n"
                           if self.tls.get("client_cert") else "")
                        + "    server_name: localhost\n")
        path = os.path.join(adir, "agent.yaml")
        with open(path, "w") as f:
            f.write(f"""coordinator:
  url: {self.url}
  enrollment_token: env:{token_env}
  timeout: 2s
  backoff_max: 1s
{tls_yaml}state_dir: state
hostname: {name}
labels:
  region: test
  role: db
targets:
{tyaml}log:
  level: info
{extra}""")
        return path

    def start_agent(self, name, as_pg_user=False, **kw):
        """as_pg_user: run the agent as the user PostgreSQL runs as (what
        the systemd unit does), so archive_command / restore_command, which
        PostgreSQL runs as itself, can use the agent's config, key and state."""
        path = self.agent_yaml(name, **kw)
        popen_kw = None
        if as_pg_user:
            from tmtest import pg as pgmod
            adir = os.path.join(self.dir, "agents", name)
            os.chmod(self.dir, 0o755)
            os.chmod(os.path.join(self.dir, "agents"), 0o755)
            pgmod.chown_tree(adir)
            popen_kw = pgmod.as_user_kwargs(self.env)
        p = Proc(f"agent {name}", [binary("tidemark-agent"), "-c", path], self.env,
                 os.path.join(self.dir, "agents", name, "agent.log"), popen_kw).start()
        self.procs.append(p)
        self.agents[name] = p
        return p

    def identity(self, name):
        path = os.path.join(self.dir, "agents", name, "state", "identity")
        with open(path) as f:
            return dict(line.strip().split("=", 1) for line in f if "=" in line)

    # -- ctl --
    def ctl_tls_args(self):
        if not self.tls:
            return []
        args = ["--tls-ca", self.tls["ca"], "--tls-server-name", "localhost"]
        if self.tls.get("client_cert"):
            args += ["--tls-cert", self.tls["client_cert"], "--tls-key", self.tls["client_key"]]
        return args

    def ctl(self, *args, env=None, check=True, timeout=30):
        argv = [binary("tidemarkctl"), "--url", self.url, *self.ctl_tls_args(), *args]
        r = subprocess.run(argv, env=env or self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"tidemarkctl {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def ctl_json(self, *args):
        return json.loads(self.ctl(*args, "--json").stdout)

    def agents_by_host(self):
        return {a["hostname"]: a for a in self.ctl_json("agents", "list")}

    def close(self):
        """Stop every process and raise AssertionError naming each one whose
        end was a failure (see Proc), after all are stopped."""
        problems = []
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as e:  # noqa: BLE001 - every daemon is stopped first
                problems.append(str(e) if isinstance(e, AssertionError)
                                else f"{p.name}: stop raised {e!r}")
            if p.p is not None and p.p.poll() is None:
                p.kill9()
        if problems:
            raise AssertionError("daemons ended badly:\n" + "\n".join(problems))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.close()
        except AssertionError:
            if exc[0] is None:
                print(f"----- evidence kept in {self.dir}")
                raise
            traceback.print_exc()
        if exc[0] is None and not os.environ.get("TM_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        if exc[0] is not None:
            print(f"----- evidence kept in {self.dir}")
            # Leave the evidence in the test log.
            for p in self.procs:
                print(f"----- {p.name} log (tail) -----")
                print(p.output()[-4000:])
        return False
