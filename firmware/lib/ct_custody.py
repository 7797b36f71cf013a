"""The custody link a tag carries (protocol v2, scan field 27 ``link``).

Every custody scan of an item names the previous custody scan of the same
item, whichever reader or organisation made it. The name travels on the
tag, in a 20-byte custody file:

    43 54 4C 01 ("CTL" 01, 4 bytes)  ||  link (16 bytes)

link = SHA-256 of the complete COSE_Sign1 bytes of the previous custody
scan of this tag, first 16 bytes (ct_record.chain_link, the same function
as the ``prev`` chain link). On a tap the reader reads the file (``read``);
once the new scan is signed and durably queued it writes the new scan's
link (``write_link``).

Where the file is:

* NTAG 424 DNA (ISO-DEP): standard data file 03, ISO file id E105, in the
  NDEF application D2760000850101, offset 0, plain communication mode (the
  tag's commissioning makes file 03 freely readable and writable; the reader
  does not change access rights). ISO SELECT by file id (00 A4 00 0C 02
  E1 05), READ BINARY (00 B0), UPDATE BINARY (00 D6): the APDUs ct_ntag
  uses for the NDEF file E104. ``T4(exchange)``: the NDEF application must
  be selected (``ct_ntag.read_ndef`` leaves it selected).
* NTAG 21x (NFC Forum Type 2): user memory pages 20h-24h. READ (30h) gives
  4 pages from the page asked, WRITE (A2h) takes one page and answers a
  4-bit ACK (Ah). ``T2(read16, write4)``: ``read16(page)`` -> 16 bytes, or
  None when the tag answered NAK; ``write4(page, data)`` raises unless the
  tag answered ACK. (On an NTAG213 pages 20h-24h are the end of its NDEF
  area: an NDEF message there must stay within pages 04h-1Fh.)
* Any other tag: no custody file; the scan has no field 27.

``read`` -> the 20 bytes, or None when the tag answered that it has no
such file (or no such pages, or not freely readable); transport errors
(the tag did not answer: pulled away) raise the driver's exception, as a
broken NDEF read does. ``link(data)`` -> the 16-byte link, or None when the
file does not start with the magic.

No tag here writes the 20 bytes atomically (five page writes on an NTAG
21x; an UPDATE BINARY on a 424 whose tearing behaviour is not relied on),
so ``write_link`` first clears the magic, then writes the link, then the
magic. A tag pulled away mid-write holds either the link it had (nothing
was written yet) or no link - never a mix of old and new bytes, which
would name a scan that does not exist.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


MAGIC = b"CTL\x01"
SIZE = const(20)
LINK_LEN = const(16)
_PAGE = const(0x20)  # NTAG 21x: first page of the custody file
_FID = b"\xe1\x05"  # NTAG 424 DNA file 03
_SW_OK = b"\x90\x00"


class CustodyError(Exception):
    pass


def link(data):
    """The 16-byte link in a custody file's bytes, or None."""
    if data is None or len(data) < SIZE or bytes(data[:4]) != MAGIC:
        return None
    return bytes(data[4:SIZE])


def write_link(port, new_link):
    """Put ``new_link`` (16 bytes) on the tag: clear the magic, write the
    link, write the magic. Raises (CustodyError or the driver's error) when
    the tag refused or left; then the tag holds its old link or none."""
    if len(new_link) != LINK_LEN:
        raise CustodyError("a link is 16 bytes")
    port.write(0, bytes(4))
    port.write(4, bytes(new_link))
    port.write(0, MAGIC)


def _sw(r):
    if len(r) < 2:
        raise CustodyError("short R-APDU")
    return bytes(r[-2:])


class T4:
    """File 03 (E105) of an NTAG 424 DNA; ``exchange(apdu) -> r_apdu``."""

    def __init__(self, exchange):
        self._ex = exchange

    def read(self):
        if _sw(self._ex(b"\x00\xa4\x00\x0c\x02" + _FID)) != _SW_OK:
            return None  # 6A 82: no file 03 (not a 424)
        r = self._ex(bytes((0x00, 0xB0, 0, 0, SIZE)))
        if _sw(r) != _SW_OK or len(r) != SIZE + 2:
            return None  # 69 82: file 03 not freely readable (not commissioned)
        return bytes(r[:SIZE])

    def write(self, offset, data):
        """UPDATE BINARY at ``offset`` of the selected file 03 (``read``
        selected it)."""
        apdu = bytes((0x00, 0xD6, offset >> 8, offset & 0xFF, len(data))) + data
        sw = _sw(self._ex(apdu))
        if sw != _SW_OK:
            raise CustodyError("UPDATE BINARY: status %02x%02x" % (sw[0], sw[1]))


class T2:
    """Pages 20h-24h of an NTAG 21x through ``read16``/``write4``."""

    def __init__(self, read16, write4):
        self._read16 = read16
        self._write4 = write4

    def read(self):
        a = self._read16(_PAGE)  # pages 20h-23h
        if a is None:
            return None  # no page 20h, or read-protected
        b = self._read16(_PAGE + 4)  # 24h (and 3 pages past the file)
        if b is None or len(a) != 16 or len(b) != 16:
            return None
        return bytes(a) + bytes(b[:4])

    def write(self, offset, data):
        if offset % 4 or len(data) % 4:
            raise CustodyError("whole pages only")
        for i in range(0, len(data), 4):
            self._write4(_PAGE + (offset + i) // 4, data[i : i + 4])
