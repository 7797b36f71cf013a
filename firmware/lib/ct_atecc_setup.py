"""Configure and lock a blank ATECC608B for ColdTrace, on the board; driven
by ``coldtrace device atecc-setup`` over mpremote (gateway/atecc.py), which
parses the ``CT-`` lines printed here:

    import ct_atecc_setup
    ct_atecc_setup.run(slot=0, lock=False)  # CT-ATECC-CONFIG <256 hex>, CT-ATECC-PLAN ...
    ct_atecc_setup.run(slot=0, lock=True)   # ... CT-ATECC-LOCKED, CT-PUBKEY <130 hex>

The procedure (ATECC608B data sheet, "Configuration Zone", "Lock", "Read",
"Write", "GenKey"):

1. Read the 128-byte configuration zone (Read 0x02, four 32-byte blocks,
   param1 0x80, param2 block << 3). Bytes 4-7 are RevNum (``xx xx 60 0x``
   for an ATECC608); byte 86 LockValue (data zone) and 87 LockConfig are
   0x55 while unlocked, 0x00 once locked.
2. While the configuration is unlocked: set the slot's SlotConfig (bytes
   20 + 2*slot, LE) to 0x2083 - ReadKey 0x3 (external and internal
   signatures), IsSecret, WriteConfig 0x2 (GenKey may write it, nothing
   else can) - and its KeyConfig (96 + 2*slot) to 0x0033: Private, PubInfo
   (GenKey may recompute the public key), KeyType 4 (P-256), Lockable.
   Only the 4-byte words that change are written (Write 0x12, param1
   0x00, param2 = byte offset / 4); bytes 0-15 (serial, revision) and
   84-87 (UserExtra, Selector, the lock bytes) are never written. The zone
   is read back and compared.
3. ``lock=True`` only (irreversible): Lock the configuration zone (Lock
   0x17, mode 0x00, param2 = CRC-16 of the 128 bytes read back: the chip
   refuses if its zone differs), then the data and OTP zones (mode 0x81,
   no CRC: nothing is stored there), then GenKey (0x40, mode 0x04) makes
   the private key in the slot - on the chip, from its own RNG - and the
   public key is printed. Sign needs both zones locked.

A chip whose configuration is already locked (an ESP32-WROOM-32SE comes
pre-provisioned by Microchip) is not changed: its slot must already be a
P-256 private-key slot that signs external messages, else this refuses.
With ``new_key`` a locked chip gets a fresh key in the slot (a new device).
"""

import ct_atecc
import ct_p256

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_OP_READ = const(0x02)
_OP_WRITE = const(0x12)
_OP_LOCK = const(0x17)
_OP_GENKEY = const(0x40)
_T_READ = const(5)
_T_WRITE = const(45)
_T_LOCK = const(35)
_T_GENKEY = const(700)  # as ct_atecc
LOCK_VALUE = const(86)  # data + OTP zones
LOCK_CONFIG = const(87)
UNLOCKED = const(0x55)
SLOT_CONFIG = b"\x83\x20"  # 0x2083 LE
KEY_CONFIG = b"\x33\x00"  # 0x0033 LE


class SetupError(Exception):
    pass


def read_config(chip):
    out = b""
    for block in range(4):
        r = chip.command(_OP_READ, 0x80, block << 3, b"", _T_READ)
        if len(r) != 32:
            raise SetupError("Read answered %d bytes, want 32" % len(r))
        out += bytes(r)
    return out


def wanted(conf, slot):
    """The configuration zone with ``slot`` set up for ColdTrace."""
    c = bytearray(conf)
    c[20 + 2 * slot : 22 + 2 * slot] = SLOT_CONFIG
    c[96 + 2 * slot : 98 + 2 * slot] = KEY_CONFIG
    return bytes(c)


def plan(conf, slot):
    """[(word address, 4 bytes)] to write to get from ``conf`` to wanted()."""
    w = wanted(conf, slot)
    out = []
    for a in range(16, 128, 4):
        if 84 <= a < 88:
            continue  # UserExtra, Selector, LockValue, LockConfig: not by Write
        if w[a : a + 4] != conf[a : a + 4]:
            out.append((a // 4, w[a : a + 4]))
    return out


def slot_ready(conf, slot):
    return (conf[20 + 2 * slot : 22 + 2 * slot] == SLOT_CONFIG
            and conf[96 + 2 * slot : 98 + 2 * slot] == KEY_CONFIG)


def setup(chip, slot=0, lock=False, new_key=False, say=print):
    """The procedure above on a woken chip (``with chip.session()``).
    Returns the 65-byte public key when the chip is locked, else None."""
    if not 0 <= slot <= 15:
        raise SetupError("slot 0..15")
    conf = read_config(chip)
    say("CT-ATECC-CONFIG " + conf.hex())
    if conf[6] != 0x60:
        raise SetupError("not an ATECC608 (RevNum %s)" % conf[4:8].hex())
    if conf[LOCK_CONFIG] == UNLOCKED:
        steps = plan(conf, slot)
        say("CT-ATECC-PLAN " + " ".join("%02x:%s" % (a, d.hex()) for a, d in steps))
        if not lock:
            return None  # a dry run: nothing written
        target = wanted(conf, slot)
        for a, d in steps:
            chip.command(_OP_WRITE, 0x00, a, d, _T_WRITE)
        conf = read_config(chip)
        if conf != target:
            raise SetupError("the configuration read back differs from what was written")
        crc = ct_atecc.crc16(conf)
        chip.command(_OP_LOCK, 0x00, crc[0] | crc[1] << 8, b"", _T_LOCK)
    elif not slot_ready(conf, slot):
        raise SetupError("configuration locked and slot %d is not a P-256 signing slot "
                         "(SlotConfig %s, KeyConfig %s): use another slot" % (
                             slot, conf[20 + 2 * slot : 22 + 2 * slot].hex(),
                             conf[96 + 2 * slot : 98 + 2 * slot].hex()))
    fresh = conf[LOCK_VALUE] == UNLOCKED
    if fresh:
        if not lock:
            say("CT-ATECC-PLAN lock-data")
            return None
        chip.command(_OP_LOCK, 0x81, 0, b"", _T_LOCK)
    say("CT-ATECC-LOCKED")
    mode = 0x04 if (fresh or new_key) else 0x00  # GenKey: new private key / public only
    r = chip.command(_OP_GENKEY, mode, slot, b"", _T_GENKEY)
    if len(r) != 64:
        raise SetupError("GenKey answered %d bytes, want 64" % len(r))
    pub = b"\x04" + bytes(r)
    ct_p256.decode_point(pub)  # on the curve, or raise
    say("CT-PUBKEY " + pub.hex())
    return pub


def run(slot=0, lock=False, new_key=False, cfg=None, i2c=None, say=print):
    """On the board: the chip on the I2C pins of config.json's board."""
    import ct_provision

    cfg = ct_provision._config() if cfg is None else cfg
    a = cfg.get("atecc", {})
    if i2c is None:
        import machine

        sda, scl = ct_provision.atecc_i2c_pins(cfg)
        i2c = machine.I2C(a.get("bus", 0), scl=machine.Pin(scl), sda=machine.Pin(sda),
                          freq=a.get("freq", 100000))
    chip = ct_atecc.ATECC(i2c, a.get("addr", 0x60))
    with chip.session() as c:
        return setup(c, slot, lock, new_key, say)
