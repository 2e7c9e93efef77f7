"""A stand-in for Turso Cloud, for tests. IT IS NOT TURSO.

No real Turso is reachable from the test machines, so this HTTP server
(Python http.server on 127.0.0.1, a thread of the test process) answers the
calls Tidemark's turso engine makes, with the request and response shapes
of the published API as the official client @tursodatabase/api sends and
reads them (test_turso.py drives this server with that client to keep it
honest). What it does NOT do: real replication, regions, edge replicas,
Hrana batons/streams across requests, JWT signatures, billing. Everything
it keeps is in memory and in one SQLite file per database.

Platform API (under /v1, Bearer API token):
  GET  /v1/organizations                         {"organizations": [...]}
  GET  /v1/organizations/{org}                   {"organization": {..., "plan_id"}}
  GET  /v1/organizations/{org}/groups[/{g}]      {"groups": [...]} / {"group": {...}}
  POST /v1/organizations/{org}/groups            {"group": {...}}
  GET  /v1/organizations/{org}/databases[?group] {"databases": [{Name, DbId, Hostname, group...}]}
  GET  /v1/organizations/{org}/databases/{db}    {"database": {...}}
  POST /v1/organizations/{org}/databases         {"database": {DbId, Hostname, Name}}; a seed
       {type: database, name, timestamp} gives a copy of that database as it
       was at the timestamp (replayed from the writes this server saw)
  DELETE /v1/organizations/{org}/databases/{db}  {"database": name}
  GET  /v1/organizations/{org}/databases/{db}/instances   {"instances": [...]}
  GET  /v1/organizations/{org}/databases/{db}/usage       {"database": {...}}
  POST /v1/organizations/{org}/databases/{db}/auth/tokens {"jwt": "..."}
  GET  /v1/auth/api-tokens/validate              {"exp": ...}
  Errors: {"error": "..."} with 400/401/404/409; faults injected by tests
  give 429 with Retry-After and 5xx.

Database endpoint (a database token, read-only or full-access):
  POST /db/{db}/v2/pipeline  Hrana over HTTP: execute and close requests
  GET  /db/{db}/dump         an SQL dump (PRAGMA foreign_keys=OFF; BEGIN
                             TRANSACTION; ...; COMMIT;) in one read transaction

Test control (not Turso): the methods of TursoStandin (fault, log, write).
"""
import json
import os
import re
import secrets
import sqlite3
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

# The provider's stated point-in-time windows per plan (docs.turso.tech).
PLAN_WINDOW = {"free": 86400, "starter": 86400, "developer": 10 * 86400,
               "scaler": 30 * 86400, "pro": 90 * 86400}

WRITE_ACTIONS = {sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE,
                 sqlite3.SQLITE_CREATE_TABLE, sqlite3.SQLITE_CREATE_INDEX,
                 sqlite3.SQLITE_CREATE_VIEW, sqlite3.SQLITE_CREATE_TRIGGER,
                 sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_DROP_INDEX, sqlite3.SQLITE_DROP_VIEW,
                 sqlite3.SQLITE_DROP_TRIGGER, sqlite3.SQLITE_ALTER_TABLE,
                 sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH}


class Db:
    def __init__(self, name, group, path, org):
        self.name = name
        self.group = group
        self.path = path
        self.id = str(uuid.uuid4())
        self.hostname = f"{name}-{org}.turso.io"
        self.created = time.time()
        self.history = []  # (unix time, sql): every write this server executed
        self.lock = threading.Lock()


class TursoStandin:
    """The stand-in: start() serves on 127.0.0.1:<port>; stop() ends it."""

    def __init__(self, base_dir, org="acme", plan="scaler", api_token=None):
        self.dir = base_dir
        os.makedirs(base_dir, exist_ok=True)
        self.org = org
        self.plan = plan
        self.api_token = api_token or secrets.token_hex(24)
        self.groups = {"default": {"name": "default", "uuid": str(uuid.uuid4()),
                                   "locations": ["aws-eu-west-1"], "primary": "aws-eu-west-1",
                                   "archived": False, "version": "v0.24"}}
        self.dbs = {}
        self.db_tokens = {}  # jwt -> (database, authorization)
        self.faults = []
        self.log = []
        self.lock = threading.Lock()
        self.srv = None

    # ---- test control ----
    def start(self):
        standin = self

        class H(Handler):
            s = standin
        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.srv is not None:
            self.srv.shutdown()
            self.srv.server_close()
            self.srv = None

    def fault(self, method, path_re, status, count=1, retry_after=None, body=None):
        """The next `count` requests matching method and path_re get status."""
        with self.lock:
            self.faults.append(dict(method=method, re=re.compile(path_re), status=status,
                                    count=count, retry_after=retry_after,
                                    body=body or {"error": f"injected {status}"}))

    def clear_faults(self):
        with self.lock:
            self.faults = []

    def requests(self, path_re=".*", method=None):
        with self.lock:
            return [r for r in self.log if re.search(path_re, r["path"])
                    and (method is None or r["method"] == method)]

    def create_db(self, name, group="default"):
        db = Db(name, group, os.path.join(self.dir, f"{name}-{uuid.uuid4().hex[:8]}.db"), self.org)
        sqlite3.connect(db.path).close()
        self.dbs[name] = db
        return db

    def write(self, name, *sqls):
        """Run writes on database name as a client would (recorded for PITR)."""
        db = self.dbs[name]
        with db.lock:
            c = sqlite3.connect(db.path)
            try:
                for s in sqls:
                    c.execute(s)
                    db.history.append((time.time(), s))
                c.commit()
            finally:
                c.close()

    def query(self, name, sql):
        c = sqlite3.connect(self.dbs[name].path)
        try:
            return c.execute(sql).fetchall()
        finally:
            c.close()

    # ---- shapes ----
    def db_json(self, db):
        return {"Name": db.name, "DbId": db.id, "Hostname": db.hostname,
                "regions": ["aws-eu-west-1"], "primaryRegion": "aws-eu-west-1",
                "type": "logical", "database_type": "libsql", "version": "0.24.1",
                "group": db.group, "sleeping": False, "archived": False, "allow_attach": False,
                "block_reads": False, "block_writes": False, "schema": None, "is_schema": False}

    def org_json(self):
        return {"name": self.org, "slug": self.org, "type": "team", "overages": False,
                "blocked_reads": False, "blocked_writes": False, "plan_id": self.plan,
                "plan_timeline": "monthly", "platform": ""}


def parse_ts(s):
    s = s.replace("Z", "+00:00")
    from datetime import datetime
    return datetime.fromisoformat(s).timestamp()


class Handler(BaseHTTPRequestHandler):
    s = None  # the TursoStandin, set by start()
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send_json(self, status, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.status = status

    def err(self, status, msg):
        self.send_json(status, {"error": msg})

    def body_json(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw) if raw.strip() else {}

    def token(self):
        a = self.headers.get("Authorization", "")
        return a[7:] if a.startswith("Bearer ") else None

    def handle_any(self, method):
        self.status = 0
        u = urlparse(self.path)
        path, q = u.path, parse_qs(u.query)
        entry = {"t": time.time(), "method": method, "path": path}
        try:
            with self.s.lock:
                fault = None
                for f in self.s.faults:
                    if f["count"] > 0 and f["method"] in (method, "*") and f["re"].search(path):
                        f["count"] -= 1
                        fault = f
                        break
            if fault is not None:
                if method in ("POST", "PUT", "PATCH"):
                    self.body_json()
                hdr = {"Retry-After": str(fault["retry_after"])} \
                    if fault["retry_after"] is not None else None
                self.send_json(fault["status"], fault["body"], hdr)
            elif path.startswith("/v1/"):
                self.platform(method, path, q)
            elif path.startswith("/db/"):
                self.database(method, path)
            else:
                self.err(404, "not found")
        finally:
            entry["status"] = self.status
            with self.s.lock:
                self.s.log.append(entry)

    do_GET = lambda self: self.handle_any("GET")  # noqa: E731
    do_POST = lambda self: self.handle_any("POST")  # noqa: E731
    do_DELETE = lambda self: self.handle_any("DELETE")  # noqa: E731
    do_PATCH = lambda self: self.handle_any("PATCH")  # noqa: E731

    # ---- Platform API ----
    def platform(self, method, path, q):
        s = self.s
        if self.token() != s.api_token:
            return self.err(401, "Unauthorized: invalid or expired API token")
        parts = path.strip("/").split("/")[1:]  # drop "v1"
        if parts == ["auth", "api-tokens", "validate"]:
            return self.send_json(200, {"exp": int(time.time()) + 3600})
        if parts == ["organizations"] and method == "GET":
            return self.send_json(200, {"organizations": [s.org_json()]})
        if len(parts) < 2 or parts[0] != "organizations" or parts[1] != s.org:
            return self.err(404, "organization not found")
        rest = parts[2:]
        if rest == [] and method == "GET":
            return self.send_json(200, {"organization": s.org_json()})
        if rest[:1] == ["groups"]:
            if len(rest) == 1 and method == "GET":
                return self.send_json(200, {"groups": list(s.groups.values())})
            if len(rest) == 1 and method == "POST":
                b = self.body_json()
                if b.get("name") in s.groups:
                    return self.err(409, f"group {b.get('name')} already exists")
                g = {"name": b.get("name"), "uuid": str(uuid.uuid4()),
                     "locations": [b.get("location", "aws-eu-west-1")],
                     "primary": b.get("location", "aws-eu-west-1"), "archived": False,
                     "version": "v0.24"}
                s.groups[g["name"]] = g
                return self.send_json(200, {"group": g})
            if len(rest) == 2 and method == "GET":
                g = s.groups.get(rest[1])
                return self.send_json(200, {"group": g}) if g else \
                    self.err(404, f"group {rest[1]} not found")
            return self.err(404, "not found")
        if rest[:1] != ["databases"]:
            return self.err(404, "not found")
        if len(rest) == 1 and method == "GET":
            group = q.get("group", [None])[0]
            dbs = [s.db_json(d) for d in list(s.dbs.values()) if group is None or d.group == group]
            return self.send_json(200, {"databases": dbs})
        if len(rest) == 1 and method == "POST":
            return self.create(self.body_json())
        db = s.dbs.get(rest[1]) if len(rest) >= 2 else None
        if db is None:
            return self.err(404, f"database {rest[1] if len(rest) > 1 else ''} not found")
        if len(rest) == 2 and method == "GET":
            return self.send_json(200, {"database": s.db_json(db)})
        if len(rest) == 2 and method == "DELETE":
            del s.dbs[db.name]
            for suffix in ("", "-journal", "-wal"):
                try:
                    os.unlink(db.path + suffix)
                except FileNotFoundError:
                    pass
            return self.send_json(200, {"database": db.name})
        if rest[2:] == ["instances"] and method == "GET":
            return self.send_json(200, {"instances": [{"uuid": db.id, "name": "primary",
                                                       "type": "primary", "region": "aws-eu-west-1",
                                                       "hostname": db.hostname}]})
        if rest[2:] == ["usage"] and method == "GET":
            return self.send_json(200, {"database": {"uuid": db.id, "instances": [],
                                                     "usage": {"rows_read": 0, "rows_written": len(db.history),
                                                               "storage_bytes": os.path.getsize(db.path)}}})
        if rest[2:] == ["auth", "tokens"] and method == "POST":
            self.body_json()
            auth = q.get("authorization", ["full-access"])[0]
            if auth not in ("full-access", "read-only"):
                return self.err(400, f"invalid authorization {auth}")
            jwt = "standin." + secrets.token_urlsafe(32)
            s.db_tokens[jwt] = (db.name, auth)
            return self.send_json(200, {"jwt": jwt})
        return self.err(404, "not found")

    def create(self, b):
        s = self.s
        name, group = b.get("name"), b.get("group", "default")
        if not name or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", name):
            return self.err(400, f"invalid database name {name!r}: lowercase letters, digits, "
                                 "dashes, at most 64")
        if group not in s.groups:
            return self.err(404, f"group {group} not found")
        if name in s.dbs:
            return self.err(409, f"database {name} already exists")
        seed = b.get("seed")
        replay = []
        if seed is not None:
            if seed.get("type") != "database":
                return self.err(400, f"seed type {seed.get('type')!r} is not supported by the "
                                     "stand-in")
            src = s.dbs.get(seed.get("name"))
            if src is None:
                return self.err(404, f"seed database {seed.get('name')} not found")
            ts = time.time()
            if seed.get("timestamp"):
                try:
                    ts = parse_ts(seed["timestamp"])
                except ValueError:
                    return self.err(400, f"invalid timestamp {seed['timestamp']!r}")
            window = PLAN_WINDOW.get(s.plan, 86400)
            if ts > time.time() + 1 or ts < time.time() - window or ts < src.created - 1:
                return self.err(400, "timestamp is outside the point-in-time recovery window")
            with src.lock:
                replay = [sql for (t, sql) in src.history if t <= ts]
        db = s.create_db(name, group)
        if replay:
            c = sqlite3.connect(db.path)
            for sql in replay:
                c.execute(sql)
                db.history.append((db.created, sql))
            c.commit()
            c.close()
        return self.send_json(200, {"database": {"DbId": db.id, "Hostname": db.hostname,
                                                 "Name": db.name}})

    # ---- the database endpoint ----
    def database(self, method, path):
        s = self.s
        m = re.fullmatch(r"/db/([^/]+)(/.*)", path)
        db = s.dbs.get(m.group(1)) if m else None
        if db is None:
            return self.err(404, "database not found")
        grant = s.db_tokens.get(self.token())
        if grant is None or grant[0] != db.name:
            return self.err(401, "Unauthorized: the token is not valid for this database")
        readonly = grant[1] == "read-only"
        if m.group(2) == "/v2/pipeline" and method == "POST":
            return self.pipeline(db, readonly, self.body_json())
        if m.group(2) == "/dump" and method == "GET":
            with db.lock:
                c = sqlite3.connect(db.path)
                try:
                    c.execute("BEGIN")
                    lines = ["PRAGMA foreign_keys=OFF;"] + list(c.iterdump())
                    c.execute("COMMIT")
                finally:
                    c.close()
            body = ("\n".join(lines) + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.status = 200
            return
        return self.err(404, "not found")

    def pipeline(self, db, readonly, b):
        if b.get("baton") is not None:
            return self.err(400, "batons are not supported by the stand-in")
        results = []
        with db.lock:
            c = sqlite3.connect(db.path, isolation_level=None)
            wrote = []

            def auth(action, *a):
                if action in WRITE_ACTIONS:
                    wrote.append(action)
                    if readonly:
                        return sqlite3.SQLITE_DENY
                return sqlite3.SQLITE_OK
            c.set_authorizer(auth)
            try:
                for r in b.get("requests", []):
                    if r.get("type") == "close":
                        results.append({"type": "ok", "response": {"type": "close"}})
                        continue
                    if r.get("type") != "execute":
                        results.append({"type": "error", "error": {
                            "message": f"request type {r.get('type')} not supported by the "
                                       "stand-in", "code": "UNSUPPORTED"}})
                        continue
                    sql = r["stmt"]["sql"]
                    wrote.clear()
                    try:
                        cur = c.execute(sql)
                        rows = cur.fetchall()
                        cols = [{"name": d[0], "decltype": None} for d in (cur.description or [])]
                        if wrote:
                            db.history.append((time.time(), sql))
                        results.append({"type": "ok", "response": {"type": "execute", "result": {
                            "cols": cols, "rows": [[hrana(v) for v in row] for row in rows],
                            "affected_row_count": max(cur.rowcount, 0),
                            "last_insert_rowid": str(cur.lastrowid) if cur.lastrowid else None,
                            "replication_index": None, "rows_read": len(rows),
                            "rows_written": max(cur.rowcount, 0)}}})
                    except sqlite3.Error as e:
                        code = "SQLITE_AUTH" if readonly and wrote else "SQLITE_ERROR"
                        results.append({"type": "error", "error": {"message": str(e),
                                                                   "code": code}})
            finally:
                c.close()
        return self.send_json(200, {"baton": None, "base_url": None, "results": results})


def hrana(v):
    if v is None:
        return {"type": "null"}
    if isinstance(v, bool) or isinstance(v, int):
        return {"type": "integer", "value": str(int(v))}
    if isinstance(v, float):
        return {"type": "float", "value": v}
    if isinstance(v, bytes):
        import base64
        return {"type": "blob", "base64": base64.b64encode(v).decode().rstrip("=")}
    return {"type": "text", "value": str(v)}
