"""tests/firmware/scripts/reader.py under CPython and under MicroPython."""

import pytest

from tests.firmware.scriptrun import INTERPRETERS, run


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_reader_script(interp: str) -> None:
    run(interp, "reader.py")
