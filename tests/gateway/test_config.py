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
        ('[ledger]\nbackend = "evm"\n', "not available"),
        ("[gateway\n", "gateway.toml"),
    ],
)
def test_refusals(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no configuration file"):
        load_config(tmp_path / "nope.toml")
