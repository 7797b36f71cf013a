"""``coldtrace profile ...``: product profiles signed by a brand owner's own key, offline.

    coldtrace profile keygen --id BRAND_ID -o brand.key
    coldtrace profile pubkey --key brand.key
    coldtrace profile sign --key brand.key --id BRAND_ID --state brand-state.json GTIN
        [--lot L] --low C --high C --delay D --gap D [--cumul D] [--mkt C] [--name N]
        [--lots] [--links] [--at T] -o profile.cose

A brand owner is a registry whose trust-file scope is its GTINs
(docs/protocol.md §2.7, §10). It signs kind-6 statements with its own P-256
key, numbered in its own signer chain (``seq``/``prev``, ``boot`` 0, §4.1)
and in one statement chain per (GTIN, lot) (``cseq``/``cprev``, §4.2). Both
chains live in the JSON **state file**, rewritten atomically after every
signature (temporary file + ``os.replace``; the record is renamed into place
after it): losing the state means forking the chains, so keep it with the key.

Each gateway that logs the brand's profiles lists the brand under
``[[registry.authorities]]`` and imports the file unchanged
(``coldtrace gateway registry import-statement profile.cose``). The brand
sends its statements to several gateways, so a gateway's log may see gaps in
the brand's ``seq``; it never sees gaps in a statement chain.

**Restating**: a trace needs the profile chain closed by a statement at or
after the commission (§4.2). The gateway cannot restate the brand's chain
(it does not hold the key): the brand signs the same profile again, with the
same values, and the gateway imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.evidence.registry import profile_payload
from gateway.registry_cli import WHEN, add_profile_arguments, profile_values
from gateway.units import format_time
from protocol.cose import ID_PATTERN
from protocol.errors import VerificationError
from protocol.keys import (
    b64e,
    generate_p256,
    load_p256_private_key,
    p256_public_to_sec1,
    save_private_key,
)
from protocol.record import ZERO_PREV, ProductProfile, chain_hash, make_record

__all__ = ["BrandError", "BrandState", "register", "sign_profile"]

STATE_FORMAT = "coldtrace-profile-state"
MIN_TIME = 1577836800  # 2020-01-01, as the registry
FUTURE_SLACK = 60


class BrandError(Exception):
    """Bad input or state: the message says what and nothing was signed."""


@dataclass
class BrandState:
    """The brand's signer chain head and the head of each of its statement chains."""

    id: str
    key: str  # base64 SEC1: the state belongs to one key
    seq: int = -1  # last seq signed (-1: none)
    hash: bytes = ZERO_PREV  # chain hash of that record
    chains: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> cseq, hash, time

    @classmethod
    def load(cls, path: Path, brand: str, key: str) -> BrandState:
        if not path.exists():
            return cls(brand, key)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("format") != STATE_FORMAT or doc.get("version") != 1:
                raise BrandError(f"{path} is not a {STATE_FORMAT} file (version 1)")
            state = cls(
                str(doc["id"]),
                str(doc["key"]),
                int(doc["seq"]),
                bytes.fromhex(doc["hash"]),
                {
                    str(k): {
                        "cseq": int(v["cseq"]),
                        "hash": bytes.fromhex(v["hash"]),
                        "time": int(v["time"]),
                    }
                    for k, v in doc["chains"].items()
                },
            )
        except BrandError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BrandError(
                f"{path}: unreadable state file ({type(exc).__name__}: {exc})"
            ) from None
        if state.id != brand:
            raise BrandError(f"{path} is the state of {state.id!r}, not of {brand!r}")
        if state.key != key:
            raise BrandError(f"{path} belongs to another key than this --key")
        return state

    def save(self, path: Path) -> None:
        doc = {
            "format": STATE_FORMAT,
            "version": 1,
            "id": self.id,
            "key": self.key,
            "seq": self.seq,
            "hash": self.hash.hex(),
            "chains": {
                k: {"cseq": v["cseq"], "hash": v["hash"].hex(), "time": v["time"]}
                for k, v in sorted(self.chains.items())
            },
        }
        _atomic_write(path, (json.dumps(doc, indent=1) + "\n").encode())


def _atomic_write(path: Path, data: bytes, *, then: Any = None) -> None:
    """Write ``data`` to a temporary file, run ``then()`` (if given), rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if then is not None:
            then()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sign_profile(
    key_path: Path,
    brand: str,
    state_path: Path,
    gtin: str,
    *,
    output: Path,
    at: int | None = None,
    now: int | None = None,
    **values: Any,
) -> bytes:
    """Sign the next statement of the profile chain of (``gtin``, ``lot``), write it to
    ``output`` and save the state; return the record. Raise BrandError (nothing
    signed, nothing written) on bad input or when a file cannot be written.

    The record goes to a temporary file first, then the state is saved, then
    the file is renamed into place: the state never moves without the record,
    so the chains are neither forked nor left with a gap."""
    if not ID_PATTERN.fullmatch(brand):
        raise BrandError(f"--id {brand!r} is not a protocol id (1-32 of [a-z0-9._-])")
    lot = values.get("lot")
    if values.get("low") is None and values.get("high") is None:
        raise BrandError("a profile needs --low, --high or both")
    try:
        private = load_p256_private_key(key_path)
    except FileNotFoundError:
        raise BrandError(f"no key file {key_path}") from None
    except (PermissionError, VerificationError, ValueError) as exc:
        raise BrandError(str(exc)) from None
    pub = b64e(p256_public_to_sec1(private.public_key()))
    state = BrandState.load(state_path, brand, pub)
    now = int(time.time()) if now is None else now
    when = now if at is None else int(at)
    chain = gtin if lot is None else f"{gtin} {lot}"
    label = f"profile of {gtin}" + (f" lot {lot}" if lot else "")
    if when > now + FUTURE_SLACK:
        raise BrandError(f"{label}: --at {format_time(when)} is in the future")
    if when < MIN_TIME:
        raise BrandError(f"{label}: --at {format_time(when)} is before 2020")
    head = state.chains.get(chain)
    if head is not None and when < head["time"]:
        raise BrandError(
            f"{label}: --at {format_time(when)} is before the chain's previous statement (cseq "
            f"{head['cseq']}, effective {format_time(head['time'])}); a statement cannot change a "
            "past the chain already stated"
        )
    cseq, cprev = (0, ZERO_PREV) if head is None else (head["cseq"] + 1, head["hash"])
    profile = profile_payload(
        gtin,
        values,
        seq=state.seq + 1,
        time=when,
        prev=state.hash if state.seq >= 0 else ZERO_PREV,
        cseq=cseq,
        cprev=cprev,
    )
    try:
        raw = make_record(profile, brand, private)
    except VerificationError as exc:  # a field out of its bounds (§2.7)
        raise BrandError(f"{label}: {exc}") from None
    h = chain_hash(raw)
    state.seq, state.hash = profile.seq, h
    state.chains[chain] = {"cseq": cseq, "hash": h, "time": when}
    try:
        _atomic_write(output, raw, then=lambda: state.save(state_path))
    except OSError as exc:
        raise BrandError(f"cannot write {output} or {state_path}: {exc}; nothing signed") from None
    return raw


# --- the command line ---------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Entry point (``coldtrace.commands``): adds ``coldtrace profile``."""
    top = subparsers.add_parser(
        "profile",
        help="sign product profiles with a brand owner's own key (offline)",
        description="Product profiles (kind 6) signed by a brand owner's own registry key, "
        "for gateways that list the brand under [[registry.authorities]].",
    )
    top.set_defaults(func=lambda args: (top.print_help(), 2)[1])
    sub = top.add_subparsers(dest="profile_command", metavar="COMMAND")

    p = sub.add_parser("keygen", help="make the brand's P-256 key (file mode 0600)")
    p.add_argument("--id", required=True, help="the brand's registry id")
    p.add_argument("-o", "--output", type=Path, required=True, help="key file to write")
    p.set_defaults(func=_keygen)

    p = sub.add_parser("pubkey", help="print the key's public key (base64 SEC1)")
    p.add_argument("--key", type=Path, required=True)
    p.set_defaults(func=_pubkey)

    p = sub.add_parser(
        "sign",
        help="sign the profile of a GTIN (or of one lot); the same values again restate it",
    )
    p.add_argument("--key", type=Path, required=True, help="the brand's key file")
    p.add_argument("--id", required=True, help="the brand's registry id (the kid)")
    p.add_argument("--state", type=Path, required=True, help="the brand's chain state (JSON)")
    p.add_argument("gtin", help="GTIN-14 (14 digits, valid check digit)")
    add_profile_arguments(p)
    p.add_argument(
        "--at",
        type=WHEN,
        default=None,
        help="effective time (default now; never before the chain's previous statement)",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="the signed record")
    p.set_defaults(func=_sign)


def _err(text: str) -> int:
    print(f"coldtrace profile: {text}", file=sys.stderr)
    return 1


def _keygen(args: argparse.Namespace) -> int:
    if not ID_PATTERN.fullmatch(args.id):
        return _err(f"--id {args.id!r} is not a protocol id (1-32 of [a-z0-9._-])")
    if args.output.exists():
        return _err(f"{args.output} exists; a key is never overwritten")
    key = generate_p256()
    try:
        save_private_key(key, args.output)
    except OSError as exc:
        return _err(f"cannot write {args.output}: {exc}")
    print(f"wrote {args.output} (mode 0600) for {args.id}; keep it and the state file safe")
    print(f"public key (for [[registry.authorities]] key): {_public(key)}")
    return 0


def _public(key: Any) -> str:
    return b64e(p256_public_to_sec1(key.public_key()))


def _pubkey(args: argparse.Namespace) -> int:
    try:
        print(_public(load_p256_private_key(args.key)))
    except FileNotFoundError:
        return _err(f"no key file {args.key}")
    except (PermissionError, VerificationError, ValueError) as exc:
        return _err(str(exc))
    return 0


def _sign(args: argparse.Namespace) -> int:
    try:
        raw = sign_profile(
            args.key,
            args.id,
            args.state,
            args.gtin,
            output=args.output,
            at=args.at,
            **profile_values(args),
        )
    except BrandError as exc:
        return _err(str(exc))
    from protocol.record import open_record

    p = open_record(raw).payload
    assert isinstance(p, ProductProfile)
    what = p.gtin + (f" lot {p.lot}" if p.lot else "")
    print(
        f"{what}: profile from {format_time(p.time)} signed by {args.id} "
        f"(cseq {p.cseq}, seq {p.seq}) -> {args.output}; import it at each gateway: "
        f"coldtrace gateway registry import-statement {args.output}"
    )
    return 0
