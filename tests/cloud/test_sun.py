"""NTAG 424 DNA SUN verification (cloud/sun.py) against published examples:
AN12196 §4.4 (tests/firmware/data/an12196_sun.json for Tables 3 and 5,
tests/cloud/data/an12196_more.json for Tables 1, 4 and 6), AN10922 §2.2, and
LRP: AN12304's primitive vectors and two LRP-mode SUN messages
(tests/cloud/data/an12304_lrp.json)."""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from cloud import sun

ROOT = Path(__file__).resolve().parents[2]
AN = json.loads((ROOT / "tests/firmware/data/an12196_sun.json").read_text())
MORE = json.loads((ROOT / "tests/cloud/data/an12196_more.json").read_text())
LRP = json.loads((ROOT / "tests/cloud/data/an12304_lrp.json").read_text())
ZERO = bytes(16)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


# --- AN12196 -----------------------------------------------------------------------------------


def test_table1_session_keys_from_a_non_zero_file_read_key() -> None:
    t = MORE["table1_session_keys"]
    enc, mac = sun.session_keys(h(t["k_sdm_file_read"]), h(t["uid"]), t["sdm_read_ctr"])
    assert sun._sv(sun._SV2, h(t["uid"]), t["sdm_read_ctr"]) == h(t["sv2"])
    assert enc == h(t["k_ses_sdm_file_read_enc"])
    assert mac == h(t["k_ses_sdm_file_read_mac"])


def test_table3_picc_data_decrypts_to_uid_and_counter() -> None:
    p = sun.decrypt_picc(h(AN["k_sdm_meta_read"]), h(AN["picc_data_enc"]))
    assert p.tag == int(AN["picc_data_tag"], 16)
    assert p.uid == h(AN["uid"]) and p.counter == AN["sdm_read_ctr"] == 61


def test_table5_mac_of_empty_input_picc_only_layout() -> None:
    _, mac = sun.session_keys(h(AN["k_sdm_file_read"]), h(AN["uid"]), AN["sdm_read_ctr"])
    assert mac == h(AN["k_ses_sdm_file_read_mac"])
    assert sun.sdm_mac(mac, b"") == h(AN["sdm_mac"])
    # the whole message, as the tag's URL carries it (AN12196's parameter names)
    msg = sun.parse_sun(query(AN["url"]))
    assert msg is not None and msg.mac_input() == b""
    res = sun.verify_sun(ZERO, lambda uid: ZERO if uid == h(AN["uid"]) else None, msg)
    assert (res.uid, res.counter, res.file_data) == (h(AN["uid"]), 61, None)


def test_table4_enc_file_data_decrypts() -> None:
    t = MORE["table4_enc_file_data"]
    p = sun.decrypt_picc(h(t["k_sdm_meta_read"]), h(t["picc_data_enc"]))
    assert p.uid == h(t["uid"]) and p.counter == t["sdm_read_ctr"]
    enc, _ = sun.session_keys(h(t["k_sdm_file_read"]), p.uid, p.counter)
    assert enc == h(t["k_ses_sdm_file_read_enc"])
    assert sun._enc_iv(enc, p.counter) == h(t["iv_e"])
    assert sun.decrypt_file_data(enc, p.counter, h(t["sdm_enc_file_data"])) == h(t["file_data"])


def test_table6_mac_over_the_enc_mirror_picc_and_enc_layout() -> None:
    t = MORE["table6_mac_with_input"]
    msg = sun.parse_sun(query(t["url"]))
    assert msg is not None
    assert msg.mac_input() == t["mac_input_ascii"].encode()
    _, mac = sun.session_keys(h(t["k_sdm_file_read"]), h(t["uid"]), t["sdm_read_ctr"])
    assert mac == h(t["k_ses_sdm_file_read_mac"])
    assert sun.sdm_mac(mac, msg.mac_input()) == h(t["sdm_mac"])
    res = sun.verify_sun(h(t["k_sdm_meta_read"]), lambda uid: h(t["k_sdm_file_read"]), msg)
    assert res.uid == h(t["uid"]) and res.counter == t["sdm_read_ctr"]
    assert res.file_data == t["file_data_ascii"].encode()


def test_the_mac_input_of_the_enc_layout_is_not_the_empty_input() -> None:
    """A verifier that MACs nothing in the PICCData + ENC layout must fail the vector."""
    t = MORE["table6_mac_with_input"]
    _, mac = sun.session_keys(ZERO, h(t["uid"]), t["sdm_read_ctr"])
    assert sun.sdm_mac(mac, b"") != h(t["sdm_mac"])


# --- AN10922 -----------------------------------------------------------------------------------


def test_an10922_aes128_diversification() -> None:
    t = MORE["an10922_aes128"]
    m = h(t["uid"]) + h(t["aid"]) + h(t["system_identifier"])
    assert sun.diversify(h(t["master"]), m) == h(t["diversified"])


def test_an10922_without_padding_is_plain_cmac() -> None:
    """31 bytes of input make D = 01 || M exactly 32 bytes: no padding, subkey K1,
    which is CMAC itself."""
    key = h("00112233445566778899AABBCCDDEEFF")
    m = bytes(range(31))
    assert sun.diversify(key, m) == sun.aes_cmac(key, b"\x01" + m)
    with pytest.raises(ValueError):
        sun.diversify(key, bytes(32))
    with pytest.raises(ValueError):
        sun.diversify(key, b"")


# --- refusals ----------------------------------------------------------------------------------


def _keys(seed: int) -> sun.TagKeys:
    return sun.TagKeys(bytes([seed]) * 16, bytes([seed + 1]) * 16, bytes([seed + 2]) * 16)


UID = h("04A1B2C3D4E5F6")


@pytest.mark.parametrize("enc", [None, b"lot=L1;t=2.5C..."])
def test_make_sun_url_round_trips_in_both_layouts(enc: bytes | None) -> None:
    keys = _keys(1)
    url = sun.make_sun_url(keys, UID, 7, "https://ct.example/", "/01/09506000134352/21/S1", enc)
    assert url.startswith("https://ct.example/01/09506000134352/21/S1?picc=")
    assert ("&enc=" in url) == (enc is not None)
    msg = sun.parse_sun(query(url))
    assert msg is not None
    res = sun.verify_sun(keys.meta_read, lambda uid: keys.file_read, msg)
    assert (res.uid, res.counter, res.file_data) == (UID, 7, enc)


def test_a_wrong_mac_is_invalid() -> None:
    q = query(AN["url"])
    for i in range(16):  # every hex digit of the MAC
        bad = dict(q)
        bad["cmac"] = q["cmac"][:i] + ("0" if q["cmac"][i] != "0" else "1") + q["cmac"][i + 1 :]
        msg = sun.parse_sun(bad)
        assert msg is not None
        with pytest.raises(sun.SunError) as e:
            sun.verify_sun(ZERO, lambda uid: ZERO, msg)
        assert e.value.code == "invalid"


def test_a_changed_enc_mirror_is_invalid() -> None:
    t = MORE["table6_mac_with_input"]
    q = query(t["url"])
    q["enc"] = "DEE9A53E3E463EF1F459635736738962"
    msg = sun.parse_sun(q)
    assert msg is not None
    with pytest.raises(sun.SunError, match="MAC") as e:
        sun.verify_sun(ZERO, lambda uid: ZERO, msg)
    assert e.value.code == "invalid"


def test_wrong_keys_are_invalid() -> None:
    msg = sun.parse_sun(query(AN["url"]))
    assert msg is not None
    other = bytes(range(16))
    # a wrong SDMMetaReadKey: PICCData decrypts to garbage (no tag byte C7)
    with pytest.raises(sun.SunError) as e:
        sun.verify_sun(other, lambda uid: ZERO, msg)
    assert e.value.code == "invalid"
    # a wrong SDMFileReadKey: the MAC fails
    with pytest.raises(sun.SunError) as e:
        sun.verify_sun(ZERO, lambda uid: other, msg)
    assert e.value.code == "invalid"
    # no key for the UID
    with pytest.raises(sun.SunError) as e:
        sun.verify_sun(ZERO, lambda uid: None, msg)
    assert e.value.code == "unknown_tag"


@pytest.mark.parametrize(
    "params",
    [
        {"picc": AN["picc_data_enc"][:-2], "cmac": AN["sdm_mac"]},  # truncated PICCData
        {"picc": AN["picc_data_enc"], "cmac": AN["sdm_mac"][:-1]},  # odd length
        {"picc": AN["picc_data_enc"], "cmac": AN["sdm_mac"][:-2]},  # truncated MAC
        {"picc": AN["picc_data_enc"]},  # no MAC
        {"cmac": AN["sdm_mac"]},  # no PICCData
        {"enc": "00" * 16},  # ENC alone
        {"picc": "ZZ" * 16, "cmac": AN["sdm_mac"]},  # not hex
        {"picc": AN["picc_data_enc"], "cmac": AN["sdm_mac"], "enc": "00" * 15},  # short ENC
        {"picc": AN["picc_data_enc"], "cmac": AN["sdm_mac"], "enc": ""},
        {"picc": AN["picc_data_enc"], "cmac": AN["sdm_mac"], "enc": "00" * 144},  # too long
    ],
)
def test_truncated_or_malformed_messages_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(sun.SunError) as e:
        sun.parse_sun(params)
    assert e.value.code == "malformed"


def test_no_sun_parameters_is_no_message() -> None:
    assert sun.parse_sun({}) is None
    assert sun.parse_sun({"utm_source": "qr"}) is None


# --- LRP (AN12304) ---------------------------------------------------------------------------


def test_lrp_primitives_match_an12304() -> None:
    v = LRP["primitives"]
    p = sun.Lrp(h(v["plaintexts"]["key"]), 0)
    assert p.plaintexts[0] == h(v["plaintexts"]["p0"])
    assert p.plaintexts[15] == h(v["plaintexts"]["p15"])
    assert p.updated_key == h(v["updated_keys"]["uk0"])
    assert sun.Lrp(h(v["updated_keys"]["key"]), 2).updated_key == h(v["updated_keys"]["uk2"])
    for e in v["eval"]:
        assert sun.Lrp(h(e["key"]), e["u"]).eval(h(e["x"]), e["final"]) == h(e["y"])
    c = v["lricb"]
    lrp = sun.Lrp(h(c["key"]), c["u"])
    assert lrp.lricb(h(c["padded"]), h(c["counter"]), decrypt=False) == h(c["ciphertext"])
    assert lrp.lricb(h(c["ciphertext"]), h(c["counter"]), decrypt=True) == h(c["padded"])
    for m in v["cmac"]:
        assert sun.Lrp(h(m["key"]), 0).cmac(h(m["message"])) == h(m["mac"])


@pytest.mark.parametrize("i", [0, 1])
def test_lrp_sun_messages(i: int) -> None:
    v = LRP["sdm"][i]
    p = sun.decrypt_picc(h(v["k_sdm_meta_read"]), h(v["picc_data"]))
    assert p.lrp and p.uid == h(v["uid"]) and p.counter == v["sdm_read_ctr"]
    master = sun.lrp_session_key(h(v["k_sdm_file_read"]), p.uid, p.counter)
    assert master == h(v["k_ses_sdm_file_read_master"])
    mac = sun.Lrp(master, 0).cmac(v["mac_input_ascii"].encode())[1::2]
    assert mac == h(v["sdm_mac"])
    if "sdm_enc_file_data" in v:
        ctr = p.counter.to_bytes(3, "little") + bytes(3)
        data = sun.Lrp(master, 1).lricb(h(v["sdm_enc_file_data"]), ctr, decrypt=True)
        assert data == v["file_data_ascii"].encode()


@pytest.mark.parametrize("enc", [None, b"lot=L1;t=2.5C..."])
def test_lrp_mode_urls_verify_and_fail_like_aes_ones(enc: bytes | None) -> None:
    keys = _keys(5)
    url = sun.make_sun_url(keys, UID, 9, "https://ct.example", "/01/09506000134352", enc, lrp=True)
    q = query(url)
    assert len(q["picc"]) == 48
    msg = sun.parse_sun(q)
    assert msg is not None
    res = sun.verify_sun(keys.meta_read, lambda uid: keys.file_read, msg)
    assert (res.uid, res.counter, res.file_data, res.mode) == (UID, 9, enc, "lrp")
    q["cmac"] = q["cmac"][::-1]
    bad = sun.parse_sun(q)
    assert bad is not None
    with pytest.raises(sun.SunError) as e:
        sun.verify_sun(keys.meta_read, lambda uid: keys.file_read, bad)
    assert e.value.code == "invalid"
    with pytest.raises(sun.SunError) as e:
        sun.verify_sun(keys.meta_read, lambda uid: bytes(16), msg)
    assert e.value.code == "invalid"


def test_the_mac_compare_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(sun.hmac, "compare_digest", spy)
    msg = sun.parse_sun(query(AN["url"]))
    assert msg is not None
    sun.verify_sun(ZERO, lambda uid: ZERO, msg)
    assert calls == [(h(AN["sdm_mac"]), h(AN["sdm_mac"]))]
