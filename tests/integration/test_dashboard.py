"""What on-call engineers look at (issue #17 §3), proven against real parts:

- deploy/examples/grafana/tidemark-dashboard.json: every metric its queries
  name is exported by a running coordinator (with a sample, after a backup,
  a replication check and a drill of a real redis-server target), and every
  query, run by a real Prometheus (Debian's `prometheus`, on loopback)
  scraping that coordinator, is valid PromQL that returns data;
- deploy/examples/alertmanager.yml: `amtool check-config` accepts it, and its
  route sends the rules' severities to a receiver;
- deploy/examples/fleet/: the coordinator and agent configurations of the
  example fleet pass `--check-config`."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from tmtest.certs import make_pki
from tmtest.cluster import Cluster, binary, free_port
from tmtest.redis import Redis, mixed_dataset
from tmtest.runner import check, run, setup, teardown, test, wait_for

SRC = os.environ.get("TM_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLES = os.path.join(SRC, "deploy", "examples")
DASHBOARD = os.path.join(EXAMPLES, "grafana", "tidemark-dashboard.json")
# Series Prometheus makes itself (not the coordinator's to export).
PROMETHEUS_OWN = {"ALERTS", "ALERTS_FOR_STATE", "up"}
# Exported, but with no sample in this test's fleet: no target here ships a
# log (a Redis without AOF is snapshot-only).
NO_SAMPLE_HERE = {"tidemark_log_archive_failures_total"}
PROMQL_WORDS = {"sum", "max", "min", "avg", "by", "without", "increase", "rate", "time", "count",
                "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset"}


class Ctx:
    pass


ctx = Ctx()


def queries():
    with open(DASHBOARD) as f:
        d = json.load(f)
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    return d, out


def metric_names(expr):
    # Drop label matchers and strings, then take identifiers not followed by "(".
    e = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        after = e[m.end():].lstrip()
        if word in PROMQL_WORDS or after.startswith("("):
            continue
        names.add(word)
    return names


@setup
def setup_all():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-dash-")
    ctx.prom = None
    key = os.path.join(ctx.tmp, "master.key")
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", key], check=True, capture_output=True)
    ctx.redis = Redis(ctx.tmp, "src", conf={"repl-diskless-sync-delay": 0}).start()
    ctx.redis.pipe(mixed_dataset(20, dbs=(0,)))
    drills = os.path.join(ctx.tmp, "drills")
    os.makedirs(drills)
    ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=f"""policies:
  - name: cache
    match:
      kind: redis
    schedule:
      snapshot: ""
      jitter: 0s
    rpo_goal: 10m
    backup_max_age: 7h
    drill:
      schedule: ""
      dir: {drills}
      rto_goal: 5m
    replication:
      repositories: [eu, us]
      min_regions: 2
      check: "0 0 1 1 *"
alerts:
  evaluate_every: 1s
""")
    ctx.c.__enter__()
    ctx.c.start_coordinator()
    repos = (f"repositories:\n"
             f"  - name: eu\n    type: posix\n    path: {ctx.tmp}/eu\n    region: eu-west\n"
             f"  - name: us\n    type: posix\n    path: {ctx.tmp}/us\n    region: us-east\n"
             f"encryption:\n  master_key_file: {key}\nrestore_roots:\n  - {drills}\n")
    # A second target whose server is down: its failed backup gives the
    # failure counters and a firing alert something to show.
    ctx.c.start_agent("db-1", targets=[("cache", "redis",
                                        f"redis:\n  host: 127.0.0.1\n  port: {ctx.redis.port}\n"),
                                       ("gone", "redis",
                                        f"redis:\n  host: 127.0.0.1\n  port: {free_port()}\n"
                                        f"  timeout: 2s\n")],
                      extra=repos)
    wait_for(lambda: ctx.c.agents_by_host().get("db-1", {}).get("state") == "online", 15,
             "agent online")
    ctx.c.ctl("backup", "run", "--target", "cache", "--type", "snapshot", "--wait", timeout=300)
    ctx.c.ctl("replication", "check", "--target", "cache", "--wait", timeout=300)
    r = ctx.c.ctl("drill", "run", "--target", "cache", "--wait", timeout=300, check=False)
    check(r.returncode == 0, f"drill: {r.stdout}{r.stderr}")
    r = ctx.c.ctl("backup", "run", "--target", "gone", "--type", "snapshot", "--wait", timeout=300,
                  check=False)
    check(r.returncode == 1, f"the backup of a server that is down fails: {r.stdout}{r.stderr}")


@teardown
def teardown_all():
    if getattr(ctx, "prom", None) is not None and ctx.prom.poll() is None:
        ctx.prom.terminate()
        ctx.prom.wait(30)
    if getattr(ctx, "c", None) is not None:
        ctx.c.__exit__(None, None, None)
    if getattr(ctx, "redis", None) is not None:
        ctx.redis.stop()
    shutil.rmtree(ctx.tmp, ignore_errors=True)


@test
def every_dashboard_metric_is_exported_with_a_sample():
    d, qs = queries()
    check(d["uid"] and len(d["panels"]) >= 10, f"a dashboard with panels: {len(d['panels'])}")
    names = set()
    for _, e in qs:
        names |= metric_names(e)
    ours = sorted(n for n in names if n not in PROMETHEUS_OWN)
    check(all(n.startswith("tidemark_") for n in ours), f"only Tidemark metrics: {ours}")
    # The sample lines may take a scrape or two to include the drill and
    # the PITR window (refreshed every 30 s): wait for all of them.
    def missing():
        text = ctx.c.metrics()
        have = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
                if line and not line.startswith("#")}
        helps = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}
        return ([n for n in ours if n not in helps] +
                [n for n in ours if n not in have and n not in NO_SAMPLE_HERE])
    try:
        wait_for(lambda: not missing(), 45, "samples of every dashboard metric")
    except AssertionError:
        check(False, f"not exported (no HELP line, or no sample): {missing()}")


@test
def every_dashboard_query_runs_in_prometheus_and_returns_data():
    prom = shutil.which("prometheus")
    check(prom is not None, "prometheus missing: deploy/install-deps.sh --test installs it")
    port = free_port()
    cfg = os.path.join(ctx.tmp, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {os.path.join(SRC, 'deploy', 'prometheus', 'rules', 'tidemark.rules.yml')}
scrape_configs:
  - job_name: tidemark-coordinator
    static_configs:
      - targets: ['127.0.0.1:{ctx.c.http_port}']
""")
    log = open(os.path.join(ctx.tmp, "prometheus.log"), "w")
    ctx.prom = subprocess.Popen([prom, f"--config.file={cfg}",
                                 f"--storage.tsdb.path={ctx.tmp}/tsdb",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def query(expr):
        url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())

    def scraped():
        try:
            return query('up{job="tidemark-coordinator"} == 1')["data"]["result"]
        except OSError:
            return None
    wait_for(scraped, 60, "Prometheus scraped the coordinator")
    _, qs = queries()
    # ALERTS is empty while nothing fires: valid, but it returns nothing.
    may_be_empty = {'ALERTS{alertstate="firing", alertname=~"Tidemark.*"}',
                    'sum by (target) (increase(tidemark_log_archive_failures_total[1h]))'}
    bad = []
    for title, e in qs:
        def answered():
            r = query(e)
            return r if r["status"] == "success" and (r["data"]["result"] or e in may_be_empty) else None
        try:
            wait_for(answered, 20, f"{title}: {e}")
        except AssertionError:
            try:
                r = query(e)
            except urllib.error.HTTPError as err:
                r = err.read().decode()
            bad.append(f"{title}: {e} -> {str(r)[:300]}")
    check(not bad, "queries without data:\n" + "\n".join(bad))


@test
def alertmanager_route_and_fleet_configs_are_valid():
    amtool = shutil.which("amtool")
    check(amtool is not None, "amtool missing (prometheus-alertmanager)")
    r = subprocess.run([amtool, "check-config", os.path.join(EXAMPLES, "alertmanager.yml")],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and "SUCCESS" in r.stdout, f"amtool check-config: {r.stdout}{r.stderr}")
    for sev, want in (("critical", "backup-oncall-pager"), ("warning", "backup-oncall-chat")):
        r = subprocess.run([amtool, "config", "routes", "test",
                            f"--config.file={os.path.join(EXAMPLES, 'alertmanager.yml')}",
                            f"severity={sev}", "tidemark_rule=backup_failed"],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0 and r.stdout.strip() == want, f"{sev} -> {want}: {r.stdout}{r.stderr}")
    # The fleet's files name /etc/tidemark/... and /srv/...: here a temp dir holds
    # throwaway secrets, keys and certificates under those names, so
    # --check-config reads real files (it checks that each opens).
    fleet = os.path.join(EXAMPLES, "fleet")
    files = sorted(f for f in os.listdir(fleet) if f.endswith(".yaml"))
    check("coordinator.yaml" in files and sum(f.endswith(".agent.yaml") for f in files) >= 3,
          f"a coordinator and three database hosts: {files}")
    etc = os.path.join(ctx.tmp, "etc")
    pki = make_pki(os.path.join(etc, "tls"))
    hosts = ["coordinator"] + [f.split(".")[0] for f in files if f.endswith(".agent.yaml")]
    for h in hosts:
        shutil.copy(pki["server_cert" if h == "coordinator" else "client_cert"],
                    os.path.join(etc, "tls", f"{h}.crt"))
        shutil.copy(pki["server_key" if h == "coordinator" else "client_key"],
                    os.path.join(etc, "tls", f"{h}.key"))
    for name in ("admin.token", "enroll.token", "s3.secret", "redis.password"):
        with open(os.open(os.path.join(etc, name), os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(os.urandom(20).hex() + "\n")
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", os.path.join(etc, "master.key")],
                   check=True, capture_output=True)
    os.makedirs(os.path.join(ctx.tmp, "srv", "app", "data"), exist_ok=True)
    env = dict(os.environ, TIDEMARK_S3_ACCESS_KEY="AKIAEXAMPLE")
    for f in files:
        with open(os.path.join(fleet, f)) as fh:
            text = fh.read().replace("/etc/tidemark/", etc + "/")
            text = text.replace("/srv/", ctx.tmp + "/srv/")
        path = os.path.join(ctx.tmp, f)
        with open(path, "w") as fh:
            fh.write(text)
        prog = "tidemark-coordinator" if f == "coordinator.yaml" else "tidemark-agent"
        r = subprocess.run([binary(prog), "--config", path, "--check-config"],
                           capture_output=True, text=True, env=env, timeout=30)
        check(r.returncode == 0, f"{f}: {prog} --check-config: {r.stdout}{r.stderr}")

if __name__ == "__main__":
    run()
