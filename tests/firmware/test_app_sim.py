"""The simulator's pieces that do not need a broker."""

import json
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from demo import sim

AN = json.loads((Path(__file__).parent / "data" / "an12196_sun.json").read_text())


def test_sun_message_reproduces_an12196() -> None:
    uid = bytes.fromhex(AN["uid"])
    picc, mac = sim.sun_message(uid, AN["sdm_read_ctr"], bytes(16), bytes(16))
    assert mac == bytes.fromhex(AN["sdm_mac"])
    # the padding is random on a tag; with AN12196's it is their ciphertext
    dec = Cipher(algorithms.AES(bytes(16)), modes.CBC(bytes(16))).decryptor()
    plain = dec.update(bytes.fromhex(AN["picc_data_enc"])) + dec.finalize()
    picc2, _ = sim.sun_message(uid, 61, bytes(16), bytes(16), pad=plain[11:])
    assert picc2 == bytes.fromhex(AN["picc_data_enc"])
    assert len(picc) == 16


def test_sun_tag_counts_up() -> None:
    t = sim.SunTag(
        bytes.fromhex("04a1b2c3d4e5f6"), "https://id.example.com/01/09506000134352/10/L1/21/9"
    )
    u1, u2 = t.url(), t.url()
    assert u1 != u2 and t.counter == 2 and "?picc_data=" in u1 and "&cmac=" in u1


# --- end to end: simulated devices -> real Mosquitto -> a minimal gateway ----

import base64  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from protocol.keys import p256_public_from_sec1  # noqa: E402
from protocol.record import chain_hash, verify_record  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.fail("mosquitto is not installed (make system)")
    from gateway.transport.broker import free_port

    port = free_port()
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    p = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        import socket

        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        p.terminate()
        p.wait(10)


class MiniGateway:
    """Verifies every record with the protocol package and acks (§5.2) the
    highest contiguous seq with the chain hash, under each device's ack key."""

    def __init__(self, port: int, entries: list[dict[str, str]]) -> None:
        import paho.mqtt.client as mqtt

        sys.path.insert(0, str(ROOT / "firmware" / "lib"))
        import ct_record

        self.mac0 = ct_record.mac0
        self.keys = {e["device"]: p256_public_from_sec1(base64.b64decode(e["key"]))
                     for e in entries}
        self.ack_keys = {e["device"]: base64.b64decode(e["ack_key"]) for e in entries}
        self.records: dict[str, dict[int, bytes]] = {d: {} for d in self.keys}
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="mini-gw",
                             protocol=mqtt.MQTTv311)
        self.c.on_message = self.on_message
        self.c.connect("127.0.0.1", port)
        self.c.subscribe("ct/v1/+/rec", 1)
        self.c.loop_start()

    def on_message(self, c: object, u: object, m: object) -> None:
        dev = m.topic.split("/")[2]  # type: ignore[attr-defined]
        data = bytes(m.payload)  # type: ignore[attr-defined]
        try:
            rec = verify_record(data, self.keys[dev])
        except Exception as e:
            self.errors.append(f"{dev}: {e}")
            return
        with self.lock:
            recs = self.records[dev]
            recs[rec.payload.seq] = data
            top = -1
            while top + 1 in recs:
                top += 1
            if top < 0:
                return
            ack = self.mac0({1: top, 2: int(time.time()), 3: chain_hash(recs[top])},
                            "gw-mini", self.ack_keys[dev])
        self.c.publish(f"ct/v1/{dev}/ack", ack, 1, retain=True)

    def payloads(self, dev: str) -> list[Any]:
        with self.lock:
            return [verify_record(r, self.keys[dev]).payload
                    for _, r in sorted(self.records[dev].items())]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_sim_devices_deliver_verified_records_alarms_and_sun_scans(
    tmp_path: Path, broker: int
) -> None:
    world = {"exc_start": 1800, "exc_len": 3600, "exc_peak": 1200, "door_every": 10**9}
    s = sim.Sim(tmp_path / "sim", port=broker, loggers=1, readers=1, interval=1, upload=4,
                scale=600, tags=2, tap_every=2.0, world=world)
    gw = MiniGateway(broker, s.entries)
    try:
        s.run(13)
        time.sleep(0.5)
    finally:
        gw.close()
    assert not gw.errors
    logger = gw.payloads("sim-tl-1")
    readings = [p for p in logger if p.kind == 1]
    assert len(readings) >= 10
    seqs = [p.seq for p in logger]
    assert seqs == list(range(len(seqs)))  # every record, in order, chained
    temps = [p.temp for p in readings if p.ch is None]
    assert max(temps) > 1000 and min(temps) < 800  # the excursion is in the data
    assert any(p.rh for p in readings if p.ch == 1)
    events = [p.event for p in logger if p.kind == 3]
    assert 7 in events  # alarm start, uploaded at once
    assert any(p.tq == 3 for p in logger)  # clock set by the gateway's ack
    scans = [p for p in gw.payloads("sim-rd-1") if p.kind == 2]
    assert len(scans) >= 3
    assert {p.action for p in scans} >= {1, 2}
    tags = json.loads((tmp_path / "sim" / "tags.json").read_text())["tags"]
    keys = {bytes.fromhex(t["uid"]): t for t in tags}
    for p in scans:
        assert len(p.uid) == 7 and p.uid in keys and len(p.sun) == 24
        t = keys[p.uid]
        dec = Cipher(algorithms.AES(bytes.fromhex(t["k_sdm_meta_read"])),
                     modes.CBC(bytes(16))).decryptor()
        plain = dec.update(p.sun[:16]) + dec.finalize()
        assert plain[0] == 0xC7 and plain[1:8] == p.uid
        ctr = int.from_bytes(plain[8:11], "little")
        _, mac = sim.sun_message(p.uid, ctr, bytes.fromhex(t["k_sdm_meta_read"]),
                                 bytes.fromhex(t["k_sdm_file_read"]), plain[11:])
        assert mac == p.sun[16:]
    commission = [p for p in scans if p.action == 1]
    assert commission and commission[0].item.startswith("/01/09506000134352/10/LOT")
    # custody links: each scan of a tag names the one before it (one reader,
    # so seq order is tap order); the commission names none
    raw = gw.records["sim-rd-1"]
    last: dict[bytes, bytes] = {}
    linked = 0
    for p in scans:
        if p.action == 1:
            assert p.link is None
        else:
            assert p.link == chain_hash(last[p.uid])
            linked += 1
        last[p.uid] = raw[p.seq]
    assert linked >= 1
    prov = json.loads((tmp_path / "sim" / "provisioned.json").read_text())
    assert {e["device"] for e in prov["devices"]} == {"sim-tl-1", "sim-rd-1"}


def test_sim_readers_build_a_chain_of_custody_links_on_one_tag(tmp_path: Path) -> None:
    """Three simulated readers (as in demo/world.py) hold one NTAG 424
    DNA in turn: the tag's custody file carries each scan's link to the next
    reader. Decoded with the firmware's own decoder (ct_record)."""
    sim.firmware_on_path()
    import ct_record

    tag = sim.SunTag(bytes.fromhex("045ec001001001"),
                     "https://id.example.com/01/09506000134352/10/LOT001/21/1")
    readers = []
    for i in range(3):
        dev = f"sim-rd-{i + 1}"
        cfg = sim.reader_config(dev, "acme", "127.0.0.1", 1, tmp_path / dev,
                                f"urn:epc:id:sgln:9506000.13435.dock-{i + 1}")
        sim.provision_sim_device(tmp_path / dev, cfg)
        readers.append(sim.SimReader(cfg, tmp_path / dev, lambda: None, [tag]))
    try:
        recs = [rd.tap(0, action) for rd, action in zip(readers, (1, 2, 3), strict=True)]
    finally:
        for rd in readers:
            rd.core.close()
    assert all(r is not None for r in recs)
    f = [ct_record.record_fields(r) for r in recs]
    assert [x[21] for x in f] == [1, 2, 3] and 27 not in f[0]
    assert f[1][27] == ct_record.chain_link(recs[0])
    assert f[2][27] == ct_record.chain_link(recs[1])
    assert bytes(tag.fake().data03[:20]) == b"CTL\x01" + ct_record.chain_link(recs[2])
    assert all(rd.reader.link_fails == 0 for rd in readers)
