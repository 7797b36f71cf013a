"""Every key of gateway.toml has a row in docs/operations.md, "Configuration reference".

The keys come from the code, not from a list kept here: the fields of the dataclasses
that gateway/config.py reads each section into (walked from ``GatewayConfig``, nested
sections included), the array tables' entries, and the ``[alerts]`` keys that
gateway/alerts.py and gateway/profiles.py read. A key added later without a row fails.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import gateway.config as config
from gateway.alerts import _EMAIL_KEYS
from gateway.profiles import Profile

ROOT = Path(__file__).resolve().parents[2]
#: list-valued fields read into a dataclass per entry (array tables)
ARRAYS = {"registry.authorities": "Authority", "witness.peers": "Peer"}


def _dataclass_named(annotation: object) -> type | None:
    """The gateway.config dataclass a field's annotation names (``X``, ``X | None``)."""
    for name in re.findall(r"[A-Za-z_]\w*", str(annotation)):
        cls = getattr(config, name, None)
        if dataclasses.is_dataclass(cls) and isinstance(cls, type):
            return cls
    return None


def config_keys() -> dict[str, set[str]]:
    """{section: keys} for every section gateway/config.py reads into a dataclass."""
    out: dict[str, set[str]] = {}

    def walk(section: str, cls: type) -> None:
        keys = out.setdefault(section, set())
        for f in dataclasses.fields(cls):
            if cls is config.GatewayConfig and f.name in ("path", "alerts"):
                continue  # not keys: the file's own path; [alerts] is read elsewhere
            sub = _dataclass_named(f.type)
            if sub is not None:
                walk(f"{section}.{f.name}" if section != "gateway" else f.name, sub)
                continue
            keys.add(f.name)
            array = f"{section}.{f.name}"
            if array in ARRAYS:
                walk(array, getattr(config, ARRAYS[array]))

    walk("gateway", config.GatewayConfig)
    return out


def alert_keys() -> dict[str, set[str]]:
    alerts = (ROOT / "gateway" / "alerts.py").read_text(encoding="utf-8")
    profiles = (ROOT / "gateway" / "profiles.py").read_text(encoding="utf-8")
    top = set(re.findall(r"""\btable(?:\.get\(|\[|, )["'](\w+)["']""", alerts))
    top |= set(re.findall(r"""\bconfig\.get\(["'](\w+)["']""", profiles))
    return {
        "alerts": top,
        "alerts.email": set(_EMAIL_KEYS),
        "alerts.profiles.NAME": {f.name for f in dataclasses.fields(Profile)} - {"name"},
    }


def documented() -> dict[str, set[str]]:
    """{section: keys} from the reference's ``### `[section]``` headings and table rows."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    start = re.search(r"\n## \d+\. Configuration reference", text).start()  # type: ignore[union-attr]
    end = text.find("\n## ", start + 1)
    ref = text[start : end if end > 0 else None]
    out: dict[str, set[str]] = {}
    for part in ref.split("\n### ")[1:]:
        heading, _, body = part.partition("\n")
        m = re.fullmatch(r"`\[\[?([\w.]+)\]\]?`", heading.strip())
        assert m, f"reference heading {heading!r} is not a `[section]`"
        keys = out.setdefault(m.group(1), set())
        for line in body.splitlines():
            if line.startswith("| `"):
                keys |= set(re.findall(r"`([\w.]+)`", line.split("|")[1]))
    return out


def test_the_walk_reaches_every_section_class() -> None:
    keys = config_keys()
    assert {"gateway", "mqtt", "ingest", "log", "ledger", "registry", "dashboard"} <= set(keys)
    assert {"id", "data_dir"} <= keys["gateway"] and "password_file" in keys["mqtt"]
    assert keys["registry.authorities"] == {"id", "key", "gtins"}
    reached = {
        c.__name__
        for c in vars(config).values()
        if isinstance(c, type) and dataclasses.is_dataclass(c) and c.__module__ == config.__name__
    }
    walked = {"GatewayConfig", *ARRAYS.values()}
    walked |= {
        cls.__name__
        for cls in (
            _dataclass_named(f.type)
            for c in reached
            for f in dataclasses.fields(getattr(config, c))
        )
        if cls is not None
    }
    assert reached <= walked, f"dataclasses no section reads: {sorted(reached - walked)}"
    assert {"default", "webhook", "places", "profiles", "escalate_to"} <= alert_keys()["alerts"]


def test_every_configuration_key_is_documented() -> None:
    doc = documented()
    missing = [
        f"[{section}] {key}"
        for section, keys in {**config_keys(), **alert_keys()}.items()
        for key in sorted(keys)
        if key not in doc.get(section, set())
    ]
    assert not missing, f"keys without a row in the configuration reference: {missing}"
