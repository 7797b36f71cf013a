"""Two-point calibration in integers, identified by a calibration id.

A calibration maps a sensor's reading r to the reference value:

    v = ref1 + (r - raw1) * (ref2 - ref1) / (raw2 - raw1)

with all quantities in 0.01 units (°C or %RH) and the division rounded half
away from zero. One point is a plain offset. The id goes into the record
(field 14 ``cal``) so a verifier can look the coefficients up in the
registry; the procedure that produces the points is hardware/calibration.md.
"""

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
