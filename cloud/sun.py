"""NTAG 424 DNA Secure Dynamic Messaging (SUN): the cloud's side of a tap.

An NTAG 424 DNA with SDM mirrors into its NDEF URL, on every read, the
encrypted PICCData and a truncated CMAC (NXP AN12196 §4.4), and optionally
encrypted file data (SDMENCFileData). This module checks such a message; the
tag table, replay and statuses are :mod:`cloud.tags` (docs/cloud.md, "Tags").

AES mode (AN12196):

- **PICCData** (16 bytes) = AES-128-CBC, IV 0, under K_SDMMetaRead, of
  PICCDataTag (1: bit 7 UID mirrored, bit 6 counter mirrored, bits 3..0 the
  UID length) || UID (7) || SDMReadCtr (3, little-endian) || random padding.
- **Session keys** (AN12196 Table 1): the AES-CMAC under
  K_SDMFileRead of SV1 = C33C 0001 0080 || UID || SDMReadCtr (ENC key) and of
  SV2 = 3CC3 0001 0080 || UID || SDMReadCtr (MAC key), zero-padded to a
  multiple of 16 bytes.
- **SDMMAC** = the odd-indexed bytes (1, 3, … 15) of the AES-CMAC under the
  session MAC key of the NDEF bytes from SDMMACInputOffset to SDMMACOffset:
  nothing with PICCData only (``?picc=..&cmac=..``), and ``<enc hex>&cmac=``
  with SDMENCFileData (``?picc=..&enc=..&cmac=..``, SDMMACInputOffset =
  SDMENCOffset).
- **SDMENCFileData** = AES-128-CBC under the session ENC key with the IV
  AES-128-ECB(session ENC key, SDMReadCtr || 0^13).

LRP mode (NXP AN12304, the Leakage Resilient Primitive; a tag switched to LRP
by SetConfiguration) is checked too, told apart by its PICCData of 24 bytes:

- PICCData = PICCRand (8) || LRICB encryption (updated key 0 of
  K_SDMMetaRead, counter PICCRand, no padding) of the same 16 bytes as above;
- the session key is CMAC_LRP under K_SDMFileRead of SV = 0001 0080 || UID ||
  SDMReadCtr || zero padding || 1EE1 (16 bytes); SDMMAC = the odd bytes of
  CMAC_LRP under it (updated key 0) of the same MAC input as in AES mode;
- SDMENCFileData = LRICB under the session key's updated key 1, counter
  SDMReadCtr || 000000.

Every MAC compare is constant-time (:func:`hmac.compare_digest`).

Per-tag keys are diversified from a master key per NXP AN10922 §2.2 (AES-128:
CMAC of 0x01 || M, padded to 32 bytes), see :func:`diversify`.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

__all__ = [
    "ENC_NAMES",
    "MAC_NAMES",
    "PICC_NAMES",
    "Lrp",
    "PiccData",
    "SunError",
    "SunMessage",
    "SunResult",
    "TagKeys",
    "aes_cmac",
    "decrypt_file_data",
    "decrypt_picc",
    "diversify",
    "make_sun_url",
    "parse_sun",
    "sdm_mac",
    "session_keys",
    "verify_sun",
]

# query parameter names: ours first, then AN12196's and the common short ones
PICC_NAMES = ("picc", "picc_data", "e")
MAC_NAMES = ("cmac", "c")
ENC_NAMES = ("enc",)

UID_LENGTH = 7  # NTAG 424 DNA
_SV1 = bytes.fromhex("c33c00010080")
_SV2 = bytes.fromhex("3cc300010080")
_HEX = re.compile(r"[0-9A-Fa-f]*")  # fullmatch: "$" would let a final newline through
MAX_ENC_BYTES = 128  # SDMENCLength is at most the file; more is not a tag's message


class SunError(ValueError):
    """A SUN message that does not check: ``code`` is ``malformed`` (the parameters are
    not a SUN message), ``invalid``
    (decryption gives no PICCData, or the MAC fails) or ``unknown_tag``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class TagKeys:
    """The AES-128 keys of one tag's application (key numbers 0..4)."""

    app_master: bytes  # key 0: AppMasterKey (ChangeKey, ChangeFileSettings, write NDEF)
    meta_read: bytes  # key 1: SDMMetaReadKey (PICCData) - the same for every tag of a cloud
    file_read: bytes  # key 2: SDMFileReadKey (session keys: SDMMAC, SDMENCFileData)
    key3: bytes = bytes(16)  # keys 3 and 4: unused by SDM, set so no factory key remains
    key4: bytes = bytes(16)


@dataclass(frozen=True)
class PiccData:
    tag: int
    uid: bytes
    counter: int
    lrp: bool = False


@dataclass(frozen=True)
class SunMessage:
    """The SUN parameters of a tap URL, as the tag mirrored them."""

    picc: bytes
    mac: bytes
    enc: bytes | None = None
    enc_text: str | None = None  # the ENC mirror as it appears in the URL (MAC input)
    mac_name: str = "cmac"  # the MAC parameter's name (its "&name=" is MAC input)

    def mac_input(self) -> bytes:
        """The NDEF bytes from SDMMACInputOffset to SDMMACOffset (AN12196 §4.4.2)."""
        if self.enc_text is None:
            return b""
        return f"{self.enc_text}&{self.mac_name}=".encode("ascii")


@dataclass(frozen=True)
class SunResult:
    uid: bytes
    counter: int
    file_data: bytes | None
    mode: str = "aes"  # or "lrp"


# --- primitives -----------------------------------------------------------------------------


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) != 16:
        raise ValueError("an AES-128 key is 16 bytes")


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B, RFC 4493)."""
    _check_key(key)
    c = CMAC(algorithms.AES(bytes(key)))
    c.update(data)
    return c.finalize()


def _ecb_encrypt(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _cbc(key: bytes, iv: bytes, data: bytes, *, decrypt: bool) -> bytes:
    c = Cipher(algorithms.AES(bytes(key)), modes.CBC(iv))
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def _shift(block: bytes) -> bytes:
    """One CMAC subkey doubling in GF(2^128)."""
    n = int.from_bytes(block, "big") << 1
    if n >> 128:
        n = (n & ((1 << 128) - 1)) ^ 0x87
    return n.to_bytes(16, "big")


def diversify(master: bytes, data: bytes) -> bytes:
    """NXP AN10922 §2.2 AES-128 key diversification: the CMAC under ``master`` of
    D = 0x01 || M, where M (``data``, 1..31 bytes) is the diversification input;
    D is padded (0x80 00 ..) to 32 bytes when shorter, and the last block is masked
    with subkey K1 when D needed no padding, K2 when it did."""
    _check_key(master)
    if not 1 <= len(data) <= 31:
        raise ValueError("AN10922 diversification input is 1..31 bytes")
    d = b"\x01" + bytes(data)
    k1 = _shift(_ecb_encrypt(master, bytes(16)))
    k2 = _shift(k1)
    if len(d) == 32:
        mask = k1
    else:
        d = (d + b"\x80").ljust(32, b"\x00")
        mask = k2
    last = bytes(a ^ b for a, b in zip(d[16:], mask, strict=True))
    return _cbc(master, bytes(16), d[:16] + last, decrypt=False)[16:]


def _sv(prefix: bytes, uid: bytes, counter: int) -> bytes:
    sv = prefix + uid + counter.to_bytes(3, "little")
    return sv + bytes(-len(sv) % 16)


def session_keys(file_read_key: bytes, uid: bytes, counter: int) -> tuple[bytes, bytes]:
    """(KSesSDMFileReadENC, KSesSDMFileReadMAC) of one read (SV1 and SV2, AES-CMAC)."""
    if not 0 <= counter < 1 << 24:
        raise ValueError("SDMReadCtr is 3 bytes")
    return (
        aes_cmac(file_read_key, _sv(_SV1, uid, counter)),
        aes_cmac(file_read_key, _sv(_SV2, uid, counter)),
    )


def sdm_mac(mac_session_key: bytes, data: bytes) -> bytes:
    """SDMMAC: the odd-indexed bytes of the CMAC of ``data`` (MACt, 8 bytes)."""
    return aes_cmac(mac_session_key, data)[1::2]


def _enc_iv(enc_session_key: bytes, counter: int) -> bytes:
    return _ecb_encrypt(enc_session_key, counter.to_bytes(3, "little") + bytes(13))


def decrypt_file_data(enc_session_key: bytes, counter: int, enc: bytes) -> bytes:
    if not enc or len(enc) % 16:
        raise SunError("malformed", "SDMENCFileData is a non-empty multiple of 16 bytes")
    return _cbc(enc_session_key, _enc_iv(enc_session_key, counter), enc, decrypt=True)


def encrypt_file_data(enc_session_key: bytes, counter: int, plain: bytes) -> bytes:
    if not plain or len(plain) % 16:
        raise ValueError("SDMENCFileData is a non-empty multiple of 16 bytes")
    return _cbc(enc_session_key, _enc_iv(enc_session_key, counter), plain, decrypt=False)


def decrypt_picc(meta_read_key: bytes, picc: bytes) -> PiccData:
    """Decrypt PICCData (16 bytes: AES mode, 24: LRP mode); :class:`SunError` ``invalid``
    if it is not PICCData under this key (the tag byte must say: UID of 7 bytes and the
    read counter mirrored)."""
    if len(picc) not in (16, 24):
        raise SunError("malformed", "PICCData is 16 bytes (AES mode) or 24 (LRP mode)")
    _check_key(meta_read_key)
    if len(picc) == 24:
        plain = Lrp(meta_read_key, 0).lricb(picc[8:], picc[:8], decrypt=True)
    else:
        plain = _cbc(meta_read_key, bytes(16), picc, decrypt=True)
    tag = plain[0]
    if tag & 0x80 == 0 or tag & 0x40 == 0 or tag & 0x0F != UID_LENGTH:
        raise SunError("invalid", "PICCData does not decrypt to a tag's UID and read counter")
    return PiccData(tag, plain[1:8], int.from_bytes(plain[8:11], "little"), len(picc) == 24)


# --- LRP (NXP AN12304) ---------------------------------------------------------------------------


class Lrp:
    """The Leakage Resilient Primitive of AN12304 with m = 4 (16 plaintexts) for ``key``
    and its updated key number ``u``: EvalLRP, LRICB encryption and CMAC_LRP."""

    def __init__(self, key: bytes, u: int) -> None:
        _check_key(key)
        a, f = b"\xaa" * 16, b"\x55" * 16
        h = _ecb_encrypt(key, f)
        self.plaintexts: list[bytes] = []
        for _ in range(16):
            self.plaintexts.append(_ecb_encrypt(h, a))
            h = _ecb_encrypt(h, f)
        h = _ecb_encrypt(key, a)
        for _ in range(u):
            h = _ecb_encrypt(h, f)
        self.updated_key = _ecb_encrypt(h, a)

    def eval(self, x: bytes, final: bool) -> bytes:
        """EvalLRP: one AES step per nibble of ``x`` (high nibble first), keyed by the last."""
        y = self.updated_key
        for b in x:
            y = _ecb_encrypt(y, self.plaintexts[b >> 4])
            y = _ecb_encrypt(y, self.plaintexts[b & 15])
        return _ecb_encrypt(y, bytes(16)) if final else y

    def lricb(self, data: bytes, counter: bytes, *, decrypt: bool) -> bytes:
        """LRICB without padding: block i under EvalLRP(counter + i), the counter big-endian
        of its own length."""
        if len(data) % 16:
            raise SunError("malformed", "LRICB data is a multiple of 16 bytes")
        n, width, out = int.from_bytes(counter, "big"), len(counter), b""
        for i in range(0, len(data), 16):
            c = Cipher(algorithms.AES(self.eval(n.to_bytes(width, "big"), True)), modes.ECB())
            op = c.decryptor() if decrypt else c.encryptor()
            out += op.update(data[i : i + 16]) + op.finalize()
            n = (n + 1) % (1 << (8 * width))
        return out

    def cmac(self, data: bytes) -> bytes:
        """CMAC_LRP: CMAC with EvalLRP(., final) as the block function, subkeys from
        EvalLRP(0^128)."""
        k1 = _shift(self.eval(bytes(16), True))
        if data and len(data) % 16 == 0:
            msg, mask = data, k1
        else:
            msg, mask = (data + b"\x80").ljust(len(data) // 16 * 16 + 16, b"\x00"), _shift(k1)
        y = bytes(16)
        for i in range(0, len(msg), 16):
            block = msg[i : i + 16]
            if i + 16 == len(msg):
                block = bytes(a ^ b for a, b in zip(block, mask, strict=True))
            y = self.eval(bytes(a ^ b for a, b in zip(y, block, strict=True)), True)
        return y


def lrp_session_key(file_read_key: bytes, uid: bytes, counter: int) -> bytes:
    """LRP mode's KSesSDMFileReadMaster: CMAC_LRP(K_SDMFileRead, 0001 0080 || UID ||
    SDMReadCtr || zero padding || 1EE1)."""
    sv = b"\x00\x01\x00\x80" + uid + counter.to_bytes(3, "little")
    sv += bytes(-(len(sv) + 2) % 16) + b"\x1e\xe1"
    return Lrp(file_read_key, 0).cmac(sv)


# --- messages ----------------------------------------------------------------------------------


def _first(params: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    for n in names:
        if n in params:
            return n, params[n]
    return None


def _unhex(text: str, what: str, sizes: tuple[int, ...] | None = None) -> bytes:
    if not _HEX.fullmatch(text) or len(text) % 2:
        raise SunError("malformed", f"{what} is not hex")
    if sizes is not None and len(text) // 2 not in sizes:
        raise SunError("malformed", f"{what} has the wrong length")
    return bytes.fromhex(text)


def parse_sun(params: Mapping[str, str]) -> SunMessage | None:
    """The SUN message of a tap's query parameters; None when it has none at all (a QR
    code, an NTAG 21x, a tag without SDM); :class:`SunError` when it is not one."""
    picc = _first(params, PICC_NAMES)
    mac = _first(params, MAC_NAMES)
    enc = _first(params, ENC_NAMES)
    if picc is None and mac is None and enc is None:
        return None
    if picc is None or mac is None:
        raise SunError("malformed", "a SUN message has both PICCData and a CMAC")
    picc_b = _unhex(picc[1], "PICCData", (16, 24))
    mac_b = _unhex(mac[1], "the CMAC", (8,))
    enc_b = None
    if enc is not None:
        if len(enc[1]) > 2 * MAX_ENC_BYTES:  # refuse before scanning or decoding it
            raise SunError("malformed", "the encrypted file data is 16, 32, .. bytes")
        enc_b = _unhex(enc[1], "the encrypted file data")
        if not enc_b or len(enc_b) % 16:
            raise SunError("malformed", "the encrypted file data is 16, 32, .. bytes")
    return SunMessage(picc_b, mac_b, enc_b, None if enc is None else enc[1], mac_name=mac[0])


def verify_sun(
    meta_read_key: bytes,
    file_read_key_for: Callable[[bytes], bytes | None],
    msg: SunMessage,
) -> SunResult:
    """Check one SUN message: decrypt PICCData, find the tag's SDMFileReadKey by its UID,
    derive the session keys from UID and read counter, compare the MAC (constant time),
    decrypt SDMENCFileData if any. AES or LRP mode, as the message is. Raises
    :class:`SunError` (``invalid``, ``unknown_tag``, ``malformed``)."""
    picc = decrypt_picc(meta_read_key, msg.picc)
    file_key = file_read_key_for(picc.uid)
    if file_key is None:
        raise SunError("unknown_tag", "no tag of this UID is commissioned here")
    if picc.lrp:
        master = lrp_session_key(file_key, picc.uid, picc.counter)
        expected = Lrp(master, 0).cmac(msg.mac_input())[1::2]
    else:
        enc_key, mac_key = session_keys(file_key, picc.uid, picc.counter)
        expected = sdm_mac(mac_key, msg.mac_input())
    if not hmac.compare_digest(expected, msg.mac):
        raise SunError("invalid", "the SUN MAC does not verify under this tag's key")
    data = None
    if msg.enc is not None and picc.lrp:
        ctr = picc.counter.to_bytes(3, "little") + bytes(3)
        data = Lrp(master, 1).lricb(msg.enc, ctr, decrypt=True)
    elif msg.enc is not None:
        data = decrypt_file_data(enc_key, picc.counter, msg.enc)
    return SunResult(picc.uid, picc.counter, data, "lrp" if picc.lrp else "aes")


def make_sun_url(
    keys: TagKeys,
    uid: bytes,
    counter: int,
    base_url: str,
    item: str,
    enc_data: bytes | None = None,
    *,
    lrp: bool = False,
) -> str:
    """The URL a tag with ``keys`` mirrors on read number ``counter``: ``base_url`` +
    ``item`` + ``?picc=..&cmac=..`` (or ``?picc=..&enc=..&cmac=..`` with SDMENCFileData
    of ``enc_data``, a multiple of 16 bytes); ``lrp``: as a tag in LRP mode. For tests and
    the demo: a simulated tap."""
    if len(uid) != UID_LENGTH:
        raise ValueError("an NTAG 424 DNA UID is 7 bytes")
    if enc_data is not None and (not enc_data or len(enc_data) % 16):
        raise ValueError("SDMENCFileData is a non-empty multiple of 16 bytes")
    plain = bytes([0x80 | 0x40 | UID_LENGTH]) + uid + counter.to_bytes(3, "little")
    plain += os.urandom(16 - len(plain))
    if lrp:
        rand = os.urandom(8)
        picc = rand + Lrp(keys.meta_read, 0).lricb(plain, rand, decrypt=False)
        master = lrp_session_key(keys.file_read, uid, counter)
    else:
        picc = _cbc(keys.meta_read, bytes(16), plain, decrypt=False)
        enc_key, mac_key = session_keys(keys.file_read, uid, counter)
    url = base_url.rstrip("/") + item + "?picc=" + picc.hex().upper()
    enc_text = None
    if enc_data is not None:
        if lrp:
            ctr = counter.to_bytes(3, "little") + bytes(3)
            enc = Lrp(master, 1).lricb(enc_data, ctr, decrypt=False)
        else:
            enc = encrypt_file_data(enc_key, counter, enc_data)
        enc_text = enc.hex().upper()
        url += "&enc=" + enc_text
    msg = SunMessage(picc, b"", None, enc_text)
    mac = Lrp(master, 0).cmac(msg.mac_input())[1::2] if lrp else sdm_mac(mac_key, msg.mac_input())
    return url + "&cmac=" + mac.hex().upper()
