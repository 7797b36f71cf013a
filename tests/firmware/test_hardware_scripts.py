"""tests/firmware/scripts/hardware.py under CPython and under MicroPython."""

import pytest

from tests.firmware.scriptrun import INTERPRETERS, run


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_hardware_script(interp: str) -> None:
    run(interp, "hardware.py")
