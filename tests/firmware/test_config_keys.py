"""Every key of a board's config.json is documented in firmware/README.md: the keys of
the template (firmware/config.json) and every key the firmware reads (``cfg.get("k"``,
``cfg["k"]``, and the ``mqtt``, ``wifi``, ``queue`` tables), so a key added later
without documentation fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FW = ROOT / "firmware"

_TOP = re.compile(r"""\bcfg(?:\.get\(|\[)["']([a-z_]+)["']""")
_SUB = {  # table -> the variable the firmware reads it through, and the file
    "mqtt": ("m", "ct_core.py"),
    "wifi": ("w", "ct_main.py"),
    "queue": ("q", "ct_core.py"),
}


def documented() -> str:
    text = (FW / "README.md").read_text(encoding="utf-8")
    start = text.index("## Configuration (`config.json`)")
    return text[start : text.index("\n## ", start + 1)]


def firmware_keys() -> dict[str, set[str]]:
    keys = {"": set(json.loads((FW / "config.json").read_text(encoding="utf-8")))}
    for src in [*(FW / "lib").glob("*.py"), FW / "main.py", FW / "boot.py"]:
        keys[""] |= set(_TOP.findall(src.read_text(encoding="utf-8")))
    for table, (var, name) in _SUB.items():
        text = (FW / "lib" / name).read_text(encoding="utf-8")
        keys[table] = set(re.findall(rf"""\b{var}\.get\(["']([a-z_]+)["']""", text))
    return keys


def test_the_scan_finds_the_keys_it_must() -> None:
    keys = firmware_keys()
    assert {"id", "role", "interval", "upload", "upload_ms", "queue", "poll_ms"} <= keys[""]
    assert {"host", "port", "user", "password", "tls", "ack_wait_ms"} <= keys["mqtt"]
    assert {"ssid", "key"} <= keys["wifi"] and {"segments", "seg_size"} <= keys["queue"]


def test_every_device_config_key_is_documented() -> None:
    doc = documented()
    missing = sorted(
        f"{table + '.' if table else ''}{key}"
        for table, names in firmware_keys().items()
        for key in names
        if f"`{key}`" not in doc
    )
    assert not missing, f"config.json keys missing from firmware/README.md: {missing}"
