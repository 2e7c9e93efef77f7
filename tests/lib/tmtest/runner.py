"""A tiny test runner for the integration and e2e suites.

Tests are plain functions registered with @test; run() executes them in
order, prints one line per test and the closing line "N passed, M failed"
that CI reads, and exits non-zero on any failure. Fixtures are ordinary
context managers owned by the test module.
"""
import os
import sys
import time
import traceback

_tests = []


def test(fn):
    _tests.append(fn)
    return fn


class Failure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


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


def run():
    only = os.environ.get("TM_TEST_ONLY")
    passed = failed = 0
    for fn in _tests:
        if only and only not in fn.__name__:
            continue
        t0 = time.monotonic()
        try:
            fn()
        except Exception:
            failed += 1
            print(f"FAIL {fn.__name__} ({time.monotonic() - t0:.1f}s)")
            traceback.print_exc()
        else:
            passed += 1
            print(f"ok   {fn.__name__} ({time.monotonic() - t0:.1f}s)")
        sys.stdout.flush()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed or passed == 0 else 0)
