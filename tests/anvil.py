"""Anvil for the tests: the runner of demo/anvil.py, and a funded account.

Missing Anvil fails the tests that use it, never skips them (``npm ci``, run by
scripts/ensure-system.sh, installs it). The tests make accounts with fresh
random keys (nothing committed) and fund them with ``anvil_setBalance``.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from eth_account import Account

from demo.anvil import Anvil, AnvilError, anvil_binary

__all__ = ["Anvil", "AnvilError", "anvil_binary", "funded_key", "write_key"]

ETHER = 10**18


def funded_key(node: Anvil, ether: int = 100) -> tuple[str, str]:
    """A fresh account key (hex, 0x-prefixed) holding ``ether`` on ``node``; (key, address)."""
    key = "0x" + secrets.token_hex(32)
    address = Account.from_key(key).address
    node.set_balance(address, ether * ETHER)
    return key, address


def write_key(path: Path, key: str) -> Path:
    """Write an account key file as an operator would: the hex key, mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path
