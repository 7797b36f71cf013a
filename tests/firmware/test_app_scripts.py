"""tests/firmware/scripts/app.py under CPython and under MicroPython."""

import pytest

from tests.firmware.scriptrun import INTERPRETERS, run


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_app_script(interp: str) -> None:
    run(interp, "app.py")
