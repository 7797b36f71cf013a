"""gateway.toml: defaults, relative paths, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gateway.toml"
    p.write_text(text)
    return p


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = load_config(
        write(tmp_path, '[gateway]\nid = "gw-1"\ndata_dir = "var"\n[mqtt]\npassword_file = "pw"\n')
    )
    assert cfg.data_dir == tmp_path / "var" and cfg.db_path == tmp_path / "var" / "gateway.db"
    assert cfg.mqtt.password_file == tmp_path / "pw"
    assert cfg.log.key_file == tmp_path / "keys" / "log.skey"
    assert cfg.ingest.batch_size == 500 and cfg.ingest.verify_workers == 2
    (tmp_path / "pw").write_text("secret\n")
    assert cfg.mqtt.secret() == "secret"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[gateway]\nid = "gw-1"\ntypo = 1\n', "unknown key"),
        ("[gatewy]\n", "unknown sections"),
        ('[gateway]\nid = "GW 1"\n', "not a protocol id"),
        ('[ingest]\nbatch_size = "many"\n', "must be an integer"),
        ("[ingest]\nbatch_size = 0\n", "batch_size"),
        ('[log]\norigin = "has space"\n', "origin"),
        ('[ledger]\nbackend = "bitcoin"\n', "not available"),
        ('[ledger]\nbackend = "evm"\n', "needs a \\[ledger.evm\\] section"),
        (
            '[ledger]\nbackend = "evm"\n[ledger.evm]\nrpc_url = "http://x:8545"\nkey_env = "K"\n',
            "chain_id is required",
        ),
        (
            '[ledger]\nbackend = "evm"\n[ledger.evm]\nrpc_url = "http://x:8545"\nchain_id = 1\n',
            "exactly one of key_file and key_env",
        ),
        ('[ledger.evm]\nrpc_url = "http://x"\nnonce = 3\n', "unknown key 'nonce'"),
        ("[gateway\n", "gateway.toml"),
    ],
)
def test_refusals(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no configuration file"):
        load_config(tmp_path / "nope.toml")


def test_cloud_and_witness_sections(tmp_path: Path) -> None:
    from protocol.note import NoteSigner

    peer = NoteSigner.generate("carrier.test/gw").vkey
    cfg = load_config(
        write(
            tmp_path,
            '[log]\norigin = "packhouse.test/gw"\n[cloud]\nurl = "https://cloud.test/"\n'
            f'[[witness.peers]]\norigin = "carrier.test/gw"\nvkey = "{peer}"\n',
        )
    )
    assert cfg.cloud is not None and cfg.cloud.url == "https://cloud.test"
    assert (cfg.cloud.interval, cfg.cloud.timeout, cfg.cloud.retry_max) == (10.0, 30.0, 60.0)
    assert cfg.witness.name == "packhouse.test/gw/witness"
    assert cfg.witness.key_file == tmp_path / "keys" / "witness.key"
    assert [p.origin for p in cfg.witness.peers] == ["carrier.test/gw"]
    assert load_config(write(tmp_path, "")).cloud is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[cloud]\ninterval = 5\n", r"\[cloud\] url is required"),
        ('[cloud]\nurl = "ftp://x"\n', r"\[cloud\] url must be http"),
        ('[cloud]\nurl = "http://x"\ninterval = 0\n', r"\[cloud\] interval"),
        ('[cloud]\nurl = "http://x"\ntimeout = "soon"\n', "must be a number"),
        ('[cloud]\nurl = "http://x"\nretry_max = 0.5\n', "retry_max"),
        ('[cloud]\nurl = "http://x"\nproxy = 1\n', "unknown key"),
        ('[witness]\nname = "has space"\n', "not a key name"),
        ('[log]\norigin = "a.test/gw"\n[witness]\nname = "a.test/gw"\n', "must differ"),
        ('[[witness.peers]]\norigin = "b.test/gw"\n', "exactly origin and vkey"),
        ('[[witness.peers]]\norigin = "b.test/gw"\nvkey = "nope"\n', "witness.peers"),
        ('[[witness.peers]]\norigin = "b.test/gw"\nvkey = "{vkey}"\n', "needs \\[cloud\\]"),
        (
            '[cloud]\nurl = "http://x"\n[[witness.peers]]\norigin = "c.test/gw"\nvkey = "{vkey}"\n',
            "not the peer's origin",
        ),
    ],
)
def test_cloud_and_witness_refusals(tmp_path: Path, text: str, message: str) -> None:
    from protocol.note import NoteSigner

    text = text.replace("{vkey}", NoteSigner.generate("b.test/gw").vkey)
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))
