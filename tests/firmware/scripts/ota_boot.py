"""boot.py's part of an update (ct_ota.boot + ct_ota.activate) on the
interpreter's own filesystem: a release in slot_b on trial is what the next
``import`` of a firmware module loads, from config.json's base; after K
trial boots the factory's modules load again."""

import json
import os
import sys

import ct_ota
from fwrun import main

BASE = "/tmp/ct_boot_test"


def _rmtree(p):
    try:
        names = os.listdir(p)
    except OSError:
        return
    for n in names:
        q = p + "/" + n
        try:
            os.remove(q)
        except OSError:
            _rmtree(q)
    os.rmdir(p)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _setup(k):
    _rmtree(BASE)
    for d in ("/tmp", BASE, BASE + "/ota", BASE + "/slot_b"):
        try:  # noqa: SIM105 - no contextlib in MicroPython
            os.mkdir(d)
        except OSError:
            pass
    _write(BASE + "/config.json", json.dumps({"ota": {"k": k, "base": BASE}}))
    _write(BASE + "/ota/ptr", json.dumps({"cur": "", "ver": 0, "try": "b", "tver": 2,
                                          "tlab": "v2", "n": 0, "hi": 0}))
    _write(BASE + "/slot_b/ct_alarm.py", "MARK = 2\n")


def _boot():
    path = list(sys.path)
    cwd = os.getcwd()
    os.chdir(BASE)
    try:
        d = ct_ota.activate(ct_ota.boot())
        import ct_alarm

        return d, getattr(ct_alarm, "MARK", 1)
    finally:
        os.chdir(cwd)
        sys.path[:] = path
        for m in [m for m in sys.modules if m.startswith("ct_") and m != "ct_ota"]:
            del sys.modules[m]
        sys.modules["ct_ota"] = ct_ota


def test_trial_slot_modules_load_then_roll_back():
    _setup(2)
    assert _boot() == (BASE + "/slot_b", 2)
    assert _boot() == (BASE + "/slot_b", 2)
    d, mark = _boot()  # K = 2 trial boots without health: the factory again
    assert (d, mark) == (BASE + "/lib", 1)
    with open(BASE + "/ota/ptr") as f:
        assert json.loads(f.read())["rb"] == 2
    _rmtree(BASE)


def test_unreadable_pointer_boots_the_factory():
    _setup(3)
    _write(BASE + "/ota/ptr", "{not json")
    assert _boot() == (BASE + "/lib", 1)
    _rmtree(BASE)


if __name__ == "__main__":
    main(globals())
