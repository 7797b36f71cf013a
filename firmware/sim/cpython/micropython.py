"""The bits of MicroPython's ``micropython`` module that the firmware uses,
for running it under CPython (simulator, host tests). Not for the board."""


def const(x):
    return x
