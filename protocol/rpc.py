"""A minimal JSON-RPC 2.0 client over HTTP(S), for checking EVM anchors."""

from __future__ import annotations

import itertools
import json
import urllib.request
from collections.abc import Callable

from protocol.errors import AnchorUnverifiableError


def json_rpc(url: str, *, timeout: float = 10.0) -> Callable[[str, list[object]], object]:
    """Return ``call(method, params) -> result`` for the endpoint at ``url``."""
    ids = itertools.count(1)

    def call(method: str, params: list[object]) -> object:
        body = json.dumps(
            {"jsonrpc": "2.0", "id": next(ids), "method": method, "params": params}
        ).encode()
        req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                reply = json.loads(resp.read())
        except (OSError, ValueError) as exc:
            raise AnchorUnverifiableError(f"RPC {method} to {url} failed: {exc}") from exc
        if not isinstance(reply, dict) or "error" in reply:
            raise AnchorUnverifiableError(f"RPC {method} returned an error: {reply!r}")
        return reply.get("result")

    return call
