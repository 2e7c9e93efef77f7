"""The Turso Cloud engine end to end, against a STAND-IN: no real Turso is
reachable from here, so tests/lib/tmtest/turso_standin.py (Python
http.server on 127.0.0.1, started by this test) plays Turso's Platform API
and the databases' HTTP endpoints, each database a real SQLite file. IT IS
NOT TURSO. The first case keeps it honest: the official client from the
npm registry (@tursodatabase/api), installed into a temp dir by this test,
drives it and must get the shapes it expects (npm unreachable = FAIL).

A coordinator, one agent serving three turso targets (one database, a
group, and a database never backed up), two posix repositories:

- backup: an SQL dump per database through the pipeline into both
  repositories; restore --output FILE gives a local SQLite file with the
  same rows (an existing file is refused and kept); --to-turso loads it into
  a new Turso database;
- a group target's backup holds every database of the group, and a database
  added to the group is in the next backup;
- drill: a database seeded from the source at a time, checked over HTTP
  (tables, row counts, the policy's SQL check, integrity_check), deleted;
  RTO/RPO recorded; a failing check still deletes it; a delete that fails
  fails the drill and drill_failed alerts;
- a refused token: a final failure with a clear error, backup_failed alerts;
- 429 with Retry-After: the agent waits as long as it says, then succeeds;
  5xx is retried;
- no recent off-provider copy: backup_stale alerts (policy backup_max_age),
  and a backup resolves it;
- status shows the provider's own point-in-time window beside Tidemark's;
  a refused token or a database gone from the provider fires
  provider_check_failed without a backup running."""
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time

from tmtest.cluster import Cluster, binary
from tmtest.runner import check, run, setup, teardown, test, wait_for
from tmtest.turso_standin import TursoStandin

TASKS_YAML = """tasks:
  lease: 4s
  max_attempts: 2
  retry_backoff: 500ms
  poll_max: 5s
alerts:
  evaluate_every: 1s
  repeat_interval: 1h
"""


class Ctx:
    pass


ctx = Ctx()


def agent_cli(*args, timeout=300):
    return subprocess.run([binary("tidemark-agent"), "--config", ctx.conf, *args],
                          capture_output=True, text=True, timeout=timeout, env=ctx.c.env)


def turso_yaml(which):
    return (f"turso:\n  organization: acme\n  {which}\n"
            f"  api_token_file: {ctx.token_file}\n  api_url: {ctx.t.url}\n"
            f"  db_url: {ctx.t.url}/db/{{name}}\n  timeout: 20s\n  retries: 3\n"
            f"  check_interval: 1s\n")


def backup(target, expect_ok=True):
    r = ctx.c.ctl("backup", "run", "--target", target, "--type", "snapshot", "--wait", "--json",
                  timeout=300, check=False)
    if expect_ok:
        check(r.returncode == 0, f"backup of {target}: {r.stdout}\n{r.stderr}\n"
                                 + ctx.c.agents["db-1"].output()[-3000:])
    return r


def drill(target, time_arg=None):
    args = ["drill", "run", "--target", target, "--to", "db-1", "--wait", "--json"]
    if time_arg:
        args += ["--time", time_arg]
    r = ctx.c.ctl(*args, timeout=300, check=False)
    return r, (json.loads(r.stdout) if r.stdout.strip().startswith("{") else {})


def t_attempts_one(r):
    """The drill's task ran once (a cleanup failure is final: a retry would
    leave another database behind)."""
    tasks = ctx.c.ctl_json("tasks", "list", "--target", "app")
    drills = [t for t in tasks if t.get("kind", "").lower() == "drill"]
    return drills and drills[0].get("attempt") == 1


def alerts(rule, target):
    return [a for a in ctx.c.ctl_json("alerts", "list")
            if a["rule"] == rule and a["target"] == target and a["state"] == "firing"]


def status_of(target):
    st = ctx.c.ctl_json("status")
    return [t for t in st["target_status"] if t["name"] == target][0]


def utc(ts):
    return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(ts))


def next_second():
    time.sleep(1.02 - time.time() % 1)
    return int(time.time())


def make_cluster():
    return Cluster(heartbeat="200ms", extra_coord_yaml=TASKS_YAML + """policies:
  - name: turso
    match:
      kind: turso
    schedule:
      snapshot: ""
    backup_max_age: 60s
    drill:
      schedule: ""
      checks:
        - "SELECT count(*) > 0 FROM items"
""")


@setup
def setup_all():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-tursoit-")
    ctx.repo_a = os.path.join(ctx.tmp, "repo-a")
    ctx.repo_b = os.path.join(ctx.tmp, "repo-b")
    ctx.key = os.path.join(ctx.tmp, "master.key")
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    # The stand-in (NOT Turso) on 127.0.0.1.
    ctx.t = TursoStandin(os.path.join(ctx.tmp, "standin"), plan="scaler").start()
    ctx.token_file = os.path.join(ctx.tmp, "turso.token")
    with open(os.open(ctx.token_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(ctx.t.api_token + "\n")
    # "app": empty for a second (ctx.t_empty), then a table in two batches.
    ctx.t.create_db("app")
    ctx.t_empty = next_second()
    next_second()
    ctx.t.write("app", "CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT, n REAL)",
                *[f"INSERT INTO items (note, n) VALUES ('batch1 {i} it''s; \"q\"\nline', {i}.5)"
                  for i in range(120)])
    ctx.t_batch1 = next_second()
    next_second()
    ctx.t.write("app", *[f"INSERT INTO items (note, n) VALUES ('batch2 {i}', {i})"
                         for i in range(30)],
                "CREATE INDEX items_note ON items (note)")
    ctx.t.groups["tenants"] = dict(ctx.t.groups["default"], name="tenants")
    for name in ("t-alpha", "t-beta"):
        ctx.t.create_db(name, "tenants")
        ctx.t.write(name, "CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT)",
                    *[f"INSERT INTO items (note) VALUES ('{name} {i}')" for i in range(10)])
    ctx.t.create_db("quiet")
    ctx.t.write("quiet", "CREATE TABLE items (x)", "INSERT INTO items VALUES (1)")

    # The cluster's dir inside ours: a shared machine's /tmp/tm-it-* cleaner
    # removed one mid-run (as bench_pg.py notes).
    tempfile.tempdir, saved = ctx.tmp, tempfile.tempdir
    try:
        ctx.c = make_cluster()
    finally:
        tempfile.tempdir = saved
    ctx.c.__enter__()
    ctx.c.start_coordinator()
    repos = (f"repositories:\n"
             f"  - name: region-a\n    type: posix\n    path: {ctx.repo_a}\n"
             f"  - name: region-b\n    type: posix\n    path: {ctx.repo_b}\n"
             f"encryption:\n  master_key_file: {ctx.key}\n")
    ctx.out = os.path.join(ctx.tmp, "restored")
    os.makedirs(ctx.out)
    ctx.c.start_agent("db-1", targets=[("app", "turso", turso_yaml("database: app")),
                                       ("tenants", "turso", turso_yaml("group: tenants")),
                                       ("quiet", "turso", turso_yaml("database: quiet"))],
                      extra=repos + f"restore_roots:\n  - {ctx.out}\n")
    ctx.conf = os.path.join(ctx.c.dir, "agents", "db-1", "agent.yaml")
    wait_for(lambda: ctx.c.agents_by_host().get("db-1", {}).get("state") == "online", 15,
             "agent online")


@teardown
def teardown_all():
    if getattr(ctx, "c", None) is not None:
        ctx.c.__exit__(None, None, None)
    if getattr(ctx, "t", None) is not None:
        ctx.t.stop()
    shutil.rmtree(ctx.tmp, ignore_errors=True)


NODE_SCRIPT = r"""
const { createClient } = require("@tursodatabase/api");
const out = {};
async function main() {
  const c = createClient({ org: "acme", token: process.env.TOKEN, baseUrl: process.env.BASE });
  out.orgs = await c.organizations.list();
  out.group = await c.groups.get("tenants");
  out.list = await c.databases.list();
  out.listGroup = await c.databases.list({ group: "tenants" });
  out.get = await c.databases.get("app");
  out.created = await c.databases.create("npm-made", { group: "default" });
  out.seeded = await c.databases.create("npm-seeded", { group: "default",
      seed: { type: "database", name: "app", timestamp: new Date(Date.now() - 1000) } });
  out.token = await c.databases.createToken("npm-seeded", { authorization: "read-only" });
  out.instances = await c.databases.listInstances("app");
  out.usage = await c.databases.usage("app");
  try { await c.databases.create("npm-made", { group: "default" }); out.dup = "no error"; }
  catch (e) { out.dup = { name: e.name, status: e.status, message: e.message }; }
  try { await c.databases.get("no-such-db"); out.missing = "no error"; }
  catch (e) { out.missing = { name: e.name, status: e.status, message: e.message }; }
  const bad = createClient({ org: "acme", token: "wrong", baseUrl: process.env.BASE });
  try { await bad.databases.list(); out.badToken = "no error"; }
  catch (e) { out.badToken = { name: e.name, status: e.status, message: e.message }; }
  out.deleted1 = await c.databases.delete("npm-made");
  out.deleted2 = await c.databases.delete("npm-seeded");
  out.valid = await c.apiTokens.validate(process.env.TOKEN);
}
main().then(() => console.log(JSON.stringify(out))).catch(e => {
  console.log(JSON.stringify({ fatal: String(e), stack: e.stack })); process.exit(1); });
"""


@test
def standin_is_honest_to_the_official_npm_client():
    """@tursodatabase/api from the npm registry (not vendored): if npm cannot
    fetch it, this FAILS, it does not skip."""
    d = os.path.join(ctx.tmp, "npm")
    os.makedirs(d)
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", d,
                        "@tursodatabase/api@2"], capture_output=True, text=True, timeout=240)
    check(r.returncode == 0, f"npm install @tursodatabase/api (npm must reach its registry): "
                             f"{r.stdout[-1500:]}\n{r.stderr[-1500:]}")
    ver = json.load(open(os.path.join(d, "node_modules/@tursodatabase/api/package.json")))
    script = os.path.join(d, "drive.js")
    with open(script, "w") as f:
        f.write(NODE_SCRIPT)
    r = subprocess.run(["node", script], capture_output=True, text=True, timeout=120, cwd=d,
                       env=dict(os.environ, TOKEN=ctx.t.api_token, BASE=ctx.t.url + "/v1/"))
    check(r.returncode == 0, f"node client against the stand-in: {r.stdout}\n{r.stderr}")
    o = json.loads(r.stdout)
    print(f"  @tursodatabase/api {ver['version']} drove the stand-in: "
          f"{len(o['list'])} databases, seeded {o['seeded']['name']}")
    check(o["orgs"][0]["slug"] == "acme" and o["orgs"][0]["plan_id"] == "scaler",
          f"organizations.list: {o['orgs']}")
    check(o["group"]["name"] == "tenants", f"groups.get: {o['group']}")
    names = sorted(x["name"] for x in o["list"])
    check({"app", "t-alpha", "t-beta", "quiet"} <= set(names), f"databases.list names: {names}")
    check(sorted(x["name"] for x in o["listGroup"]) == ["t-alpha", "t-beta"] and
          all(x["group"] == "tenants" for x in o["listGroup"]), f"list by group: {o['listGroup']}")
    check(o["get"]["name"] == "app" and o["get"]["hostname"] == "app-acme.turso.io" and
          o["get"]["id"], f"databases.get maps Name/Hostname/DbId: {o['get']}")
    check(o["created"]["name"] == "npm-made" and o["created"]["id"] and o["created"]["hostname"],
          f"databases.create: {o['created']}")
    check(o["seeded"]["name"] == "npm-seeded", f"create with a seed: {o['seeded']}")
    check(isinstance(o["token"].get("jwt"), str) and o["token"]["jwt"], f"token: {o['token']}")
    check(o["instances"][0]["type"] == "primary", f"instances: {o['instances']}")
    check(o["dup"].get("status") == 409 and o["dup"]["name"] == "TursoClientError",
          f"a second create is a 409 TursoClientError: {o['dup']}")
    check(o["missing"].get("status") == 404, f"a missing database is a 404: {o['missing']}")
    check(o["badToken"].get("status") == 401 and "token" in o["badToken"]["message"].lower(),
          f"a wrong API token is a 401 with a message: {o['badToken']}")
    check(o["deleted1"] == {"database": "npm-made"}, f"delete: {o['deleted1']}")
    check(o["valid"]["valid"] is True, f"apiTokens.validate: {o['valid']}")
    check("npm-made" not in ctx.t.dbs and "npm-seeded" not in ctx.t.dbs, "deleted")
    # The seed the client sent is the shape the engine sends too.
    seeded = [r for r in ctx.t.requests(r"/databases$", "POST")]
    check(len(seeded) >= 2, "the creates reached the stand-in")


def rows(path):
    c = sqlite3.connect(path)
    try:
        return c.execute("SELECT id, note, n FROM items ORDER BY id").fetchall()
    finally:
        c.close()


@test
def backup_then_restore_to_a_local_file_gives_the_same_rows():
    want = ctx.t.query("app", "SELECT id, note, n FROM items ORDER BY id")
    task = json.loads(backup("app").stdout)
    res = task["result"]
    ctx.app_backup = res["backup_id"]
    extra = res.get("extra", {})
    print(f"  backup {ctx.app_backup}: {res['bytes']} SQL bytes, {res['stored_bytes']} stored, "
          f"{extra}")
    oks = sorted(o["repository"] for o in res.get("repository_outcomes", []) if o.get("ok"))
    check(oks == ["region-a", "region-b"], f"complete in both repositories: {res}")
    check(extra.get("databases") == "app" and extra.get("provider_pitr_s") == str(30 * 86400)
          and extra.get("provider_plan") == "scaler", f"recorded: {extra}")
    for repo in (ctx.repo_a, ctx.repo_b):
        check(os.path.exists(os.path.join(repo, "app", "backup", ctx.app_backup, "manifest")),
              f"manifest in {repo}")
    # Rows written after the backup must not come back.
    ctx.t.write("app", "INSERT INTO items (note, n) VALUES ('after backup', 0)")
    out = os.path.join(ctx.out, "app.db")
    r = agent_cli("restore", "--target", "app", "--output", out)
    check(r.returncode == 0, f"restore: {r.returncode}\n{r.stdout}\n{r.stderr}")
    print("  " + r.stdout.strip().replace("\n", "\n  "))
    got = rows(out)
    check(got == want, f"restored rows == source at the backup ({len(got)} vs {len(want)})")
    c = sqlite3.connect(out)
    check(c.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check")
    check(c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'items_note'").fetchone()[0]
          == 1, "the index came back")
    c.close()
    check(oct(os.stat(out).st_mode & 0o777) == "0o600", "restored file is 0600")
    check(not [f for f in os.listdir(ctx.out) if f.endswith(".tm-tmp")], "no temp file left")
    before = os.stat(out).st_mtime_ns
    r2 = agent_cli("restore", "--target", "app", "--output", out)
    check(r2.returncode != 0 and "already exists" in r2.stderr and
          os.stat(out).st_mtime_ns == before, f"an existing file is refused and kept: {r2.stderr}")
    r3 = agent_cli("restore", "--target", "app", "--output", "relative.db")
    check(r3.returncode == 2 and "absolute" in r3.stderr, f"relative path refused: {r3.stderr}")
    # --time before any backup finished: refused loudly.
    r4 = agent_cli("restore", "--target", "app", "--time", utc(ctx.t_empty), "--output",
                   os.path.join(ctx.out, "early.db"))
    check(r4.returncode != 0 and "at or before" in r4.stderr, f"no backup by then: {r4.stderr}")


@test
def status_shows_the_provider_window_beside_our_copies():
    def ready():
        t = status_of("app")
        return t if t.get("provider_pitr") and t.get("pitr_end") else None
    t = wait_for(ready, 30, "status with both windows")
    print(f"  status: ours {t['pitr_start']} .. {t['pitr_end']}; provider "
          f"{t['provider_pitr_start']} .. {t['provider_pitr_end']} ({t['provider_pitr']})")
    check(t["provider_pitr"] == "turso plan scaler: 30 days, 1 database",
          f"the plan's window: {t['provider_pitr']}")
    from datetime import datetime
    start = datetime.fromisoformat(t["provider_pitr_start"].replace("Z", "+00:00")).timestamp()
    end = datetime.fromisoformat(t["provider_pitr_end"].replace("Z", "+00:00")).timestamp()
    check(abs(end - time.time()) < 30 and abs(end - start - 30 * 86400) < 2,
          f"30 days ending now: {t['provider_pitr_start']} .. {t['provider_pitr_end']}")
    text = ctx.c.ctl("status").stdout
    check("provider:" in text and "turso plan scaler" in text, f"text status: {text}")
    g = wait_for(lambda: status_of("tenants").get("provider_pitr"), 30, "group window")
    check(g.endswith("2 databases") or g.endswith("3 databases"), f"group: {g}")


@test
def restore_into_a_new_turso_database():
    want = ctx.t.query("app", "SELECT id, note, n FROM items WHERE note != 'after backup' "
                              "ORDER BY id")
    r = agent_cli("restore", "--target", "app", "--backup", ctx.app_backup, "--to-turso",
                  "app-restored", "--json")
    check(r.returncode == 0, f"restore --to-turso: {r.stdout}\n{r.stderr}")
    check("app-restored" in ctx.t.dbs, "the new database exists")
    got = ctx.t.query("app-restored", "SELECT id, note, n FROM items ORDER BY id")
    check(got == want, f"loaded rows == the backup's ({len(got)} vs {len(want)})")
    # The name is taken now: a 409, nothing loaded twice, the database kept.
    r2 = agent_cli("restore", "--target", "app", "--to-turso", "app-restored")
    check(r2.returncode != 0 and "already exists" in r2.stderr and "app-restored" in ctx.t.dbs,
          f"409 is a clear error: {r2.stderr}")


@test
def group_target_covers_every_database_and_new_ones():
    res = json.loads(backup("tenants").stdout)["result"]
    check(res["extra"].get("databases") == "t-alpha,t-beta", f"group backup: {res['extra']}")
    ctx.t.create_db("t-gamma", "tenants")
    ctx.t.write("t-gamma", "CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT)",
                "INSERT INTO items (note) VALUES ('gamma')")
    res = json.loads(backup("tenants").stdout)["result"]
    check(res["extra"].get("databases") == "t-alpha,t-beta,t-gamma",
          f"the new database is in the next backup: {res['extra']}")
    r = agent_cli("restore", "--target", "tenants", "--output", os.path.join(ctx.out, "g.db"))
    check(r.returncode == 2 and "--database" in r.stderr, f"which database? {r.stderr}")
    out = os.path.join(ctx.out, "gamma.db")
    r = agent_cli("restore", "--target", "tenants", "--database", "t-gamma", "--output", out)
    check(r.returncode == 0, f"restore t-gamma: {r.stderr}")
    c = sqlite3.connect(out)
    check(c.execute("SELECT note FROM items").fetchall() == [("gamma",)], "t-gamma's rows")
    c.close()
    # A restore task from the coordinator: every database into DIR/<db>.db.
    d = os.path.join(ctx.out, "all")
    r = ctx.c.ctl("restore", "--target", "tenants", "--dir", d, "--to", "db-1", "--wait",
                  "--json", timeout=300, check=False)
    check(r.returncode == 0, f"restore task: {r.stdout}\n{r.stderr}")
    check(sorted(os.listdir(d)) == ["t-alpha.db", "t-beta.db", "t-gamma.db"],
          f"one file per database: {os.listdir(d)}")
    r = ctx.c.ctl("restore", "--target", "tenants", "--dir", os.path.join(ctx.tmp, "outside"),
                  "--to", "db-1", "--wait", "--json", timeout=120, check=False)
    check(r.returncode != 0 and not os.path.exists(os.path.join(ctx.tmp, "outside")),
          f"a restore task outside restore_roots is refused: {r.stdout}")
    # The catalog knows one target, tenants, not one per database.
    targets = {b.get("target") for b in ctx.c.ctl_json("backups", "list", "--target", "tenants")}
    check(targets == {"tenants"}, f"catalog target: {targets}")


@test
def drill_seeds_checks_measures_and_deletes():
    r, d = drill("app")
    check(r.returncode == 0 and d.get("ok") is True,
          f"drill: {r.stdout}\n{r.stderr}\n" + ctx.c.agents["db-1"].output()[-3000:])
    names = {x["name"]: x for x in d.get("checks", [])}
    for n in ("tables:app", "rows:app.items", "sql:app:1", "integrity:app"):
        check(names.get(n, {}).get("ok") is True, f"check {n}: {names}")
    check(d.get("rto_seconds") is not None and d.get("rpo_seconds") is not None, f"RTO/RPO: {d}")
    print(f"  drill: RTO {d.get('rto_seconds')} s, RPO {d.get('rpo_seconds')} s, "
          f"checks {len(names)}")
    check(not [n for n in ctx.t.dbs if "drill" in n], f"drill database deleted: {list(ctx.t.dbs)}")
    creates = ctx.t.requests(r"/databases$", "POST")
    check(creates and all(c["status"] == 200 for c in creates[-1:]), "created through the API")
    # To a time: exactly the first batch (the provider's PITR, replayed).
    r, d = drill("app", utc(ctx.t_batch1))
    names = {x["name"]: x for x in d.get("checks", [])}
    check(d.get("ok") is True and names["rows:app.items"]["detail"] == "120 rows",
          f"drill to {utc(ctx.t_batch1)} has batch 1 only: {names.get('rows:app.items')}")
    # The source was never written by a drill.
    writes = [x for x in ctx.t.requests(r"^/db/app/") if x["method"] == "POST"]
    check(writes == [], f"no call to the source database's endpoint by a drill: {writes}")


@test
def drill_with_a_failing_check_still_cleans_up():
    r, d = drill("app", utc(ctx.t_empty))  # seeded before the table existed
    check(r.returncode != 0 and d.get("ok") is False, f"drill failed: {d}")
    names = {x["name"]: x for x in d.get("checks", [])}
    check(names.get("tables:app", {}).get("ok") is False, f"the tables check failed: {names}")
    check(d.get("cleaned_up", True) is not False and
          not [n for n in ctx.t.dbs if "drill" in n], f"deleted anyway: {list(ctx.t.dbs)}")
    wait_for(lambda: alerts("drill_failed", "app"), 30, "drill_failed firing")


@test
def drill_whose_cleanup_fails_alerts():
    ctx.t.fault("DELETE", r"/databases/app-drill-", 500, count=100)
    try:
        r, d = drill("app")
        check(r.returncode != 0 and d.get("ok") is False, f"drill failed: {d}")
        err = d.get("error", "")
        left = [n for n in ctx.t.dbs if "drill" in n]
        check(t_attempts_one(r) and "left behind" in err and len(left) == 1 and left[0] in err,
              f"the error names the database left behind: {err}")
        a = wait_for(lambda: [x for x in alerts("drill_failed", "app")
                              if "left behind" in json.dumps(x)], 30,
                     "drill_failed firing, saying a database was left behind")
        print(f"  cleanup failure alerted: {a[0]['summary']}")
    finally:
        ctx.t.clear_faults()
        for n in [n for n in ctx.t.dbs if "drill" in n]:
            del ctx.t.dbs[n]
    r, d = drill("app")
    check(d.get("ok") is True, f"a good drill afterwards: {d}")
    wait_for(lambda: not alerts("drill_failed", "app"), 30, "drill_failed resolved")


@test
def refused_token_is_a_clear_final_failure_and_alerts():
    good = ctx.t.api_token
    ctx.t.api_token = "rotated-" + good  # the agent's token is no longer accepted
    try:
        r = backup("app", expect_ok=False)
        t = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
        err = t.get("error", "")
        check(r.returncode != 0 and "refused the token" in err and "401" in err,
              f"the error says Turso refused the token: {t}")
        check(t.get("state", "").lower() == "failed" and t.get("attempt") == 1,
              f"final, not retried: {t}")
        check(good not in json.dumps(t) and good not in ctx.c.agents["db-1"].output(),
              "the token is in no message or log")
        a = wait_for(lambda: alerts("backup_failed", "app"), 30, "backup_failed firing")
        check("refused the token" in json.dumps(a), f"the alert says why: {a}")
        # The periodic check sees it too, without a backup running.
        p = wait_for(lambda: alerts("provider_check_failed", "quiet"), 30,
                     "provider_check_failed firing for quiet")
        check("refused the token" in json.dumps(p), f"the provider alert says why: {p}")
        st = status_of("quiet")
        check(st["provider_pitr"].startswith("unknown:") and "refused the token" in
              st["provider_pitr"] and st["provider_pitr_end"] is None,
              f"status shows the provider window unknown, and why: {st}")
    finally:
        ctx.t.api_token = good
    backup("app")
    wait_for(lambda: not alerts("backup_failed", "app"), 30, "backup_failed resolved")
    wait_for(lambda: not alerts("provider_check_failed", "quiet"), 30,
             "provider_check_failed resolved")


@test
def rate_limit_retry_after_is_honoured_and_5xx_retried():
    # The token request: only a backup makes it (status checks do not).
    path = "/v1/organizations/acme/databases/app/auth/tokens"
    ctx.t.fault("POST", "^" + path + "$", 429, count=1, retry_after=2)
    ctx.t.fault("GET", r"^/db/app/dump$", 503, count=2)
    n0 = len(ctx.t.log)
    res = json.loads(backup("app").stdout)["result"]
    log = ctx.t.log[n0:]
    gets = [x for x in log if x["path"] == path]
    check([x["status"] for x in gets][:2] == [429, 200], f"429 then 200: {gets}")
    gap = gets[1]["t"] - gets[0]["t"]
    check(gap >= 2.0, f"the retry waited the 2 s Retry-After asked for: {gap:.2f} s")
    dumps = [x["status"] for x in log if x["path"] == "/db/app/dump"]
    check(dumps == [503, 503, 200], f"5xx retried: {dumps}")
    check(int(res["extra"]["http_retries"]) == 3 and
          int(res["extra"]["http_waited_ms"]) >= 2000, f"counted: {res['extra']}")
    print(f"  429 + Retry-After 2: retried after {gap:.2f} s; 503 x2 retried; {res['extra']}")


@test
def no_recent_off_provider_copy_alerts():
    """'quiet' was never backed up: backup_stale fires once it has been
    registered longer than the policy's backup_max_age (60 s), and a backup
    resolves it."""
    a = wait_for(lambda: alerts("backup_stale", "quiet"), 90, "backup_stale firing for quiet",
                 interval=1)
    print(f"  backup_stale: {a[0].get('summary')}")
    check(not alerts("backup_stale", "app"), "app has a recent backup: no alert")
    backup("quiet")
    wait_for(lambda: not alerts("backup_stale", "quiet"), 30, "backup_stale resolved")


@test
def a_database_gone_from_the_provider_alerts():
    """The periodic check sees a database deleted behind Tidemark's back
    (runs last: 'quiet' is gone afterwards)."""
    ctx.t.dbs.pop("quiet")
    a = wait_for(lambda: alerts("provider_check_failed", "quiet"), 30,
                 "provider_check_failed firing for the deleted database")
    check("not found" in a[0]["summary"] and "quiet" in a[0]["summary"], f"says why: {a}")
    check(not alerts("provider_check_failed", "app"), "the other targets are fine")
    print(f"  {a[0]['summary']}")


if __name__ == "__main__":
    run()
