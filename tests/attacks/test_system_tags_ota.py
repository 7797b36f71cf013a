"""Attacks on the tags (NTAG 424 DNA SUN, cloud/tags.py and the consumer page,
cloud/page.py) and on firmware updates (ct_ota under the real MicroPython).

Tags: a real cloud (ASGI) on SQLite and on a real PostgreSQL server, a tag
commissioned by the API and bound by a signed commission scan pushed as a
gateway pushes it; the tag's URLs are made as the tag makes them (AN12196,
``cloud.sun.make_sun_url``). Updates: tests/attacks/firmware/ota_attacks.py,
run by tests/firmware/harness.py under MicroPython 1.27 and CPython.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from cloud import db, sun
from tests.attacks.registry import attack
from tests.cloud.cloudkit import Kit, LogPusher, make_kit
from tests.cloud.test_tags import BASE, keys_of
from tests.firmware import harness
from tests.protocol.scenario import COMMISSION, ITEM, T0, UID, Scenario

ANOTHER = "/01/09506000134352/10/L42/21/8"  # the same lot's next item


@dataclass
class Tagged:
    kit: Kit
    keys: sun.TagKeys

    def url(self, counter: int, path: str = ITEM) -> str:
        return sun.make_sun_url(self.keys, UID, counter, BASE, path)

    def tap(self, url: str) -> dict[str, Any]:
        r = self.kit.client.get("/v1/public/tap?" + urlsplit(url).query)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def page(self, url: str) -> str:
        parts = urlsplit(url)
        r = self.kit.client.get(f"{parts.path}?{parts.query}")
        assert r.status_code == 200, r.text[:300]
        return str(r.text)

    def counter(self) -> int:
        with self.kit.engine.connect() as conn:
            return int(conn.execute(select(db.tags.c.counter).where(db.tags.c.uid == UID)).one()[0])


@pytest.fixture(params=["sqlite", "postgresql"])
def tagged(request: pytest.FixtureRequest, tmp_path: Path) -> Tagged:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    kit = make_kit(tmp_path, url)
    kit.client.app.state.cloud.limiter.rate = 10**9  # type: ignore[attr-defined]
    s = Scenario()
    kit.join("packhouse", s)
    s.scan(s.reader("rd-dock", "dc:dock"), COMMISSION, T0 + 60, uid=UID, item=ITEM)
    assert LogPusher(kit, s).push(anchor_it=True).status_code == 200
    body = {"uid": UID.hex(), "item": ITEM, "base_url": BASE}
    return Tagged(kit, keys_of(kit.admin("POST", "/v1/tags", json=body)))


def taps_logged(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "coldtrace.cloud"]
    return [x for x in lines if x.get("event") == "tap"]


@attack(
    "tag-url-replayed",
    group="tags",
    attacker="anyone who saw a tap (a copied link, a screenshot, a cloned tag's fixed URL)",
    tries="opens the same SUN URL (the same read counter) a second time",
    refused_by="tap status `replayed` (never `genuine`); the page shows the `tag-replayed` warning",
    recorded="log event `tap` with status `replayed`, UID and counter (D49); the tag's highest "
    "counter is unchanged",
)
def test_the_same_sun_url_twice_is_replayed(
    tagged: Tagged, caplog: pytest.LogCaptureFixture
) -> None:
    url = tagged.url(5)
    with caplog.at_level(logging.INFO, logger="coldtrace.cloud"):
        assert 'class="card tag tag-genuine"' in tagged.page(url)
        html = tagged.page(url)
        t = tagged.tap(url)
    assert 'class="card tag tag-replayed"' in html and "already used" in html
    assert (t["status"], t["counter"]) == ("replayed", 5)
    assert tagged.counter() == 5
    logged = [(x["status"], x["uid"], x["counter"]) for x in taps_logged(caplog)]
    uid = UID.hex().upper()
    assert logged == [("genuine", uid, 5), ("replayed", uid, 5), ("replayed", uid, 5)]


@attack(
    "tag-old-counter",
    group="tags",
    attacker="anyone holding an older URL of the tag",
    tries="opens a genuine SUN URL whose counter is below one already seen",
    refused_by="tap status `replayed`; the next real read is `genuine` again",
    recorded="log event `tap` with status `replayed` and the old counter; highest counter kept",
)
def test_an_older_counter_after_a_newer_one_is_replayed(
    tagged: Tagged, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = tagged.url(6), tagged.url(9)  # the attacker kept read 6
    with caplog.at_level(logging.INFO, logger="coldtrace.cloud"):
        assert tagged.tap(new)["status"] == "genuine"
        t = tagged.tap(old)
        assert 'class="card tag tag-replayed"' in tagged.page(old)
    assert (t["status"], t["counter"]) == ("replayed", 6)
    assert tagged.counter() == 9
    assert tagged.tap(tagged.url(10))["status"] == "genuine"
    assert [x["status"] for x in taps_logged(caplog)] == ["genuine", "replayed", "replayed"]


@attack(
    "tag-url-copied",
    group="tags",
    attacker="a counterfeiter",
    tries="puts a genuine tag's SUN parameters on another product's link (or tag): the path is "
    "not under the MAC",
    refused_by="the tap names the real tag's item: the page shows that item's journey with "
    '`tag.mismatch` ("The tag belongs to another product …"), and `replayed` once the '
    "parameters were used",
    recorded="log event `tap` (status, UID, counter)",
)
def test_a_sun_url_copied_onto_another_product(
    tagged: Tagged, caplog: pytest.LogCaptureFixture
) -> None:
    genuine = tagged.url(3)
    assert tagged.tap(genuine)["status"] == "genuine"  # the real tag was read at the shop
    copied = genuine.replace(ITEM, ANOTHER)  # the same picc/cmac under product B's link
    assert copied != genuine and ANOTHER in copied
    with caplog.at_level(logging.INFO, logger="coldtrace.cloud"):
        html = tagged.page(copied)
    assert 'class="card tag tag-replayed"' in html
    assert f"The tag belongs to another product ({ITEM})" in html  # fixed: was not shown
    assert ">8<" not in html  # B's serial is not shown as the tagged item's
    # a fresh copy (parameters never used): the real tag's tap, still flagged for B's link
    fresh = tagged.url(4).replace(ITEM, ANOTHER)
    html = tagged.page(fresh)
    assert 'class="card tag tag-genuine"' in html
    assert f"The tag belongs to another product ({ITEM})" in html
    assert [x["status"] for x in taps_logged(caplog)] == ["replayed"]


# --- firmware updates under MicroPython ---------------------------------------------------------

OTA_SCRIPT = Path(__file__).resolve().parent / "firmware" / "ota_attacks.py"
WANT = {"downgrade": [3], "tampered": [2], "other-key": [1], "swapped": [5]}


@pytest.fixture(scope="module")
def ota_runs() -> dict[str, harness.Result]:
    return {i: harness.run(OTA_SCRIPT, i) for i in harness.INTERPRETERS}


def refusals(r: harness.Result) -> dict[str, list[int]]:
    out = {}
    for line in r.stdout.splitlines():
        if line.startswith("REFUSED "):
            _, name, *codes = line.split()
            out[name] = [int(c) for c in codes]
    return out


@attack(
    "ota-downgrade",
    group="firmware updates",
    attacker="a gateway (or whoever can send it commands) offering an older release",
    tries="offers a genuinely signed release older than the confirmed one",
    refused_by="status event 13, detail 3 (downgrade); nothing is fetched",
    recorded="the device's signed status record (event 13, detail), stored and logged by the "
    "gateway like any record",
)
def test_an_older_signed_release_is_refused(ota_runs: dict[str, harness.Result]) -> None:
    for r in ota_runs.values():
        assert r.ok, r.report()
        assert refusals(r)["downgrade"] == WANT["downgrade"], r.report()


@attack(
    "ota-tampered",
    group="firmware updates",
    attacker="whoever serves or carries the firmware chunks",
    tries="changes a file of a signed release after signing; serves a manifest signed by "
    "another key; serves a signed manifest other than the one offered",
    refused_by="status event 13, detail 2 (file size or SHA-256), 1 (signature under the "
    "pinned key), 5 (not the offered manifest); the old firmware keeps booting",
    recorded="the device's signed status record (event 13, detail)",
)
def test_tampered_and_foreign_releases_are_refused(ota_runs: dict[str, harness.Result]) -> None:
    for interpreter, r in ota_runs.items():
        assert r.ok, r.report()
        got = refusals(r)
        assert {k: got[k] for k in ("tampered", "other-key", "swapped")} == {
            k: WANT[k] for k in ("tampered", "other-key", "swapped")
        }, (interpreter, got)
    assert ota_runs["micropython"].counts == ota_runs["cpython"].counts == (4, 0)
