"""Record payloads (docs/protocol.md §2), the hash chain (§4) and signed records (§3).

A payload is a flat deterministic-CBOR map with integer keys: six common
fields (kind, boot, seq, time, tq, prev) and the fields of its kind. Each
kind is a frozen dataclass with the spec's field names; absent optional
fields are ``None`` (so ``ch`` absent and ``ch = 0`` stay distinct and every
payload round-trips bit for bit). Keys ≥ 1000 are vendor extensions, kept in
``extensions``.

Kinds (protocol version 2): 1 :class:`Reading`, 2 :class:`Scan`, 3
:class:`Status`, 4 :class:`Registration`, 5 :class:`Binding`, 6
:class:`ProductProfile` and 7 :class:`ReadingBlock` (N readings at a fixed
interval under one signature; :meth:`ReadingBlock.readings` expands it into
kind-1 :class:`Reading` values, :func:`pack_block` builds its slots).
Kinds 4-6 are signed by a registry key; kinds 5 and 6 are *statements*:
they also carry ``cseq``/``cprev`` (keys 7, 8), their position in a
statement chain (:func:`statement_chain_key`).

:func:`decode_payload` enforces every rule of §2 on the exact bytes and raises
a :class:`~protocol.errors.CBORError` (encoding) or
:class:`~protocol.errors.RecordError` subclass (fields):

- unknown key in 0-999, or a key of another kind: ``UnknownFieldError``
- required field absent: ``MissingFieldError``
- wrong CBOR type (a negative number in a uint field, text for bytes...):
  ``FieldTypeError``
- value, length or syntax outside its bounds, a control character in a text
  string: ``FieldRangeError``
- fields that exclude each other (temp and fault, rh with fault, link on a
  commission scan, lost on another event than 11, lots with lot, rh with a
  faulted block slot): ``FieldConflictError``

:func:`encode_payload` refuses exactly what :func:`decode_payload` refuses:
it encodes, then decodes its own output.

Records: :func:`open_record` checks the envelope and the payload without the
signature (to learn who signed it), :func:`verify_record` also checks the
signature, :func:`make_record` signs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, ClassVar

from cryptography.hazmat.primitives.asymmetric import ec

from protocol import cbor, cose
from protocol.errors import (
    FieldConflictError,
    FieldRangeError,
    FieldTypeError,
    MissingFieldError,
    UnknownFieldError,
    VerificationError,
)
from protocol.rfc6979 import B as _B
from protocol.rfc6979 import P as _P

__all__ = [
    "ACTION_COMMISSION",
    "ACTION_INSTALL",
    "ACTION_LOAD",
    "ACTION_RECEIVE",
    "ACTION_SELL",
    "ACTION_SHIP",
    "ACTION_UNLOAD",
    "ALARM_HIGH",
    "ALARM_LATCHED",
    "ALARM_LOW",
    "BLOCK_DEFAULT",
    "BLOCK_MAX",
    "BLOCK_MAX_INTERVAL",
    "CHAIN_HASH_LEN",
    "EVENT_ALARM_END",
    "EVENT_ALARM_START",
    "EVENT_BOOT",
    "EVENT_CLOCK_SET",
    "EVENT_CONFIG_CHANGED",
    "EVENT_HEARTBEAT",
    "EVENT_RECORDS_DROPPED",
    "EVENT_SAFE_MODE",
    "EVENT_SENSOR_FAULT",
    "EVENT_STORAGE_FULL",
    "EVENT_STORAGE_LOW",
    "EVENT_UPDATE_CONFIRMED",
    "EVENT_UPDATE_REFUSED",
    "EVENT_UPDATE_ROLLED_BACK",
    "EXTENSION_MIN_KEY",
    "FAULT_BUS",
    "FAULT_CRC",
    "FAULT_NO_SENSOR",
    "FAULT_OUT_OF_RANGE",
    "FAULT_POWER_ON",
    "FAULT_TIMEOUT",
    "FAULT_ZERO_SCRATCHPAD",
    "KIND_BINDING",
    "KIND_BLOCK",
    "KIND_PROFILE",
    "KIND_READING",
    "KIND_REGISTRATION",
    "KIND_SCAN",
    "KIND_STATUS",
    "MAX_EXTENSION_STRING",
    "MAX_PAYLOAD_SIZE",
    "MAX_RECORD_SIZE",
    "MAX_STRING",
    "ROLE_LOGGER",
    "ROLE_READER",
    "STATE_ACTIVE",
    "STATE_REVOKED",
    "TQ_GATEWAY",
    "TQ_HOLDOVER",
    "TQ_NTP",
    "TQ_UNSET",
    "ZERO_PREV",
    "Binding",
    "Payload",
    "ProductProfile",
    "Reading",
    "ReadingBlock",
    "Record",
    "Registration",
    "Scan",
    "Statement",
    "StatementKey",
    "Status",
    "chain_hash",
    "decode_payload",
    "encode_payload",
    "gtin_check_digit",
    "make_record",
    "open_record",
    "pack_block",
    "statement_chain_key",
    "verify_record",
]

# --- constants (§2) ------------------------------------------------------------------

KIND_READING = 1
KIND_SCAN = 2
KIND_STATUS = 3
KIND_REGISTRATION = 4
KIND_BINDING = 5  # a monitoring statement: which devices monitor a place from `time` on
KIND_PROFILE = 6  # a product temperature profile
KIND_BLOCK = 7  # a reading block: N readings at a fixed interval, one signature

#: Readings per block: at most 64 (a slot array is a bstr of at most 128 bytes, §2.8).
BLOCK_MAX = 64
#: The block size a device fills before it signs (an hour at a 5-minute interval).
BLOCK_DEFAULT = 12
BLOCK_MAX_INTERVAL = 86400
#: First byte of a faulted temperature slot (0x80 c: fault code c); an rh slot without rh.
_SLOT_FAULT = 0x80
_RH_NONE = 0xFFFF

TQ_UNSET = 0  # clock never set: time counts from boot
TQ_HOLDOVER = 1  # set once, no sync for > 24 h
TQ_NTP = 2  # synced by NTP within 24 h
TQ_GATEWAY = 3  # synced by the gateway within 24 h

FAULT_NO_SENSOR = 1
FAULT_CRC = 2
FAULT_POWER_ON = 3  # DS18B20 85.00 °C power-on value
FAULT_ZERO_SCRATCHPAD = 4
FAULT_OUT_OF_RANGE = 5
FAULT_BUS = 6
FAULT_TIMEOUT = 7

ALARM_HIGH = 1
ALARM_LOW = 2
ALARM_LATCHED = 4

ACTION_COMMISSION = 1
ACTION_LOAD = 2
ACTION_UNLOAD = 3
ACTION_RECEIVE = 4
ACTION_SHIP = 5
ACTION_SELL = 6
ACTION_INSTALL = 7

EVENT_BOOT = 1
EVENT_HEARTBEAT = 2
EVENT_SAFE_MODE = 3
EVENT_STORAGE_LOW = 4
EVENT_STORAGE_FULL = 5
EVENT_CLOCK_SET = 6
EVENT_ALARM_START = 7
EVENT_ALARM_END = 8
EVENT_SENSOR_FAULT = 9
EVENT_CONFIG_CHANGED = 10
EVENT_RECORDS_DROPPED = 11
EVENT_UPDATE_CONFIRMED = 12
EVENT_UPDATE_REFUSED = 13
EVENT_UPDATE_ROLLED_BACK = 14

ROLE_LOGGER = 1
ROLE_READER = 2
STATE_ACTIVE = 1
STATE_REVOKED = 2

CHAIN_HASH_LEN = 16
#: ``prev`` of a signer's first record (seq 0).
ZERO_PREV = bytes(CHAIN_HASH_LEN)
MAX_PAYLOAD_SIZE = 512
MAX_RECORD_SIZE = cose.MAX_MESSAGE_SIZE
#: Default bound for a byte or text string inside a payload.
MAX_STRING = 128
MAX_EXTENSION_STRING = 64
EXTENSION_MIN_KEY = 1000

_U32 = (1 << 32) - 1
_UID_LENGTHS = frozenset({4, 7, 10})
#: A control character (C0, DEL, C1) anywhere in a text string makes a record invalid.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_GTIN = re.compile("[0-9]{14}")
#: GS1 AI (10) batch/lot: GS1 character set 82 (GS1 General Specifications §7.11).
_LOT = re.compile(r"""[!"%&'()*+,\-./0-9:;<=>?A-Z_a-z]{1,20}""")
_CONTROL_SEARCH = _CONTROL.search
_NO_EXTENSIONS: Mapping[int, int | bytes | str] = MappingProxyType({})


# --- payload classes --------------------------------------------------------------------


def _extensions_field() -> Any:
    # Not part of the hash (a mapping is not hashable); part of equality.
    return field(default_factory=_no_extensions, hash=False)


def _no_extensions() -> Mapping[int, int | bytes | str]:
    return _NO_EXTENSIONS


@dataclass(frozen=True, kw_only=True)
class _Common:
    """Fields of every record (§2.1); ``kind`` is the class's."""

    kind: ClassVar[int]
    boot: int
    seq: int
    time: int
    tq: int
    prev: bytes

    def __post_init__(self) -> None:
        ext = getattr(self, "extensions", _NO_EXTENSIONS)
        if type(ext) is not MappingProxyType:
            object.__setattr__(self, "extensions", MappingProxyType(dict(ext)))


@dataclass(frozen=True, kw_only=True)
class Reading(_Common):
    """Kind 1: a temperature/humidity reading (§2.2). Exactly one of temp, fault."""

    kind: ClassVar[int] = KIND_READING
    temp: int | None = None  # 0.01 °C
    rh: int | None = None  # 0.01 %RH
    fault: int | None = None
    ch: int | None = None
    cal: int | None = None
    batt: int | None = None  # mV
    alarm: int | None = None
    extensions: Mapping[int, int | bytes | str] = _extensions_field()


@dataclass(frozen=True, kw_only=True)
class Scan(_Common):
    """Kind 2: a tag scan, a custody event (§2.3)."""

    kind: ClassVar[int] = KIND_SCAN
    uid: bytes
    action: int
    place: str
    sun: bytes | None = None
    item: str | None = None
    parent: bytes | None = None
    ref: str | None = None
    link: bytes | None = None  # the custody link read from the tag, 16 bytes
    batt: int | None = None
    extensions: Mapping[int, int | bytes | str] = _extensions_field()


@dataclass(frozen=True, kw_only=True)
class Status(_Common):
    """Kind 3: device status (§2.4)."""

    kind: ClassVar[int] = KIND_STATUS
    event: int
    uptime: int | None = None
    fw: str | None = None
    queued: int | None = None
    free: int | None = None
    rssi: int | None = None
    reset: int | None = None
    detail: int | None = None
    lost: int | None = None
    fwv: int | None = None
    batt: int | None = None
    extensions: Mapping[int, int | bytes | str] = _extensions_field()


@dataclass(frozen=True, kw_only=True)
class Registration(_Common):
    """Kind 4: a device registration, signed by a registry key (§2.5)."""

    kind: ClassVar[int] = KIND_REGISTRATION
    device: str
    key: bytes  # SEC1 uncompressed P-256 point, 65 bytes
    role: int
    org: str
    state: int
    cal: int | None = None
    extensions: Mapping[int, int | bytes | str] = _extensions_field()


@dataclass(frozen=True, kw_only=True)
class Binding(_Common):
    """Kind 5: which devices monitor ``target`` from ``time`` on; signed by a registry key.

    A statement: ``cseq`` is its position in the chain of bindings of
    (signer, target), ``cprev`` the chain hash of the previous one (16 zero
    bytes for cseq 0). ``devices`` absent: no device monitors the target.
    """

    kind: ClassVar[int] = KIND_BINDING
    cseq: int
    cprev: bytes
    target: str
    devices: str | None = None
    extensions: Mapping[int, int | bytes | str] = _extensions_field()

    @property
    def device_list(self) -> tuple[str, ...]:
        """The device ids of ``devices`` in their (ascending) order; () when absent."""
        return tuple(self.devices.split(" ")) if self.devices is not None else ()


@dataclass(frozen=True, kw_only=True)
class ProductProfile(_Common):
    """Kind 6: a product temperature profile for a GTIN (and lot); signed by a registry key.

    A statement, chained per (signer, gtin, lot). Temperatures in 0.01 °C,
    durations in seconds. ``lots = 1`` (only without ``lot``) says that
    lot-specific profiles exist for the GTIN; ``links = 1`` that custody scans
    of the product must carry custody links.
    """

    kind: ClassVar[int] = KIND_PROFILE
    cseq: int
    cprev: bytes
    gtin: str
    delay: int
    gap: int
    lot: str | None = None
    low: int | None = None
    high: int | None = None
    cumul: int | None = None
    mkt: int | None = None
    lots: int | None = None
    links: int | None = None
    name: str | None = None
    extensions: Mapping[int, int | bytes | str] = _extensions_field()


@dataclass(frozen=True, kw_only=True)
class ReadingBlock(_Common):
    """Kind 7: N readings of one channel at a fixed interval, one signature (§2.8).

    ``temps`` holds N big-endian int16 slots (a temperature in 0.01 °C, or
    ``0x80 c``: fault code c), ``rhs`` N big-endian uint16 slots (0.01 %RH, or
    0xFFFF: none). Reading i is taken at ``time + i * ivl``. Build the slots
    with :func:`pack_block`; read them with :meth:`readings`.
    """

    kind: ClassVar[int] = KIND_BLOCK
    ivl: int
    temps: bytes
    rhs: bytes | None = None
    ch: int | None = None
    cal: int | None = None
    batt: int | None = None
    alarm: int | None = None
    extensions: Mapping[int, int | bytes | str] = _extensions_field()

    @property
    def n(self) -> int:
        """The number of readings (1 ... 64)."""
        return len(self.temps) // 2

    @property
    def end_time(self) -> int:
        """The last reading's time: ``time + (n - 1) * ivl``."""
        return self.time + (len(self.temps) // 2 - 1) * self.ivl

    def readings(self) -> tuple[Reading, ...]:
        """The block's readings as kind-1 payloads, in order (§2.8).

        Each has the block's boot, seq, tq, prev, ch and cal, the time
        ``time + i * ivl``, and the temp or fault and rh of its slots; no batt,
        alarm or extensions (they belong to the block).
        """
        out = []
        temps, rhs = self.temps, self.rhs
        for i in range(len(temps) // 2):
            hi, lo = temps[2 * i], temps[2 * i + 1]
            temp: int | None = None
            fault: int | None = None
            if hi == _SLOT_FAULT:
                fault = lo
            else:
                temp = int.from_bytes(temps[2 * i : 2 * i + 2], "big", signed=True)
            rh: int | None = None
            if rhs is not None:
                h = (rhs[2 * i] << 8) | rhs[2 * i + 1]
                rh = None if h == _RH_NONE else h
            r = object.__new__(Reading)
            r.__dict__.update(_DEFAULTS[KIND_READING])
            r.__dict__.update(
                boot=self.boot,
                seq=self.seq,
                time=self.time + i * self.ivl,
                tq=self.tq,
                prev=self.prev,
                temp=temp,
                rh=rh,
                fault=fault,
                ch=self.ch,
                cal=self.cal,
            )
            out.append(r)
        return tuple(out)


def pack_block(
    temps: Sequence[int | None],
    faults: Sequence[int | None] | None = None,
    rhs: Sequence[int | None] | None = None,
) -> tuple[bytes, bytes | None]:
    """The ``temps`` and ``rhs`` fields of a block for N readings (§2.8).

    ``temps[i]`` is reading i's temperature (0.01 °C) or None when
    ``faults[i]`` holds its fault code; ``rhs[i]`` its humidity or None.
    Returns ``rhs`` None when no reading has a humidity (the field is then
    omitted). Raises ``ValueError`` for a value outside its bounds (§2.2), which
    no slot can hold; :func:`encode_payload` checks the rest (N, the end time).
    """
    n = len(temps)
    faults = faults if faults is not None else [None] * n
    if len(faults) != n or (rhs is not None and len(rhs) != n):
        raise ValueError("temps, faults and rhs must have one entry per reading")
    t = bytearray()
    for temp, fault in zip(temps, faults, strict=True):
        if (temp is None) == (fault is None):
            raise ValueError("each reading has exactly one of a temp and a fault")
        if fault is not None:
            if not 1 <= fault <= 255:
                raise ValueError(f"fault code {fault} is outside 1..255")
            t += bytes((_SLOT_FAULT, fault))
        else:
            assert temp is not None
            if not -10000 <= temp <= 15000:
                raise ValueError(f"temperature {temp} is outside -10000..15000 (0.01 °C)")
            t += temp.to_bytes(2, "big", signed=True)
    if rhs is None or all(h is None for h in rhs):
        return bytes(t), None
    r = bytearray()
    for h, fault in zip(rhs, faults, strict=True):
        if h is not None and (not 0 <= h <= 10000 or fault is not None):
            raise ValueError(f"humidity {h} is outside 0..10000 or beside a fault")
        r += (_RH_NONE if h is None else h).to_bytes(2, "big")
    return bytes(t), bytes(r)


Payload = Reading | Scan | Status | Registration | Binding | ProductProfile | ReadingBlock
#: The statement kinds (5 and 6).
Statement = Binding | ProductProfile
#: ("binding", signer, target) or ("profile", signer, gtin, lot or None).
StatementKey = tuple[str, str, str] | tuple[str, str, str, str | None]


# --- field tables (the spec's tables as data) -------------------------------------------

# Field checks: (name, check, lo, hi). For UINT/INT lo..hi is the value range,
# for BSTR/TSTR the length range in bytes; BSTR_SET takes a set of lengths.
_UINT, _INT, _BSTR, _BSTR_SET, _TSTR = range(5)
_Field = tuple[str, int, Any, int]

_COMMON_FIELDS: dict[int, _Field] = {
    2: ("boot", _UINT, 0, _U32),
    3: ("seq", _UINT, 0, _U32),
    4: ("time", _UINT, 0, _U32),
    5: ("tq", _UINT, 0, 3),
    6: ("prev", _BSTR, CHAIN_HASH_LEN, CHAIN_HASH_LEN),
}
_BATT: _Field = ("batt", _UINT, 0, 20000)
# Statement fields (kinds 5 and 6 only): position in the statement chain, link.
_STATEMENT_FIELDS: dict[int, _Field] = {
    7: ("cseq", _UINT, 0, _U32),
    8: ("cprev", _BSTR, CHAIN_HASH_LEN, CHAIN_HASH_LEN),
}

_KIND_FIELDS: dict[int, dict[int, _Field]] = {
    KIND_READING: {
        10: ("temp", _INT, -10000, 15000),
        11: ("rh", _UINT, 0, 10000),
        12: ("fault", _UINT, 1, 255),
        13: ("ch", _UINT, 0, 15),
        14: ("cal", _UINT, 0, _U32),
        15: _BATT,
        16: ("alarm", _UINT, 0, 7),
    },
    KIND_SCAN: {
        15: _BATT,
        20: ("uid", _BSTR_SET, _UID_LENGTHS, 0),
        21: ("action", _UINT, 1, 7),
        22: ("place", _TSTR, 1, 64),
        23: ("sun", _BSTR, 24, 24),
        24: ("item", _TSTR, 1, 128),
        25: ("parent", _BSTR_SET, _UID_LENGTHS, 0),
        26: ("ref", _TSTR, 1, 64),
        27: ("link", _BSTR, CHAIN_HASH_LEN, CHAIN_HASH_LEN),
    },
    KIND_STATUS: {
        15: _BATT,
        30: ("event", _UINT, 1, 255),
        31: ("uptime", _UINT, 0, _U32),
        32: ("fw", _TSTR, 1, 32),
        33: ("queued", _UINT, 0, _U32),
        34: ("free", _UINT, 0, _U32),
        35: ("rssi", _INT, -128, 0),
        36: ("reset", _UINT, 0, 255),
        37: ("detail", _INT, -(1 << 31), _U32),
        38: ("lost", _UINT, 0, _U32),
        39: ("fwv", _UINT, 0, _U32),
    },
    KIND_REGISTRATION: {
        14: ("cal", _UINT, 0, _U32),
        40: ("device", _TSTR, 1, 32),
        41: ("key", _BSTR, 65, 65),
        42: ("role", _UINT, 1, 2),
        43: ("org", _TSTR, 1, 64),
        45: ("state", _UINT, 1, 2),
    },
    KIND_BINDING: {
        **_STATEMENT_FIELDS,
        50: ("target", _TSTR, 1, 64),
        51: ("devices", _TSTR, 1, 128),
    },
    KIND_PROFILE: {
        **_STATEMENT_FIELDS,
        60: ("gtin", _TSTR, 14, 14),
        61: ("lot", _TSTR, 1, 20),
        62: ("low", _INT, -10000, 15000),
        63: ("high", _INT, -10000, 15000),
        64: ("delay", _UINT, 0, _U32),
        65: ("cumul", _UINT, 1, _U32),
        66: ("mkt", _INT, -10000, 15000),
        67: ("gap", _UINT, 60, 86400),
        68: ("lots", _UINT, 1, 1),
        69: ("links", _UINT, 1, 1),
        70: ("name", _TSTR, 1, 32),
    },
    KIND_BLOCK: {
        13: ("ch", _UINT, 0, 15),
        14: ("cal", _UINT, 0, _U32),
        15: _BATT,
        16: ("alarm", _UINT, 0, 7),
        17: ("ivl", _UINT, 1, BLOCK_MAX_INTERVAL),
        18: ("temps", _BSTR, 2, 2 * BLOCK_MAX),
        19: ("rhs", _BSTR, 2, 2 * BLOCK_MAX),
    },
}
_SPECS: dict[int, dict[int, _Field]] = {
    kind: {**_COMMON_FIELDS, **table} for kind, table in _KIND_FIELDS.items()
}
# The same as lists indexed by kind, then key (a list index is cheaper than
# dict.get); used by the fast path. Index 0 (no such kind) is empty.
_SPEC_LISTS: list[list[_Field | None]] = [[]] + [
    [_SPECS[kind].get(key) for key in range(max(_SPECS[kind]) + 1)]
    for kind in range(KIND_READING, KIND_BLOCK + 1)
]
_CLASSES: dict[int, type[Payload]] = {
    KIND_READING: Reading,
    KIND_SCAN: Scan,
    KIND_STATUS: Status,
    KIND_REGISTRATION: Registration,
    KIND_BINDING: Binding,
    KIND_PROFILE: ProductProfile,
    KIND_BLOCK: ReadingBlock,
}
_KIND_NAMES = {
    KIND_READING: "reading",
    KIND_SCAN: "scan",
    KIND_STATUS: "status",
    KIND_REGISTRATION: "registration",
    KIND_BINDING: "binding",
    KIND_PROFILE: "profile",
    KIND_BLOCK: "reading block",
}
_REQUIRED = {
    KIND_READING: (),
    KIND_SCAN: ("uid", "action", "place"),
    KIND_STATUS: ("event",),
    KIND_REGISTRATION: ("device", "key", "role", "org", "state"),
    KIND_BINDING: ("cseq", "cprev", "target"),
    KIND_PROFILE: ("cseq", "cprev", "gtin", "delay", "gap"),
    KIND_BLOCK: ("ivl", "temps"),
}
_COMMON_REQUIRED = ("boot", "seq", "time", "tq", "prev")
# Every key name in any kind, to say "key 10 (temp) is not a field of a scan".
_ALL_NAMES = {key: f[0] for table in _KIND_FIELDS.values() for key, f in table.items()}
_KEYS_BY_NAME = {
    kind: {f[0]: key for key, f in spec.items()} | {"kind": 1} for kind, spec in _SPECS.items()
}
_TYPE_NAMES = {_UINT: "uint", _INT: "int", _BSTR: "bstr", _BSTR_SET: "bstr", _TSTR: "tstr"}


_VALUE_TYPE_NAMES: dict[type, str] = {bytes: "bstr", str: "tstr", list: "array", dict: "map"}


def _type_name(value: object) -> str:
    if isinstance(value, int):
        return "uint" if value >= 0 else "negative int"
    return _VALUE_TYPE_NAMES.get(type(value), type(value).__name__)


# --- decoding ------------------------------------------------------------------------------


def decode_payload(data: bytes) -> Payload:
    """Decode and check a record payload (§2) from its exact bytes; raise on any breach.

    A fused fast path handles well-formed payloads; anything it does not
    accept goes through the strict path (the generic strict CBOR decoder,
    then the field tables), which raises the precise error.
    """
    if type(data) is bytes:
        fast = _decode_payload_fast(data)
        if fast is not None:
            return fast
    return _decode_payload_strict(data)


def _decode_payload_strict(data: bytes) -> Payload:
    """The reference path of :func:`decode_payload`: strict CBOR decode, then field checks."""
    m = cbor.decode(data, max_size=MAX_PAYLOAD_SIZE, max_depth=1)
    if type(m) is not dict:
        raise FieldTypeError("payload must be a map", expected="map", found=_type_name(m))
    kind = m.get(1)
    if kind is None:
        raise MissingFieldError("payload has no kind (key 1)", expected="kind", found="absent")
    spec = _SPECS.get(kind)
    if spec is None:
        if type(kind) is not int or kind < 0:
            raise FieldTypeError("kind must be a uint", expected="uint", found=_type_name(kind))
        raise FieldRangeError(
            "unknown record kind", expected=f"{KIND_READING}..{KIND_BLOCK}", found=kind
        )
    values: dict[str, Any] = {}
    extensions: dict[int, int | bytes | str] | None = None
    for key, value in m.items():
        if key == 1:
            continue
        f = spec.get(key)
        if f is None:
            if key >= EXTENSION_MIN_KEY:
                if extensions is None:
                    extensions = {}
                extensions[key] = _check_extension(key, value)
                continue
            raise _unknown_key(kind, key)
        name, check, lo, hi = f
        if check <= _INT:  # UINT or INT
            if type(value) is not int or (check == _UINT and value < 0):
                raise FieldTypeError(
                    f"{name} (key {key}) has the wrong type",
                    expected=_TYPE_NAMES[check],
                    found=_type_name(value),
                )
            if not lo <= value <= hi:
                raise FieldRangeError(
                    f"{name} (key {key}) out of range", expected=f"{lo}..{hi}", found=value
                )
        elif check == _TSTR:
            if type(value) is not str:
                raise FieldTypeError(
                    f"{name} (key {key}) has the wrong type",
                    expected="tstr",
                    found=_type_name(value),
                )
            size = len(value) if value.isascii() else len(value.encode("utf-8"))
            if not lo <= size <= hi:
                raise FieldRangeError(
                    f"{name} (key {key}) has the wrong length",
                    expected=f"{lo}..{hi} bytes",
                    found=f"{size} bytes",
                )
            _check_text(value, f"{name} (key {key})")
        else:  # BSTR, BSTR_SET
            if type(value) is not bytes:
                raise FieldTypeError(
                    f"{name} (key {key}) has the wrong type",
                    expected="bstr",
                    found=_type_name(value),
                )
            size = len(value)
            if (check == _BSTR and not lo <= size <= hi) or (check == _BSTR_SET and size not in lo):
                want = f"{lo}..{hi}" if check == _BSTR else " or ".join(map(str, sorted(lo)))
                raise FieldRangeError(
                    f"{name} (key {key}) has the wrong length",
                    expected=f"{want} bytes",
                    found=f"{size} bytes",
                )
        values[name] = value
    return _finish(kind, values, extensions)


def _finish(
    kind: int, values: dict[str, Any], extensions: dict[int, int | bytes | str] | None
) -> Payload:
    """Required fields, the kind's cross-field rules, then the instance."""
    if not _REQUIRED_SETS[kind] <= values.keys():
        for name in (*_COMMON_REQUIRED, *_REQUIRED[kind]):
            if name not in values:
                raise _missing(kind, name)
    _KIND_RULES[kind](values)
    if extensions is not None:
        values["extensions"] = MappingProxyType(extensions)
    # Build the instance without __init__: the values are checked and are
    # exactly the class's fields. A frozen dataclass __init__ costs about as
    # much as the whole CBOR decode (object.__setattr__ per field), and the
    # gateway decodes ~20k payloads/s.
    obj = object.__new__(_CLASSES[kind])
    attrs = obj.__dict__
    attrs.update(_DEFAULTS[kind])
    attrs.update(values)
    return obj


def _decode_payload_fast(data: bytes) -> Payload | None:
    """decode_payload for the common case, fused: CBOR and field checks in one pass.

    Handles maps of 6-23 entries whose keys are below 256 (no extensions),
    with values in the spec's types and bounds. Anything else, including
    every error, returns None so that :func:`decode_payload` takes the
    strict path and says precisely what is wrong. It accepts only what the
    strict path accepts, with the same result (tests check this on mutated
    and generated payloads). Never raises.

    Every payload starts with the same six keys in the same order (kind,
    boot, seq, time, tq, prev), so those are read in a straight line (keep it
    in step with ``_COMMON_FIELDS``); the kind's own fields go through the
    table-driven loop.
    """
    try:
        n = len(data)
        ib = data[0]
        if n > MAX_PAYLOAD_SIZE or not 0xA6 <= ib <= 0xB7 or data[1] != 1:
            return None
        kind = data[2]
        if not KIND_READING <= kind <= KIND_BLOCK:
            return None
        spec = _SPEC_LISTS[kind]
        # Fill the instance's attribute dict directly (see _finish() on why
        # no __init__): every field starts as absent (None).
        obj = object.__new__(_CLASSES[kind])
        values: dict[str, Any] = obj.__dict__
        values.update(_DEFAULTS[kind])
        pos = 3
        # boot, seq, time: uints below 2^32, i.e. shortest heads of at most 4 bytes.
        for key, name in _U32_PROLOGUE:
            vb = data[pos + 1]
            if data[pos] != key:
                return None
            if vb < 24:
                pos += 2
                values[name] = vb
            elif vb == 0x1A:
                v = int.from_bytes(data[pos + 2 : pos + 6], "big")
                pos += 6
                if v < 0x10000:
                    return None
                values[name] = v
            elif vb == 0x19:
                v = (data[pos + 2] << 8) | data[pos + 3]
                pos += 4
                if v < 0x100:
                    return None
                values[name] = v
            elif vb == 0x18:
                v = data[pos + 2]
                pos += 3
                if v < 24:
                    return None
                values[name] = v
            else:
                return None
        # tq (key 5): 0..3; prev (key 6): bstr of 16 bytes.
        if data[pos] != 5 or data[pos + 1] > 3 or data[pos + 2] != 6 or data[pos + 3] != 0x50:
            return None
        values["tq"] = data[pos + 1]
        values["prev"] = data[pos + 4 : pos + 20]
        pos += 20
        prev = 6
        for _ in range(ib - 0xA6):
            key = data[pos]
            if key < 24:
                pos += 1
            elif key == 24:
                key = data[pos + 1]
                pos += 2
                if key < 24:
                    return None
            else:
                return None
            if key <= prev:
                return None
            prev = key
            f = spec[key]
            if f is None:
                return None
            name, check, lo, hi = f
            vb = data[pos]
            if check <= _INT:
                if vb < 24:
                    v = vb
                    pos += 1
                elif vb == 0x19 or vb == 0x39:
                    v = (data[pos + 1] << 8) | data[pos + 2]
                    pos += 3
                    if v < 0x100:
                        return None
                    if vb == 0x39:
                        v = -1 - v
                elif vb == 0x18:
                    v = data[pos + 1]
                    pos += 2
                    if v < 24:
                        return None
                elif 0x20 <= vb < 0x38:
                    v = 0x1F - vb
                    pos += 1
                elif vb == 0x1A:
                    v = int.from_bytes(data[pos + 1 : pos + 5], "big")
                    pos += 5
                    if v < 0x10000:
                        return None
                elif vb == 0x38:
                    v = data[pos + 1]
                    pos += 2
                    if v < 24:
                        return None
                    v = -1 - v
                else:
                    return None
                if not lo <= v <= hi:
                    return None
                values[name] = v
            elif check == _TSTR:
                if 0x60 <= vb < 0x78:
                    size = vb - 0x60
                    pos += 1
                elif vb == 0x78:
                    size = data[pos + 1]
                    pos += 2
                    if size < 24:
                        return None
                else:
                    return None
                end = pos + size
                if not lo <= size <= hi or end > n:
                    return None
                text = data[pos:end].decode("utf-8")
                if _CONTROL_SEARCH(text) is not None:
                    return None
                values[name] = text
                pos = end
            else:
                if 0x40 <= vb < 0x58:
                    size = vb - 0x40
                    pos += 1
                elif vb == 0x58:
                    size = data[pos + 1]
                    pos += 2
                    if size < 24:
                        return None
                else:
                    return None
                end = pos + size
                if end > n or (size not in lo if check == _BSTR_SET else not lo <= size <= hi):
                    return None
                values[name] = data[pos:end]
                pos = end
        if pos != n:
            return None
        if kind == KIND_READING:  # _reading_rules, inlined for the most common kind
            fault = values["fault"]
            if (values["temp"] is None) == (fault is None) or (
                fault is not None and values["rh"] is not None
            ):
                return None
        else:
            present = {k: v for k, v in values.items() if v is not None}
            if not _REQUIRED_SETS[kind] <= present.keys():
                return None
            _KIND_RULES[kind](present)
    except (IndexError, UnicodeDecodeError, VerificationError):
        return None
    return obj


_U32_PROLOGUE = ((2, "boot"), (3, "seq"), (4, "time"))


def _wrong_type(name: str, key: int, want: str, value: object) -> FieldTypeError:
    return FieldTypeError(
        f"{name} (key {key}) has the wrong type", expected=want, found=_type_name(value)
    )


def _unknown_key(kind: int, key: int) -> Exception:
    if key < 0:
        return FieldTypeError(
            f"payload key {key} is negative", expected="unsigned integer keys", found=key
        )
    other = _ALL_NAMES.get(key)
    where = f" ({other}) is not a field of a {_KIND_NAMES[kind]}" if other else ""
    return UnknownFieldError(
        f"unknown critical field {key}{where}",
        expected=f"keys of kind {kind} ({_KIND_NAMES[kind]}) or >= {EXTENSION_MIN_KEY}",
        found=key,
    )


def _missing(kind: int, name: str) -> MissingFieldError:
    return MissingFieldError(
        f"{_KIND_NAMES[kind]} lacks required field {name} (key {_KEYS_BY_NAME[kind][name]})",
        expected=name,
        found="absent",
    )


def _check_text(value: str, what: str) -> None:
    """A record's text strings carry no control character (C0, DEL, C1)."""
    control = _CONTROL_SEARCH(value)
    if control is not None:
        raise FieldRangeError(
            f"{what} contains a control character",
            expected="no U+0000-U+001F, U+007F-U+009F",
            found=f"U+{ord(control.group()):04X} at character {control.start()}",
        )


def _check_extension(key: int, value: object) -> int | bytes | str:
    if isinstance(value, int):
        return value
    if isinstance(value, (bytes, str)):
        size = len(value.encode("utf-8")) if isinstance(value, str) else len(value)
        if size > MAX_EXTENSION_STRING:
            raise FieldRangeError(
                f"extension {key} too long",
                expected=f"<= {MAX_EXTENSION_STRING} bytes",
                found=f"{size} bytes",
            )
        if isinstance(value, str):
            _check_text(value, f"extension {key}")
        return value
    raise FieldTypeError(
        f"extension {key} has the wrong type",
        expected="int, bstr or tstr",
        found=_type_name(value),
    )


def _reading_rules(v: dict[str, Any]) -> None:
    has_temp = "temp" in v
    has_fault = "fault" in v
    if has_temp and has_fault:
        raise FieldConflictError(
            "a reading carries either temp or fault, not both",
            expected="temp xor fault",
            found="temp and fault",
        )
    if not has_temp and not has_fault:
        raise MissingFieldError(
            "a reading needs temp (key 10) or fault (key 12)",
            expected="temp xor fault",
            found="neither",
        )
    if has_fault and "rh" in v:
        raise FieldConflictError(
            "rh may accompany temp, never fault", expected="no rh with fault", found="rh and fault"
        )


def _scan_rules(v: dict[str, Any]) -> None:
    if v["action"] == ACTION_COMMISSION:
        if "item" not in v:
            raise MissingFieldError(
                "a commission scan needs item (key 24)", expected="item", found="absent"
            )
        if "link" in v:
            raise FieldConflictError(
                "a commission scan carries no custody link (key 27): the tag has none yet",
                expected="no link with action 1",
                found="link",
            )


def _status_rules(v: dict[str, Any]) -> None:
    lost = v.get("lost")
    if lost is None:
        return  # event 11 without lost: dropped readings that were never numbered
    event = v["event"]
    if event != EVENT_RECORDS_DROPPED:
        raise FieldConflictError(
            f"lost (key 38) belongs to event {EVENT_RECORDS_DROPPED} only",
            expected=f"event {EVENT_RECORDS_DROPPED}",
            found=f"event {event}",
        )
    detail = v.get("detail")
    if detail is None:
        raise MissingFieldError(
            "a declaration of lost records needs detail (key 37), the count",
            expected="detail",
            found="absent",
        )
    if detail < 1:
        raise FieldRangeError(
            "detail (key 37) of a declaration of lost records is a count of at least 1",
            expected=">= 1",
            found=detail,
        )
    last = lost + detail - 1
    seq = v["seq"]
    if last >= seq:
        raise FieldRangeError(
            f"declares seqs {lost}..{last} lost, but its own seq is {seq}: "
            "a device can only lose seqs it has already numbered",
            expected=f"lost + detail - 1 < {seq}",
            found=last,
        )


def _registry_rules(v: dict[str, Any], kind: int) -> None:
    """What every record signed by a registry key obeys: boot 0."""
    if v["boot"] != 0:
        raise FieldRangeError(
            f"a {_KIND_NAMES[kind]}'s boot must be 0 (registries do not reboot)",
            expected=0,
            found=v["boot"],
        )


def _statement_rules(v: dict[str, Any], kind: int) -> None:
    """Kinds 5 and 6: boot 0, a set clock (the time is the effective time), chain start."""
    _registry_rules(v, kind)
    if v["tq"] < TQ_HOLDOVER:
        raise FieldRangeError(
            f"a {_KIND_NAMES[kind]}'s time is its effective time: tq (key 5) must be >= 1",
            expected=">= 1",
            found=v["tq"],
        )
    if v["cseq"] == 0 and v["cprev"] != ZERO_PREV:
        raise FieldRangeError(
            "cprev (key 8) of the first statement of a chain (cseq 0) must be 16 zero bytes",
            expected=ZERO_PREV.hex(),
            found=v["cprev"].hex(),
        )


def _registration_rules(v: dict[str, Any]) -> None:
    _registry_rules(v, KIND_REGISTRATION)
    device = v["device"]
    if cose.ID_PATTERN.fullmatch(device) is None:
        raise FieldRangeError(
            "device (key 40) is not a valid device id (§1)",
            expected="1-32 bytes of [a-z0-9._-], starting with a letter or digit",
            found=device,
        )
    key = v["key"]
    if key[0] != 0x04 or not _on_p256(key):
        raise FieldRangeError(
            "key (key 41) is not an uncompressed SEC1 P-256 point",
            expected="0x04 ‖ X ‖ Y on P-256",
            found=key[:1].hex() + "…",
        )


def _binding_rules(v: dict[str, Any]) -> None:
    _statement_rules(v, KIND_BINDING)
    devices = v.get("devices")
    if devices is None:
        return
    ids = devices.split(" ")
    for i, device in enumerate(ids):
        if cose.ID_PATTERN.fullmatch(device) is None:
            raise FieldRangeError(
                f"devices (key 51): entry {i} is not a valid device id (§1)",
                expected="device ids separated by single spaces",
                found=device,
            )
        if i and ids[i - 1] >= device:
            raise FieldRangeError(
                "devices (key 51) must be strictly ascending (so each id once)",
                expected=f"an id after {ids[i - 1]!r}",
                found=device,
            )


def gtin_check_digit(digits13: str) -> int:
    """The GS1 mod-10 check digit of the first 13 digits of a GTIN-14.

    Weights 3 and 1 alternate from the rightmost data digit (weight 3)
    leftwards (GS1 General Specifications §7.9.1).
    """
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits13)))
    return (10 - total % 10) % 10


def _profile_rules(v: dict[str, Any]) -> None:
    _statement_rules(v, KIND_PROFILE)
    gtin = v["gtin"]
    if _GTIN.fullmatch(gtin) is None:
        raise FieldRangeError(
            "gtin (key 60) must be 14 ASCII digits", expected="14 digits", found=gtin
        )
    check = gtin_check_digit(gtin[:13])
    if int(gtin[13]) != check:
        raise FieldRangeError(
            "gtin (key 60) has a wrong GS1 check digit", expected=check, found=int(gtin[13])
        )
    lot = v.get("lot")
    if lot is not None and _LOT.fullmatch(lot) is None:
        raise FieldRangeError(
            "lot (key 61) holds a character outside GS1 AI (10)'s set (CSET 82)",
            expected="""[!"%&'()*+,-./0-9:;<=>?A-Z_a-z]""",
            found=lot,
        )
    low, high = v.get("low"), v.get("high")
    if low is None and high is None:
        raise MissingFieldError(
            "a profile needs low (key 62), high (key 63) or both",
            expected="low or high",
            found="neither",
        )
    if low is not None and high is not None and low > high:
        raise FieldRangeError(
            "a profile's low (key 62) is above its high (key 63)",
            expected=f"low <= {high}",
            found=low,
        )
    if lot is not None and "lots" in v:
        raise FieldConflictError(
            "lots (key 68) belongs to a profile without lot (key 61)",
            expected="lots or lot, not both",
            found="lot and lots",
        )


def _block_rules(v: dict[str, Any]) -> None:
    temps = v["temps"]
    size = len(temps)
    if size % 2:
        raise FieldRangeError(
            "temps (key 18) holds 2-byte slots: its length must be even",
            expected="an even length, 2..128 bytes",
            found=f"{size} bytes",
        )
    n = size // 2
    end = v["time"] + (n - 1) * v["ivl"]
    if end > _U32:
        raise FieldRangeError(
            "a block's last reading time (time + (N - 1) * ivl) must be below 2^32",
            expected=f"<= {_U32}",
            found=end,
        )
    for i in range(n):
        hi, lo = temps[2 * i], temps[2 * i + 1]
        if hi == _SLOT_FAULT:
            if lo == 0:
                raise FieldRangeError(
                    f"temps (key 18) slot {i} is 0x8000: neither a temperature nor a fault",
                    expected="-10000..15000 or 0x80 followed by a fault code 1..255",
                    found="0x8000",
                )
            continue
        t = int.from_bytes(temps[2 * i : 2 * i + 2], "big", signed=True)
        if not -10000 <= t <= 15000:
            raise FieldRangeError(
                f"temps (key 18) slot {i} is out of range",
                expected="-10000..15000 or 0x80 followed by a fault code 1..255",
                found=t,
            )
    rhs = v.get("rhs")
    if rhs is None:
        return
    if len(rhs) != size:
        raise FieldRangeError(
            "rhs (key 19) must have one slot per reading: the length of temps (key 18)",
            expected=f"{size} bytes",
            found=f"{len(rhs)} bytes",
        )
    some = False
    for i in range(n):
        h = (rhs[2 * i] << 8) | rhs[2 * i + 1]
        if h == _RH_NONE:
            continue
        if h > 10000:
            raise FieldRangeError(
                f"rhs (key 19) slot {i} is out of range",
                expected="0..10000 or 0xFFFF (no rh)",
                found=h,
            )
        if temps[2 * i] == _SLOT_FAULT:
            raise FieldConflictError(
                f"rhs (key 19) slot {i} has a humidity for a faulted reading",
                expected="0xFFFF (rh never accompanies a fault)",
                found=h,
            )
        some = True
    if not some:
        raise FieldRangeError(
            "rhs (key 19) has no humidity in any slot: omit it (one encoding per block)",
            expected="at least one slot 0..10000",
            found="every slot 0xFFFF",
        )


def _on_p256(sec1: bytes) -> bool:
    """Whether 04 ‖ X ‖ Y is a point of P-256: x, y < p and y² = x³ − 3x + b."""
    x = int.from_bytes(sec1[1:33], "big")
    y = int.from_bytes(sec1[33:65], "big")
    return x < _P and y < _P and (y * y - (x * x * x - 3 * x + _B)) % _P == 0


# Every field's value when absent, per kind (see decode_payload).
_DEFAULTS: dict[int, dict[str, Any]] = {
    kind: {f.name: None for f in fields(cls) if f.name != "extensions"}
    | {"extensions": _NO_EXTENSIONS}
    for kind, cls in _CLASSES.items()
}

_REQUIRED_SETS = {kind: frozenset(_COMMON_REQUIRED + _REQUIRED[kind]) for kind in _REQUIRED}

_KIND_RULES = {
    KIND_READING: _reading_rules,
    KIND_SCAN: _scan_rules,
    KIND_STATUS: _status_rules,
    KIND_REGISTRATION: _registration_rules,
    KIND_BINDING: _binding_rules,
    KIND_PROFILE: _profile_rules,
    KIND_BLOCK: _block_rules,
}


# --- encoding ------------------------------------------------------------------------------


def encode_payload(p: Payload) -> bytes:
    """The deterministic CBOR bytes of ``p`` (§2); refuses what decode_payload refuses."""
    if not isinstance(
        p, (Reading, Scan, Status, Registration, Binding, ProductProfile, ReadingBlock)
    ):
        raise TypeError(f"want a record payload (Reading ... ReadingBlock), got {type(p).__name__}")
    keys = _KEYS_BY_NAME[p.kind]
    m: dict[int, object] = {1: p.kind}
    for f in fields(p):
        if f.name == "extensions":
            continue
        value = getattr(p, f.name)
        if value is not None:
            m[keys[f.name]] = value
    for key, value in p.extensions.items():
        if type(key) is not int or key < EXTENSION_MIN_KEY:
            raise UnknownFieldError(
                "extension keys start at 1000",
                expected=f">= {EXTENSION_MIN_KEY}",
                found=key,
            )
        m[key] = value
    data = cbor.encode(m)
    back = decode_payload(data)  # the encoder refuses what a verifier would refuse
    if back != p:
        raise FieldTypeError(
            "payload does not survive a round trip (a field has a non-CBOR type?)",
            expected=repr(p),
            found=repr(back),
        )
    return data


# --- the chain (§4) and signed records (§3) ---------------------------------------------------


def chain_hash(record_bytes: bytes) -> bytes:
    """``prev`` of the next record: SHA-256 of the whole COSE_Sign1, first 16 bytes (§4)."""
    return hashlib.sha256(record_bytes).digest()[:CHAIN_HASH_LEN]


def statement_chain_key(signer: str, payload: Payload) -> StatementKey:
    """The statement chain a binding or profile belongs to.

    ``("binding", signer, target)`` for a :class:`Binding`,
    ``("profile", signer, gtin, lot)`` for a :class:`ProductProfile` (``lot``
    None for a GTIN-wide profile). Statements of one chain are numbered by
    ``cseq`` and linked by ``cprev`` = :func:`chain_hash` of the previous one.
    Raises ``TypeError`` for the other kinds, which are not statements.
    """
    if isinstance(payload, Binding):
        return ("binding", signer, payload.target)
    if isinstance(payload, ProductProfile):
        return ("profile", signer, payload.gtin, payload.lot)
    raise TypeError(f"a {type(payload).__name__} is not a statement (kinds 5 and 6)")


@dataclass(frozen=True, slots=True)
class Record:
    """A record whose envelope and payload passed every check of §2-§3.

    From :func:`verify_record` the signature verified too; from
    :func:`open_record` it was not checked.
    """

    raw: bytes
    signer: str
    payload: Payload


def open_record(data: bytes) -> Record:
    """Check a record's envelope (§3) and payload (§2), NOT its signature.

    Use it to learn the signer (kid) and the payload before looking up the
    key; then call :func:`verify_record` (or check the signature some other
    way) before trusting anything in it.
    """
    msg = cose.parse_sign1(data)
    return Record(msg.raw, msg.kid, decode_payload(msg.payload))


def verify_record(data: bytes, public_key: ec.EllipticCurvePublicKey) -> Record:
    """Check a record's envelope, payload and ES256 signature (§2-§3); return it.

    Shape before crypto: the envelope and the payload are checked first, the
    signature (r and s in range, low-S, then ECDSA P-256/SHA-256 over the
    Sig_structure of the received bytes) last.

    This is the gateway's hot path (~20k records/s): a well-formed record is
    split by offsets and its Sig_structure sliced from the received bytes;
    anything else goes through :func:`protocol.cose.parse_sign1` for the
    precise error. Both paths make the same checks.
    """
    split = cose._split_sign1(data) if type(data) is bytes else None
    if split is None:
        msg = cose.parse_sign1(data)
        payload = decode_payload(msg.payload)
        cose.verify_sign1(msg, public_key)
        return Record(msg.raw, msg.kid, payload)
    kid, _, pend, y0, yend = split
    body = data[y0:yend]
    payload = _decode_payload_fast(body) or decode_payload(body)
    cose._verify_split(data, kid, pend, yend, public_key)
    return Record(data, kid, payload)


def make_record(
    payload: Payload,
    signer: str,
    private_key: ec.EllipticCurvePrivateKey,
    *,
    deterministic: bool = False,
) -> bytes:
    """Encode ``payload`` and sign it as ``signer`` (the kid); return the record bytes.

    ``deterministic=True`` signs like a device (RFC 6979 nonce), so the same
    inputs give the same bytes; otherwise pyca's ECDSA is used. Both are low-S.
    """
    body = encode_payload(payload)
    if deterministic:
        return cose.sign1_deterministic(body, signer, private_key)
    return cose.sign1(body, signer, private_key)
