"""``coldtrace gateway calibrate``: record a probe calibration and send it to the device.

    calibrate DEVICE --cal-id N [--ch C] --point=RAW:REF [--point=RAW:REF]
                     [--rh-point=RAW:REF ...] [--reference TEXT] [--certificate TEXT]
                     [--operator NAME] [--no-send]
    calibrate DEVICE --cal-id N [--ch C] --offset C [--gain G] ...
    calibrate --from CALIBRATION.json [--no-send]

Step 6 of hardware/calibration.md. Points are °C (or %RH with --rh-point)
with at most two decimals, raw device reading first: ``--point=-19.87:-20.00``
(with ``=``: argparse takes ``-19.87:…`` after a space for an option).
``--offset 0.12 --gain 1.002`` is the line ``ref = offset + gain x raw``.

1. The points are checked as the firmware checks them (ct_cal: at most
   5.00 between raw and reference at each point, slope 0.9-1.1).
2. The **calibration document** (id, device, channel, points, reference
   thermometer, certificate, operator, date) is written to
   ``<data_dir>/calibrations/<id>.json``; an id is never reused for another
   document.
3. A **registration** (docs/protocol.md §2.5) with ``cal`` = the id and
   extension key 1000 = SHA-256 of the document is signed with the registry
   key and queued for the log, so the log ties the id to exactly that
   document.
4. A **command** (§5.3, keys 16-19) with the channel, the id and the points
   is MACed under the device's ack key and queued in
   ``<data_dir>/commands/pending``; the running gateway publishes it
   (gateway/commands.py) and the broker holds it until the device next
   connects. The device applies it from its next reading and reports the id
   in field 14 ``cal`` of every corrected reading.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import struct
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from gateway import units

__all__ = ["CAL_DOC_KEY", "CalibrationError", "calibration_fields", "check_points", "document"]

#: Registration extension key: SHA-256 of the calibration document (§2 keys >= 1000).
CAL_DOC_KEY = 1000
_MAX_ID = 0xFFFFFFFF
_MAX_OFFSET = 500  # 5.00 °C / %RH, as ct_cal
_SLOPE = (900, 1100)  # per mille, as ct_cal


class CalibrationError(Exception):
    pass


def _div_round(n: int, d: int) -> int:
    """Integer division rounded half away from zero (as ct_cal)."""
    if d < 0:
        n, d = -n, -d
    q = (abs(n) + d // 2) // d
    return q if n >= 0 else -q


def check_points(points: list[list[int]], what: str = "t") -> None:
    """The firmware's acceptance rules (firmware/lib/ct_cal.py), with messages."""
    if not 1 <= len(points) <= 2:
        raise CalibrationError(f"{what}: one or two points, got {len(points)}")
    for raw, ref in points:
        if abs(ref - raw) > _MAX_OFFSET:
            raise CalibrationError(
                f"{what}: correction {(ref - raw) / 100:+.2f} at raw {raw / 100:.2f} is over 5.00: "
                "replace the probe (hardware/calibration.md step 5)"
            )
    if len(points) == 2:
        (r1, f1), (r2, f2) = points
        if r1 == r2:
            raise CalibrationError(f"{what}: the two points have the same raw value")
        slope = _div_round((f2 - f1) * 1000, r2 - r1)
        if not _SLOPE[0] <= slope <= _SLOPE[1]:
            raise CalibrationError(f"{what}: slope {slope / 1000:.3f} outside 0.9-1.1")


def _pairs(values: list[list[int]]) -> bytes:
    return b"".join(struct.pack(">ii", raw, ref) for raw, ref in values)


def calibration_fields(doc: dict[str, Any]) -> dict[int, int | bytes]:
    """The §5.3 command keys 16-19 of a calibration document."""
    out: dict[int, int | bytes] = {16: doc["ch"], 17: doc["id"]}
    if doc.get("t"):
        out[18] = _pairs(doc["t"])
    if doc.get("rh"):
        out[19] = _pairs(doc["rh"])
    return out


def document(
    device: str,
    cal_id: int,
    ch: int,
    t: list[list[int]] | None,
    rh: list[list[int]] | None,
    **info: str | None,
) -> dict[str, Any]:
    """The checked calibration document (what the registry keeps for the id)."""
    if not 0 <= cal_id <= _MAX_ID:
        raise CalibrationError(f"calibration id {cal_id} is not a uint32")
    if not 0 <= ch <= 15:
        raise CalibrationError(f"channel {ch} outside 0-15")
    if not t and not rh:
        raise CalibrationError("no points: give --point, --offset or --rh-point")
    if t:
        check_points(t, "temperature")
    if rh:
        check_points(rh, "humidity")
    doc: dict[str, Any] = {
        "format": "coldtrace-calibration",
        "version": 1,
        "id": cal_id,
        "device": device,
        "ch": ch,
    }
    if t:
        doc["t"] = [list(p) for p in t]
    if rh:
        doc["rh"] = [list(p) for p in rh]
    doc.update({k: v for k, v in info.items() if v})
    return doc


def digest(doc: dict[str, Any]) -> bytes:
    return hashlib.sha256(canonical(doc)).digest()


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --- the command line ------------------------------------------------------------------


def _point(text: str) -> list[int]:
    raw, sep, ref = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: want RAW:REF, e.g. -19.87:-20.00")
    try:
        return [units.parse_centi(raw), units.parse_centi(ref)]
    except units.UnitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _centi(text: str) -> int:
    try:
        return units.parse_centi(text)
    except units.UnitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _gain(text: str) -> int:
    """A gain with at most three decimals, in per mille."""
    try:
        g = Decimal(text) * 1000
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if g != g.to_integral_value():
        raise argparse.ArgumentTypeError(f"{text!r}: a gain has at most three decimals")
    return int(g)


def offset_gain_points(offset: int, gain_pm: int) -> list[list[int]]:
    """ref = offset + gain x raw as ct_cal points: one point for a pure
    offset, else raw 0 and raw 10.00."""
    if gain_pm == 1000:
        return [[0, offset]]
    return [[0, offset], [1000, offset + gain_pm]]


def register_calibrate_command(sub: Any, config_arg: Callable[[Any], None]) -> None:
    """Add ``calibrate`` to the ``coldtrace gateway`` subcommands."""
    help = "record a probe calibration in the registry and send it to the device"
    p = sub.add_parser(
        "calibrate",
        help=help,
        description=help + " (hardware/calibration.md step 6)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: calibrate tl-7f3a21 --cal-id 1042 --point=-19.87:-20.00 "
        "--point=25.11:25.00 --reference 'PT100 SN 4711' --certificate 'DAkkS 2026-123'",
    )
    p.set_defaults(func=_calibrate)
    config_arg(p)
    p.add_argument("device", nargs="?")
    p.add_argument(
        "--from",
        dest="from_file",
        type=Path,
        default=None,
        help="a calibration document (JSON, as written to <data_dir>/calibrations)",
    )
    p.add_argument("--cal-id", type=int, default=None, help="new calibration id (uint32)")
    p.add_argument("--ch", type=int, default=0, help="sensor channel (default 0)")
    p.add_argument(
        "--point",
        type=_point,
        action="append",
        default=[],
        metavar="RAW:REF",
        help="temperature point in °C, raw device value first (once or twice); "
        "write --point=-19.87:-20.00 for a negative value",
    )
    p.add_argument(
        "--rh-point",
        type=_point,
        action="append",
        default=[],
        metavar="RAW:REF",
        help="humidity point in %%RH (once or twice)",
    )
    p.add_argument(
        "--offset",
        type=_centi,
        default=None,
        help="°C added (with --gain: ref = offset + gain x raw)",
    )
    p.add_argument("--gain", type=_gain, default=None, help="slope, at most three decimals")
    p.add_argument("--reference", default=None, help="reference thermometer and serial")
    p.add_argument("--certificate", default=None, help="its calibration certificate")
    p.add_argument("--operator", default=None)
    p.add_argument("--date", default=None, help="date of the calibration (default today, UTC)")
    p.add_argument(
        "--no-send",
        action="store_true",
        help="record it only; put it in the device's config.json instead",
    )


def _err(text: str) -> int:
    print(f"coldtrace gateway calibrate: {text}", file=sys.stderr)
    return 1


def _document_from_args(args: argparse.Namespace) -> dict[str, Any]:
    if args.from_file is not None:
        d = json.loads(args.from_file.read_text())
        info = {k: d.get(k) for k in ("reference", "certificate", "operator", "date")}
        return document(d["device"], d["id"], d.get("ch", 0), d.get("t"), d.get("rh"), **info)
    if args.device is None or args.cal_id is None:
        raise CalibrationError("give DEVICE and --cal-id (or --from FILE)")
    t = [list(p) for p in args.point]
    if args.offset is not None or args.gain is not None:
        if t:
            raise CalibrationError("--offset/--gain or --point, not both")
        t = offset_gain_points(args.offset or 0, args.gain or 1000)
    date = args.date or datetime.datetime.now(datetime.UTC).date().isoformat()
    return document(
        args.device,
        args.cal_id,
        args.ch,
        t or None,
        [list(p) for p in args.rh_point] or None,
        reference=args.reference,
        certificate=args.certificate,
        operator=args.operator,
        date=date,
    )


def _calibrate(args: argparse.Namespace) -> int:
    from gateway.cli import _load
    from gateway.commands import CommandSpool
    from gateway.evidence.registry import RegistryError
    from gateway.evidence.store import open_store
    from gateway.service import registry_signer

    try:
        doc = _document_from_args(args)
    except (CalibrationError, KeyError, ValueError) as exc:
        return _err(str(exc))
    cfg = _load(args)
    device, cal_id = doc["device"], doc["id"]
    path = cfg.data_dir / "calibrations" / f"{cal_id}.json"
    if path.exists() and digest(json.loads(path.read_text())) != digest(doc):
        return _err(f"calibration id {cal_id} is already used ({path}): choose a new id")
    store = open_store(cfg.db_path)
    try:
        signer = registry_signer(cfg, store)
        if signer is None:
            return _err("[registry] key_file is needed to sign the registration")
        for other in signer.view().devices.values():
            if other.cal == cal_id and other.id != device:
                return _err(f"calibration id {cal_id} is already {other.id}'s")
        ack_key = store.ack_keys().get(device)
        if ack_key is None and not args.no_send:
            return _err(f"no ack key for {device}: register it first, or use --no-send")
        try:
            signer.update(device, cal=cal_id, extensions={CAL_DOC_KEY: digest(doc)})
        except RegistryError as exc:
            return _err(str(exc))
        # kept once the registration that names its hash is queued for the log
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
    finally:
        store.close()
    print(f"calibration {cal_id} ({device} ch {doc['ch']}): {path}")
    print(
        f"registration with cal {cal_id} and the document's SHA-256 {digest(doc).hex()[:16]}… "
        "queued for the log"
    )
    if args.no_send:
        print("not sent: put it in the device's config.json (sensors[].cal) and push the config")
        return 0
    assert ack_key is not None
    c = CommandSpool(cfg.data_dir).queue(device, ack_key, cfg.id, calibration_fields(doc))
    print(
        f"command {c.counter} queued on {c.topic}: the running gateway publishes it, the "
        f"device applies it at its next upload, and its readings carry cal {cal_id} from "
        "the next wake"
    )
    return 0
