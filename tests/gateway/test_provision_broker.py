"""`coldtrace device provision --broker-dir`: the board's broker account is made and its
password written into the board's config.json, with no password copied by hand; the
real Mosquitto accepts it after a reload and keeps it when the configuration is
rendered again by `coldtrace gateway broker`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from gateway.provision import ProvisionError, broker_login
from gateway.transport.broker import (
    BrokerProcess,
    BrokerUser,
    add_account,
    free_port,
    read_credentials,
    start_broker,
    write_config,
)
from protocol.cli import main as coldtrace
from tests.firmware.test_provision import BOARD, FAKE_MPREMOTE
from tests.gateway.env import mosquitto_missing
from tests.gateway.rawmqtt import RawClient


def _connects(broker: BrokerProcess, user: str, password: str) -> int:
    """CONNACK code, waiting up to 5 s for a reload (SIGHUP is asynchronous) to apply."""
    assert broker.port is not None
    code = -1
    for _ in range(100):
        c = RawClient(broker.port, "c", username=user, password=password)
        code = c.connect()
        c.close()
        if code == 0:
            break
        time.sleep(0.05)
    return code


def test_provisioned_board_logs_in_with_the_password_written_to_its_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if mosquitto_missing():
        pytest.fail("mosquitto is not installed: run `make system`")
    bdir = tmp_path / "mosquitto"
    port = free_port()
    conf = write_config(bdir, port=port, users=[BrokerUser("gw@site", "gateway")])
    (tmp_path / "fake_board_impl.py").write_text(BOARD)
    state = tmp_path / "board.json"
    exe = tmp_path / "mpremote.py"
    exe.write_text(FAKE_MPREMOTE.format(here=str(tmp_path), state=str(state)))
    with start_broker(conf) as broker:
        rc = coldtrace(
            [
                "device",
                "provision",
                "--port",
                "/dev/ttyFAKE",
                "--id",
                "tl-9",
                "--role",
                "logger",
                "--registry",
                str(tmp_path / "provisioned.json"),
                "--broker-dir",
                str(bdir),
                "--mpremote",
                f"{sys.executable} {exe}",
            ]
        )
        out = capsys.readouterr()
        assert rc == 0, out.err
        assert "reload the broker" in out.out
        board = json.loads(state.read_text())
        mqtt = json.loads(bytes.fromhex(board["files"]["config.json"]))["mqtt"]
        assert mqtt["user"] == "tl-9" and mqtt["password"] == read_credentials(bdir)["tl-9"]
        assert mqtt["password"] not in out.out  # never printed
        broker.reload()
        assert _connects(broker, "tl-9", mqtt["password"]) == 0
        assert _connects(broker, "tl-9", "wrong") == 5
        # Provisioning again (a new config) keeps the account and its password.
        assert broker_login({"id": "tl-9"}, bdir)["password"] == mqtt["password"]
        # Rendering the broker configuration again keeps the account.
        render = ["gateway", "broker", "--write-only", "--dir", str(bdir), "--port", str(port)]
        assert coldtrace([*render, "--gateway", "gw@site"]) == 0
        broker.reload()
        time.sleep(0.5)
        assert _connects(broker, "tl-9", mqtt["password"]) == 0
        assert read_credentials(bdir)["tl-9"] == mqtt["password"]


def test_a_broker_account_needs_a_broker_configuration(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="write it first"):
        broker_login({"id": "tl-1", "mqtt": {"host": "gw"}}, tmp_path / "none")
    assert not (tmp_path / "none").exists()
    with pytest.raises(Exception, match="device id"):
        add_account(tmp_path, "gw@x", "device")  # a gateway name is never a device account
