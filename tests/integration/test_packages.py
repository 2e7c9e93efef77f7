"""The .deb packages a fleet installs (issue #17 §1), built, checked,
installed, run and purged on this machine.

1. dpkg-buildpackage builds tidemark-agent, tidemark-coordinator and
   tidemarkctl from a copy of the tracked source tree (debian/: the one
   CMake build, -Werror, Debian's hardening flags); lintian finds no error.
2. apt-get installs them: the tidemark system user, /var/lib/tidemark and
   its per-program state directories 0700, example configurations under
   /etc/tidemark as conffiles, man pages, systemd units that
   `systemd-analyze verify` accepts; no daemon runs, because the host has
   no configuration yet.
3. The installed programs run as the installed units say (User=, their
   ExecStartPre and ExecStart lines, EnvironmentFile=) with configurations
   made from the installed examples: a Redis snapshot backup through the
   coordinator, then a restore by the installed agent, whose RDB loads into
   a fresh redis-server with the source's digest.
4. apt-get purge leaves nothing of the packages: no files, no state, no
   user; only what the operator wrote in /etc/tidemark (the test removes it).

It installs system packages, so it needs root (CI is root); as another user
it says so and is reported skipped, never passed."""
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time

from tmtest.cluster import free_port
from tmtest.redis import Redis, mixed_dataset
from tmtest.runner import check, run, setup, skip_all, teardown, test, wait_for

SRC = os.environ.get("TM_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
PACKAGES = ("tidemark-agent", "tidemark-coordinator", "tidemarkctl")
ETC = "/etc/tidemark"
STATE = "/var/lib/tidemark"


class Ctx:
    pass


ctx = Ctx()


def sh(*argv, timeout=600, check_rc=True, env=None, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, **kw)
    if check_rc and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def installed():
    p = sh("dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *PACKAGES, check_rc=False)
    return {line.split()[0] for line in p.stdout.splitlines() if line.endswith(" installed")}


def purge():
    sh("apt-get", "purge", "-y", *PACKAGES, check_rc=False, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def unit(name):
    """The keys of an installed unit's [Service] section (last value wins,
    ExecStartPre kept in order)."""
    keys, pre = {}, []
    with open(f"/lib/systemd/system/{name}.service") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", "[")) or "=" not in line:
                continue
            k, v = line.split("=", 1)
            if k == "ExecStartPre":
                pre.append(v)
            keys[k] = v
    keys["ExecStartPre"] = pre
    return keys


def unit_env(u):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    path = u.get("EnvironmentFile", "").lstrip("-")
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                if "=" in line and not line.lstrip().startswith("#"):
                    k, v = line.strip().split("=", 1)
                    env[k] = v
    return env


def as_unit_user(u, argv):
    """argv as the unit's User= and Group= with that user's groups, as
    systemd runs it; setpriv execs it (no wrapper to catch SIGTERM)."""
    return ["setpriv", f"--reuid={u['User']}", f"--regid={u.get('Group', u['User'])}",
            "--init-groups", "--", *argv]


class Daemon:
    """A program started from its unit's ExecStartPre and ExecStart lines."""

    def __init__(self, name):
        self.name = name
        self.u = unit(name)
        self.env = unit_env(self.u)
        self.log = open(os.path.join(ctx.tmp, f"{name}.log"), "w+")
        for line in self.u["ExecStartPre"]:
            p = sh(*as_unit_user(self.u, shlex.split(line)), env=self.env, check_rc=False)
            check(p.returncode == 0, f"{name} ExecStartPre `{line}`: {p.stdout}{p.stderr}")
        self.p = subprocess.Popen(as_unit_user(self.u, shlex.split(self.u["ExecStart"])),
                                  env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

    def output(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                raise AssertionError(f"{self.name} did not stop on SIGTERM\n{self.output()[-2000:]}")
        check(self.p.returncode == 0, f"{self.name} exited {self.p.returncode} on SIGTERM\n"
                                      f"{self.output()[-2000:]}")


def ctl(*args, timeout=120):
    return sh("tidemarkctl", "--url", ctx.url, *args, timeout=timeout,
              env=dict(os.environ, TIDEMARK_ADMIN_TOKEN=ctx.admin), check_rc=False)


@setup
def build_packages():
    if os.geteuid() != 0:
        skip_all("installs .deb packages system-wide: needs root (CI runs as root)")
    for tool in ("dpkg-buildpackage", "dh", "lintian", "help2man", "systemd-analyze"):
        if shutil.which(tool) is None:
            raise AssertionError(f"{tool} missing: deploy/install-deps.sh --test installs it")
    ctx.tmp = tempfile.mkdtemp(prefix="tm-pkg-")
    os.chmod(ctx.tmp, 0o755)
    ctx.daemons = []
    ctx.redis = None
    if installed():
        purge()
    # A copy of the tracked tree: the build writes obj-*/ and debian/tmp
    # beside its sources, never into the checkout under test.
    tree = os.path.join(ctx.tmp, "tidemark")
    files = sh("git", "-C", SRC, "ls-files", "-z").stdout.split("\0")
    for rel in filter(None, files):
        src = os.path.join(SRC, rel)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(tree, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(tree, rel))
    t0 = time.monotonic()
    p = sh("dpkg-buildpackage", "-b", "-us", "-uc", f"-j{os.cpu_count() or 2}", cwd=tree,
           timeout=1200, check_rc=False)
    check(p.returncode == 0, f"dpkg-buildpackage failed:\n{p.stdout[-4000:]}\n{p.stderr[-3000:]}")
    ctx.debs = {name: os.path.join(ctx.tmp, f"{name}_0.1.0_amd64.deb") for name in PACKAGES}
    for name, path in ctx.debs.items():
        check(os.path.exists(path), f"{path} built: {os.listdir(ctx.tmp)}")
    print(f"  packages built in {time.monotonic() - t0:.0f} s")


@teardown
def cleanup():
    for d in reversed(getattr(ctx, "daemons", [])):
        if d.p.poll() is None:
            d.p.kill()
            d.p.wait()
    if getattr(ctx, "redis", None) is not None:
        ctx.redis.stop()
    if os.geteuid() == 0:
        # Whatever a failed case left running as the package's user.
        sh("pkill", "-KILL", "-u", "tidemark", check_rc=False)
    if os.geteuid() == 0 and installed():
        purge()
    for f in ("agent.yaml", "coordinator.yaml", "agent.env", "coordinator.env", "master.key"):
        try:
            os.unlink(os.path.join(ETC, f))
        except FileNotFoundError:
            pass
    if os.path.isdir(ETC) and not os.listdir(ETC):
        os.rmdir(ETC)
    if getattr(ctx, "tmp", None):
        shutil.rmtree(ctx.tmp, ignore_errors=True)


@test
def lintian_finds_no_error():
    p = sh("lintian", "--fail-on", "error", *ctx.debs.values(), check_rc=False, timeout=300)
    errors = [line for line in p.stdout.splitlines() if line.startswith("E:")]
    check(p.returncode == 0 and not errors, f"lintian: {p.returncode}\n{p.stdout}{p.stderr}")


@test
def install_creates_user_state_conffiles_units_and_starts_nothing():
    p = sh("apt-get", "install", "-y", *ctx.debs.values(), check_rc=False,
           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    check(p.returncode == 0, f"apt-get install: {p.stdout[-3000:]}{p.stderr[-2000:]}")
    check(installed() == set(PACKAGES), f"installed: {installed()}")
    pw = sh("getent", "passwd", "tidemark", check_rc=False).stdout.split(":")
    check(len(pw) >= 7 and int(pw[2]) < 1000 and pw[6].strip() in ("/usr/sbin/nologin", "/bin/false"),
          f"tidemark is a system user without a shell: {pw}")
    for d in (STATE, f"{STATE}/agent", f"{STATE}/coordinator"):
        st = os.stat(d)
        check(st.st_mode & 0o777 == 0o700 and st.st_uid == int(pw[2]),
              f"{d} is 0700 and the tidemark user's: {oct(st.st_mode)} uid {st.st_uid}")
    conf = sh("dpkg-query", "-W", "-f", "${Conffiles}\n", "tidemark-agent", "tidemark-coordinator").stdout
    for f in ("agent.yaml.example", "coordinator.yaml.example"):
        check(f"{ETC}/{f}" in conf, f"{f} is a conffile: {conf}")
    for prog, sec in (("tidemark-agent", 8), ("tidemark-coordinator", 8), ("tidemarkctl", 1)):
        check(os.path.exists(f"/usr/share/man/man{sec}/{prog}.{sec}.gz"), f"man page of {prog}")
        check(shutil.which(prog) == f"/usr/bin/{prog}", f"{prog} on PATH: {shutil.which(prog)}")
    v = sh("systemd-analyze", "verify", "/lib/systemd/system/tidemark-agent.service",
           "/lib/systemd/system/tidemark-coordinator.service", check_rc=False)
    # Lines about other units on this machine (a container's own) are not
    # ours: only those naming a tidemark unit count.
    ours = [line for line in (v.stdout + v.stderr).splitlines() if "tidemark" in line]
    check(v.returncode == 0 and not ours, f"systemd-analyze verify: {v.returncode}\n{v.stdout}{v.stderr}")
    for name in ("tidemark-agent", "tidemark-coordinator"):
        u = unit(name)
        check(u.get("ProtectSystem") == "strict" and u.get("NoNewPrivileges") == "true"
              and u.get("CapabilityBoundingSet") == "" and u.get("SystemCallFilter") == "@system-service",
              f"{name} is hardened: {u}")
        with open(f"/lib/systemd/system/{name}.service") as f:
            check(f"ConditionPathExists={ETC}/{name.split('-')[1]}.yaml" in f.read(),
                  f"{name} starts only once its configuration exists")
    ps = sh("pgrep", "-u", "tidemark", check_rc=False)
    check(ps.stdout.strip() == "", f"nothing runs as tidemark after install: {ps.stdout}")


def write_secret_file(path, text, owner=None):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if owner is not None:
        shutil.chown(path, owner, owner)


@test
def installed_programs_back_up_and_restore_as_their_units_say():
    ctx.url = f"tcp://127.0.0.1:{free_port()}"
    ctx.admin = os.urandom(24).hex()
    enroll = os.urandom(24).hex()
    # The coordinator: its installed example with this machine's ports.
    with open(f"{ETC}/coordinator.yaml.example") as f:
        coord = f.read()
    coord = coord.replace("listen: tcp://127.0.0.1:7800", f"listen: {ctx.url}")
    coord = re.sub(r"listen: http://127.0.0.1:\d+", f"listen: http://127.0.0.1:{free_port()}", coord)
    check(ctx.url in coord, "the example names the RPC listen address the test replaces")
    with open(f"{ETC}/coordinator.yaml", "w") as f:
        f.write(coord)
    write_secret_file(f"{ETC}/coordinator.env",
                      f"TIDEMARK_ADMIN_TOKEN={ctx.admin}\nTIDEMARK_ENROLL_TOKEN={enroll}\n")
    # The agent: its installed example, with a Redis target on loopback and
    # a repository the tidemark user owns.
    ctx.redis = Redis(ctx.tmp, "src").start()
    ctx.redis.pipe(mixed_dataset(20, dbs=(0, 3)))
    ctx.want = ctx.redis.digest()
    repo = os.path.join(ctx.tmp, "repo")
    os.makedirs(repo)
    shutil.chown(repo, "tidemark", "tidemark")
    sh("tidemark-agent", "repo", "keygen", f"{ETC}/master.key")
    shutil.chown(f"{ETC}/master.key", "tidemark", "tidemark")
    with open(f"{ETC}/agent.yaml.example") as f:
        agent = f.read()
    agent = agent.replace("url: tcp://127.0.0.1:7800", f"url: {ctx.url}")
    agent = re.sub(r"\ntargets:\n(?:  .*\n|\n)*?(?=\S)",
                   "\ntargets:\n  - name: cache\n    kind: redis\n    redis:\n"
                   f"      host: 127.0.0.1\n      port: {ctx.redis.port}\n\n", agent)
    agent = re.sub(r"\nrepositories:\n(?:  .*\n|\n)*?(?=\S)",
                   f"\nrepositories:\n  - name: local\n    type: posix\n    path: {repo}\n\n", agent)
    check(f"port: {ctx.redis.port}" in agent and f"path: {repo}" in agent,
          "the example's targets and repositories were replaced")
    with open(f"{ETC}/agent.yaml", "w") as f:
        f.write(agent)
    write_secret_file(f"{ETC}/agent.env", f"TIDEMARK_ENROLL_TOKEN={enroll}\n")

    ctx.daemons.append(Daemon("tidemark-coordinator"))
    wait_for(lambda: ctl("agents", "list").returncode == 0, 30, "coordinator answers")
    ctx.daemons.append(Daemon("tidemark-agent"))
    wait_for(lambda: '"online"' in ctl("agents", "list", "--json").stdout, 60, "agent online")
    r = ctl("backup", "run", "--target", "cache", "--type", "snapshot", "--wait", "--json", timeout=300)
    check(r.returncode == 0, f"snapshot through the installed programs: {r.stdout}{r.stderr}\n"
                             f"{ctx.daemons[1].output()[-3000:]}")
    # Restore by the installed agent, as its unit's user, from the repository.
    out = os.path.join(ctx.tmp, "restored")
    os.makedirs(out)
    shutil.chown(out, "tidemark", "tidemark")
    u = unit("tidemark-agent")
    p = sh(*as_unit_user(u, ["tidemark-agent", "--config", f"{ETC}/agent.yaml", "restore",
                             "--target", "cache", "--dir", os.path.join(out, "cache")]),
           env=unit_env(u), check_rc=False, timeout=300)
    check(p.returncode == 0, f"restore: {p.stdout}{p.stderr}")
    rdb = os.path.join(out, "cache", "dump.rdb")
    check(os.path.exists(rdb), f"restored RDB: {os.listdir(os.path.join(out, 'cache'))}")
    with Redis(ctx.tmp, name="restored-server", rdb=rdb) as fresh:
        check(fresh.digest() == ctx.want, "the restored snapshot has the source's digest")
    for d in reversed(ctx.daemons):
        d.stop()


@test
def purge_leaves_nothing_of_the_packages():
    files = set()
    for name in PACKAGES:
        files |= {f for f in sh("dpkg", "-L", name).stdout.splitlines()
                  if os.path.isfile(f) and not os.path.isdir(f)}
    check(files, "the packages list their files")
    purge()
    check(installed() == set(), f"purged: {installed()}")
    left = sorted(f for f in files if os.path.lexists(f))
    check(not left, f"files left after purge: {left}")
    check(not os.path.exists(STATE), f"{STATE} removed: {os.listdir(STATE) if os.path.exists(STATE) else ''}")
    check(sh("getent", "passwd", "tidemark", check_rc=False).returncode != 0, "tidemark user removed")
    # What the operator wrote stays (the configuration, the master key).
    left_etc = sorted(os.listdir(ETC)) if os.path.isdir(ETC) else []
    check(left_etc == sorted(["agent.env", "agent.yaml", "coordinator.env", "coordinator.yaml",
                              "master.key"]), f"only the operator's files stay in {ETC}: {left_etc}")


if __name__ == "__main__":
    run()
