"""tests/firmware/scripts/simworld.py under CPython and under MicroPython."""

import pytest

from tests.firmware.scriptrun import INTERPRETERS, run


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_simworld_script(interp: str) -> None:
    run(interp, "simworld.py")
