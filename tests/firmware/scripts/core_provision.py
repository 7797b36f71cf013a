"""ct_provision: the lines gateway/provision.py parses, key files, re-keying."""

import ct_p256
import ct_provision
from ct_queue import Queue
from ct_state import State
from fake_atecc import FakeI2C
from fakefs import FakeFs
from fwrun import data, main, raises


def rnd(seed):
    def f(n):
        return bytes(((seed + i) * 29 + 3) & 0xFF for i in range(n))

    return f


def test_ack_key_keygen_selftest():
    fs = FakeFs()
    ct_provision.set_ack_key("11" * 32, fs)
    assert fs.disk.files["ct/ack.key"] == b"\x11" * 32
    raises(ct_provision.ProvisionError, ct_provision.set_ack_key, "11" * 31, fs)
    raises(ct_provision.ProvisionError, ct_provision.load_signer, {}, fs)
    pub = ct_provision.keygen(False, fs, cfg={}, urandom=rnd(1))
    assert len(fs.disk.files["ct/key.p256"]) == 32
    assert ct_provision.keygen(False, fs, cfg={}, urandom=rnd(2)) == pub  # kept
    sig = ct_provision.selftest("ab" * 32, fs, cfg={})
    ct_p256.verify(pub, b"\xab" * 32, sig)
    assert ct_provision.pubkey(fs, cfg={}) == pub


def test_forced_new_key_is_a_new_device():
    fs = FakeFs()
    ct_provision.keygen(False, fs, cfg={}, urandom=rnd(1))
    st = State(fs, "ct/state")
    st.begin()
    st.advance(0, b"\x01" * 16)
    q = Queue(fs, "ct/q", 4, 400, 0, 0)
    q.put(b"old record")
    new = ct_provision.keygen(True, fs, cfg={}, urandom=rnd(9))
    assert new != ct_p256.Signer(bytes(rnd(1)(32))).public_key()
    st = State(fs, "ct/state")
    st.begin()
    assert st.seq == 0 and st.boot == 1
    assert Queue(fs, "ct/q", 4, 400, 0, 0).count() == 0


def test_atecc_signer_from_config():
    fs = FakeFs()
    bus = FakeI2C()
    cfg = {"signer": "atecc", "atecc": {"slot": 3}}
    pub = ct_provision.keygen(True, fs, cfg=cfg, i2c=bus)
    assert 3 in bus.slots and "ct/key.p256" not in fs.disk.files
    assert ct_provision.pubkey(fs, cfg=cfg, i2c=bus) == pub
    sig = ct_provision.selftest("cd" * 32, fs, cfg=cfg, i2c=bus)
    ct_p256.verify(pub, b"\xcd" * 32, sig)


def _with_fake_machine(fn):
    import sys

    import fake_machine

    old = sys.modules.get("machine")
    sys.modules["machine"] = fake_machine
    try:
        return fn(fake_machine)
    finally:
        if old is None:
            del sys.modules["machine"]
        else:
            sys.modules["machine"] = old


def test_atecc_bus_uses_the_i2c_pins_of_the_boards_pin_map():
    hw = data("pins.json")

    def check(m):
        seen = []
        for board, b in hw["boards"].items():
            for role, sig in b["roles"].items():
                m.log.clear()
                s = ct_provision.load_signer({"signer": "atecc", "board": board, "role": role,
                                              "atecc": {"slot": 2}})
                want = ("i2c", 0, sig["i2c_sda"]["gpio"], sig["i2c_scl"]["gpio"], 100000)
                assert [e for e in m.log if e[0] == "i2c"] == [want], (board, role, m.log)
                assert s.slot == 2
                seen.append(board)
        assert "esp32s3" in seen and "esp32" in seen
        # no "board": the ESP32-S3 default of ct_pins/ct_board (not 21/22)
        m.log.clear()
        ct_provision.load_signer({"signer": "atecc"})
        s3 = hw["boards"]["esp32s3"]["roles"]["logger"]
        assert [e for e in m.log if e[0] == "i2c"] == [
            ("i2c", 0, s3["i2c_sda"]["gpio"], s3["i2c_scl"]["gpio"], 100000)]
        # explicit pins in config.json still win
        m.log.clear()
        ct_provision.load_signer({"signer": "atecc", "board": "esp32s3",
                                  "atecc": {"bus": 1, "sda": 41, "scl": 42, "freq": 400000}})
        assert [e for e in m.log if e[0] == "i2c"] == [("i2c", 1, 41, 42, 400000)]

    _with_fake_machine(check)


if __name__ == "__main__":
    main(globals())
