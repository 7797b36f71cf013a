"""Product profiles signed by a brand owner's own key (docs/protocol.md §2.7, §4.2, §10):
``coldtrace profile`` offline, ``[[registry.authorities]]`` and ``registry
import-statement`` at the gateway, ingest's checks, the trust file and a trace."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.evidence.registry import RegistrySigner
from gateway.evidence.store import open_store
from gateway.service import trust_document
from protocol.bundle import load_bundle
from protocol.cli import main as coldtrace
from protocol.cose import verify_sign1
from protocol.keys import b64d, generate_p256, load_p256_private_key, p256_public_from_sec1
from protocol.record import ProductProfile, chain_hash, make_record, open_record
from protocol.trust import parse_trust
from tests.gateway.devices import SimDevice, wait_for
from tests.gateway.test_trace import DOCK, ITEM, MIN, ROOM, TRUCK, UID, verdict
from tests.schemas import assert_trust

BRAND = "brand-acme"
GTIN = "09506000134352"  # in the brand's scope
OTHER_GTIN = "00012345600012"  # outside it
PROFILE = ["--low", "0", "--high", "4", "--delay", "30m", "--gap", "30m", "--cumul", "2h"]


class Brand:
    """The brand owner's files: key, state, the records it signed."""

    def __init__(self, d: Path) -> None:
        d.mkdir(parents=True, exist_ok=True)
        self.dir = d
        self.key = d / "brand.key"
        self.state = d / "brand-state.json"
        self.n = 0
        assert coldtrace(["profile", "keygen", "--id", BRAND, "-o", str(self.key)]) == 0

    def pubkey(self, capsys: pytest.CaptureFixture[str]) -> str:
        capsys.readouterr()
        assert coldtrace(["profile", "pubkey", "--key", str(self.key)]) == 0
        return capsys.readouterr().out.strip()

    def sign(self, gtin: str = GTIN, *extra: str, at: int | None = None) -> tuple[int, Path]:
        self.n += 1
        out = self.dir / f"p{self.n}.cose"
        args = ["profile", "sign", "--key", str(self.key), "--id", BRAND]
        args += ["--state", str(self.state), gtin, *PROFILE, *extra, "-o", str(out)]
        if at is not None:
            args += ["--at", str(at)]
        return coldtrace(args), out


def with_authority(env, key: str, gtins: str = '["0950600013*"]') -> None:
    text = env.config_path.read_text()
    text += f'\n[[registry.authorities]]\nid = "{BRAND}"\nkey = "{key}"\ngtins = {gtins}\n'
    env.config_path.write_text(text)
    env.cfg = load_config(env.config_path)


def import_statement(env, *files: Path) -> int:
    args = ["gateway", "registry", "import-statement", "-c", str(env.config_path)]
    return coldtrace([*args, *map(str, files)])


# --- the brand's side, offline --------------------------------------------------------------


def test_keygen_sign_and_state_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    brand = Brand(tmp_path / "brand")
    assert stat.S_IMODE(brand.key.stat().st_mode) == 0o600
    made = capsys.readouterr().out
    assert "PRIVATE" not in made and brand.key.read_text() not in made
    # A key is never overwritten.
    assert coldtrace(["profile", "keygen", "--id", BRAND, "-o", str(brand.key)]) == 1
    assert "never overwritten" in capsys.readouterr().err
    pub = p256_public_from_sec1(b64d(brand.pubkey(capsys)))

    t = int(time.time()) - 3600
    assert brand.sign(at=t)[0] == 0
    assert brand.sign("09506000134352", "--lot", "L1", at=t)[0] == 0
    assert brand.sign(at=t + 60)[0] == 0  # restating: the same values again
    assert "import-statement" in capsys.readouterr().out
    recs = [brand.dir.joinpath(f"p{k}.cose").read_bytes() for k in (1, 2, 3)]
    ps = [open_record(r).payload for r in recs]
    assert all(isinstance(p, ProductProfile) for p in ps)
    for raw in recs:
        verify_sign1(raw, pub)
        assert open_record(raw).signer == BRAND
    # The signer chain: seq 0, 1, 2 linked by prev; boot 0.
    assert [(p.seq, p.boot) for p in ps] == [(0, 0), (1, 0), (2, 0)]
    assert ps[0].prev == bytes(16)
    assert ps[1].prev == chain_hash(recs[0]) and ps[2].prev == chain_hash(recs[1])
    # The statement chains: one per (gtin, lot).
    assert [(p.lot, p.cseq) for p in ps] == [(None, 0), ("L1", 0), (None, 1)]
    assert ps[1].cprev == bytes(16) and ps[2].cprev == chain_hash(recs[0])
    p0 = ps[0]
    assert (p0.low, p0.high, p0.delay, p0.gap, p0.cumul) == (0, 400, 1800, 1800, 7200)
    state = json.loads(brand.state.read_text())
    assert state["seq"] == 2 and state["hash"] == chain_hash(recs[2]).hex()
    assert state["chains"][GTIN] == {"cseq": 1, "hash": chain_hash(recs[2]).hex(), "time": t + 60}
    assert state["chains"][f"{GTIN} L1"]["cseq"] == 0
    assert not list(brand.dir.glob(".*tmp*"))  # atomic writes leave nothing behind

    # Refused, nothing written and the state unchanged: --at before the chain's last
    # statement, a bad GTIN, a bad unit, no range, another key with this state.
    before = brand.state.read_bytes()
    code, out = brand.sign(at=t)
    assert code == 1 and not out.exists()
    assert "before the chain's previous statement" in capsys.readouterr().err
    code, out = brand.sign("09506000134353")
    assert code == 1 and not out.exists() and "09506000134353" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        coldtrace(["profile", "sign", "--key", str(brand.key), "--id", BRAND, "--state",
                   str(brand.state), GTIN, "--high", "4 degrees", "--delay", "30m", "--gap",
                   "30m", "-o", str(tmp_path / "x.cose")])  # fmt: skip
    other = Brand(tmp_path / "other")
    other.state = brand.state
    code, out = other.sign()
    assert code == 1 and "another key" in capsys.readouterr().err
    assert brand.state.read_bytes() == before


# --- the gateway's configuration and trust file ----------------------------------------------


def test_authorities_config_and_trust_file(make_broker, make_gateway, capsys) -> None:
    env = make_gateway(make_broker([]))
    key = generate_p256()
    from protocol.keys import b64e, p256_public_to_sec1

    sec1 = b64e(p256_public_to_sec1(key.public_key()))
    original = env.config_path.read_text()
    with_authority(env, sec1)
    doc = trust_document(env.cfg)
    assert_trust(doc)
    entry = next(r for r in doc["registries"] if r["id"] == BRAND)
    assert entry == {
        "id": BRAND,
        "key": sec1,
        "devices": [],
        "places": [],
        "gtins": ["0950600013*"],
    }
    trust = parse_trust(doc)
    assert trust.gtin_authority(GTIN) == BRAND  # the more specific pattern wins
    assert trust.gtin_authority(OTHER_GTIN) == "acme-registry"
    capsys.readouterr()
    assert coldtrace(["gateway", "trust", "-c", str(env.config_path)]) == 0
    assert BRAND in capsys.readouterr().out

    def refused(extra: str) -> str:
        env.config_path.write_text(original + extra)
        with pytest.raises(ConfigError) as exc:
            load_config(env.config_path)
        return str(exc.value)

    auth = f'\n[[registry.authorities]]\nid = "{BRAND}"\nkey = "{sec1}"\n'
    # A tie with the gateway's own gtins: refused, the verifier would find no authority.
    tied = original.replace("[registry]\n", '[registry]\ngtins = ["0950600013*"]\n')
    env.config_path.write_text(tied + auth + 'gtins = ["0950600013*"]\n')
    with pytest.raises(ConfigError, match="equally specific"):
        load_config(env.config_path)
    assert "equally specific" in refused(auth + 'gtins = ["*"]\n')
    assert "not a base64 SEC1" in refused(auth.replace(sec1, "AAAA") + 'gtins = ["1*"]\n')
    assert "exactly id, key and gtins" in refused(auth)
    assert "taken" in refused(auth.replace(BRAND, "acme-registry") + 'gtins = ["1*"]\n')


# --- ingest -----------------------------------------------------------------------------------


def test_ingest_logs_the_brands_profiles_and_quarantines_the_rest(
    make_broker, make_gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = make_gateway(make_broker([]))
    brand = Brand(tmp_path / "brand")
    with_authority(env, brand.pubkey(capsys))
    t = int(time.time()) - 3600
    gw = env.start_gateway()
    try:
        _, p1 = brand.sign(at=t)
        _, outside = brand.sign(OTHER_GTIN, at=t)  # signed, but outside its gtins
        _, p3 = brand.sign(at=t + 60)
        assert import_statement(env, p1, outside, p3) == 0
        wait_for(lambda: len(gw.store.statements(kind=6)) == 2, 15, "the brand's profiles")
        wait_for(lambda: gw.store.reject_counts().get("out_of_scope") == 1, 15, "out_of_scope")
        rows = gw.store.statements(kind=6)
        assert [(r.signer, r.chain, r.cseq) for r in rows] == [(BRAND, GTIN, 0), (BRAND, GTIN, 1)]
        (rej,) = gw.store.rejects(reason="out_of_scope")
        assert OTHER_GTIN in rej.detail and BRAND in rej.detail
        assert import_statement(env, p3) == 0  # again: already logged, harmless
        assert "already" in capsys.readouterr().out

        # Re-signed with another key under the brand's kid: refused at import ...
        forged_key = generate_p256()
        p = open_record(p3.read_bytes()).payload
        forged = tmp_path / "forged.cose"
        forged.write_bytes(make_record(p, BRAND, forged_key))
        assert import_statement(env, forged) == 1
        assert "bad_signature" in capsys.readouterr().err
        # ... and quarantined if it reaches the outbox anyway.
        h3 = chain_hash(p3.read_bytes())
        changed = {"seq": 50, "high": 900, "cseq": 2, "prev": h3, "cprev": h3}
        tampered = make_record(ProductProfile(**{**p.__dict__, **changed}), BRAND, forged_key)
        gw.store.outbox_add(BRAND, 50, tampered)
        wait_for(lambda: gw.store.reject_counts().get("bad_signature") == 1, 15, "bad_signature")

        # Signed by a key the configuration does not know: refused at import, and
        # quarantined as unknown_key from the outbox (an authority removed since).
        stranger = make_record(p, "brand-other", generate_p256())
        path = tmp_path / "stranger.cose"
        path.write_bytes(stranger)
        assert import_statement(env, path) == 1
        assert "unknown_key" in capsys.readouterr().err
        gw.store.outbox_add("brand-other", p.seq, stranger)
        wait_for(lambda: gw.store.reject_counts().get("unknown_key") == 1, 15, "unknown_key")

        # A broken link between adjacent seqs of the brand's signer chain: refused.
        state = json.loads(brand.state.read_text())
        state["hash"] = "00" * 16 if state["hash"] != "00" * 16 else "11" * 16
        brand.state.write_text(json.dumps(state))
        _, p4 = brand.sign(at=t + 120)  # seq 3, prev wrong; its statement chain is right
        assert import_statement(env, p4) == 0
        wait_for(lambda: gw.store.reject_counts().get("broken_link") == 1, 15, "broken_link")
        # A statement chain gap: the brand lost a statement on its way here.
        brand.sign(at=t + 180)  # never imported here
        _, p6 = brand.sign(at=t + 240)
        assert import_statement(env, p6) == 0
        wait_for(lambda: gw.store.reject_counts().get("statement_gap") == 1, 15, "statement_gap")
        assert len(gw.store.statements(kind=6)) == 2
        # Not a file of records at all: a clear error.
        junk = tmp_path / "junk.cose"
        junk.write_bytes(b"hello")
        assert import_statement(env, junk) == 1
        assert "not a signed record" in capsys.readouterr().err
        assert gw.pipeline.error is None
    finally:
        gw.stop()


# --- a trace with the brand's profile ------------------------------------------------------------


def test_a_trace_with_the_brands_profile_passes_once_the_brand_restates(
    make_broker, make_gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rd_a, rd_b = SimDevice("rd-a"), SimDevice("rd-b")
    loggers = {DOCK: SimDevice("tl-dock"), TRUCK: SimDevice("tl-truck"), ROOM: SimDevice("tl-room")}
    devs = [rd_a, rd_b, *loggers.values()]
    env = make_gateway(make_broker([d.id for d in devs]))
    brand = Brand(tmp_path / "brand")
    with_authority(env, brand.pubkey(capsys))
    env.register(*devs)
    t0 = int(time.time()) - 3 * 3600
    store = open_store(env.cfg)
    try:
        signer = RegistrySigner(
            store, env.cfg.registry.id, load_p256_private_key(env.cfg.registry.key_file)
        )
        for place, dev in loggers.items():
            signer.bind(place, [dev.id], at=t0)
    finally:
        store.close()
    code, p1 = brand.sign(GTIN, "--name", "chilled 0-4 °C", at=t0)
    assert code == 0 and import_statement(env, p1) == 0

    gw = env.start_gateway()
    try:
        env.connect(*devs)
        for dev in loggers.values():
            for k in range(33):
                dev.publish(dev.reading(temp=280, time_=t0 + k * 5 * MIN))
        rd_a.publish(rd_a.scan(UID, 1, DOCK, time_=t0 + 10 * MIN, item=ITEM))
        rd_a.publish(rd_a.scan(UID, 2, DOCK, time_=t0 + 20 * MIN, ref=TRUCK))
        rd_b.publish(rd_b.scan(UID, 3, ROOM, time_=t0 + 100 * MIN))
        rd_b.publish(rd_b.scan(UID, 6, ROOM, time_=t0 + 150 * MIN))
        wait_for(lambda: all(not d.unacked for d in devs), 30, "every record acked")
        trace = ["gateway", "trace", "-c", str(env.config_path), UID.hex(), "--wait", "30"]

        # The brand's chain ends at t0, before the commission: the gateway restates its
        # own bindings but cannot restate the brand's profile, and says whom to ask.
        open_path = tmp_path / "open.json"
        capsys.readouterr()
        assert coldtrace([*trace, "-o", str(open_path)]) == 5
        text = capsys.readouterr().out
        assert "restated binding of acme:truck-1" in text
        assert f"The profile of GTIN {GTIN} is signed by {BRAND}" in text
        assert "ask them to restate it: coldtrace profile sign" in text
        assert "--low=0.00 --high=4.00 --delay 1800s --gap 1800s --cumul 7200s" in text
        doc = verdict(env, open_path)
        assert doc["verdict"] == "INCOMPLETE"
        assert "no_profile" in {r["code"] for r in doc["reasons"]}

        # The brand restates (the same values, now) and the gateway imports it: PASS.
        code, p2 = brand.sign(GTIN, "--name", "chilled 0-4 °C")
        assert code == 0 and import_statement(env, p2) == 0
        path = tmp_path / "bundle.json"
        assert coldtrace([*trace, "-o", str(path)]) == 0
        assert "PASS" in capsys.readouterr().out
        doc = verdict(env, path)
        assert doc["verdict"] == "PASS", doc["reasons"]
        assert doc["profile"]["high"] == 400 and doc["profile"]["signer"] == BRAND
        recs = [open_record(r.raw) for r in load_bundle(path).records]
        profiles = [(r.signer, r.payload.cseq) for r in recs if r.payload.kind == 6]
        assert profiles == [(BRAND, 0), (BRAND, 1)]
    finally:
        gw.stop()
