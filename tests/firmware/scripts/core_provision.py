"""ct_provision: the lines gateway/provision.py parses, key files, re-keying."""

import ct_p256
import ct_provision
from ct_queue import Queue
from ct_state import State
from fake_atecc import FakeI2C
from fakefs import FakeFs
from fwrun import main, raises


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


if __name__ == "__main__":
    main(globals())
