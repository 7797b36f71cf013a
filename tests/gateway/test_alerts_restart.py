"""An alarm open when the gateway is killed (kill -9) gets its end event after the restart.

A real Mosquitto, a real ``coldtrace gateway run`` process, a device signing
readings: an excursion alarms, the gateway is killed with SIGKILL, a new
process starts on the same directory, the excursion goes on and ends. The
alarm must keep its id, end once with the whole excursion's figures, and
never be raised a second time - on the MQTT alerts topic (watched by a
monitor account) as in the store, which ``coldtrace gateway alerts`` reads
while the gateway runs.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.alerts import STATE_META
from gateway.evidence.store import open_store
from gateway.transport.broker import BrokerUser, free_port, read_credentials, start_broker
from gateway.transport.broker import write_config as write_broker_config
from tests.gateway.devices import SimDevice, wait_for
from tests.gateway.env import GW_ID, GW_USER, Broker, GatewayDir, mosquitto_missing

MONITOR = "ops@test"
ALERTS = """
[alerts]
default = "quick"

[alerts.profiles.quick]
low = 200
high = 800
delay = 60
"""


class Monitor:
    """An MQTT client reading the gateway's alerts topic, as an operator's tool would."""

    def __init__(self, port: int, password: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="monitor-test")
        self.client.username_pw_set(MONITOR, password)
        self.client.on_connect = lambda c, *_: c.subscribe(f"ct/v1/gw/{GW_ID}/alerts", qos=1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = lambda _c, _u, msg: self.events.append(json.loads(msg.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(15), "the monitor did not subscribe"

    def phases(self) -> list[tuple[str, str]]:
        return [(e["phase"], e["id"]) for e in self.events if e["kind"] == "excursion"]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def cli_alerts(config: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "protocol.cli", "gateway", "alerts", "-c", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


def send(dev: SimDevice, *readings: tuple[int, int], timeout: float = 60.0) -> None:
    """Publish, and resend what is not acked (as the firmware does) until all is acked:
    a gateway still starting has not subscribed yet."""
    for t, temp in readings:
        dev.publish(dev.reading(temp, time_=t))
    deadline = time.monotonic() + timeout
    while dev.acked != dev.seq - 1:
        assert time.monotonic() < deadline, f"records of {dev.id} never acked"
        time.sleep(1.0)
        if dev.acked != dev.seq - 1:
            dev.resend_unacked()


def test_an_alarm_open_at_kill_9_ends_after_the_restart(tmp_path: Path, make_gateway: Any) -> None:
    assert not mosquitto_missing(), "mosquitto is not installed: run `make system`"
    dev = SimDevice("tl-k9")
    users = [
        BrokerUser(GW_USER, "gateway"),
        BrokerUser(MONITOR, "monitor"),
        BrokerUser(dev.id, "device"),
    ]
    port = free_port()
    conf = write_broker_config(tmp_path / "broker", port=port, users=users, gateway_id=GW_ID)
    process = start_broker(conf)
    monitor = None
    try:
        broker = Broker(process, port, tmp_path / "broker", read_credentials(tmp_path / "broker"))
        gw: GatewayDir = make_gateway(broker)
        with gw.config_path.open("a", encoding="utf-8") as f:
            f.write(ALERTS)
        gw.register(dev)
        monitor = Monitor(port, broker.password(MONITOR))
        first = gw.start_process()
        gw.connect(dev)
        t0 = int(time.time()) - 600
        send(dev, (t0, 900), (t0 + 120, 950))  # out of range for 120 s >= delay 60: alarm
        wait_for(lambda: len(monitor.phases()) == 1, 30, "the start event")
        ((phase, alarm_id),) = monitor.phases()
        assert (phase, alarm_id) == ("start", f"excursion/{dev.id}/0/high/{t0}")

        def saved() -> bool:
            store = open_store(gw.cfg)
            try:
                state = json.loads(store.get_meta(STATE_META) or "{}")
            finally:
                store.close()
            streams = state.get("engine", {}).get("streams", [])
            return any(s[2]["exc"] and s[2]["exc"]["alarm_at"] == t0 + 120 for s in streams)

        wait_for(saved, 30, "the alert state saved")
        first.send_signal(signal.SIGKILL)
        assert first.wait(30) == -signal.SIGKILL

        gw.start_process()
        # Still out of range after the restart, then back in range.
        send(dev, (t0 + 180, 990), (t0 + 240, 980), (t0 + 300, 500))
        wait_for(lambda: len(monitor.phases()) >= 2, 30, "the end event")
        time.sleep(1.0)  # a second start would arrive now
        assert monitor.phases() == [("start", alarm_id), ("end", alarm_id)]
        end = monitor.events[-1]
        assert (end["start"], end["end"], end["duration"]) == (t0, t0 + 300, 300)
        assert (end["peak_centi"], end["readings"], end["cause"]) == (990, 4, "in_range")

        rows = cli_alerts(gw.config_path)  # the store, read while the gateway runs
        assert [(r["id"], r["ended"], r["event"]["phase"]) for r in rows] == [
            (alarm_id, t0 + 300, "end")
        ]
        store = open_store(gw.cfg)
        try:
            assert not [a for a in store.audit_log() if a["action"] == "close"]
        finally:
            store.close()
    finally:
        if monitor is not None:
            monitor.close()
        process.stop()
