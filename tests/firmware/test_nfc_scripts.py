"""tests/firmware/scripts/nfc.py under CPython and under MicroPython."""

import pytest

from tests.firmware.scriptrun import INTERPRETERS, run


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_nfc_script(interp: str) -> None:
    run(interp, "nfc.py")
