"""NTAG 424 DNA tags in the cloud (cloud/tags.py): commissioning by the API and the CLI,
taps (genuine, replayed, invalid, unknown tag, unauthenticated), the read counter under
concurrency, the commission scan binding, and keys never stored in clear.

Each test runs on SQLite and on a real PostgreSQL server (tests/pgserver.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cloud import db, orgs, sun
from cloud.app import create_app
from cloud.config import CloudConfig, load_config
from cloud.tags import TapResult, check_tap
from protocol.cli import main
from tests.cloud.cloudkit import OPEN, Kit, LogPusher, make_kit
from tests.protocol.scenario import COMMISSION, ITEM, T0, UID, Scenario

BASE = "https://ct.example"
TAG = bytes.fromhex("04A1B2C3D4E5F6")
ITEM2 = "/01/09506000134352/10/LOT7/21/0042"


@pytest.fixture(params=["sqlite", "postgresql"])
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Kit:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    return make_kit(tmp_path, url)


def keys_of(answer: dict[str, Any]) -> sun.TagKeys:
    k = answer["keys"]
    return sun.TagKeys(
        bytes.fromhex(k["key0_app_master"]),
        bytes.fromhex(k["key1_sdm_meta_read"]),
        bytes.fromhex(k["key2_sdm_file_read"]),
        bytes.fromhex(k["key3"]),
        bytes.fromhex(k["key4"]),
    )


def params(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def tap(kit: Kit, url: str) -> dict[str, Any]:
    r = kit.client.get("/v1/public/tap?" + urlsplit(url).query)
    assert r.status_code == 200, r.text
    return dict(r.json())


def commission(kit: Kit, uid: bytes = TAG, item: str = ITEM2, **extra: Any) -> dict[str, Any]:
    body = {"uid": uid.hex(), "item": item, "base_url": BASE, **extra}
    return dict(kit.admin("POST", "/v1/tags", json=body))


def test_commission_by_the_api_answers_keys_settings_and_template(kit: Kit) -> None:
    a = commission(kit)
    assert a["uid"] == TAG.hex().upper() and a["item"] == ITEM2 and a["organisation"] == "operator"
    template = a["url_template"]
    assert template == f"{BASE}{ITEM2}?picc={'0' * 32}&cmac={'0' * 16}"
    s = a["settings"]
    ndef = bytes.fromhex(s["ndef_hex"])
    # the offsets point at the placeholders in the NDEF file
    assert ndef[s["picc_data_offset"] : s["picc_data_offset"] + 32] == b"0" * 32
    assert ndef[s["sdm_mac_offset"] : s["sdm_mac_offset"] + 16] == b"0" * 16
    assert ndef[s["sdm_mac_offset"] - 6 : s["sdm_mac_offset"]] == b"&cmac="
    assert s["sdm_mac_input_offset"] == s["sdm_mac_offset"]  # PICCData only: empty MAC input
    assert int.from_bytes(ndef[:2], "big") == len(ndef) - 2
    assert "no commission scan" in a["binding"] and a["commission_scan"] is None
    keys = keys_of(a)
    assert len({keys.app_master, keys.meta_read, keys.file_read, keys.key3, keys.key4}) == 5
    # the same UID twice: refused
    r = kit.client.post(
        "/v1/tags",
        json={"uid": TAG.hex(), "item": ITEM2},
        headers={"Authorization": f"Bearer {kit.operator}"},
    )
    assert r.status_code == 409 and r.json()["error"] == "refused"
    # with SDMENCFileData: the MAC input starts at the ENC mirror
    b = commission(kit, bytes.fromhex("04A1B2C3D4E5F7"), enc_data="lot=L7;temp=ok!!")
    s = b["settings"]
    ndef = bytes.fromhex(s["ndef_hex"])
    assert s["sdm_mac_input_offset"] == s["sdm_enc_offset"] != s["sdm_mac_offset"]
    assert ndef[s["sdm_enc_offset"] : s["sdm_enc_offset"] + 32] == b"lot=L7;temp=ok!!" + b"0" * 16
    assert ndef[s["sdm_enc_offset"] + 32 : s["sdm_mac_offset"]] == b"&cmac="


def test_commission_needs_an_admin_token_of_the_organisation(kit: Kit) -> None:
    s = Scenario()
    kit.join("packhouse", s)
    kit.admin("POST", "/v1/orgs", json={"name": "carrier"})
    reader = kit.token("packhouse", ["read"])
    admin = kit.token("packhouse", ["admin"])
    body = {"uid": TAG.hex(), "item": ITEM2}

    def post(token: str | None, **extra: Any) -> Any:
        hdr = {} if token is None else {"Authorization": f"Bearer {token}"}
        return kit.client.post("/v1/tags", json={**body, **extra}, headers=hdr)

    assert post(None).status_code == 401
    assert post(reader).status_code == 403
    assert post(admin, organisation="carrier").status_code == 403
    assert post(admin, item="not a digital link").status_code == 400
    assert post(admin, uid="04A1B2").status_code in (400, 422)
    r = post(admin)
    assert r.status_code == 201, r.text
    assert r.json()["organisation"] == "packhouse"
    audit = kit.admin("GET", "/v1/audit")
    assert any(a["action"] == "tag.commission" and a["target"] == TAG.hex().upper() for a in audit)


def test_taps_genuine_replayed_invalid_unknown_unauthenticated(kit: Kit) -> None:
    keys = keys_of(commission(kit))
    first = sun.make_sun_url(keys, TAG, 5, BASE, ITEM2)
    t = tap(kit, first)
    assert t["status"] == "genuine" and t["uid"] == TAG.hex().upper()
    assert t["counter"] == 5 and t["item"] == ITEM2
    # the same URL again: a copied link or a screenshot
    t = tap(kit, first)
    assert t["status"] == "replayed" and t["counter"] == 5 and "not a genuine tap" in t["message"]
    # a valid message with a lower counter: an old URL
    t = tap(kit, sun.make_sun_url(keys, TAG, 3, BASE, ITEM2))
    assert t["status"] == "replayed" and t["counter"] == 3
    # the next real read is genuine again
    assert tap(kit, sun.make_sun_url(keys, TAG, 6, BASE, ITEM2))["status"] == "genuine"
    # with SDMENCFileData, also genuine
    url = sun.make_sun_url(keys, TAG, 7, BASE, ITEM2, b"0123456789abcdef")
    assert tap(kit, url)["status"] == "genuine"
    # a wrong MAC, a changed ENC mirror: invalid, and the counter does not move
    q = params(sun.make_sun_url(keys, TAG, 50, BASE, ITEM2))
    q["cmac"] = ("0" if q["cmac"][0] != "0" else "1") + q["cmac"][1:]
    r = check_tap(kit.client.app.state.cloud, q)  # type: ignore[attr-defined]
    assert r == TapResult("invalid", None, None, None, r.message)
    q = params(sun.make_sun_url(keys, TAG, 51, BASE, ITEM2, b"0123456789abcdef"))
    q["enc"] = q["enc"][::-1]
    assert tap(kit, f"{BASE}?picc={q['picc']}&enc={q['enc']}&cmac={q['cmac']}")["status"] == (
        "invalid"
    )
    # a tag of another cloud (other keys), keys of another tag
    other = sun.TagKeys(bytes(16), bytes(16), bytes(16))
    # (decrypted under this cloud's random meta key, foreign PICCData is noise; about one
    # time in 256 it reads as a well-formed header of some unknown UID: never genuine)
    foreign = tap(kit, sun.make_sun_url(other, TAG, 60, BASE, ITEM2))["status"]
    assert foreign in ("invalid", "unknown_tag")
    stranger = sun.TagKeys(keys.app_master, keys.meta_read, keys.file_read)
    t = tap(kit, sun.make_sun_url(stranger, bytes.fromhex("04000000000001"), 1, BASE, ITEM2))
    assert t["status"] == "unknown_tag" and t["uid"] is None
    forged = sun.TagKeys(keys.app_master, keys.meta_read, bytes(16))
    assert tap(kit, sun.make_sun_url(forged, TAG, 61, BASE, ITEM2))["status"] == "invalid"
    # no SUN data at all: a QR code
    t = tap(kit, f"{BASE}{ITEM2}")
    assert t["status"] == "unauthenticated" and t["uid"] is None
    # LRP mode: garbage is invalid; a tag in LRP mode is checked like one in AES mode
    t = tap(kit, f"{BASE}{ITEM2}?picc={'AB' * 24}&cmac={'00' * 8}")
    assert t["status"] in ("invalid", "unknown_tag")  # noise, as above: never genuine
    lrp = sun.make_sun_url(keys, TAG, 8, BASE, ITEM2, lrp=True)
    assert tap(kit, lrp)["status"] == "genuine"
    assert tap(kit, lrp)["status"] == "replayed"
    lrp = sun.make_sun_url(keys, TAG, 9, BASE, ITEM2, b"0123456789abcdef", lrp=True)
    assert tap(kit, lrp)["status"] == "genuine"
    # truncated
    assert tap(kit, first[:-3])["status"] == "invalid"
    with kit.engine.connect() as conn:
        row = conn.execute(select(db.tags).where(db.tags.c.uid == TAG)).one()
    assert row.counter == 9 and row.last_seen is not None


def test_two_taps_with_the_same_counter_exactly_one_is_genuine(kit: Kit) -> None:
    keys = keys_of(commission(kit))
    cloud = kit.client.app.state.cloud  # type: ignore[attr-defined]
    for n in range(1, 9):
        url = params(sun.make_sun_url(keys, TAG, n, BASE, ITEM2))
        barrier = threading.Barrier(2)
        out: list[str] = []

        def go(q: dict[str, str] = url, b: threading.Barrier = barrier, o: list[str] = out) -> None:
            b.wait()
            o.append(check_tap(cloud, q).status)

        threads = [threading.Thread(target=go) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sorted(out) == ["genuine", "replayed"], (n, out)


def test_the_commission_scan_binds_the_tag(kit: Kit) -> None:
    s = Scenario()
    kit.join("packhouse", s)
    dock = s.reader("rd-dock", "dc:dock")
    s.scan(dock, COMMISSION, T0 + 60, uid=UID, item=ITEM)
    assert LogPusher(kit, s).push().status_code == 200
    a = commission(kit, UID, ITEM)
    assert a["commission_scan"]["item"] == ITEM and a["commission_scan"]["log"] == s.origin
    assert a["binding"].startswith("bound to")
    t = tap(kit, sun.make_sun_url(keys_of(a), UID, 1, BASE, ITEM))
    assert (
        t["status"] == "genuine"
        and t["item"] == ITEM
        and "signed commission scan" in (t["message"])
    )
    # the cloud's record says another item than the log: the signed scan counts
    b = commission(kit, TAG, ITEM2)
    assert b["commission_scan"] is None


def test_keys_are_not_stored_in_clear(kit: Kit) -> None:
    keys = keys_of(commission(kit))
    assert tap(kit, sun.make_sun_url(keys, TAG, 1, BASE, ITEM2))["status"] == "genuine"
    secrets = [keys.app_master, keys.file_read, keys.key3, keys.key4, keys.meta_read]
    with kit.engine.connect() as conn:
        blob = bytes(conn.execute(select(db.tags.c.sealed_keys)).scalar_one())
        dump = repr(conn.execute(select(db.tags)).all()).encode()
    for k in secrets:
        for form in (k, k.hex().encode(), k.hex().upper().encode()):
            assert form not in blob and form not in dump
    if "://" not in kit.config.database:  # SQLite: the files on disk, WAL included
        files = [p for p in Path(kit.config.directory).iterdir() if p.name.startswith("cloud.db")]
        assert files
        for p in files:
            data = p.read_bytes()
            for k in secrets:
                assert k not in data and k.hex().encode() not in data
                assert k.hex().upper().encode() not in data
    key_file = Path(kit.config.directory) / "tags.key"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_commission_by_the_cli(tmp_path: Path, request: pytest.FixtureRequest, capsys) -> None:
    for backend in ("sqlite", "postgresql"):
        d = tmp_path / backend
        d.mkdir()
        database = "cloud.db"
        if backend == "postgresql":
            database = str(request.getfixturevalue("pg_url"))
        cfg = CloudConfig(d, database=database)
        (d / "cloud.toml").write_text(cfg.text())  # as `coldtrace cloud init` writes it
        engine = db.connect(cfg.database_url)
        OPEN.append(engine)
        with engine.begin() as conn:
            orgs.add_org(conn, None, "operator", operator=True)
        args = ["tag", "commission", "--dir", str(d), "--uid", TAG.hex(), "--item", ITEM2]
        assert main([*args, "--base-url", BASE, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["url_template"] == f"{BASE}{ITEM2}?picc={'0' * 32}&cmac={'0' * 16}"
        assert (d / "tags.key").stat().st_mode & 0o777 == 0o600
        # again: refused, with a message
        assert main(args) == 2
        assert "commissioned already" in capsys.readouterr().err
        # the human form names the keys, the settings, the template and the binding
        assert main([*args[:5], "04A1B2C3D4E5F8", "--item", ITEM2]) == 0
        text = capsys.readouterr().out
        words = ["AppMasterKey", "SDMMetaReadKey", "SDMFileReadKey", "PICCDataOffset"]
        words += ["SDMMACOffset", "?picc=" + "0" * 32 + "&cmac=" + "0" * 16, "commission scan"]
        for word in words:
            assert word in text, word
        assert main([*args[:-1], "/not/an/item"]) == 2
        # the service checks taps of the tag the CLI commissioned
        cfg = load_config(d)
        app = create_app(cfg)
        OPEN.append(app.state.cloud.engine)
        client = TestClient(app)
        url = sun.make_sun_url(keys_of(out), TAG, 1, BASE, ITEM2)
        r = client.get("/v1/public/tap?" + urlsplit(url).query)
        assert r.json()["status"] == "genuine", r.text
        r = client.get("/v1/public/tap?" + urlsplit(url).query)
        assert r.json()["status"] == "replayed"


def test_the_master_key_is_made_once_and_keys_are_bound_to_their_uid(tmp_path: Path) -> None:
    from cryptography.exceptions import InvalidTag

    from cloud.tags import Keyring

    path = tmp_path / "data" / "tags.key"
    rings: list[Keyring] = []
    barrier = threading.Barrier(8)

    def load() -> None:
        barrier.wait()
        rings.append(Keyring.load_or_create(path))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len({r.meta_read for r in rings}) == 1
    assert [p.name for p in path.parent.iterdir()] == ["tags.key"]
    assert path.stat().st_mode & 0o777 == 0o600
    ring = rings[0]
    keys = ring.tag_keys(TAG)
    assert keys != ring.tag_keys(bytes.fromhex("04A1B2C3D4E5F7"))
    sealed = ring.wrap(TAG, keys)
    assert ring.unwrap(TAG, sealed) == keys
    with pytest.raises(InvalidTag):  # another tag's row: the UID is associated data
        ring.unwrap(bytes.fromhex("04A1B2C3D4E5F7"), sealed)
    other = Keyring(bytes(16))
    with pytest.raises(InvalidTag):
        other.unwrap(TAG, sealed)


def test_the_binding_is_the_commission_scan_not_a_later_scan_naming_the_item(tmp_path) -> None:
    """Readers put the item in every scan of a tag; only action 1 commissions it."""
    from cloud.tags import commission_scan
    from tests.cloud.cloudkit import LogPusher, make_kit
    from tests.protocol.scenario import COMMISSION, ITEM, SHIP, T0, UID, Scenario

    kit = make_kit(tmp_path)
    s = Scenario()
    kit.join("packhouse", s)
    rd = s.reader("rd-dock", "dc:dock")
    s.scan(rd, COMMISSION, T0 + 60, item=ITEM)
    s.scan(rd, SHIP, T0 + 600, item=ITEM)
    assert LogPusher(kit, s).push().status_code == 200
    with kit.engine.connect() as conn:
        found = commission_scan(conn, UID)
    assert found is not None and found["time"] == T0 + 60 and found["item"] == ITEM
