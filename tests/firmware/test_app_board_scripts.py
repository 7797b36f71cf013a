"""tests/firmware/scripts/board.py under CPython and under MicroPython."""

import pytest

from tests.firmware.scriptrun import INTERPRETERS, run


@pytest.mark.parametrize("interp", INTERPRETERS)
def test_board_script(interp: str) -> None:
    run(interp, "board.py")
