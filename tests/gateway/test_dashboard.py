"""The operator's dashboard (gateway/dashboard.py) against a real gateway, a real
Mosquitto and simulated devices: the SSE stream, acknowledging alerts (and the audit
log), what the page shows, the token, and the page itself in a real browser
(Playwright + Debian's chromium; screenshots in test-artifacts/dashboard/)."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import load_config
from gateway.dashboard import DashboardServer
from gateway.evidence.store import open_store
from gateway.transport.broker import free_port
from protocol.record import Reading, Status, make_record
from tests.gateway.devices import SimDevice, chain_link, wait_for

ROOM = "acme:room-1"
ITEM = "/01/09506000134352/10/LOT-42/21/0007"
UID = bytes.fromhex("04a23c5a1b6f81")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def signed(dev: SimDevice, cls: Any, **fields: Any) -> bytes:
    """The device's next record of payload class ``cls`` (e.g. a reading with a battery
    voltage, a heartbeat with its queue), chained like SimDevice's own."""
    with dev._lock:
        p = cls(
            boot=dev.boot, seq=dev.seq, time=int(time.time()), tq=dev.tq, prev=dev.prev, **fields
        )
        raw = make_record(p, dev.id, dev.key)
        dev.unacked[dev.seq] = raw
        dev.seq += 1
        dev.prev = chain_link(raw)
    return raw


def configure(env: Any, *, port: int, token: str | None = None, grace: int = 1) -> None:
    """Add [dashboard] and [alerts] (a 2-8 °C profile alarming at once) to gateway.toml."""
    extra = f"""
[dashboard]
listen = "127.0.0.1:{port}"
upload_interval = 60
offline_grace = {grace}
{f'token = "{token}"' if token else ""}

[dashboard.upload_intervals]
"tl-fast" = 1

[alerts.profiles.room]
low = 200
high = 800
delay = 0

[alerts.places]
"{ROOM}" = "room"
"""
    with env.config_path.open("a", encoding="utf-8") as f:
        f.write(extra)
    env.cfg = load_config(env.config_path)


class Scene:
    def __init__(self, make_broker: Any, make_gateway: Any, *, token: str | None = None) -> None:
        self.tl = SimDevice("tl-1")
        self.fast = SimDevice("tl-fast")
        self.idle = SimDevice("tl-idle")
        self.rd = SimDevice("rd-1")
        devs = [self.tl, self.fast, self.idle, self.rd]
        self.env = make_gateway(make_broker([d.id for d in devs]))
        self.port = free_port()
        configure(self.env, port=self.port, token=token)
        self.env.register(self.tl, self.fast, self.idle, place=ROOM)
        self.env.register(self.rd)
        self.base = f"http://127.0.0.1:{self.port}"

    def publish(self, dev: SimDevice, raw: bytes) -> None:
        dev.publish(raw)
        wait_for(lambda: not dev.unacked, 20, f"{dev.id}'s records acked")


@pytest.fixture
def scene(make_broker: Any, make_gateway: Any) -> Iterator[Scene]:
    s = Scene(make_broker, make_gateway)
    gw = s.env.start_gateway()
    try:
        assert gw.dashboard is not None
        s.env.connect(s.tl, s.fast, s.rd)
        yield s
    finally:
        gw.stop()


class Stream:
    """An SSE client on /api/stream, collecting (event, data) in a queue."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.client = httpx.Client(timeout=httpx.Timeout(30, read=60), headers=headers)
        self.content_type = ""
        self._stop = False
        self.thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self.thread.start()

    def _run(self, url: str) -> None:
        try:
            self._read(url)
        except (httpx.HTTPError, RuntimeError):
            if not self._stop:
                raise

    def _read(self, url: str) -> None:
        event, data = "message", []
        with self.client.stream("GET", url) as r:
            self.content_type = r.headers.get("content-type", "")
            for line in r.iter_lines():
                if self._stop:
                    return
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "":
                    if data:
                        self.events.put((event, json.loads("\n".join(data))))
                    event, data = "message", []

    def next(self, kind: str, pred: Any = lambda d: True, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event, data = self.events.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event == kind and pred(data):
                return data
        raise AssertionError(f"no {kind} event within {timeout} s")

    def close(self) -> None:
        self._stop = True
        self.client.close()


def api(s: Scene, path: str, **kw: Any) -> Any:
    r = httpx.get(s.base + path, timeout=10, **kw)
    r.raise_for_status()
    return r.json()


def open_alert(s: Scene, device: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def there() -> bool:
        found[:] = [a for a in api(s, "/api/alerts") if a["device"] == device and a["open"]]
        return bool(found)

    wait_for(there, 20, f"an open alert of {device}")
    return found[0]


# --- the stream and the API ----------------------------------------------------------------


def test_the_stream_delivers_a_new_reading_and_snapshots(scene: Scene) -> None:
    s = scene
    s.publish(s.tl, s.tl.reading(temp=450))
    stream = Stream(s.base + "/api/stream")
    try:
        first = stream.next("snapshot")
        assert stream.content_type.startswith("text/event-stream")
        assert first["gateway"]["id"] == s.env.cfg.id
        assert [r["temp"] for r in first["readings"] if r["device"] == "tl-1"] == [450]
        s.publish(s.tl, signed(s.tl, Reading, temp=517, batt=2987))
        r = stream.next("reading", lambda d: d["temp"] == 517)
        assert (r["device"], r["place"], r["batt"]) == ("tl-1", ROOM, 2987)
        snap = stream.next("snapshot", lambda d: any(x["temp"] == 517 for x in d["readings"]))
        tl = next(d for d in snap["devices"] if d["id"] == "tl-1")
        assert (tl["state"], tl["battery_mv"], tl["temp"], tl["place"]) == (
            "online",
            2987,
            517,
            ROOM,
        )
    finally:
        stream.close()


def test_an_alert_is_acknowledged_with_a_comment_and_the_audit_log_keeps_it(
    scene: Scene,
) -> None:
    s = scene
    s.publish(s.tl, s.tl.reading(temp=950))  # above 8 °C: the room profile alarms at once
    alert = open_alert(s, "tl-1")
    assert (alert["kind"], alert["side"], alert["peak"], alert["acked"]) == (
        "excursion",
        "high",
        950,
        None,
    )
    url = s.base + "/api/alerts/ack"
    bad = httpx.post(url, json={"id": alert["id"], "comment": "  "}, timeout=10)
    assert bad.status_code == 400
    form = httpx.post(url, data={"id": alert["id"], "comment": "x"}, timeout=10)
    assert form.status_code == 415  # JSON only: no cross-site form can acknowledge
    foreign = httpx.post(
        url,
        json={"id": alert["id"], "comment": "x"},
        headers={"Origin": "http://evil.example"},
        timeout=10,
    )
    assert foreign.status_code == 403
    assert httpx.post(url, json={"id": "nope", "comment": "x"}, timeout=10).status_code == 404
    comment = "Door was left open; closed it, product moved to room 2"
    r = httpx.post(url, json={"id": alert["id"], "comment": comment, "by": "Dana"}, timeout=10)
    assert r.status_code == 200, r.text
    acked = r.json()
    assert (acked["acked_by"], acked["comment"]) == ("Dana", comment)
    assert acked["acked"] is not None
    audit = api(s, "/api/audit")
    assert [(a["actor"], a["action"], a["target"], a["comment"]) for a in audit] == [
        ("Dana", "acknowledge", alert["id"], comment)
    ]
    # the store's own audit table, as another process sees it
    store = open_store(s.env.cfg)
    try:
        rows = store.audit_log()
        assert rows[0]["comment"] == comment and rows[0]["target"] == alert["id"]
        assert store.alert(alert["id"])["acked_by"] == "Dana"
    finally:
        store.close()
    assert all(a["acked"] for a in api(s, "/api/alerts") if a["id"] == alert["id"])


def test_devices_go_offline_after_their_own_interval_and_lots_in_transit(scene: Scene) -> None:
    s = scene
    s.publish(s.tl, s.tl.reading(temp=450))
    s.publish(s.fast, signed(s.fast, Status, event=2, queued=7, batt=3011))
    s.publish(s.fast, s.fast.reading(temp=470))
    snap = api(s, "/api/snapshot")
    by_id = {d["id"]: d for d in snap["devices"]}
    assert by_id["tl-idle"]["state"] == "never"
    assert by_id["tl-fast"]["queued"] == 7 and by_id["tl-fast"]["battery_mv"] == 3011
    assert by_id["tl-fast"]["upload_interval"] == 1 and by_id["tl-1"]["upload_interval"] == 60
    # tl-fast uploads every second (+1 s grace): quiet for 3 s, it is offline; tl-1 is not
    time.sleep(3)
    by_id = {d["id"]: d for d in api(s, "/api/snapshot")["devices"]}
    assert (by_id["tl-fast"]["state"], by_id["tl-1"]["state"]) == ("offline", "online")
    # custody: commission, then load onto a truck -> in transit; unload -> not any more
    t = int(time.time())
    s.publish(s.rd, s.rd.scan(UID, 1, "acme:dock", time_=t - 60, item=ITEM))
    s.publish(s.rd, s.rd.scan(UID, 2, "acme:dock", time_=t - 30, ref="acme:truck-9"))
    transit = api(s, "/api/snapshot")["in_transit"]
    assert [(x["item"], x["lot"], x["action"], x["ref"]) for x in transit] == [
        (ITEM, "LOT-42", "load", "acme:truck-9")
    ]
    s.publish(s.rd, s.rd.scan(UID, 3, "acme:room-1", time_=t - 5))
    assert api(s, "/api/snapshot")["in_transit"] == []
    # checkpoints and anchors of the log
    wait_for(lambda: api(s, "/api/snapshot")["anchors"], 15, "an anchor")
    snap = api(s, "/api/snapshot")
    assert snap["checkpoints"][0]["size"] >= 1
    assert snap["witnesses"]["checkpoint"] == snap["checkpoints"][0]["size"]
    assert snap["witnesses"]["cosignatures"] == []
    # a witness cosigns the latest checkpoint (as the cloud's would, gateway/push.py)
    from protocol.checkpoint import cosign_checkpoint
    from protocol.note import WitnessSigner

    witness = WitnessSigner.generate("witness.test/w1")
    store = open_store(s.env.cfg)
    try:
        cp = store.latest_checkpoint()
        store.replace_checkpoint_note(cp.size, cosign_checkpoint(cp.note, witness, 1790000123))
    finally:
        store.close()
    w = api(s, "/api/snapshot")["witnesses"]
    assert w["checkpoint"] == cp.size
    assert [(c["name"], c["time"]) for c in w["cosignatures"]] == [("witness.test/w1", 1790000123)]
    # a refused message shows under rejected records
    s.tl.publish(b"not a record")
    wait_for(lambda: api(s, "/api/snapshot")["rejects"], 15, "a reject")
    [reject] = api(s, "/api/snapshot")["rejects"]
    assert reject["topic"] == "ct/v1/tl-1/rec" and reject["count"] == 1


def test_a_token_protects_the_dashboard(make_broker: Any, make_gateway: Any) -> None:
    token = "correct-horse-battery-staple"
    s = Scene(make_broker, make_gateway, token=token)
    gw = s.env.start_gateway()
    gw.stop()  # the store is made; the dashboard runs alone against it below
    s.env.cfg.dashboard.listen = f"127.0.0.1:{free_port()}"
    server = DashboardServer(s.env.cfg)
    base = server.url.rstrip("/")
    try:
        assert httpx.get(base + "/api/snapshot", timeout=10).status_code == 401
        page = httpx.get(base + "/", timeout=10)
        assert page.status_code == 303 and page.headers["location"] == "/login"
        wrong = {"Authorization": "Bearer not-the-token"}
        assert httpx.get(base + "/api/snapshot", headers=wrong, timeout=10).status_code == 401
        right = {"Authorization": f"Bearer {token}"}
        r = httpx.get(base + "/api/snapshot", headers=right, timeout=10)
        assert r.status_code == 200 and "script-src 'self'" in r.headers["content-security-policy"]
        with httpx.Client(base_url=base, timeout=10) as c:
            assert c.post("/login", data={"token": "nope"}).status_code == 401
            r = c.post("/login", data={"token": token})
            assert r.status_code == 303
            cookie = r.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie
            assert token not in r.headers["set-cookie"]
            assert c.get("/api/snapshot").status_code == 200
            assert c.get("/").status_code == 200
    finally:
        server.close()


def test_a_dashboard_off_loopback_needs_a_token(tmp_path: Path) -> None:
    from gateway.config import ConfigError, DashboardConfig, _check_dashboard

    with pytest.raises(ConfigError, match="loopback"):
        _check_dashboard(DashboardConfig(listen="0.0.0.0:8700"))
    _check_dashboard(DashboardConfig(listen="0.0.0.0:8700", token="x" * 24))
    _check_dashboard(DashboardConfig(listen="127.0.0.1:8700"))


# --- in a real browser --------------------------------------------------------------------


def test_in_a_browser_a_reading_appears_live_and_an_alert_is_acknowledged(
    make_broker: Any, make_gateway: Any
) -> None:
    """`coldtrace gateway run` as its own process serves the page; chromium shows a new
    reading without a reload and acknowledges an alert through the dialog."""
    from playwright.sync_api import expect, sync_playwright

    s = Scene(make_broker, make_gateway)
    proc = s.env.start_process()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def gateway_up() -> bool:
        try:
            return bool(api(s, "/api/snapshot")["gateway"]["connected"])
        except (httpx.HTTPError, KeyError):
            return False

    wait_for(gateway_up, 30, "the gateway process and its dashboard")
    s.env.connect(s.tl, s.fast, s.rd)
    s.publish(s.tl, signed(s.tl, Reading, temp=430, batt=2950))
    s.publish(s.fast, signed(s.fast, Status, event=2, queued=3, batt=3020))
    t = int(time.time())
    s.publish(s.rd, s.rd.scan(UID, 1, "acme:dock", time_=t - 60, item=ITEM))
    s.publish(s.rd, s.rd.scan(UID, 2, "acme:dock", time_=t - 30, ref="acme:truck-9"))
    s.fast.publish(b"not a record")  # quarantined: shows under rejected records
    wait_for(lambda: api(s, "/api/snapshot")["rejects"], 15, "a reject")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(s.base + "/")
                expect(page.locator("#conn")).to_have_text("Live", timeout=15000)
                expect(page.locator("#t-devices tbody tr[data-device='tl-1']")).to_contain_text(
                    "online"
                )
                expect(page.locator("#t-transit")).to_contain_text("LOT-42")
                marker = page.evaluate("() => { window.__noReload = 1; return 1 }")
                assert marker == 1
                # a new reading arrives over SSE: the row appears, no reload
                s.publish(s.tl, signed(s.tl, Reading, temp=612, batt=2948))
                row = page.locator("#t-readings tbody tr", has_text="6.12 °C")
                expect(row).to_have_count(1, timeout=15000)
                assert page.evaluate("() => window.__noReload") == 1
                page.screenshot(path=str(ARTIFACTS / "01-live-reading.png"), full_page=True)
                # an excursion: 9.5 °C in a 2-8 °C room
                s.publish(s.tl, s.tl.reading(temp=950))
                ack = page.locator("#t-alerts button.ack").first
                expect(ack).to_be_visible(timeout=15000)
                page.screenshot(path=str(ARTIFACTS / "02-alert-open.png"), full_page=True)
                ack.click()
                dialog = page.locator("dialog#ack")
                expect(dialog).to_be_visible()
                dialog.get_by_label("Your name").fill("Dana")
                dialog.get_by_role("button", name="Acknowledge").click()
                expect(page.locator("#ack-error")).to_have_text("A comment is required.")
                comment = "Checked on site: door closed, stock moved to room 2"
                dialog.get_by_label("Comment (what was done)").fill(comment)
                page.screenshot(path=str(ARTIFACTS / "03-acknowledge-dialog.png"))
                dialog.get_by_role("button", name="Acknowledge").click()
                expect(dialog).to_be_hidden()
                expect(page.locator("#t-alerts tbody")).to_contain_text("Acknowledged by Dana")
                expect(page.locator("#t-audit tbody")).to_contain_text(comment)
                assert page.evaluate("() => window.__noReload") == 1
                page.screenshot(path=str(ARTIFACTS / "04-acknowledged.png"), full_page=True)
                page.set_viewport_size({"width": 390, "height": 844})
                page.screenshot(path=str(ARTIFACTS / "05-phone.png"), full_page=False)
                assert errors == []
            finally:
                browser.close()
        audit = api(s, "/api/audit")
        assert audit[0]["comment"] == comment and audit[0]["actor"] == "Dana"
    finally:
        proc.terminate()
        proc.wait(20)


def test_alerts_left_open_by_a_previous_run_end_at_start(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from gateway.alerts import AlertEvent, listener_from_config

    store = open_store(tmp_path / "g.db")
    try:
        old = AlertEvent(
            kind="excursion",
            phase="start",
            id="excursion/tl-1/0/high/1",
            device="tl-1",
            time=1,
            start=1,
            raised=1,
        )
        own = AlertEvent(
            kind="cloud_frozen",
            phase="start",
            id="cloud_frozen:o:2",
            device="gw",
            time=2,
            start=2,
            raised=2,
        )
        store.record_alert(old.to_dict())
        cfg = SimpleNamespace(id="gw", alerts={}, path=None)
        listener = listener_from_config(cfg, store=store)
        listener.publish(own)
        rows = {a["id"]: a for a in store.alerts()}
        assert rows[old.id]["ended"] is not None
        assert rows[old.id]["event"]["cause"] == "gateway_restarted"
        assert rows[own.id]["ended"] == 2 and rows[own.id]["acked"] is None
        assert [(a["action"], a["target"]) for a in store.audit_log()] == [("close", old.id)]
        listener.close()
    finally:
        store.close()


def test_gateway_dashboard_serves_the_store_alone(make_broker: Any, make_gateway: Any) -> None:
    """`coldtrace gateway dashboard` against a store no gateway is running on."""
    import subprocess
    import sys

    s = Scene(make_broker, make_gateway)
    s.env.start_gateway().stop()
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "protocol.cli",
            "gateway",
            "dashboard",
            "-c",
            str(s.env.config_path),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 30, "the dashboard")
        snap = httpx.get(f"http://127.0.0.1:{port}/api/snapshot", timeout=10).json()
        assert snap["gateway"]["state"] == "stopped"
        assert {d["id"] for d in snap["devices"]} == {"tl-1", "tl-fast", "tl-idle", "rd-1"}
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert (
            page.status_code == 200 and '<h2 id="h-alerts">Alerts and excursions</h2>' in page.text
        )
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out.decode()
