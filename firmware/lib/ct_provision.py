"""Provisioning on the board, driven by ``coldtrace device provision``
(gateway/provision.py) through mpremote. Each call prints one line the host
parses:

    import ct_provision
    ct_provision.set_ack_key("<64 hex>")     # -> CT-OK
    ct_provision.keygen(force=False)         # -> CT-PUBKEY <130 hex>
    ct_provision.selftest("<64 hex>")        # -> CT-SIG <128 hex> (ES256 over the bytes)
    ct_provision.pubkey()                    # -> CT-PUBKEY <130 hex>

Files (under ``ROOT``): ``key.p256`` the 32-byte secret scalar (software
signer), ``ack.key`` the 32-byte MAC key of acks and commands. Each is
written to a temporary name and renamed. The secret never leaves the board:
nothing here prints or returns it. A new key is a new device (docs/protocol.md
§1), so ``keygen(force=True)`` also clears the counters and the queue.

Key generation turns the radio on first: the ESP32's RNG is a true RNG only
while Wi-Fi or Bluetooth runs. ``config.json`` ``"signer": "atecc"`` makes
the ATECC608 generate and keep the key instead (ct_atecc); slot ``"slot"``,
on the I2C pins of the board's pin map (``"board"``/``"role"``, ct_pins)
unless ``"atecc"`` names ``"sda"``/``"scl"``.
"""

import ct_fs
import ct_p256
import ct_pins

ROOT = "ct"
KEY = "key.p256"
ACK_KEY = "ack.key"


class ProvisionError(Exception):
    pass


def _write(fs, path, data):
    tmp = path + ".tmp"
    with fs.open(tmp, "wb") as f:
        f.write(data)
        f.flush()
    fs.rename(tmp, path)


def _config():
    import json

    try:
        with open("config.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _radio_on():
    try:
        import network

        network.WLAN(network.STA_IF).active(True)
    except (ImportError, OSError, AttributeError):
        pass


def atecc_i2c_pins(cfg):
    """(sda, scl) of the ATECC608: config.json "atecc" "sda"/"scl" if given,
    else the I2C pins of the board's pin map (ct_pins; hardware/pins.json)."""
    a = cfg.get("atecc", {})
    sda, scl = a.get("sda"), a.get("scl")
    if sda is None or scl is None:
        p = ct_pins.of(cfg)
        sda = p["i2c_sda"] if sda is None else sda
        scl = p["i2c_scl"] if scl is None else scl
    return sda, scl


def load_signer(cfg, fs=None, root=ROOT, i2c=None):
    """The configured signer: ct_p256.Signer from key.p256, or ct_atecc."""
    if cfg.get("signer") == "atecc":
        import ct_atecc

        a = cfg.get("atecc", {})
        if i2c is None:
            import machine

            sda, scl = atecc_i2c_pins(cfg)
            i2c = machine.I2C(a.get("bus", 0), scl=machine.Pin(scl), sda=machine.Pin(sda),
                              freq=a.get("freq", 100000))
        return ct_atecc.Signer(ct_atecc.ATECC(i2c, a.get("addr", 0x60)), a.get("slot", 0))
    fs = fs or ct_fs.Fs()
    path = root + "/" + KEY
    if fs.size(path) != 32:
        raise ProvisionError("no device key: run ct_provision.keygen()")
    with fs.open(path, "rb") as f:
        return ct_p256.Signer(f.read())


def set_ack_key(hexkey, fs=None, root=ROOT):
    key = bytes.fromhex(hexkey)
    if len(key) != 32:
        raise ProvisionError("the ack key is 32 bytes")
    fs = fs or ct_fs.Fs()
    fs.makedirs(root)
    _write(fs, root + "/" + ACK_KEY, key)
    print("CT-OK")


def _forget(fs, root):
    # a new key is a new device: fresh counters and an empty queue
    for name in ("state", "state.tmp"):
        if fs.size(root + "/" + name) >= 0:
            fs.remove(root + "/" + name)
    q = root + "/q"
    if fs.size(q) >= 0:
        for name in fs.listdir(q):
            fs.remove(q + "/" + name)
    try:
        import machine

        import ct_rtcmem

        ct_rtcmem.RTCMem(machine.RTC()).put(b"S", b"")
    except (ImportError, AttributeError, OSError):
        pass


def keygen(force=False, fs=None, root=ROOT, cfg=None, urandom=None, i2c=None):
    cfg = _config() if cfg is None else cfg
    fs = fs or ct_fs.Fs()
    fs.makedirs(root)
    if cfg.get("signer") == "atecc":
        s = load_signer(cfg, fs, root, i2c)
        pub = s.generate() if force else s.public_key()
        if force:
            _forget(fs, root)
    else:
        path = root + "/" + KEY
        if fs.size(path) == 32 and not force:
            pub = load_signer(cfg, fs, root).public_key()
        else:
            if urandom is None:
                _radio_on()
            s = ct_p256.Signer.generate(urandom)
            # key first: a cut before _forget leaves a new key with old
            # counters (seq only higher); the other order could reuse a seq
            # under the old key
            _write(fs, path, s.secret())
            _forget(fs, root)
            pub = s.public_key()
    print("CT-PUBKEY " + pub.hex())
    return pub


def pubkey(fs=None, root=ROOT, cfg=None, i2c=None):
    cfg = _config() if cfg is None else cfg
    pub = load_signer(cfg, fs, root, i2c).public_key()
    print("CT-PUBKEY " + pub.hex())
    return pub


def selftest(challenge_hex, fs=None, root=ROOT, cfg=None, i2c=None):
    cfg = _config() if cfg is None else cfg
    s = load_signer(cfg, fs, root, i2c)
    msg = bytes.fromhex(challenge_hex)
    sig = s.sign(msg)
    ct_p256.verify(s.public_key(), msg, sig)
    print("CT-SIG " + sig.hex())
    return sig


# eFuse words holding the flash encryption counter (ESP-IDF efuse tables:
# ESP32 FLASH_CRYPT_CNT = EFUSE_BLK0 bits 20-26, read register 0x3FF5A000;
# ESP32-S3 SPI_BOOT_CRYPT_CNT = EFUSE_BLK0 bits 82-84, EFUSE_RD_REPEAT_DATA1
# 0x60007034 bits 18-20). Encryption is on when an odd number of bits is set.
_CRYPT_CNT = (("ESP32S3", 0x60007034, 18, 7), ("ESP32", 0x3FF5A000, 20, 0x7F))


def flash_encrypted(machine=None, chip=None):
    """Prints ``CT-FLASHENC 1`` (flash encryption on), ``0`` (off: anything
    in flash, key.p256 too, can be read over USB) or ``?`` (unknown chip)."""
    if chip is None:  # "Generic ESP32S3 module with ESP32S3"
        import os
        import sys

        m = getattr(sys.implementation, "_machine", None) or os.uname().machine
        chip = m.split(" with ")[-1]
    r = "?"
    for name, addr, shift, mask in _CRYPT_CNT:
        if chip == name:
            if machine is None:
                import machine
            cnt = (machine.mem32[addr] >> shift) & mask
            n = 0
            while cnt:
                n += cnt & 1
                cnt >>= 1
            r = "1" if n & 1 else "0"
            break
    print("CT-FLASHENC " + r)
    return r
