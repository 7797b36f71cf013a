"""Temperature profiles and the places they are bound to.

A profile says what temperature a place must keep and how an excursion from
it becomes an alarm, in the terms cold-chain loggers use:

- the allowed range, inclusive, in 0.01 °C (the unit of record field 10);
- ``delay``: a single excursion alarms once it has lasted this long;
- ``cumulative``: an excursion also alarms once the time spent on the same
  side of the range within the rolling ``window`` reaches this total, so
  repeated short excursions that each stay under ``delay`` are not missed;
- ``ignore``: readings in the first ``ignore`` seconds after a device starts
  reporting at a place are not judged (loading, probe settling);
- ``fault_delay``: a sensor fault alarms once it has persisted this long.

Interface::

    Profile(name, low, high, *, delay, cumulative, window, ignore, fault_delay)
    FROZEN, CHILLED, PHARMA                 # the built-in profiles
    ProfileBook(profiles=BUILTIN, places={place or glob: profile name}, default=None)
    ProfileBook.for_place(place) -> Profile | None
    ProfileBook.from_config(mapping) -> ProfileBook   # the [alerts] table of gateway.toml

The built-in delays are starting points; an operator sets what their quality
procedure says (docs/operations.md, "Alerts").
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace

__all__ = [
    "BUILTIN",
    "CHILLED",
    "FROZEN",
    "PHARMA",
    "Profile",
    "ProfileBook",
    "ProfileError",
]

TEMP_MIN, TEMP_MAX = -10000, 15000  # record field 10 bounds (docs/protocol.md §2.2)


class ProfileError(ValueError):
    """A profile or a place binding is unusable."""


@dataclass(frozen=True)
class Profile:
    """An allowed temperature range (0.01 °C, inclusive) and its alarm rules (seconds)."""

    name: str
    low: int | None
    high: int | None
    delay: int = 1800
    cumulative: int | None = None
    window: int = 86400
    ignore: int = 0
    fault_delay: int = 900

    def __post_init__(self) -> None:
        if not self.name:
            raise ProfileError("a profile needs a name")
        if self.low is None and self.high is None:
            raise ProfileError(f"profile {self.name!r}: give low, high or both")
        for bound in (self.low, self.high):
            if bound is not None and (
                not isinstance(bound, int)
                or isinstance(bound, bool)
                or not TEMP_MIN <= bound <= TEMP_MAX
            ):
                raise ProfileError(
                    f"profile {self.name!r}: bound {bound!r} is not an integer in 0.01 °C "
                    f"within {TEMP_MIN}..{TEMP_MAX}"
                )
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ProfileError(f"profile {self.name!r}: low {self.low} > high {self.high}")
        for name in ("delay", "window", "ignore", "fault_delay"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ProfileError(f"profile {self.name!r}: {name} must be seconds >= 0")
        if self.cumulative is not None and (
            not isinstance(self.cumulative, int) or self.cumulative < 1
        ):
            raise ProfileError(f"profile {self.name!r}: cumulative must be seconds >= 1")
        if self.window < 1:
            raise ProfileError(f"profile {self.name!r}: window must be >= 1 s")

    def side(self, temp_centi: int) -> str | None:
        """'high' or 'low' if ``temp_centi`` is outside the range, else None."""
        if self.high is not None and temp_centi > self.high:
            return "high"
        if self.low is not None and temp_centi < self.low:
            return "low"
        return None

    def limit(self, side: str) -> int:
        """The bound crossed on ``side``."""
        bound = self.high if side == "high" else self.low
        assert bound is not None
        return bound


#: Frozen food: at or below -18 °C.
FROZEN = Profile("frozen", low=None, high=-1800, delay=1800, cumulative=7200)
#: Chilled food: 0 to 4 °C.
CHILLED = Profile("chilled", low=0, high=400, delay=1800, cumulative=7200)
#: Medicines labelled 2-8 °C.
PHARMA = Profile("pharma", low=200, high=800, delay=900, cumulative=3600)

BUILTIN: tuple[Profile, ...] = (FROZEN, CHILLED, PHARMA)


@dataclass
class ProfileBook:
    """Profiles by name and the places bound to them.

    A place key is an exact place id or an ``fnmatch`` glob (``wh-7/cold-*``).
    An exact binding wins over a glob, a longer glob over a shorter one; a
    place bound to nothing falls back to ``default`` (None: not monitored).
    """

    profiles: dict[str, Profile] = field(default_factory=lambda: {p.name: p for p in BUILTIN})
    places: dict[str, str] = field(default_factory=dict)
    default: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.profiles, dict):
            self.profiles = {p.name: p for p in self.profiles}
        for place, name in self.places.items():
            if name not in self.profiles:
                raise ProfileError(f"place {place!r} is bound to unknown profile {name!r}")
        if self.default is not None and self.default not in self.profiles:
            raise ProfileError(f"default profile {self.default!r} is unknown")

    def add(self, profile: Profile) -> None:
        self.profiles[profile.name] = profile

    def bind(self, place: str, profile: str) -> None:
        if profile not in self.profiles:
            raise ProfileError(f"unknown profile {profile!r}")
        self.places[place] = profile

    def for_place(self, place: str | None) -> Profile | None:
        if place is not None:
            name = self.places.get(place)
            if name is None:
                globs = [k for k in self.places if _is_glob(k) and fnmatch.fnmatchcase(place, k)]
                if globs:
                    name = self.places[max(globs, key=len)]
            if name is not None:
                return self.profiles[name]
        return self.profiles[self.default] if self.default is not None else None

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> ProfileBook:
        """Build from a mapping such as the ``[alerts]`` table of gateway.toml::

        [alerts]
        default = "chilled"                    # optional
        [alerts.profiles.vaccines]             # custom, or overrides of a built-in
        low = 200
        high = 800
        delay = 600
        [alerts.places]
        "wh-7/cold-room-1" = "chilled"
        "wh-7/freezer-*" = "frozen"
        """
        book = cls()
        profiles = config.get("profiles", {})
        if not isinstance(profiles, Mapping):
            raise ProfileError("[alerts.profiles] must be a table")
        allowed = {f.name for f in fields(Profile)} - {"name"}
        for name, spec in profiles.items():
            if not isinstance(spec, Mapping):
                raise ProfileError(f"profile {name!r} must be a table")
            unknown = set(spec) - allowed
            if unknown:
                raise ProfileError(f"profile {name!r}: unknown settings {sorted(unknown)}")
            base = book.profiles.get(name)
            if base is not None:
                book.add(replace(base, **spec))
            else:
                book.add(
                    Profile(
                        name,
                        low=spec.get("low"),
                        high=spec.get("high"),
                        **{k: v for k, v in spec.items() if k not in ("low", "high")},
                    )
                )
        places = config.get("places", {})
        if not isinstance(places, Mapping):
            raise ProfileError("[alerts.places] must be a table")
        for place, name in places.items():
            book.bind(str(place), str(name))
        default = config.get("default")
        if default is not None:
            if str(default) not in book.profiles:
                raise ProfileError(f"default profile {default!r} is unknown")
            book.default = str(default)
        return book

    @classmethod
    def of(cls, profiles: ProfileBook | Mapping[str, Profile] | Iterable[Profile]) -> ProfileBook:
        """Accept a book, a {place: Profile} mapping, or profiles to bind by name later."""
        if isinstance(profiles, ProfileBook):
            return profiles
        if isinstance(profiles, Mapping):
            book = cls(profiles={})
            for place, profile in profiles.items():
                book.add(profile)
                book.bind(place, profile.name)
            return book
        return cls(profiles={p.name: p for p in profiles})


def _is_glob(key: str) -> bool:
    return any(c in key for c in "*?[")
