"""The simulator's pieces that do not need a broker."""

import json
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway import sim

AN = json.loads((Path(__file__).parent / "data" / "an12196_sun.json").read_text())


def test_sun_message_reproduces_an12196() -> None:
    uid = bytes.fromhex(AN["uid"])
    picc, mac = sim.sun_message(uid, AN["sdm_read_ctr"], bytes(16), bytes(16))
    assert mac == bytes.fromhex(AN["sdm_mac"])
    # the padding is random on a tag; with AN12196's it is their ciphertext
    dec = Cipher(algorithms.AES(bytes(16)), modes.CBC(bytes(16))).decryptor()
    plain = dec.update(bytes.fromhex(AN["picc_data_enc"])) + dec.finalize()
    picc2, _ = sim.sun_message(uid, 61, bytes(16), bytes(16), pad=plain[11:])
    assert picc2 == bytes.fromhex(AN["picc_data_enc"])
    assert len(picc) == 16


def test_sun_tag_counts_up() -> None:
    t = sim.SunTag(
        bytes.fromhex("04a1b2c3d4e5f6"), "https://id.example.com/01/09506000134352/10/L1/21/9"
    )
    u1, u2 = t.url(), t.url()
    assert u1 != u2 and t.counter == 2 and "?picc_data=" in u1 and "&cmac=" in u1
