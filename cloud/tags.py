"""NTAG 424 DNA tags in the cloud: commissioning, per-tag keys, and the check of a tap.

A tag is **commissioned** here (``POST /v1/tags`` or ``coldtrace tag commission``):
the cloud diversifies its keys from the cloud's master key (NXP AN10922, see
:func:`tag_keys`), keeps them wrapped with AES-GCM in the ``tags`` table, and
answers the keys to write, the SDM settings and the URL template. The tag is
bound to its item by the signed commission scan in a gateway's log
(docs/protocol.md §2.3); the cloud says whether it holds that scan yet.

A **tap** is a phone opening the URL the tag mirrored. :func:`check_tap` gives
its status:

- ``genuine``: the SUN MAC verifies under this tag's key and the read counter
  is above every counter seen before for the tag;
- ``replayed``: the MAC verifies but the counter is not above the highest seen
  (a copied URL, a screenshot, a cloned message): never shown as genuine;
- ``invalid``: PICCData does not decrypt, the MAC fails, or the parameters are
  malformed (AES and LRP mode are both checked: :mod:`cloud.sun`);
- ``unknown_tag``: a UID not commissioned here;
- ``unauthenticated``: no SUN parameters (a QR code, an NTAG 21x): the link
  still resolves, marked plainly as not authenticated.

The counter is updated by one conditional UPDATE (``... WHERE counter IS NULL
OR counter < :new``): on PostgreSQL a concurrent tap with the same counter waits
for the row lock, re-checks the condition and updates nothing, so exactly one
of two taps with the same counter is genuine.

Keys: ``tags.key`` in the cloud's data directory (16 random bytes, hex, mode
0600) is the master key. Per-tag keys 0, 2, 3, 4 are AN10922 diversifications
with input UID || key number || ``ColdTrace/NTAG424``; the SDMMetaReadKey (key
1) is one per cloud (input key number || ``ColdTrace/NTAG424``), since PICCData
must be decrypted before the UID is known. The key-encryption key is
HKDF-SHA256 of the master key; each tag's keys are wrapped with AES-256-GCM,
the UID as associated data.
"""

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Connection, Engine, and_, insert, or_, select, update

from cloud import db, orgs, sun
from protocol.custody import parse_item
from protocol.record import KIND_SCAN

__all__ = [
    "KEY_FILE",
    "STATUSES",
    "TagError",
    "TapResult",
    "check_tap",
    "commission",
    "install",
    "keyring",
    "sdm_settings",
]

log = logging.getLogger("coldtrace.cloud")

KEY_FILE = "tags.key"
SYSTEM_ID = b"ColdTrace/NTAG424"
STATUSES = ("genuine", "replayed", "invalid", "unknown_tag", "unauthenticated")
_WRAP_VERSION = 1
_AAD = b"coldtrace-tag-keys/v1\n"
NDEF_FILE_SIZE = 256  # NTAG 424 DNA file 02


class TagError(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TapResult:
    """What a tap shows: ``status`` (one of :data:`STATUSES`), the tag's UID (hex) and
    read counter when the message verified far enough to know them, the item the tag
    is bound to, and a sentence for people."""

    status: str
    uid: str | None
    counter: int | None
    item: str | None
    message: str


# --- keys ----------------------------------------------------------------------------------


class Keyring:
    """The master key of a cloud's tags, and what is derived from it."""

    def __init__(self, master: bytes) -> None:
        if len(master) != 16:
            raise ValueError("the tag master key is 16 bytes")
        self._master = master
        kek = HKDF(SHA256(), 32, salt=None, info=b"coldtrace tags key-encryption key v1")
        self._aead = AESGCM(kek.derive(master))
        self.meta_read = sun.diversify(master, bytes([1]) + SYSTEM_ID)

    @classmethod
    def load_or_create(cls, path: Path) -> "Keyring":
        """The master key in ``path`` (hex, mode 0600), made on first use."""
        if not path.exists():
            # written whole under another name, then linked in: a concurrent first use
            # never reads a half-written key, and never replaces one
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(os.urandom(16).hex() + "\n")
                    f.flush()
                    os.fsync(f.fileno())
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, path)
            finally:
                tmp.unlink()
        return cls(bytes.fromhex(path.read_text().strip()))

    def tag_keys(self, uid: bytes) -> sun.TagKeys:
        """AN10922 diversification: M = UID || key number || "ColdTrace/NTAG424"."""

        def key(n: int) -> bytes:
            return sun.diversify(self._master, uid + bytes([n]) + SYSTEM_ID)

        return sun.TagKeys(key(0), self.meta_read, key(2), key(3), key(4))

    def wrap(self, uid: bytes, keys: sun.TagKeys) -> bytes:
        nonce = os.urandom(12)
        plain = keys.app_master + keys.file_read + keys.key3 + keys.key4
        return bytes([_WRAP_VERSION]) + nonce + self._aead.encrypt(nonce, plain, _AAD + uid)

    def unwrap(self, uid: bytes, blob: bytes) -> sun.TagKeys:
        if not blob or blob[0] != _WRAP_VERSION:
            raise ValueError("unknown key wrapping")
        plain = self._aead.decrypt(blob[1:13], blob[13:], _AAD + uid)
        return sun.TagKeys(plain[0:16], self.meta_read, plain[16:32], plain[32:48], plain[48:64])


def keyring(cloud: Any) -> Keyring:
    """The cloud's tag keyring (``tags.key`` in its data directory), loaded once."""
    ring = getattr(cloud, "_tag_keyring", None)
    if ring is None:
        ring = Keyring.load_or_create(Path(cloud.config.directory) / KEY_FILE)
        cloud._tag_keyring = ring
    return ring


# --- commissioning ---------------------------------------------------------------------------


def parse_uid(text: str) -> bytes:
    t = text.strip().replace(":", "").replace(" ", "")
    try:
        uid = bytes.fromhex(t)
    except ValueError:
        raise TagError("a UID is hex") from None
    if len(uid) != sun.UID_LENGTH:
        raise TagError("an NTAG 424 DNA UID is 7 bytes (14 hex digits)")
    return uid


def _uri_prefix(url: str) -> tuple[int, str]:
    for code, prefix in ((4, "https://"), (3, "http://")):
        if url.startswith(prefix):
            return code, url[len(prefix) :]
    raise TagError("the base URL starts with https:// or http://")


def sdm_settings(base_url: str, item: str, enc_data: str | None = None) -> dict[str, Any]:
    """The NDEF URL template and the SDM file settings of file 02 for it: the offsets
    of the PICCData, SDMENCFileData and SDMMAC mirrors in the NDEF file (NLEN, a short
    URI record of prefix https:// or http://, then the URL's rest)."""
    url = base_url.rstrip("/") + item + "?picc=" + "0" * 32
    if enc_data is not None:
        if len(enc_data) != 16 or not enc_data.isascii() or not enc_data.isprintable():
            raise TagError("the file data to encrypt is 16 printable ASCII characters")
        url += "&enc=" + enc_data + "0" * 16
    url += "&cmac=" + "0" * 16
    code, rest = _uri_prefix(url)
    payload = 1 + len(rest.encode())
    base = 7  # NLEN (2), header D1, type length 01, payload length, type 'U', prefix code
    if payload > 255 or base + len(rest) > NDEF_FILE_SIZE:
        raise TagError("the URL is too long for file 02 (256 bytes)")
    picc = base + rest.index("?picc=") + 6
    mac = base + rest.index("&cmac=") + 6
    settings: dict[str, Any] = {
        "file": "02 (NDEF)",
        "ndef_hex": (
            (4 + payload).to_bytes(2, "big")
            + bytes([0xD1, 0x01, payload, 0x55, code])
            + rest.encode()
        ).hex(),
        "file_option": "0x40 (SDM on, plain communication)",
        "access_rights": {"read": "E (free)", "write": "0", "read_write": "0", "change": "0"},
        "access_rights_hex": "00E0",
        "sdm_options": "0xD1 (UID, SDMReadCtr, SDMENCFileData, ASCII)"
        if enc_data is not None
        else "0xC1 (UID, SDMReadCtr, ASCII)",
        "sdm_access_rights": {"meta_read": "1", "file_read": "2", "ctr_ret": "F (none)"},
        "sdm_access_rights_hex": "FF12",
        "picc_data_offset": picc,
        "sdm_mac_input_offset": mac,
        "sdm_mac_offset": mac,
    }
    if enc_data is not None:
        enc = base + rest.index("&enc=") + 5
        settings["sdm_enc_offset"] = enc
        settings["sdm_enc_length"] = 32
        settings["sdm_mac_input_offset"] = enc
    return {"url_template": url, "settings": settings}


def commission_scan(conn: Connection, uid: bytes) -> dict[str, Any] | None:
    """The latest commission scan (action 1) of ``uid`` the cloud holds. Readers put the
    item in every scan of a tag, so the item alone does not make a commission."""
    from protocol.record import Scan, open_record

    rows = conn.execute(
        select(
            db.records.c.raw,
            db.records.c.item,
            db.records.c.time,
            db.records.c.signer,
            db.logs.c.origin,
        )
        .join(db.logs, db.logs.c.id == db.records.c.log_id)
        .where(
            and_(
                db.records.c.uid == uid,
                db.records.c.kind == KIND_SCAN,
                db.records.c.item.is_not(None),
            )
        )
        .order_by(db.records.c.time.desc(), db.records.c.idx.desc())
    )
    for row in rows:
        p = open_record(bytes(row.raw)).payload
        if isinstance(p, Scan) and p.action == 1:
            return {
                "item": row.item,
                "time": int(row.time),
                "signer": row.signer,
                "log": row.origin,
            }
    return None


def binding_note(scan: dict[str, Any] | None, item: str) -> str:
    if scan is None:
        return (
            "no commission scan of this tag is in the cloud yet: the tag is bound to its "
            "item by a reader's signed commission scan (docs/protocol.md §2.3) once its "
            "gateway pushes it"
        )
    if scan["item"] != item:
        return (
            f"the commission scan in {scan['log']} binds this tag to {scan['item']}, "
            f"not to {item}: the signed scan is what counts"
        )
    return f"bound to {item} by the signed commission scan in {scan['log']}"


def commission(
    engine: Engine,
    ring: Keyring,
    who: orgs.Principal | None,
    org: str,
    uid_hex: str,
    item: str,
    base_url: str,
    enc_data: str | None = None,
) -> dict[str, Any]:
    """Record a tag: its wrapped keys, organisation and item. Answers the keys to write,
    the SDM settings, the URL template and whether the commission scan is here yet."""
    uid = parse_uid(uid_hex)
    if parse_item(item) is None:
        raise TagError("the item is a GS1 Digital Link path /01/{gtin}[/10/{lot}][/21/{serial}]")
    layout = sdm_settings(base_url, item, enc_data)
    keys = ring.tag_keys(uid)
    with engine.begin() as conn:
        try:
            oid = orgs.org_id(conn, org)
        except orgs.OrgError as e:
            raise TagError(str(e), e.status) from None
        if who is not None and not who.operator and who.org_id != oid:
            raise TagError("an organisation commissions only its own tags", 403)
        if conn.execute(select(db.tags.c.id).where(db.tags.c.uid == uid)).first() is not None:
            raise TagError(f"tag {uid.hex().upper()} is commissioned already", 409)
        now = int(time.time())
        conn.execute(
            insert(db.tags).values(
                uid=uid,
                org_id=oid,
                item=item,
                sealed_keys=ring.wrap(uid, keys),
                counter=None,
                last_seen=None,
                commissioned=now,
            )
        )
        orgs.audit(conn, who, "tag.commission", uid.hex().upper(), item=item, org=org)
        scan = commission_scan(conn, uid)
    return {
        "uid": uid.hex().upper(),
        "item": item,
        "organisation": org,
        "commissioned": now,
        "keys": {
            "key0_app_master": keys.app_master.hex().upper(),
            "key1_sdm_meta_read": keys.meta_read.hex().upper(),
            "key2_sdm_file_read": keys.file_read.hex().upper(),
            "key3": keys.key3.hex().upper(),
            "key4": keys.key4.hex().upper(),
            "derivation": "AN10922 AES-128 from the cloud's tags.key: M = UID || key number || "
            "'ColdTrace/NTAG424' (key 1, SDMMetaRead, is one per cloud: M = 01 || "
            "'ColdTrace/NTAG424')",
        },
        **layout,
        "commission_scan": scan,
        "binding": binding_note(scan, item),
    }


# --- taps --------------------------------------------------------------------------------------


def _tag_row(conn: Connection, uid: bytes) -> Any:
    return conn.execute(select(db.tags).where(db.tags.c.uid == uid)).first()


def check_tap(cloud: Any, query_params: Mapping[str, str]) -> TapResult:
    """The status of one tap, from the query parameters of the URL the tag mirrored
    (``picc``/``picc_data``/``e``, ``cmac``/``c``, optionally ``enc``). A genuine tap
    moves the tag's read counter up; nothing else changes the database. Every tap with
    SUN data is logged as one JSON line (logger ``coldtrace.cloud``, event ``tap``: status,
    UID, counter), so replayed and invalid taps - copied or cloned URLs - are on record
    (docs/decisions.md D49)."""
    r = _check_tap(cloud, query_params)
    if r.status != "unauthenticated":
        log.info(
            json.dumps({"event": "tap", "status": r.status, "uid": r.uid, "counter": r.counter})
        )
    return r


def _check_tap(cloud: Any, query_params: Mapping[str, str]) -> TapResult:
    try:
        msg = sun.parse_sun(query_params)
    except sun.SunError as e:
        return TapResult("invalid", None, None, None, f"not a valid SUN message: {e}")
    if msg is None:
        return TapResult(
            "unauthenticated",
            None,
            None,
            None,
            "no SUN data in this link (a QR code or a tag without SUN): it resolves, "
            "but nothing proves a tag was here",
        )
    ring = keyring(cloud)
    rows: dict[bytes, Any] = {}

    def file_key(uid: bytes) -> bytes | None:
        with cloud.engine.connect() as conn:
            row = _tag_row(conn, uid)
        if row is None:
            return None
        rows[uid] = row
        return ring.unwrap(uid, bytes(row.sealed_keys)).file_read

    try:
        res = sun.verify_sun(ring.meta_read, file_key, msg)
    except sun.SunError as e:
        if e.code == "unknown_tag":
            return TapResult("unknown_tag", None, None, None, "this tag is not registered here")
        return TapResult(
            "invalid", None, None, None, "this tap does not verify: not a genuine tag's message"
        )
    row = rows[res.uid]
    uid_hex = res.uid.hex().upper()
    now = int(time.time())
    with cloud.engine.begin() as conn:
        moved = conn.execute(
            update(db.tags)
            .where(
                and_(
                    db.tags.c.id == row.id,
                    or_(db.tags.c.counter.is_(None), db.tags.c.counter < res.counter),
                )
            )
            .values(counter=res.counter, last_seen=now)
        ).rowcount
        scan = commission_scan(conn, res.uid)
        highest = conn.execute(select(db.tags.c.counter).where(db.tags.c.id == row.id)).scalar_one()
    item = scan["item"] if scan is not None else row.item
    if moved != 1:
        return TapResult(
            "replayed",
            uid_hex,
            res.counter,
            item,
            f"this tag's read counter {res.counter} is not above the highest seen "
            f"({highest}): a copied link, a screenshot or a cloned message - not a genuine tap",
        )
    return TapResult(
        "genuine",
        uid_hex,
        res.counter,
        item,
        f"genuine tap of tag {uid_hex} (read {res.counter}); " + binding_note(scan, row.item),
    )


# --- the API ---------------------------------------------------------------------------------


def install(app: Any, cloud: Any, needs: Callable[[str], Any], public: Any) -> None:
    from fastapi import Depends, HTTPException, Request
    from pydantic import BaseModel, Field

    class TagIn(BaseModel):
        uid: str = Field(min_length=14, max_length=20, pattern=r"^[0-9A-Fa-f: ]+$")
        item: str = Field(min_length=1, max_length=128)
        organisation: str | None = Field(default=None, max_length=63)
        base_url: str | None = Field(default=None, max_length=200)
        enc_data: str | None = Field(default=None, min_length=16, max_length=16)

    Admin = Annotated[orgs.Principal, Depends(needs("admin"))]

    @app.post("/v1/tags", tags=["tags"], status_code=201)
    def commission_tag(who: Admin, body: TagIn) -> dict[str, Any]:
        """Commission an NTAG 424 DNA tag for the organisation (the operator: any):
        answers the per-tag keys to write, the SDM settings of file 02 and the URL
        template (docs/cloud.md, "Tags: NTAG 424 DNA SUN")."""
        org = body.organisation or who.org
        try:
            return commission(
                cloud.engine,
                keyring(cloud),
                who,
                org,
                body.uid,
                body.item,
                body.base_url or cloud.config.public_url,
                body.enc_data,
            )
        except TagError as e:
            raise HTTPException(e.status, {"error": "refused", "message": str(e)}) from None

    @app.get("/v1/public/tap", tags=["public"], dependencies=[public])
    def tap(request: Request) -> dict[str, Any]:
        """The status of a tap: ``genuine``, ``replayed``, ``invalid``, ``unknown_tag`` or
        ``unauthenticated``, with the tag's UID, read counter and item."""
        return asdict(check_tap(cloud, request.query_params))
