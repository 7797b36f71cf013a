"""tests/firmware/scripts/sensors.py under CPython and under MicroPython."""

import pytest

from tests.firmware.scriptrun import INTERPRETERS, run


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_sensors_script(interp: str) -> None:
    run(interp, "sensors.py")
