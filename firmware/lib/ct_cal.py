"""Two-point calibration in integers, identified by a calibration id.

A calibration maps a sensor's reading r to the reference value:

    v = ref1 + (r - raw1) * (ref2 - ref1) / (raw2 - raw1)

with all quantities in 0.01 units (°C or %RH) and the division rounded half
away from zero. One point is a plain offset. The id goes into the record
(field 14 ``cal``) so a verifier can look the coefficients up in the
registry; the procedure that produces the points is hardware/calibration.md.
"""

import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_MAX_ID = const(0xFFFFFFFF)
# slope must stay within 0.9 ... 1.1 (in 1/1000): a wilder fit is a mistake
_SLOPE_MIN = const(900)
_SLOPE_MAX = const(1100)
_MAX_OFFSET = const(500)  # 5.00 units at either point


class CalError(Exception):
    pass


def _div_round(n, d):
    if d < 0:
        n, d = -n, -d
    if n >= 0:
        return (n + d // 2) // d
    return -((-n + d // 2) // d)


class Cal:
    """``points`` = [[raw1, ref1]] or [[raw1, ref1], [raw2, ref2]]."""

    def __init__(self, cal_id, points):
        if not isinstance(cal_id, int) or cal_id < 0 or cal_id > _MAX_ID:
            raise CalError("calibration id")
        if not points or len(points) > 2:
            raise CalError("one or two points")
        for p in points:
            if len(p) != 2 or not isinstance(p[0], int) or not isinstance(p[1], int):
                raise CalError("points are integer pairs")
            if abs(p[1] - p[0]) > _MAX_OFFSET:
                raise CalError("offset too large")
        self.id = cal_id
        self.raw1, self.ref1 = points[0]
        if len(points) == 2:
            self.raw2, self.ref2 = points[1]
            span = self.raw2 - self.raw1
            if span == 0:
                raise CalError("points coincide")
            slope = _div_round((self.ref2 - self.ref1) * 1000, span)
            if slope < _SLOPE_MIN or slope > _SLOPE_MAX:
                raise CalError("slope")
        else:
            self.raw2 = self.raw1 + 1
            self.ref2 = self.ref1 + 1

    def apply(self, raw):
        return self.ref1 + _div_round(
            (raw - self.raw1) * (self.ref2 - self.ref1), self.raw2 - self.raw1
        )


def from_config(d):
    """{"id": 7, "t": [[..]], "rh": [[..]]} -> (id, Cal or None, Cal or None)."""
    if not d:
        return None, None, None
    cid = d.get("id")
    t = Cal(cid, d["t"]) if d.get("t") else None
    rh = Cal(cid, d["rh"]) if d.get("rh") else None
    return cid, t, rh


# docs/protocol.md §5.3: a calibration sent by the gateway (flat command keys)
CMD_CH = const(16)
CMD_ID = const(17)
CMD_T = const(18)
CMD_RH = const(19)


def _points(b):
    """8 or 16 bytes: (raw, ref) pairs of big-endian int32 -> [[raw, ref], ...]."""
    if type(b) is not bytes or len(b) not in (8, 16):
        raise CalError("points are 8 or 16 bytes")
    v = struct.unpack(">%di" % (len(b) // 4), b)
    return [[v[i], v[i + 1]] for i in range(0, len(v), 2)]


def from_command(p):
    """(channel, config dict) of the calibration in a verified command
    payload p, or None when it carries none; raises CalError when it is
    malformed or fails the checks of Cal (offset, slope)."""
    if CMD_ID not in p:
        if CMD_CH in p or CMD_T in p or CMD_RH in p:
            raise CalError("calibration without an id")
        return None
    ch = p.get(CMD_CH)
    if type(ch) is not int or ch < 0 or ch > 15:
        raise CalError("channel")
    d = {"id": p[CMD_ID]}
    if CMD_T in p:
        d["t"] = _points(p[CMD_T])
    if CMD_RH in p:
        d["rh"] = _points(p[CMD_RH])
    if len(d) == 1:
        raise CalError("no points")
    from_config(d)  # the same checks as a configured calibration
    return ch, d


def pick(configured, settings, ch):
    """The calibration in force on channel ch: the one the gateway sent
    (settings["cal"], saved by ct_app) over the one in config.json."""
    sent = (settings or {}).get("cal") or {}
    return sent.get(str(ch)) or configured
