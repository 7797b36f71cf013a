"""Every config.json key the firmware reads, and every key of the template
(firmware/config.json), is in firmware/README.md's configuration table, and
every key in that table is read somewhere.

The keys are collected from the source (Python's ``ast``): reads of
``cfg``/``self.cfg`` (``.get("k")`` and ``["k"]``), followed through local
names (``m = cfg.get("mqtt", {})`` then ``m.get("host")`` is ``mqtt.host``;
``for s in cfg.get("sensors", [])`` then ``s.get("ch")`` is
``sensors.ch``), plus the few functions that receive a part of the
configuration as a parameter (:data:`PARAMS`). A nested key is written with
dots in the table's first column: ``mqtt.tls.ca``.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "firmware" / "lib"
README = ROOT / "firmware" / "README.md"
TEMPLATE = ROOT / "firmware" / "config.json"

# (module, function, parameter) -> the configuration path the parameter holds
PARAMS = {
    ("ct_alarm", "from_config", "c"): "",
    ("ct_cal", "from_config", "d"): "sensors.cal",
    ("ct_tls", "__init__", "tls"): "mqtt.tls",
    ("ct_lte", "__init__", "cfg"): "lte",
}
# ct_app.Logger.get(name, default): a setting, else the configuration
SELF_GET = {"ct_app"}


def _str(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


class _Scan:
    def __init__(self, module: str) -> None:
        self.module = module
        self.keys: dict[str, str] = {}  # key -> first place read

    def resolve(self, node: ast.AST, env: dict[str, str]) -> str | None:
        """The configuration path ``node`` evaluates to, or None."""
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id]
            return "" if node.id == "cfg" else None
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            return self.resolve(node.values[0], env)  # c = cfg or {}
        if isinstance(node, ast.Attribute) and node.attr == "cfg":
            return ""
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id == "dict" and node.args:
                return self.resolve(node.args[0], env)
            if isinstance(f, ast.Attribute) and f.attr == "get" and node.args:
                key = _str(node.args[0])
                base = self.resolve(f.value, env)
                if key is not None and base is not None:
                    return _join(base, key)
        if isinstance(node, ast.Subscript):
            key = _str(node.slice)
            base = self.resolve(node.value, env)
            if key is not None and base is not None:
                return _join(base, key)
        return None

    def function(self, fn: ast.FunctionDef) -> None:
        env: dict[str, str] = {}
        for a in fn.args.args:
            p = PARAMS.get((self.module, fn.name, a.arg))
            if p is not None:
                env[a.arg] = p
        for _ in range(3):  # assignments feed each other; a few passes reach a fixpoint
            for node in ast.walk(fn):
                if isinstance(node, ast.Assign) and len(node.targets) == 1:
                    t = node.targets[0]
                    p = self.resolve(node.value, env)
                    if isinstance(t, ast.Name) and p is not None:
                        env[t.id] = p
                if isinstance(node, ast.For) and isinstance(node.target, ast.Name):
                    p = self.resolve(node.iter, env)
                    if p is not None:
                        env[node.target.id] = p  # a list of objects: its items' keys
        for node in ast.walk(fn):
            if isinstance(node, (ast.Call, ast.Subscript)):
                if (
                    self.module in SELF_GET
                    and isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "get"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "self"
                    and node.args
                    and _str(node.args[0]) is not None
                ):
                    self.keys.setdefault(_str(node.args[0]) or "", f"{self.module}.{fn.name}")
                    continue
                p = self.resolve(node, env)
                if p:
                    self.keys.setdefault(p, f"{self.module}.{fn.name}:{node.lineno}")


def firmware_keys() -> dict[str, str]:
    keys: dict[str, str] = {}
    paths = [
        *sorted(LIB.glob("*.py")),
        ROOT / "firmware" / "main.py",
        ROOT / "firmware" / "boot.py",
    ]
    for path in (p for p in paths if p.exists()):
        s = _Scan(path.stem)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                s.function(node)  # type: ignore[arg-type]
        for k, where in s.keys.items():
            keys.setdefault(k, where)
    # a path that is only a way to a deeper key (mqtt -> mqtt.host) is not a key itself
    return {k: w for k, w in keys.items() if not any(o.startswith(k + ".") for o in keys)}


def documented_keys() -> set[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Configuration (`config.json`)")
    table = text[start : text.index("\n## ", start + 1)]
    out: set[str] = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            out.update(re.findall(r"`([a-z_][a-z0-9_.]*)`", line.split("|")[1]))
    return out


def template_keys() -> set[str]:
    """firmware/config.json's keys, dotted; a list of objects gives its items' keys."""
    out: set[str] = set()

    def walk(prefix: str, v: object) -> None:
        if isinstance(v, dict) and v:
            for k, x in v.items():
                walk(_join(prefix, k), x)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for x in v:
                walk(prefix, x)
        else:
            out.add(prefix)

    walk("", json.loads(TEMPLATE.read_text(encoding="utf-8")))
    return out


def _covered(key: str, doc: set[str]) -> bool:
    return key in doc or any(d.startswith(key + ".") for d in doc)


def test_every_template_key_is_documented() -> None:
    doc = documented_keys()
    missing = sorted(k for k in template_keys() if not _covered(k, doc))
    assert not missing, f"firmware/config.json keys missing from firmware/README.md: {missing}"


def test_every_key_the_firmware_reads_is_documented() -> None:
    keys = firmware_keys()
    assert {
        "mqtt.user",
        "mqtt.password",
        "mqtt.tls.ca",
        "mqtt.tls.cert",
        "wifi.ssid",
        "uplink",
        "lte.apn",
    } <= set(keys)
    missing = {k: w for k, w in keys.items() if k not in documented_keys()}
    assert not missing, (
        "config.json keys read by the firmware but not in firmware/README.md's "
        f"configuration table (key: where read): {missing}"
    )


def test_every_documented_key_is_read() -> None:
    keys = set(firmware_keys())
    stale = {
        d
        for d in documented_keys()
        if d not in keys and not any(k.startswith(d + ".") for k in keys)
    }
    assert not stale, f"documented in firmware/README.md but read nowhere: {sorted(stale)}"


def test_scanner_follows_local_names_and_parameters() -> None:
    src = (
        "def f(cfg):\n"
        "    m = cfg.get('mqtt', {})\n"
        "    t = m.get('tls')\n"
        "    for s in cfg.get('sensors', []):\n"
        "        s.get('ch')\n"
        "    return m['host'], t.get('ca'), cfg['id']\n"
    )
    s = _Scan("x")
    fn = ast.parse(src).body[0]
    assert isinstance(fn, ast.FunctionDef)
    s.function(fn)
    assert {"mqtt.host", "mqtt.tls.ca", "sensors.ch", "id"} <= set(s.keys)
