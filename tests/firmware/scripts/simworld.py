"""The simulator's world: deterministic, integer, with one excursion."""

from fwrun import main
from sim_world import ColdRoom


def test_curve_stays_cold_outside_the_excursion_and_peaks_inside():
    room = ColdRoom(seed=7, exc_start=3600, exc_len=2700, exc_peak=1150)
    before = [room.temp(t) for t in range(0, 3600, 60)]
    during = [room.temp(t) for t in range(3600, 3600 + 2700, 60)]
    assert max(before) < 800 and min(before) > 200
    assert max(during) > 1000
    assert all(isinstance(v, int) for v in before + during)


def test_same_seed_same_curve():
    a = ColdRoom(seed=3)
    b = ColdRoom(seed=3)
    assert [a.temp(t) for t in range(0, 20000, 300)] == [b.temp(t) for t in range(0, 20000, 300)]


def test_humidity_in_range():
    room = ColdRoom()
    assert all(0 <= room.rh(t) <= 10000 for t in range(0, 86400, 600))


main(globals())
