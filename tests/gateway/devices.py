"""Simulated devices for the gateway tests, built on the firmware's own record code.

A :class:`SimDevice` makes its records with ``firmware/lib/ct_record.py``
(deterministic CBOR payload, COSE_Sign1 envelope, chain link) and checks the
gateway's acks with the firmware's ``verify_mac0``, exactly as the board
does; only the P-256 signature itself comes from pyca (the firmware's pure
Python signer takes tens of milliseconds per record, the tests need
thousands). It talks MQTT through paho like a device's client would: a last
will of ``offline``, ``online`` on connect, QoS 1 publishes, the retained ack
subscription, and it deletes only what an ack covers (and resends the rest).

If the firmware's record module cannot be imported, the protocol package's
``make_record`` / ``verify_mac0`` stand in (same bytes: both are deterministic
encoders of the same spec).
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature
from paho.mqtt.enums import CallbackAPIVersion

from protocol.keys import generate_p256, p256_public_to_sec1
from protocol.rfc6979 import N

FIRMWARE_LIB = Path(__file__).resolve().parents[2] / "firmware" / "lib"


def _firmware_record() -> Any:
    if str(FIRMWARE_LIB) not in sys.path:
        sys.path.append(str(FIRMWARE_LIB))
    try:
        import ct_record  # type: ignore[import-not-found]
    except ImportError:
        return None
    if not all(hasattr(ct_record, n) for n in ("payload", "sign1", "chain_link", "verify_mac0")):
        return None
    return ct_record


CT_RECORD = _firmware_record()


class PycaSigner:
    """``sign_digest(h) -> r || s`` (low-S) as the firmware's signer interface, with pyca."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self.key = key

    def sign_digest(self, h: bytes) -> bytes:
        r, s = decode_dss_signature(self.key.sign(h, ec.ECDSA(Prehashed(hashes.SHA256()))))
        s = min(s, N - s)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def make_reading(
    kid: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    boot: int,
    seq: int,
    time_: int,
    tq: int,
    prev: bytes,
    temp: int,
) -> bytes:
    """A signed reading, made by the firmware's record code when available."""
    if CT_RECORD is not None:
        fields = {1: 1, 2: boot, 3: seq, 4: time_, 5: tq, 6: prev, 10: temp}
        return bytes(CT_RECORD.sign1(CT_RECORD.payload(fields), kid.encode(), PycaSigner(key)))
    from protocol.record import Reading, make_record

    return make_record(
        Reading(boot=boot, seq=seq, time=time_, tq=tq, prev=prev, temp=temp), kid, key
    )


def make_status(
    kid: str,
    key: ec.EllipticCurvePrivateKey,
    *,
    boot: int,
    seq: int,
    time_: int,
    tq: int,
    prev: bytes,
    event: int,
    detail: int | None = None,
    lost: int | None = None,
) -> bytes:
    """A signed status record (§2.4), made by the firmware's record code when available.

    A declaration the record rules refuse (``lost`` with another event than
    11, ``detail`` below 1, seqs at or above its own) is encoded and signed
    here directly, as a faulty or hostile device could."""
    if lost is not None and (event != 11 or (detail or 0) < 1 or lost + (detail or 0) - 1 >= seq):
        from protocol import cbor
        from protocol.cose import sign1

        fields = {1: 3, 2: boot, 3: seq, 4: time_, 5: tq, 6: prev, 30: event, 38: lost}
        if detail is not None:
            fields[37] = detail
        return sign1(cbor.encode(dict(sorted(fields.items()))), kid, key)
    if CT_RECORD is not None:
        fields = {1: 3, 2: boot, 3: seq, 4: time_, 5: tq, 6: prev, 30: event}
        if detail is not None:
            fields[37] = detail
        if lost is not None:
            fields[38] = lost
        return bytes(CT_RECORD.sign1(CT_RECORD.payload(fields), kid.encode(), PycaSigner(key)))
    from protocol.record import Status, make_record

    return make_record(
        Status(
            boot=boot, seq=seq, time=time_, tq=tq, prev=prev, event=event, detail=detail, lost=lost
        ),
        kid,
        key,
    )


def chain_link(raw: bytes) -> bytes:
    if CT_RECORD is not None:
        return bytes(CT_RECORD.chain_link(raw))
    from protocol.record import chain_hash

    return chain_hash(raw)


def open_ack(msg: bytes, key: bytes) -> tuple[int, int, bytes]:
    """(seq, gateway time, head) of an ack, checked as the device checks it."""
    if CT_RECORD is not None:
        _kid, fields = CT_RECORD.verify_mac0(msg, key)
        return fields[1], fields[2], bytes(fields[3])
    from protocol import cbor
    from protocol.cose import verify_mac0

    fields = cbor.decode(verify_mac0(msg, key).payload, max_size=128, max_depth=1)
    assert isinstance(fields, dict)
    return fields[1], fields[2], fields[3]


class SimDevice:
    """One temperature logger or handover reader: its key, chain, flash queue and MQTT client.

    ``role`` is what its registration says (docs/protocol.md §2.5, §12.1: only a reader's
    scans are custody, only a logger's readings are temperatures); by default a device
    whose id starts with ``rd-`` is a reader (2), any other a logger (1)."""

    def __init__(self, dev_id: str, *, boot: int = 1, tq: int = 2, role: int | None = None) -> None:
        self.id = dev_id
        self.role = role if role is not None else (2 if dev_id.startswith("rd-") else 1)
        self.key = generate_p256()
        self.public_sec1 = p256_public_to_sec1(self.key.public_key())
        self.ack_key: bytes | None = None
        self.boot = boot
        self.tq = tq
        self.seq = 0
        self.prev = bytes(16)
        self.unacked: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self.acked = -1
        self.acks_seen = 0
        self.bad_acks = 0
        self.client: mqtt.Client | None = None
        self._lock = threading.Lock()
        self.acked_event = threading.Event()

    # --- records -----------------------------------------------------------------------

    def reading(self, temp: int = 450, *, time_: int | None = None, keep: bool = True) -> bytes:
        raw = make_reading(
            self.id,
            self.key,
            boot=self.boot,
            seq=self.seq,
            time_=int(time.time()) if time_ is None else time_,
            tq=self.tq,
            prev=self.prev,
            temp=temp,
        )
        with self._lock:
            if keep:
                self.unacked[self.seq] = raw
            self.seq += 1
            self.prev = chain_link(raw)
        return raw

    def status(
        self, event: int, *, detail: int | None = None, lost: int | None = None, keep: bool = True
    ) -> bytes:
        """The next record: a status record (§2.4)."""
        with self._lock:
            raw = make_status(
                self.id,
                self.key,
                boot=self.boot,
                seq=self.seq,
                time_=int(time.time()),
                tq=self.tq,
                prev=self.prev,
                event=event,
                detail=detail,
                lost=lost,
            )
            if keep:
                self.unacked[self.seq] = raw
            self.seq += 1
            self.prev = chain_link(raw)
        return raw

    def scan(
        self,
        uid: bytes,
        action: int,
        place: str,
        *,
        time_: int,
        item: str | None = None,
        ref: str | None = None,
        link: bytes | None = None,
    ) -> bytes:
        """The next record: a tag scan (§2.3), as a handover reader signs it."""
        from protocol.record import Scan, make_record

        with self._lock:
            p = Scan(
                boot=self.boot,
                seq=self.seq,
                time=time_,
                tq=self.tq,
                prev=self.prev,
                uid=uid,
                action=action,
                place=place,
                item=item,
                ref=ref,
                link=link,
            )
            raw = make_record(p, self.id, self.key)
            self.unacked[self.seq] = raw
            self.seq += 1
            self.prev = chain_link(raw)
        return raw

    def lose(self, *seqs: int) -> None:
        """Flash lost these queued records for good: they are never sent again."""
        with self._lock:
            for s in seqs:
                self.unacked.pop(s, None)

    def declare_lost(self, first: int, n: int = 1) -> bytes:
        """The status record declaring seqs first..first+n-1 lost (§5.2, event 11)."""
        return self.status(11, detail=n, lost=first)

    def on_ack(self, msg: bytes) -> None:
        assert self.ack_key is not None
        try:
            seq, _t, head = open_ack(msg, self.ack_key)
        except Exception:
            self.bad_acks += 1
            return
        with self._lock:
            self.acks_seen += 1
            mine = self.unacked.get(seq)
            if mine is not None and chain_link(mine) != head:
                self.bad_acks += 1
                return
            for s in [s for s in self.unacked if s <= seq]:
                del self.unacked[s]
            self.acked = max(self.acked, seq)
            if not self.unacked:
                self.acked_event.set()

    # --- MQTT ---------------------------------------------------------------------------

    def connect(self, port: int, password: str) -> None:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.id, clean_session=True)
        c.username_pw_set(self.id, password)
        c.will_set(f"ct/v1/{self.id}/state", b"offline", qos=1, retain=True)
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(0.1, 1)

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if not reason.is_failure:
                client.subscribe(f"ct/v1/{self.id}/ack", 1)
                client.publish(f"ct/v1/{self.id}/state", b"online", qos=1, retain=True)

        c.on_connect = on_connect
        c.on_message = lambda client, userdata, m: self.on_ack(m.payload)
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        self.client = c

    def publish(self, raw: bytes, topic: str | None = None) -> None:
        assert self.client is not None
        self.client.publish(topic or f"ct/v1/{self.id}/rec", raw, qos=1)

    def resend_unacked(self, limit: int | None = None) -> int:
        """Publish the unacked records again, oldest first (the first ``limit`` of them)."""
        with self._lock:
            pending = list(self.unacked.values())[:limit]
        for raw in pending:
            self.publish(raw)
        return len(pending)

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None

    def drop(self) -> None:
        """Lose the connection without DISCONNECT (the broker publishes the will)."""
        if self.client is not None:
            sock = self.client.socket()
            self.client.loop_stop()
            if sock is not None:
                sock.close()
            self.client = None


def wait_for(cond: Any, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``cond()`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
