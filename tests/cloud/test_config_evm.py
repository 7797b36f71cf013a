"""``[[evm]]`` in cloud.toml: one JSON-RPC endpoint per chain, checked at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.config import ConfigError, load_config

BASE = '[cloud]\ndatabase = "cloud.db"\n'


def write(d: Path, text: str) -> Path:
    (d / "cloud.toml").write_text(BASE + text)
    return d


def test_evm_endpoints_are_read_and_written_back(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[[evm]]\nchain_id = 10\nrpc_url = "https://op.example"\n'))
    assert cfg.evm == {10: "https://op.example"} and cfg.evm_rpc() is not None
    (tmp_path / "cloud.toml").write_text(cfg.text())
    assert load_config(tmp_path).evm == cfg.evm
    assert load_config(write(tmp_path, "")).evm_rpc() is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[evm]]\nchain_id = 0\nrpc_url = "http://x"\n', "chain_id"),
        ('[[evm]]\nchain_id = 1\nrpc_url = "ftp://x"\n', "rpc_url"),
        ("[[evm]]\nchain_id = 1\n", "exactly chain_id and rpc_url"),
        (
            '[[evm]]\nchain_id = 1\nrpc_url = "http://a"\n[[evm]]\nchain_id = 1\nrpc_url = "http://b"\n',
            "distinct",
        ),
        ('[evm]\nchain_id = 1\nrpc_url = "http://a"\n', "array of tables"),
    ],
)
def test_bad_evm_entries_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))
