"""Data files for the core scripts, wherever the runner put them (CPython:
cwd tests/firmware/scripts; MicroPython: /data, see harness.py)."""

import json
import os

_DIRS = ("/data/", "../data/")
_RFC = ("/data/rfc6979/", "../../protocol/testdata/rfc6979/")


def load(name):
    for d in _DIRS:
        try:
            with open(d + name) as f:
                return json.load(f)
        except OSError:
            pass
    raise OSError(f"data file {name} not found")


def rfc6979():
    """(name, case) for every RFC 6979 file of tests/protocol/testdata/rfc6979."""
    for d in _RFC:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        out = []
        for n in names:
            if n.endswith(".json"):
                with open(d + n) as f:
                    out.append((n, json.load(f)))
        return out
    raise OSError("RFC 6979 vectors not found")
