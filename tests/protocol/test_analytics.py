"""Temperature arithmetic (docs/protocol.md §12.7, §12.8): exact rounding, the fixed
binary64 exp/log and MKT against a high-precision reference, the excursion accumulator."""

from __future__ import annotations

import math
import random
import struct
from decimal import Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.analytics import Excursion, dexp, dlog, mean_centi, mkt_centi, round_div

# --- round_div (§12.7) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "d", "want"),
    [
        (5, 2, 3),
        (-5, 2, -2),
        (7, 2, 4),
        (-7, 2, -3),
        (1, 3, 0),
        (2, 3, 1),
        (-1, 3, 0),
        (-2, 3, -1),
        (0, 7, 0),
        (21840 * 60 + 30, 60, 21841),
        (21840 * 60 + 29, 60, 21840),
    ],
)
def test_round_div_rounds_halves_up(n, d, want):
    assert round_div(n, d) == want


@given(st.integers(-(10**30), 10**30), st.integers(1, 10**12))
def test_round_div_is_nearest_with_halves_up(n, d):
    q = round_div(n, d)
    # q − 1/2 ≤ n/d < q + 1/2, exactly: 2dq − d ≤ 2n < 2dq + d
    assert 2 * d * q - d <= 2 * n < 2 * d * q + d


def test_round_div_refuses_non_positive_divisor():
    with pytest.raises(ValueError):
        round_div(1, 0)


def test_mean_centi_is_time_weighted_and_exact():
    assert mean_centi([]) is None
    assert mean_centi([(100, 0)]) is None
    assert mean_centi([(100, 1), (201, 1)]) == 151  # 150.5 rounds up
    assert mean_centi([(-100, 1), (-201, 1)]) == -150  # -150.5 rounds up too
    assert mean_centi([(300, 3000), (900, 600)]) == 400
    with pytest.raises(ValueError):
        mean_centi([(100, -1)])


# --- dexp / dlog (§12.8) --------------------------------------------------------------------------


def _ulps(a: float, b: float) -> int:
    ia = struct.unpack("<q", struct.pack("<d", a))[0]
    ib = struct.unpack("<q", struct.pack("<d", b))[0]
    return abs(ia - ib)


def test_dexp_matches_exp_to_an_ulp_or_two():
    rng = random.Random(1079)
    for _ in range(20000):
        y = -rng.random() * 40
        assert _ulps(dexp(y), math.exp(y)) <= 2, y
    assert dexp(0.0) == 1.0


def test_dlog_matches_log_closely():
    rng = random.Random(1079)
    for _ in range(20000):
        v = rng.random() or 1.0
        assert abs(dlog(v) - math.log(v)) <= 4e-16 * max(1.0, abs(math.log(v))), v
    assert dlog(1.0) == 0.0
    with pytest.raises(ValueError):
        dlog(0.0)


def test_dexp_and_dlog_are_the_spec_steps_bit_for_bit():
    # dexp(-1): k = -1, r = 1 - ln2 (split in two), 13 Taylor terms, × 2^-1.
    # dlog(0.5): f doubles once to 1, s = 0, so the result is exactly -ln2 (hi + lo).
    assert dexp(-1.0).hex() == "0x1.78b56362cef38p-2"
    assert dlog(0.5) == -1 * 0.6931471803691238 + (-1 * 1.9082149292705877e-10 + 0.0)


@pytest.mark.parametrize(
    ("y", "spec", "libm"),
    [
        (-37.734, "0x1.79c3d8ad3c14cp-55", "0x1.79c3d8ad3c14bp-55"),
        (-24.698, "0x1.4a74f0f39e732p-36", "0x1.4a74f0f39e733p-36"),
        (-8.619, "0x1.7ad4cb3925042p-13", "0x1.7ad4cb3925043p-13"),
    ],
)
def test_dexp_vectors_where_the_spec_and_libm_differ_in_the_last_bit(y, spec, libm):
    # Vectors for a second implementation: §12.8's steps, not the platform's exp.
    assert dexp(y).hex() == spec
    assert float.fromhex(libm) != float.fromhex(spec)


@pytest.mark.parametrize(
    ("v", "spec"),
    [
        (0.9824, "-0x1.22ed16a0a4919p-6"),
        (0.8724, "-0x1.17911c3babb90p-3"),
        (0.6778, "-0x1.8e3c97dd9599dp-2"),
    ],
)
def test_dlog_vectors_where_the_spec_and_libm_differ_in_the_last_bit(v, spec):
    assert dlog(v).hex() == spec
    assert math.log(v).hex() != spec


# --- MKT (§12.8) ----------------------------------------------------------------------------------


def _mkt_reference(samples: list[tuple[int, int]]) -> Decimal:
    """MKT in 0.01 °C with 50 significant digits (decimal's exp/ln are correctly rounded)."""
    with localcontext() as ctx:
        ctx.prec = 50
        w = sum(Decimal(wi) for _, wi in samples)
        s = sum(Decimal(wi) * (Decimal(-1000000) / Decimal(t + 27315)).exp() for t, wi in samples)
        k = Decimal(-1000000) / (s / w).ln()
        return k - 27315


def test_mkt_of_a_constant_series_is_that_constant():
    for t in (-10000, -2000, -1, 0, 1, 400, 2500, 15000):
        assert mkt_centi([(t, 60)] * 7) == t
        assert mkt_centi([(t, 1), (t, 86400), (t, 5)]) == t


def test_mkt_of_two_equal_weight_temperatures():
    # 23 °C and 25 °C, equal weights: 10000 / -ln((e^(-10000/296.15) + e^(-10000/298.15)) / 2)
    # = 297.203151… K = 24.053151… °C, so 24.05 °C.
    assert abs(_mkt_reference([(2300, 1), (2500, 1)]) - Decimal("2405.3151")) < Decimal("0.0001")
    assert mkt_centi([(2300, 1), (2500, 1)]) == 2405
    # 2 °C and 8 °C for equal times: 5.536 °C, above the arithmetic mean of 5 °C.
    assert abs(_mkt_reference([(200, 3600), (800, 3600)]) - Decimal("553.6425")) < Decimal("0.0001")
    assert mkt_centi([(200, 3600), (800, 3600)]) == 554


def test_mkt_of_a_published_example():
    # zelti/mkt (README): readings 2, 2, 5, 8, 8, 8, 8 °C with ΔH/R = 10,000 K give 6.25 °C.
    # (USP <1079>'s own worked example, 52 weekly high/low means, could not be found with its
    # data; the USP Stimuli article quotes only its results, 23.98 °C over 52 weeks.)
    assert mkt_centi([(200, 1), (200, 1), (500, 1), (800, 1), (800, 1), (800, 1), (800, 1)]) == 625


def test_mkt_is_weighted_by_time():
    # 1 h at 30 °C and 23 h at 4 °C: far above the mean (5.08 °C), below 30 °C.
    mkt = mkt_centi([(3000, 3600), (400, 23 * 3600)])
    assert mkt is not None and 508 < mkt < 3000
    assert mkt == mkt_centi([(400, 23 * 3600), (3000, 3600)])


def test_mkt_of_nothing_is_none_and_zero_weights_are_left_out():
    assert mkt_centi([]) is None
    assert mkt_centi([(500, 0)]) is None
    assert mkt_centi([(500, 10), (-9000, 0)]) == 500
    with pytest.raises(ValueError):
        mkt_centi([(500, -1)])


def test_mkt_agrees_with_the_reference_within_half_a_hundredth():
    rng = random.Random(83144)
    for _ in range(400):
        n = rng.randint(1, 60)
        lo = rng.randint(-10000, 15000)
        hi = rng.randint(lo, min(15000, lo + rng.choice((50, 500, 5000, 25000))))
        samples = [(rng.randint(lo, hi), rng.randint(1, 86400)) for _ in range(n)]
        got = mkt_centi(samples)
        ref = _mkt_reference(samples)
        assert got is not None
        # got = ⌊K − 27315 + ½⌋: within ½ of the exact value, up to float error
        assert abs(Decimal(got) - ref) <= Decimal("0.5000001"), (samples, got, ref)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-10000, 15000), st.integers(1, 10**7)), min_size=1, max_size=40)
)
def test_mkt_lies_between_min_and_max_and_near_the_reference(samples):
    got = mkt_centi(samples)
    assert got is not None
    temps = [t for t, _ in samples]
    assert min(temps) <= got <= max(temps)
    assert abs(Decimal(got) - _mkt_reference(samples)) <= Decimal("0.5000001")


# --- the excursion accumulator --------------------------------------------------------------------


def test_excursion_collects_start_end_peak_and_excess():
    exc = Excursion("high", 400)
    assert exc.duration == 0 and exc.peak is None
    exc.extend(100, 100, 500)  # opened at a reading, no time yet
    exc.extend(100, 700, 500)
    exc.extend(700, 1300, 912)
    exc.extend(1300, 1330, 401)
    assert (exc.start, exc.end, exc.peak) == (100, 1330, 912)
    assert exc.duration == 1230
    assert exc.excess == 100 * 600 + 512 * 600 + 1 * 30
    assert exc.degree_minutes == round_div(exc.excess, 60) == 6121  # 6120.5 rounds up


def test_low_excursion_peaks_at_the_lowest_value():
    exc = Excursion("low", 0)
    exc.extend(0, 60, -50)
    exc.extend(60, 90, -250)
    exc.extend(90, 120, -1)
    assert exc.peak == -250
    assert exc.excess == 50 * 60 + 250 * 30 + 1 * 30
    assert exc.degree_minutes == 176


def test_excursion_refuses_pieces_that_do_not_follow_on_or_are_in_range():
    exc = Excursion("high", 400)
    exc.extend(0, 60, 401)
    with pytest.raises(ValueError):
        exc.extend(61, 120, 500)  # a gap
    with pytest.raises(ValueError):
        exc.extend(60, 120, 400)  # not beyond (limits are inclusive, §2.7)
    with pytest.raises(ValueError):
        exc.extend(60, 59, 500)
    with pytest.raises(ValueError):
        Excursion("warm", 400)
    assert Excursion("low", 0).beyond(-1) and not Excursion("low", 0).beyond(0)
