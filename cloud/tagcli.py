"""``coldtrace tag``: NTAG 424 DNA tags of a cloud (docs/cloud.md, "Tags: NTAG 424 DNA SUN").

    coldtrace tag commission --dir CLOUD_DIR --uid HEX --item /01/{gtin}/10/{lot}/21/{serial}
        [--org ORG] [--base-url URL] [--enc-data TEXT16] [--json]

It works on the cloud's database and ``tags.key`` directly (the operator's
machine); ``POST /v1/tags`` does the same for an organisation's admin token.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register"]


def cmd_commission(args: argparse.Namespace) -> int:
    from cloud import db
    from cloud.config import ConfigError, load_config
    from cloud.tags import KEY_FILE, Keyring, TagError, commission

    try:
        cfg = load_config(args.dir)
    except ConfigError as e:
        print(f"coldtrace tag: {e}", file=sys.stderr)
        return 2
    engine = db.connect(cfg.database_url)
    try:
        ring = Keyring.load_or_create(cfg.directory / KEY_FILE)
        out = commission(
            engine,
            ring,
            None,
            args.org,
            args.uid,
            args.item,
            args.base_url or cfg.public_url,
            args.enc_data,
        )
    except TagError as e:
        print(f"coldtrace tag: {e}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    _print(out)
    return 0


def _print(out: dict[str, Any]) -> None:
    k = out["keys"]
    s = out["settings"]
    lines = [
        f"tag {out['uid']} commissioned for {out['organisation']}: {out['item']}",
        "",
        "Keys to write (ChangeKey, application D2760000850101; AES-128):",
        f"  key 0 AppMasterKey    {k['key0_app_master']}",
        f"  key 1 SDMMetaReadKey  {k['key1_sdm_meta_read']}   (one per cloud)",
        f"  key 2 SDMFileReadKey  {k['key2_sdm_file_read']}",
        f"  key 3                 {k['key3']}",
        f"  key 4                 {k['key4']}",
        f"  ({k['derivation']}; kept wrapped with AES-GCM in the cloud)",
        "",
        "NDEF (write to file 02 before the file settings):",
        f"  URL      {out['url_template']}",
        f"  content  {s['ndef_hex']}",
        "",
        "SDM file settings of file 02 (ChangeFileSettings):",
        f"  FileOption         {s['file_option']}",
        f"  AccessRights       {s['access_rights_hex']}  (read E free, write 0, RW 0, change 0)",
        f"  SDMOptions         {s['sdm_options']}",
        f"  SDMAccessRights    {s['sdm_access_rights_hex']}  (ctr ret F, meta read 1, file read 2)",
        f"  PICCDataOffset     {s['picc_data_offset']}",
    ]
    if "sdm_enc_offset" in s:
        lines += [
            f"  SDMENCOffset       {s['sdm_enc_offset']}",
            f"  SDMENCLength       {s['sdm_enc_length']}",
        ]
    lines += [
        f"  SDMMACInputOffset  {s['sdm_mac_input_offset']}",
        f"  SDMMACOffset       {s['sdm_mac_offset']}",
        "",
        "Binding: " + out["binding"] + ".",
    ]
    print("\n".join(lines))


def register(sub: Any) -> None:
    p = sub.add_parser("tag", help="NTAG 424 DNA tags of a cloud: commission")
    ts = p.add_subparsers(dest="tag_command", required=True)
    q = ts.add_parser(
        "commission",
        help="record a tag and print its keys, SDM settings and URL template",
    )
    q.add_argument("--dir", required=True, help="the cloud's data directory")
    q.add_argument("--uid", required=True, help="the tag's 7-byte UID, hex")
    q.add_argument("--item", required=True, help="GS1 Digital Link path /01/{gtin}/10/.../21/...")
    q.add_argument("--org", default="operator", help="the organisation (default operator)")
    q.add_argument("--base-url", help="the URL tags point at (default the cloud's public_url)")
    q.add_argument("--enc-data", help="16 ASCII characters to mirror encrypted (SDMENCFileData)")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.set_defaults(func=cmd_commission)
