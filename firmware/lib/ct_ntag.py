"""One tap of a tag: UID, NTAG 424 DNA NDEF + SUN, the custody link.

``read_tag(pn532)`` / ``read_tag_mfrc522(rc)`` poll once and give a Tag
(or None). The tap stays open - the tag selected - until ``Tag.release()``,
so the reader can write the new custody link (``Tag.write_link``, see
ct_custody) after it has signed and queued the scan. NTAG 21x (SAK 00) and
NTAG 424 DNA (ISO-DEP) have a custody file; MIFARE Classic and other tags
give their full UID only.

NDEF on a Type 4 tag (NFC Forum T4T 2.0 §5.4, NTAG 424 DNA datasheet §8):
SELECT the NDEF application by name D2760000850101, SELECT the capability
container E103, READ BINARY it to learn the NDEF file id and the maximum
R-APDU size (MLe), SELECT the NDEF file, READ BINARY its 2-byte NLEN, then
the message in chunks. Every R-APDU must end in 90 00.

An NTAG 424 DNA with Secure Dynamic Messaging mirrors into its URL the
encrypted PICCData (16 bytes: tag, UID, read counter; AES-128 under
K_SDMMetaRead) and the SDM MAC (8 bytes, truncated CMAC under a session key
from K_SDMFileRead) - NXP AN12196 §4.4. The reader cannot check them (it
holds no tag keys); it copies PICCData || MAC into the scan record's ``sun``
field so the cloud can. The parameter names are configurable; the defaults
accept AN12196's ``picc_data``/``cmac`` and the common ``e``/``c``.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x

import binascii

import ct_custody

_SW_OK = b"\x90\x00"
_NDEF_AID = b"\xd2\x76\x00\x00\x85\x01\x01"
_CC_FILE = b"\xe1\x03"
_MAX_CHUNK = const(128)  # keeps an InDataExchange inside one PN532 frame
_MAX_NDEF = const(1024)
_TNF_WELL_KNOWN = const(1)
_SAK_T2 = const(0x00)  # NFC Forum Type 2 (NTAG 21x, Ultralight)
_TIMEOUT = const(0x01)  # PN532 InDataExchange status: the tag did not answer

PICC_NAMES = ("picc_data", "e")
MAC_NAMES = ("cmac", "c")

# NFC Forum URI RTD 1.0 §3.2.2, the abbreviations in use
_PREFIX = {
    0: "",
    1: "http://www.",
    2: "https://www.",
    3: "http://",
    4: "https://",
    5: "tel:",
    6: "mailto:",
}


class NTAGError(Exception):
    pass


def _check(r):
    if len(r) < 2 or bytes(r[-2:]) != _SW_OK:
        raise NTAGError("status word %s" % binascii.hexlify(bytes(r[-2:])).decode())
    return bytes(r[:-2])


def _select_file(exchange, fid):
    _check(exchange(b"\x00\xa4\x00\x0c\x02" + fid))


def _read(exchange, offset, n):
    apdu = bytes((0x00, 0xB0, offset >> 8, offset & 0xFF, n))
    data = _check(exchange(apdu))
    if len(data) != n:
        raise NTAGError("short read")
    return data


def read_ndef(exchange):
    """The NDEF message of a Type 4 tag. ``exchange(apdu) -> r_apdu``."""
    _check(exchange(b"\x00\xa4\x04\x00\x07" + _NDEF_AID + b"\x00"))
    _select_file(exchange, _CC_FILE)
    cc = _read(exchange, 0, 15)
    mle = (cc[3] << 8) | cc[4]
    if cc[7] != 0x04 or cc[8] != 0x06:
        raise NTAGError("no NDEF file control TLV")
    fid = bytes(cc[9:11])
    if cc[13] != 0x00:
        raise NTAGError("NDEF file not freely readable")
    chunk = min(mle, _MAX_CHUNK)
    if chunk < 2:
        raise NTAGError("MLe")
    _select_file(exchange, fid)
    nlen = _read(exchange, 0, 2)
    n = (nlen[0] << 8) | nlen[1]
    if n == 0 or n > _MAX_NDEF:
        raise NTAGError("NDEF length %d" % n)
    out = bytearray()
    off = 2
    while len(out) < n:
        k = min(chunk, n - len(out))
        out.extend(_read(exchange, off, k))
        off += k
    return bytes(out)


def parse_uri(msg):
    """The first URI record of an NDEF message, as text (NDEF 1.0 §3.2)."""
    i = 0
    while i < len(msg):
        hdr = msg[i]
        tnf = hdr & 0x07
        sr = hdr & 0x10
        il = hdr & 0x08
        if hdr & 0x20:
            raise NTAGError("chunked records not supported")
        if i + 2 > len(msg):
            raise NTAGError("truncated record")
        tlen = msg[i + 1]
        j = i + 2
        if sr:
            plen = msg[j]
            j += 1
        else:
            if j + 4 > len(msg):
                raise NTAGError("truncated record")
            plen = (msg[j] << 24) | (msg[j + 1] << 16) | (msg[j + 2] << 8) | msg[j + 3]
            j += 4
        idlen = 0
        if il:
            idlen = msg[j]
            j += 1
        rtype = msg[j : j + tlen]
        j += tlen + idlen
        payload = msg[j : j + plen]
        if len(payload) != plen:
            raise NTAGError("truncated payload")
        if tnf == _TNF_WELL_KNOWN and rtype == b"U" and plen >= 1:
            prefix = _PREFIX.get(payload[0])
            if prefix is None:
                raise NTAGError("URI prefix code %d" % payload[0])
            return prefix + bytes(payload[1:]).decode()
        if hdr & 0x40:  # ME
            break
        i = j + plen
    raise NTAGError("no URI record")


def _query(uri):
    q = uri.find("?")
    params = {}
    if q < 0:
        return params
    end = uri.find("#", q)
    for part in uri[q + 1 : end if end >= 0 else len(uri)].split("&"):
        k, sep, v = part.partition("=")
        if sep:
            params[k] = v
    return params


def _unhex(s, n):
    if len(s) != 2 * n:
        raise NTAGError("SUN field length")
    try:
        return binascii.unhexlify(s)
    except ValueError:
        raise NTAGError("SUN field not hex")


def sun_from_uri(uri, picc_names=PICC_NAMES, mac_names=MAC_NAMES):
    """PICCData (16) || SDM MAC (8) from the URL, or None if it has none."""
    p = _query(uri)
    picc = mac = None
    for k in picc_names:
        if k in p:
            picc = p[k]
            break
    for k in mac_names:
        if k in p:
            mac = p[k]
            break
    if picc is None and mac is None:
        return None
    if picc is None or mac is None:
        raise NTAGError("SUN data incomplete")
    return _unhex(picc, 16) + _unhex(mac, 8)


def item_from_uri(uri):
    """The GS1 Digital Link path (/01/{gtin}/...) of a URL, or None."""
    s = uri.find("://")
    p = uri.find("/", s + 3 if s >= 0 else 0)
    if p < 0:
        return None
    end = len(uri)
    for c in "?#":
        k = uri.find(c, p)
        if 0 <= k < end:
            end = k
    path = uri[p:end]
    k = path.find("/01/")
    if k < 0:
        return None
    path = path[k:]
    if len(path) > 128:
        raise NTAGError("item too long")
    return path


class Tag:
    """What one tap yields for the scan record. ``link``: the custody link
    the tag held (16 bytes) or None; ``custody``: the tag's custody file
    (a ct_custody port) or None when it has none."""

    def __init__(self, uid, sun=None, item=None, uri=None):
        self.uid = uid
        self.sun = sun
        self.item = item
        self.uri = uri
        self.link = None
        self.custody = None
        self._release = None

    def open_custody(self, port):
        """Read the custody file through ``port``; keep the port for the
        write when the tag has one."""
        data = port.read()
        if data is not None:
            self.custody = port
            self.link = ct_custody.link(data)

    def write_link(self, link):
        """Write the new scan's link to the tag's custody file; raises when
        the tag has none, refused, or left the field."""
        if self.custody is None:
            raise ct_custody.CustodyError("no custody file")
        ct_custody.write_link(self.custody, link)

    def release(self):
        """End the tap (deselect the tag); once, whatever happened."""
        f, self._release = self._release, None
        if f is not None:
            f()


def _t2_pn532(pn532, tg, timeout_ms):
    """ct_custody.T2 over PN532 InDataExchange (the PN532 adds and checks
    the CRC_A and takes the 4-bit ACK itself). A READ the tag answers with a
    NAK gives a non-zero status other than timeout: no such pages."""

    def read16(page):
        st, r = pn532.exchange_status(tg, bytes((0x30, page)), 16, timeout_ms)
        if st == _TIMEOUT:
            raise NTAGError("tag did not answer")
        if st:
            return None
        return r

    def write4(page, data):
        st, _ = pn532.exchange_status(tg, bytes((0xA2, page)) + bytes(data), 0, timeout_ms)
        if st:
            raise NTAGError("page write: status 0x%02x" % st)

    return ct_custody.T2(read16, write4)


def read_tag(pn532, timeout_ms=500):
    """Poll a PN532 once: Tag, or None when no tag is in the field.

    ISO-DEP tags (NTAG 424 DNA) give their NDEF URL, SUN data and GS1 item;
    they and Type 2 tags (NTAG 21x) give their custody link. Other tags
    (MIFARE Classic) give their full UID only. The target stays selected
    until ``Tag.release()``; a failed read releases it and raises.
    """
    t = pn532.list_target(timeout_ms)
    if t is None:
        return None
    tag = Tag(t.uid)
    done = False
    try:
        if t.iso_dep():

            def ex(apdu):
                return pn532.exchange(t.tg, apdu, _MAX_CHUNK + 2, timeout_ms)

            uri = parse_uri(read_ndef(ex))
            tag.uri = uri
            tag.sun = sun_from_uri(uri)
            tag.item = item_from_uri(uri)
            tag.open_custody(ct_custody.T4(ex))
        elif t.sak == _SAK_T2:
            tag.open_custody(_t2_pn532(pn532, t.tg, timeout_ms))
        tag._release = lambda: pn532.release(t.tg)
        done = True
    finally:
        if not done:
            pn532.release(t.tg)
    return tag


def read_tag_mfrc522(rc):
    """Poll an MFRC522 once: Tag (full UID; custody link for a Type 2 tag),
    or None. No ISO-DEP on this path: an NTAG 424 DNA gives its UID only.
    The tag stays selected until ``Tag.release()`` halts it."""
    got = rc.read_uid()
    if got is None:
        return None
    uid, sak = got
    tag = Tag(uid)
    done = False
    try:
        if sak == _SAK_T2:
            tag.open_custody(ct_custody.T2(rc.read16, rc.write4))
        tag._release = rc.halt
        done = True
    finally:
        if not done:
            rc.halt()
    return tag
