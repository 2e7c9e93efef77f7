"""Tests of the test harness itself: a test that fails, a missing program,
a crashed or leaking daemon and a sanitizer report must each fail ctest; a
skip must reach ctest as skipped (SKIP_RETURN_CODE 77), never as passed.

Each case is a small module using tmtest.runner, run as its own process and
then through a real ctest (a hand-written CTestTestfile.cmake in a temp dir,
with the SKIP_RETURN_CODE tests/CMakeLists.txt gives every Python test).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap

from tmtest import runner
from tmtest.runner import check, test

LIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib")
SOURCE = os.environ.get("TM_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))


class Ctx:
    pass


ctx = Ctx()


def module(name, body):
    path = os.path.join(ctx.dir, name + ".py")
    with open(path, "w") as f:
        f.write("import os, sys, time\nfrom tmtest import runner\n"
                "from tmtest.runner import check, test\n" + textwrap.dedent(body)
                + "\nrunner.run()\n")
    return path


def run_module(path, env=None):
    e = dict(os.environ, PYTHONPATH=LIB, **(env or {}))
    # The child gets its own sanitizer report directory from its runner.
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        e.pop(var, None)
    r = subprocess.run([sys.executable, path], capture_output=True, text=True, env=e, timeout=120)
    return r.returncode, r.stdout + r.stderr


def ctest_verdicts(paths):
    """Run the modules through ctest; return {name: 'Passed'|'Failed'|'Skipped'}."""
    d = tempfile.mkdtemp(dir=ctx.dir)
    with open(os.path.join(d, "CTestTestfile.cmake"), "w") as f:
        for p in paths:
            n = os.path.basename(p)[:-3]
            f.write(f'add_test({n} "{sys.executable}" "{p}")\n')
            f.write(f'set_tests_properties({n} PROPERTIES SKIP_RETURN_CODE {runner.SKIP_CODE} '
                    f'ENVIRONMENT "PYTHONPATH={LIB}")\n')
    r = subprocess.run(["ctest", "--no-tests=error"], cwd=d, capture_output=True, text=True,
                       timeout=300)
    out = {}
    for line in r.stdout.splitlines():
        # "1/3 Test #1: failing ...........***Failed    0.05 sec"
        m = re.match(r"\s*\d+/\d+ Test\s+#\d+: (\S+) .*?(Passed|Skipped|Not Run|Failed)", line)
        if m:
            out[m.group(1)] = "Skipped" if m.group(2) in ("Skipped", "Not Run") else m.group(2)
    return out, r.returncode, r.stdout


CASES = {
    # name: (body, expected exit code, expected ctest verdict)
    "passing": ("""
        @test
        def fine():
            check(1 + 1 == 2, "arithmetic")
        """, 0, "Passed"),
    "failing": ("""
        @test
        def fine():
            pass

        @test
        def broken():
            check(False, "this test fails on purpose")
        """, 1, "Failed"),
    "raising": ("""
        @test
        def boom():
            raise RuntimeError("unexpected")
        """, 1, "Failed"),
    "missing_program": ("""
        runner.require("/nonexistent/build/agent/tidemark-agent")

        @test
        def never():
            pass
        """, 1, "Failed"),
    "nothing_ran": ("""
        x = 1
        """, 1, "Failed"),
    "skipped_all": ("""
        runner.skip_all("nothing here can run (on purpose)")
        """, runner.SKIP_CODE, "Skipped"),
    "skipped_tests": ("""
        @test
        def cannot():
            runner.skip("needs something absent (on purpose)")
        """, runner.SKIP_CODE, "Skipped"),
    "setup_fails": ("""
        @runner.setup
        def setup():
            raise RuntimeError("setup breaks")

        @test
        def fine():
            pass
        """, 1, "Failed"),
    "teardown_fails": ("""
        @test
        def fine():
            pass

        @runner.teardown
        def teardown():
            raise RuntimeError("teardown breaks")
        """, 1, "Failed"),
    "sanitizer_report": ("""
        # What an ASan-built program run by a test writes with log_path.
        @test
        def child_reports():
            p = os.environ["ASAN_OPTIONS"].split("log_path=")[1].split(":")[0]
            with open(p + ".12345", "w") as f:
                f.write("==12345==ERROR: AddressSanitizer: heap-use-after-free\\n")
        """, 1, "Failed"),
}

DAEMON = """
from tmtest.cluster import Proc
import tempfile, signal

def daemon(code):
    d = tempfile.mkdtemp()
    return Proc("fake", [sys.executable, "-c", code], dict(os.environ),
                os.path.join(d, "log")).start()

@test
def case():
    p = daemon(%r)
    # Event, not a sleep: the fake daemon says "ready" once its handlers are
    # in place (or it has died, which is what some cases are about).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.alive() and "ready" not in p.output():
        time.sleep(0.05)
    p.SIGTERM_BOUND = 2
    p.stop(timeout=2)
"""

DAEMONS = {
    # a daemon that ends well on SIGTERM
    "daemon_clean": ("import time\nprint('ready', flush=True)\nwhile True: time.sleep(0.1)", 0,
                     "Passed"),
    "daemon_exit_nonzero": ("import sys, signal, time\n"
                            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))\n"
                            "print('ready', flush=True)\nwhile True: time.sleep(0.1)", 1, "Failed"),
    "daemon_crashed": ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", 1, "Failed"),
    "daemon_ignores_sigterm": ("import signal, time\n"
                               "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                               "print('ready', flush=True)\nwhile True: time.sleep(0.1)", 1, "Failed"),
    "daemon_asan_in_log": ("import sys, time\n"
                           "print('==1==ERROR: LeakSanitizer: detected memory leaks', flush=True)\n"
                           "print('ready', flush=True)\nwhile True: time.sleep(0.1)", 1, "Failed"),
    "daemon_ubsan_in_log": ("import sys, time\n"
                            "print('x.c:3:5: runtime error: signed integer overflow', flush=True)\n"
                            "print('ready', flush=True)\nwhile True: time.sleep(0.1)", 1, "Failed"),
}


@runner.setup
def setup():
    ctx.dir = tempfile.mkdtemp(prefix="tm-harness-")
    ctx.paths = {}
    for name, (body, _, _) in CASES.items():
        ctx.paths[name] = module(name, body)
    for name, (code, _, _) in DAEMONS.items():
        # The daemon's "SIGTERM -> exit 0" is Python's default SIGTERM
        # death (-15); make the clean one exit 0 like our daemons do.
        if name == "daemon_clean":
            code = ("import sys, signal, time\n"
                    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n" + code)
        ctx.paths[name] = module(name, DAEMON % code)


@test
def exit_codes():
    bad = []
    for name, (_, want, _) in list(CASES.items()) + list(DAEMONS.items()):
        rc, out = run_module(ctx.paths[name])
        print(f"  {name:24} exit {rc:3} (want {want})")
        if rc != want:
            bad.append(f"{name}: exit {rc}, want {want}\n{out[-2000:]}")
    check(not bad, "\n".join(bad))


@test
def ctest_verdicts_match():
    if shutil.which("ctest") is None:
        runner.fail_all("ctest not found: apt-get install -y cmake")
    allcases = dict(CASES, **DAEMONS)
    got, rc, out = ctest_verdicts([ctx.paths[n] for n in allcases])
    bad = [f"{n}: ctest says {got.get(n)}, want {want}"
           for n, (_, _, want) in allcases.items() if got.get(n) != want]
    check(not bad, "\n".join(bad) + "\n" + out)
    check(rc != 0, "ctest exits non-zero when a test failed")
    # and a directory without tests is an error with --no-tests=error
    empty = tempfile.mkdtemp(dir=ctx.dir)
    open(os.path.join(empty, "CTestTestfile.cmake"), "w").close()
    r = subprocess.run(["ctest", "--no-tests=error"], cwd=empty, capture_output=True, text=True)
    check(r.returncode != 0, f"ctest --no-tests=error with no tests exits non-zero: {r.stdout}")


@test
def real_module_without_programs_fails():
    """The regression: test_repo.py with no agent built said 'Passed'."""
    empty = tempfile.mkdtemp(dir=ctx.dir)
    for t in ("test_repo.py", "test_storage_s3.py", "test_pg_wal.py"):
        rc, out = run_module(os.path.join(SOURCE, "tests", "integration", t),
                             env={"TM_BUILD_DIR": empty})
        check(rc == 1 and "missing program" in out, f"{t} without programs: exit {rc}\n{out}")


@runner.teardown
def teardown():
    shutil.rmtree(ctx.dir, ignore_errors=True)


if __name__ == "__main__":
    runner.run()
