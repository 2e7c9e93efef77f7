"""A tiny test runner for the integration and e2e suites.

Tests are plain functions registered with @test; @setup and @teardown
register fixture steps that run before and after them and are not counted as
tests. run() executes them in order, prints one line per test and the closing
line "N passed, M failed, K skipped" that CI reads, and exits with the result:
0 when every test passed, 1 on any failure (a failing setup or teardown, a
daemon that crashed or leaked, a sanitizer report of any process started
under this runner), SKIP_CODE (77, ctest's SKIP_RETURN_CODE) when nothing ran
because a test called skip(). A test that cannot run its real parts fails
unless it says why it skips; a missing program always fails (require()).
"""
import atexit
import glob
import os
import sys
import tempfile
import time
import traceback

SKIP_CODE = 77

_tests = []
_setups = []
_teardowns = []

# Every process a test starts inherits these: a sanitizer report of any of
# them (an agent run by PostgreSQL's archive_command, a CLI run whose exit
# code a test does not look at) lands in this directory, and run() fails the
# module when it is not empty. The directory is world-writable because
# PostgreSQL and the agents may run as another user when the test is root.
#
# Every temp dir of this test process (clusters, servers, repositories) is
# made under one base dir of its own, not straight in /tmp: on a shared
# machine a cleaner of /tmp/tm-it-* or /tmp/tm-* removed a running test's
# cluster (its agent.yaml and logs gone mid-test). 0755 like the dirs the
# tests open to the PostgreSQL user.
BASE_DIR = tempfile.mkdtemp(prefix="tmtest-")
os.chmod(BASE_DIR, 0o755)
tempfile.tempdir = BASE_DIR
SAN_DIR = tempfile.mkdtemp(prefix="tm-san-")
os.chmod(SAN_DIR, 0o1777)


@atexit.register
def _remove_empty_dirs():
    # fail_all/skip_all exit before run(): leave nothing empty behind.
    for d in (SAN_DIR, BASE_DIR):
        try:
            os.rmdir(d)
        except OSError:
            pass


def _add_log_path(var, name):
    opts = [o for o in os.environ.get(var, "").split(":") if o and not o.startswith("log_path=")]
    opts.append(f"log_path={os.path.join(SAN_DIR, name)}")
    os.environ[var] = ":".join(opts)


_add_log_path("ASAN_OPTIONS", "asan")
_add_log_path("UBSAN_OPTIONS", "ubsan")
_add_log_path("LSAN_OPTIONS", "lsan")

SANITIZER_MARKERS = ("AddressSanitizer", "runtime error", "LeakSanitizer")


def test(fn):
    _tests.append(fn)
    return fn


def setup(fn):
    """A fixture step run before the tests; its failure fails every test."""
    _setups.append(fn)
    return fn


def teardown(fn):
    """A fixture step run after the tests, also when they failed."""
    _teardowns.append(fn)
    return fn


class Failure(AssertionError):
    pass


class Skip(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def skip(reason):
    """Skip the calling test: reported and counted as skipped, never passed."""
    raise Skip(reason)


def skip_all(reason):
    """Nothing in this module can run here (and that is allowed): exit with
    SKIP_CODE so ctest shows the test as skipped, not passed."""
    print(f"SKIP all: {reason}")
    print("0 passed, 0 failed, 1 skipped")
    sys.stdout.flush()
    sys.exit(SKIP_CODE)


def fail_all(reason):
    print(f"FAIL all: {reason}")
    print("0 passed, 1 failed, 0 skipped")
    sys.stdout.flush()
    sys.exit(1)


def require(*paths):
    """Programs the module needs: a missing one fails the module (a test that
    runs nothing must never pass)."""
    for p in paths:
        if not os.path.exists(p):
            fail_all(f"missing program {p} (build first)")


def wait_for(pred, timeout, what, interval=0.05):
    """Poll pred() until it returns a truthy value; return it, or fail."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except Exception as e:  # a transient error while polling is fine
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise Failure(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def sanitizer_reports():
    """Reports written by any process started under this runner, as text."""
    out = []
    for path in sorted(glob.glob(os.path.join(SAN_DIR, "*"))):
        try:
            with open(path, errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        if text.strip():
            out.append(f"--- {os.path.basename(path)}\n{text[-6000:]}")
    return out


def _step(kind, fn):
    t0 = time.monotonic()
    try:
        fn()
    except Exception:
        print(f"FAIL {kind} {fn.__name__} ({time.monotonic() - t0:.1f}s)")
        traceback.print_exc()
        sys.stdout.flush()
        return False
    print(f"--   {kind} {fn.__name__} ({time.monotonic() - t0:.1f}s)")
    sys.stdout.flush()
    return True


def run():
    only = os.environ.get("TM_TEST_ONLY")
    passed = failed = skipped = 0
    skip_reasons = []
    fixture_failed = False
    selected = [fn for fn in _tests if not only or only in fn.__name__]
    ok = all(_step("setup", fn) for fn in _setups)
    if not ok:
        fixture_failed = True
        for fn in selected:
            print(f"FAIL {fn.__name__} (not run: setup failed)")
        failed += len(selected)
    else:
        for fn in selected:
            t0 = time.monotonic()
            try:
                fn()
            except Skip as e:
                skipped += 1
                skip_reasons.append((fn.__name__, str(e)))
                print(f"skip {fn.__name__}: {e}")
            except Exception:
                failed += 1
                print(f"FAIL {fn.__name__} ({time.monotonic() - t0:.1f}s)")
                traceback.print_exc()
            else:
                passed += 1
                print(f"ok   {fn.__name__} ({time.monotonic() - t0:.1f}s)")
            sys.stdout.flush()
    for fn in _teardowns:
        if not _step("teardown", fn):
            fixture_failed = True
    reports = sanitizer_reports()
    if reports:
        fixture_failed = True
        print("FAIL sanitizer reports from processes started by these tests:")
        print("\n".join(reports))
    else:
        import shutil
        shutil.rmtree(SAN_DIR, ignore_errors=True)
    try:
        os.rmdir(BASE_DIR)  # only when empty: what a test kept as evidence stays
    except OSError:
        print(f"kept: {BASE_DIR}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    sys.stdout.flush()
    if failed or fixture_failed:
        sys.exit(1)
    if passed == 0:
        # Nothing ran: skipped when the tests said why, failed otherwise.
        sys.exit(SKIP_CODE if skipped else 1)
    if skipped and os.environ.get("TM_SKIP_LOG"):
        # ctest shows this module as passed; run-all.sh counts and lists the
        # tests in it that skipped from this log.
        with open(os.environ["TM_SKIP_LOG"], "a") as f:
            for name, reason in skip_reasons:
                f.write(f"{os.path.basename(sys.argv[0])}: {name}: {reason}\n")
    sys.exit(0)
