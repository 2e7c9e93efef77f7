"""A real S3-compatible server on loopback for integration tests.

OpenStack Swift (Debian packages) with its s3api middleware: it verifies
SigV4 signatures, supports multipart upload, ListObjectsV2, DeleteObjects,
CopyObject and ranged GET. See shared/notes/s3-test-server.md for the facts
this follows. Everything lives in a temp dir: configs, rings, the device
directory, logs. Nothing is installed here; CI installs:

  apt-get install -y --no-install-recommends swift swift-proxy swift-account \
      swift-container swift-object python3-swift memcached

Swift runs under Debian's /usr/bin/python3 (which has python3-swift), not
the python3 running the tests (it may be a pyenv build without swift).

    with S3Server(tmpdir) as s3:
        s3.create_bucket("b")
        s3.endpoint, s3.access_key, s3.secret_key
"""

import atexit
import datetime
import getpass
import hashlib
import hmac
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

SWIFT_PYTHON = "/usr/bin/python3"
MEMCACHED = "/usr/bin/memcached"
SERVERS = ("account", "container", "object")

PROXY_PIPELINE = ("catch_errors gatekeeper healthcheck proxy-logging cache listing_formats "
                  "bulk s3api tempauth copy slo dlo versioned_writes symlink proxy-logging "
                  "proxy-server")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available():
    """None if the server can run here, else a reason (for skipping)."""
    for path in (SWIFT_PYTHON, MEMCACHED, "/usr/bin/swift-proxy-server",
                 "/usr/bin/swift-object-server", "/etc/swift/swift.conf"):
        if not os.path.exists(path):
            return "%s missing (apt-get install swift swift-proxy swift-account " \
                   "swift-container swift-object python3-swift memcached)" % path
    return None


def sigv4_request(endpoint, access_key, secret_key, method, path, query="", body=b"",
                  headers=None, region="us-east-1", timeout=10):
    """A minimal SigV4-signed request (path-style). Returns (status, headers, body).
    query must be canonical (sorted, encoded)."""
    u = urllib.parse.urlsplit(endpoint)
    host = u.netloc
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    payload = hashlib.sha256(body).hexdigest()
    hdrs = {"host": host, "x-amz-date": amz_date, "x-amz-content-sha256": payload}
    for k, v in (headers or {}).items():
        hdrs[k.lower()] = v
    names = sorted(hdrs)
    canon_path = urllib.parse.quote(path, safe="/-_.~")
    creq = "\n".join([method, canon_path, query,
                      "".join("%s:%s\n" % (n, hdrs[n].strip()) for n in names),
                      ";".join(names), payload])
    scope = "%s/%s/s3/aws4_request" % (date, region)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])

    def h(k, m):
        return hmac.new(k, m.encode(), hashlib.sha256).digest()
    k = h(h(h(h(("AWS4" + secret_key).encode(), date), region), "s3"), "aws4_request")
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    hdrs["authorization"] = ("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
                             "Signature=%s" % (access_key, scope, ";".join(names), sig))
    del hdrs["host"]
    url = "%s://%s%s%s" % (u.scheme, host, canon_path, "?" + query if query else "")
    req = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None,
                                 method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class S3Server:
    """Swift + s3api on 127.0.0.1. Use as a context manager, or start()/stop()."""

    access_key = "test:tester"
    secret_key = "testing"
    region = "us-east-1"

    def __init__(self, workdir=None, ready_timeout=60):
        self._own_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="tm-s3-")
        self.ready_timeout = ready_timeout
        self.procs = {}
        self.ports = {}
        self.endpoint = None
        self._atexit = False

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        reason = available()
        if reason:
            raise RuntimeError("cannot start the S3 test server: " + reason)
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        try:
            self._write_configs()
            self._build_rings()
            self._start_all()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for name in list(self.procs):
            self._stop_proc(name)
        if self._own_dir and os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)

    def stop_proxy(self, sig=signal.SIGKILL):
        """Kill only the S3 front end (for "server died mid-upload" tests)."""
        self._stop_proc("proxy", sig)

    def start_proxy(self):
        self._spawn("proxy", [SWIFT_PYTHON, "/usr/bin/swift-proxy-server",
                              os.path.join(self.etc, "proxy-server.conf")])
        self.wait_ready()

    def _stop_proc(self, name, sig=signal.SIGTERM):
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    # -- setup -------------------------------------------------------------
    def _write_configs(self):
        self.etc = os.path.join(self.dir, "etc")
        self.devices = os.path.join(self.dir, "srv")
        self.logs = os.path.join(self.dir, "log")
        self.run = os.path.join(self.dir, "run")
        for d in (self.etc, self.logs, self.run, os.path.join(self.devices, "d1")):
            os.makedirs(d, exist_ok=True)
        for name in ("memcached", "proxy") + SERVERS:
            self.ports[name] = free_port()
        user = getpass.getuser()
        common = ("[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = %%d\nworkers = 0\n"
                  "user = %s\nswift_dir = %s\ndevices = %s\nmount_check = false\n"
                  "disable_fallocate = true\nlog_name = %%s\nlog_level = WARNING\n"
                  "log_address = /dev/null\n" % (user, self.etc, self.devices))
        for srv in SERVERS:
            with open(os.path.join(self.etc, "%s-server.conf" % srv), "w") as f:
                f.write(common % (self.ports[srv], srv))
                f.write("\n[pipeline:main]\npipeline = %s-server\n\n"
                        "[app:%s-server]\nuse = egg:swift#%s\n" % (srv, srv, srv))
                if srv == "object":
                    # Let the object server accept large multipart segments fast.
                    f.write("\n[object-replicator]\n[object-updater]\n[object-auditor]\n")
                else:
                    f.write("\n[%s-replicator]\n" % srv)
        with open(os.path.join(self.etc, "proxy-server.conf"), "w") as f:
            f.write(common % (self.ports["proxy"], "proxy"))
            f.write("""
[pipeline:main]
pipeline = %(pipeline)s

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true
error_suppression_interval = 0

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:%(mc)d
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:s3api]
use = egg:swift#s3api
location = us-east-1
allow_multipart_uploads = true
s3_acl = false
[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
allow_versioned_writes = true
allow_object_versioning = true
[filter:symlink]
use = egg:swift#symlink
""" % {"pipeline": PROXY_PIPELINE, "mc": self.ports["memcached"]})

    def _build_rings(self):
        # RingBuilder in Python: ~0.4 s for all three (the CLI takes ~5 s).
        script = """
import sys
from swift.common.ring import RingBuilder
etc = sys.argv[1]
for name, port in zip(("account", "container", "object"), sys.argv[2:5]):
    b = RingBuilder(8, 1, 1)
    b.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": int(port),
               "device": "d1", "weight": 100, "meta": ""})
    b.rebalance()
    b.save("%s/%s.builder" % (etc, name))
    b.get_ring().save("%s/%s.ring.gz" % (etc, name))
"""
        subprocess.run([SWIFT_PYTHON, "-c", script, self.etc] +
                       [str(self.ports[s]) for s in SERVERS],
                       check=True, capture_output=True, timeout=60)

    def _spawn(self, name, argv):
        log = open(os.path.join(self.logs, name + ".log"), "ab")
        # Own process group, so stop() takes any children with it.
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            cwd=self.run)
        log.close()

    def _start_all(self):
        self._spawn("memcached", [MEMCACHED, "-l", "127.0.0.1", "-p",
                                  str(self.ports["memcached"]), "-U", "0", "-m", "64",
                                  "-u", getpass.getuser()])
        for srv in SERVERS:
            self._spawn(srv, [SWIFT_PYTHON, "/usr/bin/swift-%s-server" % srv,
                              os.path.join(self.etc, "%s-server.conf" % srv)])
        self._spawn("proxy", [SWIFT_PYTHON, "/usr/bin/swift-proxy-server",
                              os.path.join(self.etc, "proxy-server.conf")])
        self.endpoint = "http://127.0.0.1:%d" % self.ports["proxy"]

    def wait_ready(self):
        deadline = time.monotonic() + self.ready_timeout
        last = None
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError("S3 test server: %s exited with %s; log: %s" % (
                        name, p.returncode, self.log_tail(name)))
            try:
                status, _, body = self.request("GET", "/", timeout=2)
                if status == 200:
                    return
                last = "%s %s" % (status, body[:200])
            except OSError as e:
                last = str(e)
            time.sleep(0.1)
        raise RuntimeError("S3 test server not ready after %ss: %s" % (self.ready_timeout, last))

    def log_tail(self, name, n=2000):
        try:
            with open(os.path.join(self.logs, name + ".log"), "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    # -- S3 helpers for tests ---------------------------------------------
    def request(self, method, path, query="", body=b"", headers=None, timeout=10,
                endpoint=None):
        return sigv4_request(endpoint or self.endpoint, self.access_key, self.secret_key,
                             method, path, query, body, headers, self.region, timeout)

    def create_bucket(self, name):
        # Right after start the account may still be being auto-created and
        # Swift answers 503 for a moment: retry briefly.
        for _ in range(50):
            status, _, body = self.request("PUT", "/" + name)
            if status in (200, 409):
                return
            if status < 500:
                break
            time.sleep(0.2)
        raise RuntimeError("create bucket %s: %s %s" % (name, status, body[:300]))

    def list_keys(self, bucket, prefix=""):
        """All keys in a bucket (independent of the C code under test)."""
        import xml.etree.ElementTree as ET
        keys, token = [], None
        while True:
            q = {"list-type": "2", "prefix": prefix}
            if token:
                q["continuation-token"] = token
            query = "&".join("%s=%s" % (k, urllib.parse.quote(v, safe="-_.~"))
                             for k, v in sorted(q.items()))
            status, _, body = self.request("GET", "/" + bucket, query)
            if status != 200:
                raise RuntimeError("list %s: %s %s" % (bucket, status, body[:300]))
            root = ET.fromstring(body)
            ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
            keys += [c.find(ns + "Key").text for c in root.findall(ns + "Contents")]
            if root.findtext(ns + "IsTruncated") != "true":
                return keys
            token = root.findtext(ns + "NextContinuationToken")

    def list_uploads(self, bucket):
        """Keys of in-progress multipart uploads."""
        import xml.etree.ElementTree as ET
        status, _, body = self.request("GET", "/" + bucket, "uploads=")
        if status != 200:
            raise RuntimeError("list uploads %s: %s %s" % (bucket, status, body[:300]))
        root = ET.fromstring(body)
        ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
        return [u.findtext(ns + "Key") for u in root.findall(ns + "Upload")]


if __name__ == "__main__":
    t0 = time.monotonic()
    with S3Server() as s:
        print("ready in %.1fs at %s" % (time.monotonic() - t0, s.endpoint))
        s.create_bucket("demo")
        print(s.request("PUT", "/demo/hello", body=b"hi")[0], s.list_keys("demo"))
