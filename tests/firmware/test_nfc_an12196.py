"""The AN12196 data file is self-consistent: the SUN values in it decrypt and
MAC as NXP's application note says (so the firmware tests that use it, and the
cloud's SUN verifier, start from correct numbers)."""

import json
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

AN = json.loads((Path(__file__).parent / "data" / "an12196_sun.json").read_text())
FRAMES = json.loads((Path(__file__).parent / "data" / "pn532_frames.json").read_text())


def test_picc_data_decrypts_to_tag_uid_and_counter() -> None:
    key = bytes.fromhex(AN["k_sdm_meta_read"])
    dec = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).decryptor()
    plain = dec.update(bytes.fromhex(AN["picc_data_enc"])) + dec.finalize()
    assert plain[0:1] == bytes.fromhex(AN["picc_data_tag"])
    assert plain[1:8] == bytes.fromhex(AN["uid"])
    assert int.from_bytes(plain[8:11], "little") == AN["sdm_read_ctr"] == 61


def test_sdm_mac_is_the_odd_bytes_of_the_session_cmac() -> None:
    sv2 = (
        bytes.fromhex("3cc300010080")
        + bytes.fromhex(AN["uid"])
        + bytes.fromhex(AN["sdm_read_ctr_le"])
    )
    c = CMAC(algorithms.AES(bytes.fromhex(AN["k_sdm_file_read"])))
    c.update(sv2)
    session = c.finalize()
    assert session == bytes.fromhex(AN["k_ses_sdm_file_read_mac"])
    c = CMAC(algorithms.AES(session))
    full = c.finalize()
    assert full[1::2] == bytes.fromhex(AN["sdm_mac"])


def test_sun_field_and_url_agree() -> None:
    assert bytes.fromhex(AN["sun"]) == bytes.fromhex(AN["picc_data_enc"] + AN["sdm_mac"])
    assert AN["picc_data_enc"] in AN["url"] and AN["sdm_mac"] in AN["url"]
    assert FRAMES["url"] == AN["url"]


def _frame_ok(hexframe: str) -> bool:
    b = bytes.fromhex(hexframe)
    n = b[3]
    return b[:3] == b"\x00\x00\xff" and (n + b[4]) % 256 == 0 and sum(b[5 : 6 + n]) % 256 == 0


def test_recorded_frames_have_valid_checksums() -> None:
    for name, v in FRAMES.items():
        for step in v if isinstance(v, list) else [v] if isinstance(v, dict) else []:
            assert _frame_ok(step["host"]), name
            assert _frame_ok(step["chip"]), name
