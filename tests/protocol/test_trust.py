"""Trust file v2 (protocol/trust.py, docs/protocol.md §10): reader, builder, JSON Schema.

As for bundles, the reader and the schema must agree on every document below;
the rules JSON Schema cannot express (an origin equal to its vkey's name, key
ids, points on the curve, unique ids, quorum against the witnesses, byte
lengths) are tested against the reader alone.
"""

from __future__ import annotations

import base64
import copy
import io
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import TrustError
from protocol.keys import generate_p256, p256_public_to_sec1
from protocol.note import NoteSigner, NoteVerifier, WitnessSigner
from protocol.trust import (
    MAX_TRUST_BYTES,
    EvmLedger,
    Scopes,
    Trust,
    load_trust,
    loads_trust,
    parse_trust,
    trust_document,
)

SCHEMA = json.loads(
    (Path(__file__).parents[2] / "protocol" / "schema" / "trust.schema.json").read_text()
)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
ORIGIN = "coldtrace.example/acme/warehouse-7"
LOG = NoteSigner(ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
WITNESS = WitnessSigner("witness.example/w1", Ed25519PrivateKey.from_private_bytes(bytes(32)))
WITNESS_2 = WitnessSigner(
    "witness.example/w2", Ed25519PrivateKey.from_private_bytes(bytes(31) + b"\x02")
)
REG_KEY = p256_public_to_sec1(generate_p256().public_key())
DEV_KEY = p256_public_to_sec1(generate_p256().public_key())
LEDGER_KEY = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"  # EIP-55 mixed case
ACME = Scopes(devices=("tl-*", "rd-*"), places=("dc-rotterdam:*",), gtins=("0950600013435*",))
BRAND = Scopes(devices=(), places=(), gtins=("09506000134352",))
DOC = trust_document(
    logs=[(ORIGIN, LOG.vkey)],
    registries={
        "reg-acme": (REG_KEY, ACME),
        "reg-brand": (p256_public_to_sec1(generate_p256().public_key()), BRAND),
    },
    ledgers={"ledger.example/acme": LEDGER_KEY},
    evm=[EvmLedger(31337, CONTRACT)],
    devices={"tl-7f3a21": DEV_KEY},
    witnesses=[WITNESS.vkey],
    quorum=0,
)
DELETE = object()


def changed(doc: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value
    return out


def only(**members: Any) -> dict[str, Any]:
    return {"format": "coldtrace-trust", "version": 2, **members}


# --- reading what the builder writes --------------------------------------------------------


def test_builder_document_reads_back_with_every_pin() -> None:
    trust = parse_trust(DOC)
    assert [v.vkey for v in trust.logs] == [LOG.vkey]
    assert set(trust.registries) == {"reg-acme", "reg-brand"}
    assert p256_public_to_sec1(trust.registries["reg-acme"]) == REG_KEY
    assert trust.registry_key("reg-acme") is trust.registries["reg-acme"]
    assert trust.registry_key("nobody") is None
    assert trust.scopes == {"reg-acme": ACME, "reg-brand": BRAND}
    assert trust.ledgers["ledger.example/acme"].public_bytes_raw() == LEDGER_KEY
    assert trust.evm == [EvmLedger(31337, CONTRACT.lower())]
    assert trust.pins_evm(31337, CONTRACT) and not trust.pins_evm(1, CONTRACT)
    assert p256_public_to_sec1(trust.devices["tl-7f3a21"]) == DEV_KEY
    assert [w.vkey for w in trust.witnesses] == [WITNESS.vkey]
    assert trust.quorum == 0
    VALIDATOR.validate(DOC)


def test_builder_leaves_out_empty_lists_and_quorum() -> None:
    doc = trust_document(devices={"tl-1": DEV_KEY})
    assert doc == {
        "format": "coldtrace-trust",
        "version": 2,
        "devices": [{"id": "tl-1", "key": base64.b64encode(DEV_KEY).decode()}],
    }
    trust = parse_trust(doc)
    assert (trust.logs, trust.registries, trust.witnesses, trust.quorum) == ([], {}, [], 0)
    VALIDATOR.validate(doc)


def test_loads_and_load_trust(tmp_path: Path) -> None:
    text = json.dumps(DOC, indent=1)
    assert loads_trust(text).registries.keys() == {"reg-acme", "reg-brand"}
    path = tmp_path / "trust.json"
    path.write_text(text)
    assert set(load_trust(path).devices) == {"tl-7f3a21"}
    assert set(load_trust(io.BytesIO(text.encode())).devices) == {"tl-7f3a21"}
    with pytest.raises(TrustError, match="cannot open"):
        load_trust(tmp_path / "missing.json")


def test_authorities_follow_the_scopes() -> None:
    trust = parse_trust(DOC)
    assert trust.device_authority("tl-7f3a21") == "reg-acme"
    assert trust.device_authority("xx-1") is None
    assert trust.place_authority("dc-rotterdam:dock-4") == "reg-acme"
    assert trust.place_authority("dc-amsterdam:dock-4") is None
    assert trust.gtin_authority("09506000134352") == "reg-brand"  # 14 beats 13
    assert trust.gtin_authority("09506000134350") == "reg-acme"
    assert trust.gtin_authority("09506000134369") is None
    tie = parse_trust(
        changed(DOC, "registries.1.gtins", ["0950600013435*"])  # both at 13: nobody
    )
    assert tie.gtin_authority("09506000134352") is None


def test_a_vkey_whose_base64_holds_a_plus_is_split_at_the_first_two_plus_signs() -> None:
    for seed in range(256):
        signer = NoteSigner(ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))
        key_part = signer.vkey.split("+", 2)[2]
        if "+" in key_part:
            break
    else:
        pytest.fail("no key with '+' in its base64 among 256 seeds")
    assert signer.vkey.count("+") >= 3
    assert NoteVerifier.from_vkey(signer.vkey) == signer.verifier()
    trust = parse_trust(only(logs=[{"origin": ORIGIN, "vkey": signer.vkey}]))
    assert trust.logs[0].vkey == signer.vkey
    VALIDATOR.validate(only(logs=[{"origin": ORIGIN, "vkey": signer.vkey}]))


# --- schema and reader agree ------------------------------------------------------------------


def bad_variants() -> list[tuple[str, dict[str, Any]]]:
    d = DOC
    key = d["registries"][0]["key"]
    local = {"type": "local", "id": "l", "key": base64.b64encode(LEDGER_KEY).decode()}
    evm = {"type": "evm", "chain_id": 1, "contract": CONTRACT}
    return [
        ("missing format", changed(d, "format", DELETE)),
        ("missing version", changed(d, "version", DELETE)),
        ("format", changed(d, "format", "coldtrace-bundle")),
        ("version 1", changed(d, "version", 1)),
        ("version 3", changed(d, "version", 3)),
        ("version true", changed(d, "version", True)),
        ("unknown top member", changed(d, "keys", [])),
        ("pins nothing", only()),
        ("pins nothing but empty lists", only(logs=[], registries=[], ledgers=[], devices=[])),
        ("pins only witnesses", only(witnesses=[{"vkey": WITNESS.vkey}])),
        ("logs not a list", changed(d, "logs", {})),
        ("log extra member", changed(d, "logs.0.name", "x")),
        ("log no vkey", changed(d, "logs.0.vkey", DELETE)),
        ("log no origin", changed(d, "logs.0.origin", DELETE)),
        ("log origin with +", changed(d, "logs.0.origin", "a+b")),
        ("log origin with space", changed(d, "logs.0.origin", "a b")),
        ("vkey two parts", changed(d, "logs.0.vkey", ORIGIN + "+" + LOG.vkey.split("+")[1])),
        (
            "vkey hex upper",
            changed(
                d,
                "logs.0.vkey",
                LOG.vkey.replace(LOG.vkey.split("+")[1], LOG.vkey.split("+")[1].upper()),
            ),
        ),
        (
            "vkey type 2",
            changed(
                d,
                "logs.0.vkey",
                LOG.vkey[: LOG.vkey.rindex("+") + 1]
                + base64.b64encode(b"\x02" + bytes(32)).decode(),
            ),
        ),
        (
            "vkey short key",
            changed(
                d,
                "logs.0.vkey",
                LOG.vkey[: LOG.vkey.rindex("+") + 1]
                + base64.b64encode(b"\x01" + bytes(31)).decode(),
            ),
        ),
        ("registry no scopes", changed(d, "registries.0.places", DELETE)),
        ("registry extra", changed(d, "registries.0.role", 1)),
        ("registry id upper", changed(d, "registries.0.id", "Reg-1")),
        ("registry id long", changed(d, "registries.0.id", "r" * 33)),
        ("registry key hex", changed(d, "registries.0.key", REG_KEY.hex())),
        (
            "registry key compressed",
            changed(d, "registries.0.key", base64.b64encode(b"\x02" + REG_KEY[1:33]).decode()),
        ),
        (
            "registry key 0x02 prefix",
            changed(d, "registries.0.key", base64.b64encode(b"\x02" + REG_KEY[1:]).decode()),
        ),
        ("registry key pad bits", changed(d, "registries.0.key", key[:-2] + "B=")),
        ("registry key whitespace", changed(d, "registries.0.key", key[:10] + " " + key[11:])),
        ("scope not list", changed(d, "registries.0.devices", "tl-*")),
        ("scope empty pattern", changed(d, "registries.0.devices", [""])),
        ("scope pattern number", changed(d, "registries.0.places", [7])),
        ("scope pattern control", changed(d, "registries.0.gtins", ["0950\n*"])),
        ("scope pattern long", changed(d, "registries.0.gtins", ["9" * 129])),
        ("ledger type", changed(d, "ledgers.0.type", "paper")),
        ("ledger no type", changed(d, "ledgers.0.type", DELETE)),
        ("local extra", changed(d, "ledgers", [{**local, "chain_id": 1}])),
        ("local id +", changed(d, "ledgers", [{**local, "id": "a+b"}])),
        ("local id 129", changed(d, "ledgers", [{**local, "id": "l" * 129}])),
        (
            "local key 31",
            changed(d, "ledgers", [{**local, "key": base64.b64encode(bytes(31)).decode()}]),
        ),
        (
            "local key 33",
            changed(d, "ledgers", [{**local, "key": base64.b64encode(bytes(33)).decode()}]),
        ),
        ("evm extra", changed(d, "ledgers", [{**evm, "id": "x"}])),
        ("evm chain 0", changed(d, "ledgers", [{**evm, "chain_id": 0}])),
        ("evm chain bool", changed(d, "ledgers", [{**evm, "chain_id": True}])),
        ("evm chain 2^64", changed(d, "ledgers", [{**evm, "chain_id": 2**64}])),
        ("evm contract short", changed(d, "ledgers", [{**evm, "contract": "0x1234"}])),
        ("evm contract no 0x", changed(d, "ledgers", [{**evm, "contract": "5f" * 20}])),
        ("device extra", changed(d, "devices.0.role", 1)),
        ("device id", changed(d, "devices.0.id", "-tl")),
        ("device key short", changed(d, "devices.0.key", base64.b64encode(DEV_KEY[:-1]).decode())),
        ("witness extra", changed(d, "witnesses.0.name", "w")),
        ("witness vkey", changed(d, "witnesses.0.vkey", "not a vkey")),
        (
            "witness name with space",
            changed(d, "witnesses.0.vkey", "a b" + WITNESS.vkey[WITNESS.vkey.index("+") :]),
        ),
        ("quorum -1", changed(d, "quorum", -1)),
        ("witness vkey of a log key (type 0x01)", changed(d, "witnesses.0.vkey", LOG.vkey)),
        ("log vkey of a witness key (type 0x04)", changed(d, "logs.0.vkey", WITNESS.vkey)),
        ("quorum bool", changed(d, "quorum", False)),
        ("quorum text", changed(d, "quorum", "0")),
    ]


@pytest.mark.parametrize(("name", "doc"), bad_variants(), ids=[n for n, _ in bad_variants()])
def test_schema_and_reader_refuse_the_same_bad_trust_files(name: str, doc: dict[str, Any]) -> None:
    assert not VALIDATOR.is_valid(doc), f"the schema accepts: {name}"
    with pytest.raises(TrustError) as info:
        parse_trust(doc)
    assert info.value.code == "malformed_trust"


def good_variants() -> list[dict[str, Any]]:
    d = DOC
    return [
        d,
        only(logs=[{"origin": ORIGIN, "vkey": LOG.vkey}]),
        only(
            registries=[
                {
                    "id": "r",
                    "key": d["registries"][0]["key"],
                    "devices": [],
                    "places": [],
                    "gtins": [],
                }
            ]
        ),
        only(ledgers=[{"type": "evm", "chain_id": 2**64 - 1, "contract": CONTRACT.lower()}]),
        only(ledgers=[{"type": "local", "id": "~" * 128, "key": d["ledgers"][0]["key"]}]),
        only(devices=d["devices"], witnesses=[], quorum=0),
        changed(d, "quorum", 1),
        changed(changed(d, "witnesses", [*d["witnesses"], {"vkey": WITNESS_2.vkey}]), "quorum", 2),
        changed(changed(d, "witnesses", [*d["witnesses"], {"vkey": WITNESS_2.vkey}]), "quorum", 1),
        changed(d, "registries.0.places", ["*", "**", "x" * 128, "é"]),
    ]


@pytest.mark.parametrize("doc", good_variants(), ids=lambda d: "")
def test_schema_and_reader_accept_the_same_good_trust_files(doc: dict[str, Any]) -> None:
    VALIDATOR.validate(doc)
    assert isinstance(parse_trust(doc), Trust)
    assert isinstance(loads_trust(json.dumps(doc)), Trust)


def _flip_id(vkey: str) -> str:
    name, hex_id, key = vkey.split("+", 2)
    return f"{name}+{(int(hex_id, 16) ^ 1):08x}+{key}"


def code_only_refusals() -> list[tuple[str, dict[str, Any]]]:
    d = DOC
    other = NoteSigner("other.example/log", Ed25519PrivateKey.generate())
    bad_id = LOG.vkey.split("+")
    bad_id[1] = f"{(int(bad_id[1], 16) ^ 1):08x}"
    off_curve = b"\x04" + bytes(63) + b"\x01"
    return [
        ("origin differs from vkey name", changed(d, "logs.0.vkey", other.vkey)),
        ("vkey key id", changed(d, "logs.0.vkey", "+".join(bad_id))),
        (
            "registry key off the curve",
            changed(d, "registries.0.key", base64.b64encode(off_curve).decode()),
        ),
        (
            "device key off the curve",
            changed(d, "devices.0.key", base64.b64encode(off_curve).decode()),
        ),
        ("two logs, one origin", changed(d, "logs", d["logs"] * 2)),
        ("two registries, one id", changed(d, "registries.1.id", "reg-acme")),
        ("two ledgers, one id", changed(d, "ledgers", [d["ledgers"][0]] * 2)),
        (
            "two EVM pins, one contract",
            changed(
                d, "ledgers", [d["ledgers"][1], {**d["ledgers"][1], "contract": CONTRACT.lower()}]
            ),
        ),
        ("two devices, one id", changed(d, "devices", d["devices"] * 2)),
        ("two witnesses, one key", changed(d, "witnesses", d["witnesses"] * 2)),
        ("quorum above the witnesses", changed(d, "quorum", 2)),
        ("quorum without witnesses", changed(changed(d, "witnesses", DELETE), "quorum", 1)),
        ("witness vkey key id", changed(d, "witnesses.0.vkey", _flip_id(WITNESS.vkey))),
        ("EIP-55 checksum", changed(d, "ledgers.1.contract", CONTRACT.replace("5Fb", "5fB"))),
        ("pattern of 129 UTF-8 bytes", changed(d, "registries.0.places", ["é" * 64 + "x"])),
    ]


@pytest.mark.parametrize(
    ("name", "doc"), code_only_refusals(), ids=[n for n, _ in code_only_refusals()]
)
def test_reader_refuses_what_the_schema_cannot_express(name: str, doc: dict[str, Any]) -> None:
    assert VALIDATOR.is_valid(doc)
    with pytest.raises(TrustError):
        parse_trust(doc)


def test_version_1_trust_files_get_a_clear_message() -> None:
    with pytest.raises(TrustError, match=r"^version 1 trust files are not supported"):
        parse_trust(changed(DOC, "version", 1))


def test_an_empty_trust_file_is_an_error_not_a_pass() -> None:
    with pytest.raises(TrustError, match="pins no keys"):
        parse_trust(only())
    with pytest.raises(TrustError, match="pins no keys"):
        parse_trust(only(witnesses=[{"vkey": WITNESS.vkey}]))


def test_a_quorum_of_one_or_two_witnesses_parses() -> None:
    trust = parse_trust(changed(DOC, "quorum", 1))
    assert trust.quorum == 1 and trust.witnesses == [WITNESS.verifier()]
    two = changed(DOC, "witnesses", [{"vkey": WITNESS.vkey}, {"vkey": WITNESS_2.vkey}])
    for quorum in (1, 2):
        trust = parse_trust(changed(two, "quorum", quorum))
        assert trust.quorum == quorum
        assert trust.witnesses == [WITNESS.verifier(), WITNESS_2.verifier()]
    with pytest.raises(TrustError, match="quorum"):
        parse_trust(changed(two, "quorum", 3))  # more than the witnesses
    trust = parse_trust(changed(DOC, "quorum", DELETE))
    assert trust.quorum == 0 and len(trust.witnesses) == 1


def test_a_witness_must_be_a_cosigner_key_and_a_log_key_a_note_key() -> None:
    with pytest.raises(TrustError, match="unsupported signature type"):
        parse_trust(
            changed(
                DOC,
                "witnesses.0.vkey",
                NoteSigner(
                    "witness.example/w1", Ed25519PrivateKey.from_private_bytes(bytes(32))
                ).vkey,
            )
        )
    with pytest.raises(TrustError, match="unsupported signature type"):
        parse_trust(
            changed(
                DOC,
                "logs.0.vkey",
                WitnessSigner(ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes(range(32)))).vkey,
            )
        )


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(DOC).replace('"version": 2', '"version": 2, "version": 2'),
        json.dumps(DOC).replace('"version": 2', '"version": 2.0'),
        json.dumps(DOC).replace('"quorum": 0', '"quorum": NaN'),
        json.dumps(DOC).replace('"quorum": 0', '"quorum": ' + "[" * 50 + "]" * 50),
        "\ufeff" + json.dumps(DOC),
        json.dumps(DOC)[:-1],
    ],
)
def test_the_hardened_reader_guards_trust_files_too(text: str) -> None:
    with pytest.raises(TrustError):
        loads_trust(text)


def test_trust_files_are_limited_to_one_mib() -> None:
    text = json.dumps(DOC)
    padded = text[:-1] + " " * (MAX_TRUST_BYTES - len(text)) + "}"
    assert len(padded) == MAX_TRUST_BYTES
    loads_trust(padded)
    with pytest.raises(TrustError, match="too large"):
        loads_trust(padded + " ")
