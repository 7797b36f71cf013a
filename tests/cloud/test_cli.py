"""``coldtrace cloud``: init, the operator's commands, and ``serve`` as a real uvicorn
process on loopback, answering over HTTP and stopping on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from protocol.cli import main
from protocol.keys import b64e
from tests.protocol.scenario import Scenario


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_init_admin_and_serve(tmp_path: Path, capsys) -> None:
    d = tmp_path / "cloud"
    port = _free_port()
    assert main(["cloud", "init", "--dir", str(d), "--listen", f"127.0.0.1:{port}"]) == 0
    assert (d / "cloud.toml").exists() and (d / "witness.key").stat().st_mode & 0o077 == 0
    token = (d / "operator.token").read_text().strip()
    assert oct((d / "operator.token").stat().st_mode & 0o777) == "0o600"
    assert main(["cloud", "init", "--dir", str(d)]) == 2  # never over an existing cloud

    s = Scenario(registry_id="reg-packhouse", origin="packhouse.example/gw")
    assert main(["cloud", "org", "add", "--dir", str(d), "packhouse"]) == 0
    assert main(["cloud", "log", "add", "--dir", str(d), "packhouse", s.log.vkey]) == 0
    assert (
        main(
            [
                "cloud",
                "registry",
                "add",
                "--dir",
                str(d),
                "packhouse",
                "--id",
                s.registry.id,
                "--key",
                b64e(s.registry.sec1),
                "--devices",
                "ph-*",
                "--places",
                "packhouse:*",
            ]
        )
        == 0
    )
    assert main(["cloud", "org", "add", "--dir", str(d), "Bad Name"]) == 2
    capsys.readouterr()
    assert main(["cloud", "token", "add", "--dir", str(d), "packhouse", "--scopes", "read"]) == 0
    read_token = capsys.readouterr().out.strip()
    assert read_token.startswith("ct_")
    assert main(["cloud", "trust", "--dir", str(d)]) == 0
    trust = json.loads(capsys.readouterr().out)
    assert [lg["origin"] for lg in trust["logs"]] == ["packhouse.example/gw"]
    assert trust["registries"][0]["places"] == ["packhouse:*"] and trust["quorum"] == 1

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "protocol.cli", "cloud", "serve", "--dir", str(d)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the cloud did not start"
            time.sleep(0.1)
        assert httpx.get(base + "/openapi.json").json()["info"]["title"] == "ColdTrace cloud"
        orgs = httpx.get(base + "/v1/orgs", headers={"Authorization": f"Bearer {token}"}).json()
        assert {o["name"] for o in orgs} == {"operator", "packhouse"}
        mine = httpx.get(base + "/v1/orgs", headers={"Authorization": f"Bearer {read_token}"})
        assert [o["name"] for o in mine.json()] == ["packhouse"]
        assert httpx.get(base + "/v1/orgs").status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    lines = [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
    assert any(x.get("event") == "request" and x.get("path") == "/healthz" for x in lines)
