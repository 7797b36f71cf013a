"""Tiny test runner for firmware test scripts (MicroPython and CPython):
calls every ``test_*`` function of a module's globals, prints one line per
failure and a closing 'N passed, N failed' line; raises SystemExit(1) on any
failure."""

import sys


def main(g):
    names = sorted(k for k in g if k.startswith("test_") and callable(g[k]))
    passed = failed = 0
    for n in names:
        try:
            g[n]()
            passed += 1
        except Exception as e:  # report and go on
            failed += 1
            print("FAIL", n, type(e).__name__, e)
            if hasattr(sys, "print_exception"):
                sys.print_exception(e)
            else:
                import traceback

                traceback.print_exc()
    print(f"{passed} passed, {failed} failed")
    if failed:
        raise SystemExit(1)


def raises(exc, fn, *args):
    """Call fn(*args); return the exception it raised, fail if none."""
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError(f"{exc.__name__} not raised by {fn}")


def data(name):
    """Parsed JSON data file (tests/firmware/data/<name> or hardware/<name>),
    wherever the runner placed it."""
    import json

    for d in ("data/", "/data/", "../data/", "tests/firmware/data/", "hardware/",
              "../../../hardware/"):
        try:
            with open(d + name) as f:
                return json.load(f)
        except OSError:
            pass
    raise OSError(f"data file {name} not found")
