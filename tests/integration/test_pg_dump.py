"""Managed PostgreSQL by pg_dump (engine pg_dump), end to end with real
PostgreSQL clusters (initdb + pg_ctl from `pg_config --bindir`, on
127.0.0.1, random ports) and a coordinator with one agent acting for the
"managed" server over the network, as it would for RDS or Cloud SQL.

- source: database shop with several schemas, large objects, the
  extensions pgcrypto, hstore and citext in use, roles with passwords and
  grants; database analytics; the agent logs in as a password (SCRAM) user;
- backup -> restore (tidemark-agent restore) into another cluster: the same
  content (a checksum per table over every row, the large objects byte for
  byte, the extensions) and the same roles (attributes and password hashes);
- --time picks the newest dump that ended at or before it; a time before
  every dump is refused;
- the dump's connection killed (pg_terminate_backend) mid-dump: the task
  fails, nothing of it is listed or left in the repositories;
- a wrong password: a final failure naming host, port and user, never the
  password;
- a login that cannot read role passwords (not a superuser, as on RDS):
  globals dumped with --no-role-passwords;
- pg_dump of another major version than the server: a clear error. The only
  fake here: no second PostgreSQL version is installed, so a script in a
  private bindir answers `pg_dump --version` as 14.9 would;
- the coordinator's RESTORE task (tidemarkctl restore --host ... --to) and
  a drill into the staging server (checks, RTO, RPO = the dump's age,
  databases dropped after)."""
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

from tmtest import pg as pgmod
from tmtest.cluster import Cluster, binary
from tmtest.pg import Postgres
from tmtest.runner import check, run, setup, teardown, test, wait_for

TASKS_YAML = """tasks:
  lease: 10s
  max_attempts: 1
  retry_backoff: 500ms
  poll_max: 5s
"""
PASSWORD = "Dump:pa\\ss-" + os.urandom(6).hex()  # ':' and '\\' exercise the password file


class Ctx:
    pass


ctx = Ctx()


def agent_cli(*args, timeout=600):
    return subprocess.run([binary("tidemark-agent"), "--config", ctx.conf, *args],
                          capture_output=True, text=True, timeout=timeout, env=ctx.c.env)


def secret_file(name, text):
    path = os.path.join(ctx.tmp, name)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text + "\n")
    return path


def dump_yaml(user, pass_file, extra=""):
    return (f"pg_dump:\n  host: 127.0.0.1\n  port: {ctx.src.port}\n  user: {user}\n"
            f"  password_file: {pass_file}\n  sslmode: disable\n{extra}")


def backup(target, expect_ok=True):
    r = ctx.c.ctl("backup", "run", "--target", target, "--type", "snapshot", "--wait", "--json",
                  timeout=600, check=False)
    if expect_ok:
        check(r.returncode == 0, f"backup of {target}: {r.stdout}\n{r.stderr}\n"
                                 + ctx.c.agents["db-1"].output()[-3000:])
    t = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
    return r, t


def backups(target):
    return [b for b in ctx.c.ctl_json("backups", "list", "--target", target)
            if b.get("target", target) == target]


def repo_ids(target):
    out = set()
    for repo in (ctx.repo_a, ctx.repo_b):
        d = os.path.join(repo, target, "backup")
        if os.path.isdir(d):
            out |= {(repo, x) for x in os.listdir(d)}
    return out


SOURCE_SQL = r"""
CREATE ROLE app_owner LOGIN PASSWORD 'owner-pw' CREATEDB;
CREATE ROLE app_reader LOGIN PASSWORD 'reader-pw' CONNECTION LIMIT 5;
CREATE ROLE app_group NOLOGIN;
GRANT app_group TO app_reader;
"""

SHOP_SQL = r"""
CREATE EXTENSION pgcrypto;
CREATE EXTENSION hstore;
CREATE EXTENSION citext;
CREATE SCHEMA sales AUTHORIZATION app_owner;
CREATE SCHEMA inventory AUTHORIZATION app_owner;
SET ROLE app_owner;
CREATE TABLE sales.customers (id int PRIMARY KEY, email citext UNIQUE, attrs hstore,
                              secret bytea);
CREATE TABLE sales.orders (id bigserial PRIMARY KEY, customer int REFERENCES sales.customers,
                           total numeric(12,2), placed timestamptz, note text);
CREATE TABLE inventory.items (sku text PRIMARY KEY, qty int CHECK (qty >= 0), doc jsonb,
                              picture oid);
CREATE VIEW sales.big_orders AS SELECT * FROM sales.orders WHERE total > 500;
CREATE FUNCTION inventory.bump(s text) RETURNS void LANGUAGE sql AS
  $$ UPDATE inventory.items SET qty = qty + 1 WHERE sku = s $$;
RESET ROLE;
INSERT INTO sales.customers
  SELECT g, 'User' || g || '@Example.com', hstore(ARRAY['tier', (g % 3)::text, 'n', g::text]),
         pgp_sym_encrypt('card-' || g, 'k')::bytea
  FROM generate_series(1, 2000) g;
INSERT INTO sales.orders (customer, total, placed, note)
  SELECT 1 + g % 2000, (g * 7.31) % 1000, '2026-01-01'::timestamptz + g * interval '1 minute',
         repeat(md5(g::text), 1 + g % 5)
  FROM generate_series(1, 30000) g;
INSERT INTO inventory.items
  SELECT 'sku-' || g, g % 50, jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g % 7)),
         lo_from_bytea(0, decode(repeat(md5(g::text), 200 + g), 'hex'))
  FROM generate_series(1, 40) g;
GRANT USAGE ON SCHEMA sales TO app_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA sales TO app_reader;
ALTER LARGE OBJECT {lo} OWNER TO app_owner;
"""

TABLES_SQL = ("SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
              "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname "
              "NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' "
              "ORDER BY 1")
ROLES_SQL = ("SELECT string_agg(concat_ws(':', rolname, rolsuper, rolinherit, rolcreaterole, "
             "rolcreatedb, rolcanlogin, rolconnlimit, rolpassword), E'\\n' ORDER BY rolname) "
             "FROM pg_authid WHERE rolname IN ('app_owner', 'app_reader', 'app_group', 'dumper')")
MEMBERS_SQL = ("SELECT string_agg(r.rolname || '>' || m.rolname, ',' ORDER BY 1) FROM "
               "pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON "
               "m.oid = a.member WHERE r.rolname LIKE 'app_%'")
LO_SQL = ("SELECT count(*) || ':' || coalesce(md5(string_agg(md5(lo_get(m.oid)) || "
          "pg_get_userbyid(m.lomowner), ',' ORDER BY m.oid)), '') FROM pg_largeobject_metadata m")
EXT_SQL = "SELECT string_agg(extname || ' ' || extversion, ',' ORDER BY extname) FROM pg_extension"


def fingerprint(server, db):
    """Per-table checksums over every row, large objects, extensions."""
    out = {}
    for t in server.psql(TABLES_SQL, db=db).splitlines():
        out[t] = server.psql(f"SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, '|' "
                             f"ORDER BY x::text)), '') FROM {t} x", db=db)
    out["large objects"] = server.psql(LO_SQL, db=db)
    out["extensions"] = server.psql(EXT_SQL, db=db)
    out["functions"] = server.psql("SELECT coalesce(string_agg(p.proname, ',' ORDER BY 1), '') "
                                   "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                                   "WHERE n.nspname = 'inventory'", db=db)
    return out


def roles(server):
    return server.psql(ROLES_SQL), server.psql(MEMBERS_SQL)


@setup
def setup_all():
    ctx.tmp = tempfile.mkdtemp(prefix="tm-pgdump-")
    os.chmod(ctx.tmp, 0o755)
    ctx.repo_a = os.path.join(ctx.tmp, "repo-a")
    ctx.repo_b = os.path.join(ctx.tmp, "repo-b")
    ctx.key = os.path.join(ctx.tmp, "master.key")
    ctx.scratch = os.path.join(ctx.tmp, "scratch")
    os.makedirs(ctx.scratch)
    subprocess.run([binary("tidemark-agent"), "repo", "keygen", ctx.key], check=True,
                   capture_output=True)
    # The "managed" server: SCRAM passwords for the backup logins over TCP.
    ctx.src = Postgres(ctx.tmp, "src", conf={"password_encryption": "'scram-sha-256'"})
    ctx.src.initdb()
    with open(os.path.join(ctx.src.datadir, "pg_hba.conf"), "w") as f:
        f.write("host all dumper 127.0.0.1/32 scram-sha-256\n"
                "host all reader 127.0.0.1/32 scram-sha-256\n"
                "host all all 127.0.0.1/32 trust\nlocal all all trust\n")
    ctx.src.start()
    ctx.dst = Postgres(ctx.tmp, "dst").initdb().start()
    ctx.src.psql(f"CREATE ROLE dumper LOGIN SUPERUSER PASSWORD '{PASSWORD.replace(chr(39), chr(39) * 2)}'")
    # Like a managed service's admin: reads the data it was granted, not pg_authid.
    ctx.src.psql("CREATE ROLE reader LOGIN PASSWORD 'reader-secret'")
    ctx.src.psql(SOURCE_SQL)
    ctx.src.psql("CREATE DATABASE shop")
    ctx.src.psql("CREATE DATABASE analytics")
    ctx.src.psql("CREATE DATABASE \"odd name\"")
    sql = SHOP_SQL.replace("ALTER LARGE OBJECT {lo} OWNER TO app_owner;", "")
    ctx.src.psql(sql, db="shop")
    lo = ctx.src.psql("SELECT min(oid) FROM pg_largeobject_metadata", db="shop")
    ctx.src.psql(f"ALTER LARGE OBJECT {lo} OWNER TO app_owner", db="shop")
    ctx.src.psql("CREATE TABLE events AS SELECT g AS id, now() - g * interval '1 s' AS at "
                 "FROM generate_series(1, 5000) g", db="analytics")
    ctx.src.psql("GRANT SELECT ON events TO reader", db="analytics")
    ctx.src.psql("CREATE TABLE t (v text); INSERT INTO t VALUES ('hello')", db="odd name")

    ctx.pass_file = secret_file("dumper.pass", PASSWORD)
    ctx.bad_file = secret_file("bad.pass", "not-the-password")
    ctx.reader_file = secret_file("reader.pass", "reader-secret")
    # A pg_dump that says it is 14.9 (no second major version is installed).
    ctx.oldbin = os.path.join(ctx.tmp, "oldbin")
    os.makedirs(ctx.oldbin)
    with open(os.path.join(ctx.oldbin, "pg_dump"), "w") as f:
        f.write("#!/bin/sh\necho 'pg_dump (PostgreSQL) 14.9'\n")
    os.chmod(os.path.join(ctx.oldbin, "pg_dump"), 0o755)

    ctx.c = Cluster(heartbeat="200ms", extra_coord_yaml=TASKS_YAML + """policies:
  - name: managed
    match:
      kind: pg_dump
    schedule:
      full: "0 3 1 1 *"
      incremental: ""
      snapshot: "0 3 1 1 *"
    drill:
      schedule: ""
""")
    ctx.c.__enter__()
    ctx.c.start_coordinator()
    repos = (f"repositories:\n"
             f"  - name: region-a\n    type: posix\n    path: {ctx.repo_a}\n"
             f"  - name: region-b\n    type: posix\n    path: {ctx.repo_b}\n"
             f"encryption:\n  master_key_file: {ctx.key}\n"
             f"restore_roots:\n  - {ctx.scratch}\n")
    staging = (f"  staging_host: 127.0.0.1\n  staging_port: {ctx.dst.port}\n"
               f"  staging_user: postgres\n  jobs: 2\n")
    ctx.c.start_agent("db-1", targets=[
        ("main", "pg_dump", dump_yaml("dumper", ctx.pass_file, staging)),
        ("bad", "pg_dump", dump_yaml("dumper", ctx.bad_file, "  databases: [shop]\n")),
        ("ro", "pg_dump", dump_yaml("reader", ctx.reader_file, "  databases: [analytics]\n")),
        ("oldtools", "pg_dump", dump_yaml("dumper", ctx.pass_file, f"  bindir: {ctx.oldbin}\n")),
    ], extra=repos)
    ctx.conf = os.path.join(ctx.c.dir, "agents", "db-1", "agent.yaml")
    wait_for(lambda: ctx.c.agents_by_host().get("db-1", {}).get("state") == "online", 15,
             "agent online")


@teardown
def teardown_all():
    for name in ("src", "dst"):
        if getattr(ctx, name, None) is not None:
            getattr(ctx, name).destroy()
    if getattr(ctx, "c", None) is not None:
        ctx.c.__exit__(None, None, None)
    shutil.rmtree(ctx.tmp, ignore_errors=True)


@test
def dump_and_restore_into_another_cluster_is_the_same():
    r, t = backup("main")
    bid = t.get("backup_id") or t.get("result", {}).get("backup_id")
    check(bid, f"a backup id: {t}")
    ctx.first = bid
    ctx.first_done = time.time()
    # Each dump is one object of the backup, in both repositories.
    for repo in (ctx.repo_a, ctx.repo_b):
        data = os.path.join(repo, "main", "backup", bid, "data")
        objs = sorted(os.path.relpath(os.path.join(d, f), data)
                      for d, _, fs in os.walk(data) for f in fs)
        check(objs == ["db/analytics.dump", "db/odd%20name.dump", "db/postgres.dump",
                       "db/shop.dump", "globals.sql"], f"objects in {repo}: {objs}")
    # Nothing of the dump stayed on the agent's disk.
    check(not [x for x in os.listdir(tempfile.gettempdir()) if x.startswith("tidemark-pg_dump-")],
          "no scratch directory left")
    r = agent_cli("restore", "--target", "main", "--host", "127.0.0.1", "--port",
                  str(ctx.dst.port), "--user", "postgres", "--dbname-suffix", "_r1", "--jobs", "2")
    check(r.returncode == 0, f"restore: {r.stdout}\n{r.stderr}")
    print("  " + r.stdout.replace("\n", "\n  ").rstrip())
    for db in ("shop", "analytics", "odd name"):
        a, b = fingerprint(ctx.src, db), fingerprint(ctx.dst, db + "_r1")
        check(a == b, f"{db}: same content\nsource   {a}\nrestored {b}")
    fp = fingerprint(ctx.dst, "shop_r1")
    check(fp["large objects"].startswith("40:") and "pgcrypto" in fp["extensions"]
          and "citext" in fp["extensions"] and "hstore" in fp["extensions"]
          and fp["sales.orders"].startswith("30000:"), f"the data is really there: {fp}")
    check(roles(ctx.src) == roles(ctx.dst),
          f"same roles, attributes, password hashes and memberships:\n{roles(ctx.src)}\n"
          f"{roles(ctx.dst)}")
    # A second restore under the same names is refused before writing.
    r = agent_cli("restore", "--target", "main", "--host", "127.0.0.1", "--port",
                  str(ctx.dst.port), "--user", "postgres", "--dbname-suffix", "_r1")
    check(r.returncode != 0 and "already exists" in r.stderr and "never overwrites" in r.stderr,
          f"existing database refused: {r.stderr}")
    check(ctx.dst.psql("SELECT count(*) FROM sales.orders", db="shop_r1") == "30000",
          "the existing copy is untouched")


@test
def time_picks_the_newest_dump_at_or_before_it():
    time.sleep(1.1)
    ctx.src.psql("INSERT INTO sales.orders (customer, total, note) VALUES (1, 1, 'after the first')",
                 db="shop")
    between = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(time.time()))
    time.sleep(1.1)
    r, t = backup("main")
    second = t.get("backup_id") or t.get("result", {}).get("backup_id")
    check(second and second != ctx.first, f"a second backup: {t}")
    r = agent_cli("restore", "--target", "main", "--time", between, "--host", "127.0.0.1",
                  "--port", str(ctx.dst.port), "--user", "postgres", "--dbname-suffix", "_t1")
    check(r.returncode == 0 and ctx.first in r.stdout, f"--time {between} -> {ctx.first}: "
                                                       f"{r.stdout}\n{r.stderr}")
    check(ctx.dst.psql("SELECT count(*) FROM sales.orders", db="shop_t1") == "30000",
          "the first dump's data")
    r = agent_cli("restore", "--target", "main", "--host", "127.0.0.1", "--port",
                  str(ctx.dst.port), "--user", "postgres", "--dbname-suffix", "_t2")
    check(r.returncode == 0 and second in r.stdout, f"newest -> {second}: {r.stdout}\n{r.stderr}")
    check(ctx.dst.psql("SELECT count(*) FROM sales.orders", db="shop_t2") == "30001",
          "the second dump's data")
    r = agent_cli("restore", "--target", "main", "--time", "2020-01-01 00:00:00+00", "--host",
                  "127.0.0.1", "--port", str(ctx.dst.port), "--dbname-suffix", "_t3")
    check(r.returncode == 1 and "no pg_dump backup of target main ended at or before" in r.stderr,
          f"a time before every dump is refused: {r.stderr}")
    for db in ("shop_t1", "analytics_t1", "odd name_t1", "postgres_t1", "shop_t2",
               "analytics_t2", "odd name_t2", "postgres_t2"):
        ctx.dst.psql(f'DROP DATABASE "{db}"')


@test
def connection_killed_mid_dump_fails_and_leaves_nothing():
    before_list = {b.get("id") or b.get("backup_id") for b in backups("main")}
    before_repo = repo_ids("main")
    # Hold a lock pg_dump must wait for, so the dump is caught in the middle.
    holder = subprocess.Popen(
        ["psql", "-X", "-h", "127.0.0.1", "-p", str(ctx.src.port), "-U", "postgres", "-d", "shop",
         "-c", "BEGIN; LOCK TABLE sales.orders IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120);"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = []

    def killer():
        def waiting():
            return ctx.src.psql("SELECT pid FROM pg_stat_activity WHERE application_name = "
                                "'tidemark-agent' AND datname = 'shop' AND wait_event_type = 'Lock'")
        try:
            wait_for(lambda: waiting() != "", 120, "pg_dump waiting on the lock")
            pid = waiting().splitlines()[0]
            killed.append(ctx.src.psql(f"SELECT pg_terminate_backend({pid})"))
        finally:
            ctx.src.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                         "query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()", check=False)

    th = threading.Thread(target=killer)
    th.start()
    try:
        r, t = backup("main", expect_ok=False)
    finally:
        th.join()
        holder.wait(timeout=30)
    check(killed == ["t"], f"the dump's connection was terminated: {killed}")
    check(r.returncode != 0 and str(t.get("state", "")).lower() == "failed",
          f"the task failed: {r.stdout}")
    err = json.dumps(t)
    check("pg_dump shop" in err and "incomplete" in err, f"the error names the dump: {err}")
    after_list = {b.get("id") or b.get("backup_id") for b in backups("main")}
    check(after_list == before_list, f"nothing listed: {before_list} -> {after_list}")
    check(repo_ids("main") == before_repo,
          f"nothing left in the repositories: {sorted(repo_ids('main') - before_repo)}")


@test
def cancel_while_pg_dump_waits_for_a_lock():
    before_repo = repo_ids("main")
    holder = subprocess.Popen(
        ["psql", "-X", "-h", "127.0.0.1", "-p", str(ctx.src.port), "-U", "postgres", "-d", "shop",
         "-c", "BEGIN; LOCK TABLE inventory.items IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120);"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t = ctx.c.ctl_json("backup", "run", "--target", "main", "--type", "snapshot")
        tid = t.get("id") or t.get("task_id")
        wait_for(lambda: ctx.src.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name "
                                      "= 'tidemark-agent' AND wait_event_type = 'Lock'") != "0",
                 120, "pg_dump waiting on the lock")
        ctx.c.ctl("task", "cancel", tid)
        deadline, shown = time.monotonic() + 30, {}
        while time.monotonic() < deadline:
            shown = ctx.c.ctl_json("task", "show", tid)
            if str(shown.get("state", "")).lower() in ("cancelled", "failed"):
                break
            time.sleep(0.5)
        check(str(shown.get("state", "")).lower() in ("cancelled", "failed"),
              f"the task ends while pg_dump still waits: {shown}\n"
              + open(os.path.join(ctx.c.dir, "agents", "db-1", "agent.log")).read()[-3000:])
    finally:
        ctx.src.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                     "query LIKE '%pg_sleep(120)%' AND pid <> pg_backend_pid()", check=False)
        holder.wait(timeout=30)
    wait_for(lambda: ctx.src.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name "
                                  "= 'tidemark-agent'") == "0", 30, "pg_dump's session gone")
    check(repo_ids("main") == before_repo, "nothing left in the repositories")


@test
def wrong_password_is_a_clear_final_error():
    r, t = backup("bad", expect_ok=False)
    err = json.dumps(t)
    check(r.returncode != 0 and str(t.get("state", "")).lower() == "failed"
          and t.get("attempt") == 1, f"failed, not retried: {r.stdout}")
    check("password authentication failed" in err and "user dumper" in err
          and f"127.0.0.1:{ctx.src.port}" in err, f"names host, port and user: {err}")
    check("not-the-password" not in err and PASSWORD not in err
          and "not-the-password" not in ctx.c.agents["db-1"].output(), "never the password")
    check(backups("bad") == [], "nothing listed")


@test
def login_without_role_passwords_dumps_globals_without_them():
    r, t = backup("ro")
    check("role_passwords=0" in ctx.c.agents["db-1"].output(),
          "the agent saw that pg_authid is not readable")
    r = agent_cli("restore", "--target", "ro", "--host", "127.0.0.1", "--port",
                  str(ctx.dst.port), "--user", "postgres", "--into", "analytics_ro")
    check(r.returncode == 0, f"restore: {r.stdout}\n{r.stderr}")
    check(fingerprint(ctx.src, "analytics") == fingerprint(ctx.dst, "analytics_ro"),
          "same content")
    ctx.dst.psql("DROP DATABASE analytics_ro")


@test
def version_mismatch_is_a_clear_error():
    r, t = backup("oldtools", expect_ok=False)
    err = json.dumps(t)
    check(r.returncode != 0 and "is version 14 but the server" in err
          and "runs PostgreSQL 15" in err and "bindir" in err, f"clear error: {err}")


@test
def coordinator_restore_task():
    r = ctx.c.ctl("restore", "--target", "main", "--to", "db-1", "--dir", ctx.scratch, "--host",
                  "127.0.0.1", "--port", str(ctx.dst.port), "--dbname-suffix", "_ctl", "--jobs",
                  "2", "--wait", "--json", timeout=600, check=False)
    check(r.returncode == 0, f"restore task: {r.stdout}\n{r.stderr}\n"
                             + ctx.c.agents["db-1"].output()[-3000:])
    check(fingerprint(ctx.src, "shop") == fingerprint(ctx.dst, "shop_ctl"), "same content")
    check(os.listdir(ctx.scratch) == [], f"scratch emptied: {os.listdir(ctx.scratch)}")
    for db in ("shop_ctl", "analytics_ctl", "odd name_ctl", "postgres_ctl"):
        ctx.dst.psql(f'DROP DATABASE "{db}"')
    # A scratch directory outside restore_roots is refused.
    r = ctx.c.ctl("restore", "--target", "main", "--to", "db-1", "--dir", "/var/tmp", "--host",
                  "127.0.0.1", "--port", str(ctx.dst.port), "--wait", "--json", timeout=120,
                  check=False)
    check(r.returncode != 0 and "restore_roots" in r.stdout + r.stderr,
          f"outside restore_roots: {r.stdout}")


@test
def status_shows_the_rpo_of_backups_only():
    row = [t for t in ctx.c.ctl_json("status")["target_status"] if t["name"] == "main"][0]
    check(row.get("rpo_bound_seconds") in (365 * 86400, 366 * 86400)
          and row.get("rpo_seconds") is not None and 0 <= row["rpo_seconds"] < 600
          and row.get("log_shipping", "").startswith("none: backups only"),
          f"RPO = the newest dump's age, bounded by the interval (yearly here): {row}")
    text = ctx.c.ctl("status").stdout
    lines = text.split("main (pg_dump)")[1].splitlines()[1:]
    block = "\n".join(x for x in itertools.takewhile(lambda x: x.startswith("    "), lines))
    check("the newest backup's age (no log shipping: up to the backup interval, 36" in block
          and "the backup interval is longer than the goal" in block,
          f"status says what the RPO is and that a 15 min goal cannot be met: {block}")
    print("  " + block.replace("\n", "\n  "))


@test
def drill_into_the_staging_server():
    r = ctx.c.ctl("drill", "run", "--target", "main", "--to", "db-1", "--wait", "--json",
                  timeout=600, check=False)
    check(r.returncode == 0, f"drill: {r.stdout}\n{r.stderr}\n"
                             + ctx.c.agents["db-1"].output()[-3000:])
    d = json.loads(r.stdout)
    names = {x["name"]: x for x in d.get("checks", [])}
    check(d.get("ok") is True and names.get("catalog:shop", {}).get("ok") is True
          and "3 user tables" in names["catalog:shop"].get("detail", ""), f"drill passed: {d}")
    check(d.get("rto_seconds") is not None and d.get("rpo_seconds") is not None
          and d["rpo_seconds"] >= 0, f"RTO and RPO: {d}")
    left = ctx.dst.psql("SELECT count(*) FROM pg_database WHERE datname LIKE '%tmdrill%'")
    check(left == "0", f"the drill's databases are dropped: {left}")
    print(f"  drill: RTO {d.get('rto_seconds')} s, RPO {d.get('rpo_seconds')} s")


if __name__ == "__main__":
    run()
