"""tests/firmware/scripts/alarm.py under CPython and under MicroPython."""

import pytest

from tests.firmware.scriptrun import INTERPRETERS, run


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_alarm_script(interp: str) -> None:
    run(interp, "alarm.py")
