"""Reading blocks (kind 7): bytes per reading, battery, queue days and delay against block size.

What is measured, and how:

- **Bytes per reading on the wire**: the firmware itself (``firmware/lib``:
  ct_app's Logger with ct_block, the real core, queue and uplink) runs under
  CPython on a fake board for ``3 N`` wakes at a 5-minute interval, one
  channel with temperature and humidity, a 9-byte device id and seqs above
  2^20 (the same shape as the 135-byte kind-1 baseline of
  ``records.reading_wire_bytes``). Every record it publishes is caught at the
  (fake) broker, opened and signature-checked by the gateway's codec
  (``protocol.record.verify_record``), and the full blocks give the figure:
  record bytes / N. N = 1 is today's firmware: one kind-1 record per reading.
  MQTT framing (2 + 2 + topic + 2 bytes per PUBLISH) is shown apart.
- **Battery days**: ``hardware/power_budget.py``'s model on
  ``hardware/power.json`` (datasheet figures, no board measured), for
  the pure-MicroPython signer (2.5 s at 50 mA per signature, the
  FIELD-NOTES estimate), Wi-Fi, a 5-minute interval and an hourly upload.
  A block wake costs the boot, the measurement and one flash append (the
  journal); a signature and a queue append come once per N readings.
  Assumed, as in power.md: the upload costs the same whatever it carries
  (3.5 s of Wi-Fi, dominated by association: fewer, smaller records make it
  slightly shorter, not counted), heartbeats and retries are not counted.
- **Queue days**: the firmware's default queue (ct_core.open_device: 96
  segments of 8188 bytes, a 2048-byte reserve for status records; frames of
  record + 10 bytes) divided by the readings per day at 5 minutes.
- **Worst-case delay before a normal reading is signed**: (N - 1) x interval
  (a reading outside the band or changing the alarm state is signed at once,
  docs/protocol.md §2.8).
- **CPU per reading under MicroPython** (``blocks.micropython_wasm_ms_per_reading``):
  the logger's whole wake (state, queue, measure, journal, the signature
  when one is due) timed inside the real MicroPython interpreter (wasm, on
  this x86 machine, not an ESP32), per reading, blocks of 12 against kind 1.
  It checks the model's premise that the signature is most of a wake's work.

    python -m bench blocks                 # measure and print (part of make bench)
    python -m bench.bench_blocks --write   # refresh hardware/power.md's table + hardware/blocks.svg
    python -m bench.bench_blocks --check   # exit 1 when either is stale (a test runs it)
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HW = ROOT / "hardware"
MD = HW / "power.md"
SVG = HW / "blocks.svg"
BEGIN = "<!-- bench_blocks: begin -->"
END = "<!-- bench_blocks: end -->"

SIZES = (1, 4, 8, 12, 16, 32, 64)
DEFAULT = 12  # docs/protocol.md §2.8, D35
INTERVAL = 300
UPLOAD = 3600
GOAL_BYTES = 40
GOAL_DAYS = 365
DEV = "tl-7f3a21"
# ct_core.open_device's queue defaults
SEGMENTS, SEG_SIZE, RESERVE, FRAME_OVER = 96, 8188, 2048, 10


def _firmware_path() -> None:
    for p in (ROOT / "tests" / "firmware" / "fakes", ROOT / "firmware" / "sim",
              ROOT / "firmware" / "lib"):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))


def _power_budget() -> Any:
    spec = importlib.util.spec_from_file_location("power_budget", HW / "power_budget.py")
    assert spec is not None and spec.loader is not None
    pb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pb)
    return pb


def run_firmware(n: int, wakes: int | None = None) -> list[bytes]:
    """The records a block-logging device (block size ``n``; 1 = kind-1
    readings) publishes over ``wakes`` wakes at INTERVAL, in order."""
    _firmware_path()
    import ct_app
    import ct_block
    import ct_clock
    import ct_core
    import ct_p256
    import ct_queue
    import ct_rtcmem
    import ct_state
    import ct_uplink
    from fake_board import FakeBoard
    from fakebroker import FakeBroker
    from fakeclock import FakeTicks
    from fakefs import Disk, FakeFs
    from fakegateway import FakeGateway
    from umqtt.simple import MQTTClient

    key = bytes(range(32))
    disk = Disk()
    board = FakeBoard(t=1000)
    ticks = FakeTicks(100000)
    broker = FakeBroker("broker-bench-blocks", ticks)
    FakeGateway(broker, DEV, key, ticks, first=1 << 20)  # acks what it stores
    signer = ct_p256.Signer(bytes(range(1, 33)))
    clock = ct_clock.Clock(board.now, board.set_time, 0)
    clock.sync(1790000100, ct_clock.GATEWAY)  # on the interval grid, as the gateway says
    ct_rtcmem.RTCMem(board.rtc).put(ct_app._K_CLOCK, clock.pack())
    cfg = {"id": DEV, "interval": INTERVAL, "upload": UPLOAD, "heartbeat": 86400 * 30,
           "alarm": {"high": 800, "low": 200, "delay": 1800}}
    i = [0]

    def probe() -> tuple[int, int]:
        k = i[0]
        i[0] += 1
        return 350 + (k * 37) % 200, 6000 + (k * 53) % 1500  # 3.50-5.49 °C, 60-75 %RH

    first = True
    total = wakes if wakes is not None else max(3 * n, 12)
    for k in range(total + 1):
        fs = FakeFs(disk)
        mem = ct_rtcmem.RTCMem(board.rtc)
        st = ct_state.State(fs, "ct/state", mem)
        q = ct_queue.Queue(fs, "ct/q", SEGMENTS, SEG_SIZE, RESERVE, 16384)
        if first:  # an older device: seqs above 2^20 (5-byte CBOR), as the baseline
            st.load()
            st.seq = 1 << 20
            st.save()
            first = False
        up = ct_uplink.Uplink(lambda: MQTTClient(DEV, "broker-bench-blocks", 1883, keepalive=60),
                              DEV, key, q, st, None, 1, 16, 2000, 3000, ticks=ticks)
        core = ct_core.Core(DEV, signer, st, q, up)
        core.start(board.reset_cause() == board.DEEPSLEEP)
        if k == total:
            core.upload(8000)  # the last upload: everything queued goes out
            core.close()
            break
        blocks = ct_block.Blocks(fs, "ct", n) if n > 1 else None
        lg = ct_app.Logger(cfg, board, core, [(0, None, probe)], {}, blocks=blocks)
        ms = lg.cycle()
        core.close()
        board.deep_sleep(ms)
        ticks.advance(ms)
    return [m for kind, topic, m in broker.log if kind == "publish" and topic.endswith(b"/rec")]


def measure(n: int) -> dict[str, Any]:
    """Bytes of the full records carrying readings, checked by the gateway's codec."""
    _firmware_path()
    import ct_p256
    from cryptography.hazmat.primitives.asymmetric import ec

    from protocol.record import KIND_BLOCK, KIND_READING, verify_record

    pub = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), ct_p256.Signer(bytes(range(1, 33))).public_key())
    sizes = []
    seen: set[bytes] = set()
    for raw in run_firmware(n):
        if raw in seen:
            continue  # a resend after a lost ack: the same bytes
        seen.add(raw)
        p = verify_record(raw, pub).payload
        full = p.kind == KIND_BLOCK and p.n == n
        if (n == 1 and p.kind == KIND_READING) or full:
            sizes.append(len(raw))
    if not sizes or len(set(sizes)) != 1:
        raise RuntimeError(f"block size {n}: full records of sizes {sizes}")
    rec = sizes[0]
    return {"n": n, "record": rec, "per_reading": rec / n, "records": len(sizes)}


def row(d: dict, pb: Any, m: dict[str, Any]) -> dict[str, Any]:
    n = m["n"]
    sc = {"sign": "sign_python", "upload": "wifi_upload", "upload_s": UPLOAD, "block": n}
    life = pb.day_mah(d, sc, INTERVAL)
    atecc = pb.day_mah(d, dict(sc, sign="sign_atecc"), INTERVAL)
    two = pb.day_mah(d, dict(sc, channels=2), INTERVAL)
    frame = m["record"] + FRAME_OVER
    records = SEGMENTS * (SEG_SIZE // frame) - -(-RESERVE // frame)
    per_day = 86400 / INTERVAL
    return dict(
        m,
        mah_day=life["total"],
        days=life["days"],
        days_atecc=atecc["days"],
        days_two=two["days"],
        queue_readings=records * n,
        queue_days=records * n / per_day,
        delay_min=(n - 1) * INTERVAL / 60,
    )


def rows() -> list[dict[str, Any]]:
    pb = _power_budget()
    d = json.loads((HW / "power.json").read_text())
    return [row(d, pb, measure(n)) for n in SIZES]


def table(rs: list[dict[str, Any]]) -> str:
    out = [
        f"Block size against cost, at a {INTERVAL // 60}-minute interval with hourly Wi-Fi "
        "uploads: one channel with temperature and humidity, a 9-byte device id, seqs "
        "above 2^20. Bytes are the signed records the firmware publishes (MQTT framing "
        "not counted); days are estimates from `power.json` (not a measured board). "
        f"N = 1 is one kind-1 record per reading; **{DEFAULT}** is the default (D35). "
        "Assumed: a pure-MicroPython signature costs `sign_python` (2.5 s at 50 mA, the "
        "FIELD-NOTES estimate, not measured on an ESP32) once per block; every reading "
        "still boots, measures and appends to the journal (one `flash_write`); the hourly "
        "upload costs `wifi_upload` whatever it carries (association dominates); "
        "heartbeats, retries and self-discharge are not counted.",
        "",
        "| block size N | record | bytes per reading | mAh/day | battery, MicroPython signing "
        "| battery, ATECC608B | queue holds | worst delay before signing |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rs:
        n = f"**{r['n']}**" if r["n"] == DEFAULT else str(r["n"])
        out.append(
            f"| {n} | {r['record']} B | {r['per_reading']:.1f} B | {r['mah_day']:.2f} "
            f"| {r['days']:.0f} days | {r['days_atecc']:.0f} days "
            f"| {r['queue_days']:.0f} days ({r['queue_readings']:,} readings) "
            f"| {_delay(r['delay_min'])} |"
        )
    by = {r["n"]: r for r in rs}
    out += [
        "",
        "The model counts one sensor. The template `config.json` reads two (a DS18B20 and "
        "an SHT4x, each its own channel, its own records and blocks): signatures and journal "
        f"appends double, and MicroPython signing gives {by[1]['days_two']:.0f} days with "
        f"kind-1 records, {by[DEFAULT]['days_two']:.0f} days with blocks of {DEFAULT}; "
        f"the queue holds half the days ({by[DEFAULT]['queue_days'] / 2:.0f} at {DEFAULT}).",
        "",
        f"Goals (issue 11): at most {GOAL_BYTES} B per reading at the default block size, "
        f"at least {GOAL_DAYS} days on an 18650 with MicroPython signing. The chart: "
        "`hardware/blocks.svg`. Regenerate both with `python -m bench.bench_blocks --write`.",
    ]
    return "\n".join(out) + "\n"


def _delay(minutes: float) -> str:
    if minutes == 0:
        return "none"
    if minutes >= 120:
        return f"{minutes / 60:.1f} h ({minutes:.0f} min)"
    return f"{minutes:.0f} min"


# --- CPU per reading under MicroPython (wasm) ------------------------------------------

_MP_WAKES = r"""
import json, time
import ct_app, ct_block, ct_clock, ct_core, ct_p256, ct_queue, ct_rtcmem, ct_state
from fake_board import FakeBoard
from fakefs import Disk, FakeFs

def run(n, wakes):
    disk = Disk()
    board = FakeBoard(t=1790000100)
    clock = ct_clock.Clock(board.now, board.set_time, 0)
    clock.sync(1790000100, ct_clock.NTP)
    ct_rtcmem.RTCMem(board.rtc).put(ct_app._K_CLOCK, clock.pack())
    signer = ct_p256.Signer(bytes(range(1, 33)))
    cfg = {"id": "tl-7f3a21", "interval": 300, "upload": 7 * 86400, "heartbeat": 7 * 86400,
           "alarm": {"high": 800, "low": 200, "delay": 1800}}
    k = [0]
    def probe():
        k[0] += 1
        return 350 + (k[0] * 37) %% 200, 6000 + (k[0] * 53) %% 1500
    total = 0
    for i in range(wakes):
        fs = FakeFs(disk)
        t0 = time.ticks_us()
        st = ct_state.State(fs, "ct/state", ct_rtcmem.RTCMem(board.rtc))
        q = ct_queue.Queue(fs, "ct/q", 16, 8188, 2048, 4096)
        core = ct_core.Core("tl-7f3a21", signer, st, q, None)
        core.start(board.reset_cause() == board.DEEPSLEEP)
        b = ct_block.Blocks(fs, "ct", n) if n > 1 else None
        lg = ct_app.Logger(cfg, board, core, [(0, None, probe)], {}, blocks=b)
        ms = lg.cycle()
        dt = time.ticks_diff(time.ticks_us(), t0)
        if i >= 2:  # after the first wake's boot and heartbeat records
            total += dt
        board.deep_sleep(ms)
    return total / (wakes - 2)

R = {}
for n in %(sizes)r:
    R[str(n)] = min(run(n, %(wakes)d) for _ in range(2))
print("RESULT " + json.dumps(R))
"""


def micropython_ms_per_reading(
    sizes: tuple[int, ...] = (1, DEFAULT), wakes: int = 26
) -> dict[int, float]:
    """Mean time per wake (one reading) of the logger's whole cycle - state,
    queue, measure, journal, and a signature when one is due - under the
    real MicroPython (wasm build on this machine, not an ESP32), for each
    block size in ``sizes``; best of two runs of ``wakes`` wakes."""
    import subprocess
    import tempfile

    src = _MP_WAKES % {"sizes": list(sizes), "wakes": wakes}
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(src)
        path = f.name
    cmd = ["node", str(ROOT / "tests" / "firmware" / "mp_run.mjs"), "--heap", str(1 << 21)]
    for host, mp in ((ROOT / "firmware" / "lib", "/fw/lib"), (ROOT / "firmware" / "sim", "/fw/sim"),
                     (ROOT / "tests" / "firmware" / "fakes", "/fw/fakes")):
        cmd += ["--put", f"{host}={mp}"]
    for mp in ("/fw/fakes", "/fw/sim", "/fw/lib"):
        cmd += ["--path", mp]
    try:
        out = subprocess.run([*cmd, path], capture_output=True, text=True, timeout=900,
                             check=True).stdout
    finally:
        Path(path).unlink()
    found = next(json.loads(x[7:]) for x in out.splitlines() if x.startswith("RESULT "))
    return {int(k): v / 1000 for k, v in found.items()}


# --- the chart -----------------------------------------------------------------------


def svg(rs: list[dict[str, Any]]) -> str:
    """Four small panels against block size: bytes per reading (goal line),
    battery days (goal line), queue days, worst delay. Plain SVG 1.1."""
    panels = [
        ("bytes per reading", "per_reading", GOAL_BYTES, f"≤ {GOAL_BYTES} B goal", "{:.0f}"),
        ("battery days (18650, MicroPython signing)", "days", GOAL_DAYS,
         f"≥ {GOAL_DAYS} days goal", "{:.0f}"),
        ("queue holds, days", "queue_days", None, "", "{:.0f}"),
        ("worst delay before signing, min", "delay_min", None, "", "{:.0f}"),
    ]
    pw, ph, ml, mt, mb = 330, 200, 46, 34, 34
    width, height = 2 * pw + 20, 2 * ph + 60
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        '<title>Reading blocks: block size against bytes per reading, battery days, queue days '
        'and signing delay (5-minute interval, hourly Wi-Fi upload)</title>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="18" font-size="13" font-weight="bold">Reading blocks at a '
        f'{INTERVAL // 60}-minute interval: block size N against cost '
        f'(N = {DEFAULT} is the default)</text>',
    ]
    xs = [str(r["n"]) for r in rs]
    for k, (title, key, goal, goal_label, fmt) in enumerate(panels):
        ox = 10 + (k % 2) * (pw + 10)
        oy = 30 + (k // 2) * (ph + 10)
        iw, ih = pw - ml - 10, ph - mt - mb
        vals = [float(r[key]) for r in rs]
        top = max(vals + ([goal * 1.15] if goal else []))
        top = _nice(top)
        out.append(f'<g transform="translate({ox},{oy})">')
        out.append(f'<text x="{ml}" y="16" font-weight="bold">{title}</text>')
        out.append(f'<line x1="{ml}" y1="{mt + ih}" x2="{ml + iw}" y2="{mt + ih}" '
                   'stroke="#444"/>')
        for j in range(5):
            v = top * j / 4
            y = mt + ih - ih * j / 4
            out.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{ml + iw}" y2="{y:.1f}" '
                       'stroke="#e3e3e3"/>')
            out.append(f'<text x="{ml - 4}" y="{y + 4:.1f}" text-anchor="end" '
                       f'fill="#555">{v:,.0f}</text>')
        bw = iw / len(xs)
        for j, (label, v) in enumerate(zip(xs, vals, strict=True)):
            h = ih * v / top if top else 0
            x = ml + j * bw + bw * 0.18
            fill = "#1f6fb2" if rs[j]["n"] == DEFAULT else "#8fb8db"
            out.append(f'<rect x="{x:.1f}" y="{mt + ih - h:.1f}" width="{bw * 0.64:.1f}" '
                       f'height="{h:.1f}" fill="{fill}"/>')
            out.append(f'<text x="{x + bw * 0.32:.1f}" y="{mt + ih - h - 3:.1f}" '
                       f'text-anchor="middle" fill="#222">{fmt.format(v)}</text>')
            out.append(f'<text x="{x + bw * 0.32:.1f}" y="{mt + ih + 14}" '
                       f'text-anchor="middle">{label}</text>')
        out.append(f'<text x="{ml + iw / 2:.1f}" y="{mt + ih + 28}" text-anchor="middle" '
                   'fill="#555">block size N (readings per signature)</text>')
        if goal:
            y = mt + ih - ih * goal / top
            out.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{ml + iw}" y2="{y:.1f}" '
                       'stroke="#c0392b" stroke-dasharray="5,3"/>')
            out.append(f'<text x="{ml + iw}" y="29" text-anchor="end" '
                       f'fill="#c0392b">dashed: {goal_label}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _nice(v: float) -> float:
    """A round axis top at or above v."""
    step = 1.0
    while step * 10 <= v:
        step *= 10
    for m in (1, 2, 4, 6, 8, 10):  # four even grid steps
        if m * step >= v:
            return m * step
    return 10 * step


def splice(md: str, body: str) -> str:
    a = md.index(BEGIN) + len(BEGIN)
    b = md.index(END)
    return md[:a] + "\n" + body + md[b:]


# --- make bench ------------------------------------------------------------------------


def run(rec: Any) -> None:
    rs = rows()
    by = {r["n"]: r for r in rs}
    base, dflt = by[1], by[DEFAULT]
    topic = len(f"ct/v1/{DEV}/rec")
    rec.add(f"blocks.bytes_per_reading.n{DEFAULT}", dflt["per_reading"], "B",
            baseline="kind-1 record per reading (same run)", baseline_value=base["per_reading"],
            note=f"record {dflt['record']} B / {DEFAULT}; goal <= {GOAL_BYTES}: "
                 f"{'met' if dflt['per_reading'] <= GOAL_BYTES else 'MISSED'}; "
                 "series: every block size N measured",
            series=[(r["n"], r["per_reading"]) for r in rs])
    rec.add(f"blocks.mqtt_bytes_per_reading.n{DEFAULT}",
            (dflt["record"] + 6 + topic) / DEFAULT, "B",
            baseline="kind-1 PUBLISH", baseline_value=base["record"] + 6 + topic,
            note=f"QoS 1 PUBLISH framing 6 B + topic {topic} B per record")
    rec.add(f"blocks.battery_days.python_sign.5min.n{DEFAULT}", dflt["days"], "days",
            baseline="kind-1 record per reading", baseline_value=base["days"],
            note=f"power.json estimate, Wi-Fi hourly; goal >= {GOAL_DAYS}: "
                 f"{'met' if dflt['days'] >= GOAL_DAYS else 'MISSED'}; series: every N",
            series=[(r["n"], r["days"]) for r in rs])
    rec.add(f"blocks.battery_days.atecc_sign.5min.n{DEFAULT}", dflt["days_atecc"], "days",
            baseline="kind-1 record per reading", baseline_value=base["days_atecc"],
            note="power.json estimate, Wi-Fi hourly; series: every N",
            series=[(r["n"], r["days_atecc"]) for r in rs])
    rec.add(f"blocks.queue_days.5min.n{DEFAULT}", dflt["queue_days"], "days",
            baseline="kind-1 record per reading", baseline_value=base["queue_days"],
            note=f"{dflt['queue_readings']:,} readings in the default 96 x 8188 B queue")
    mp = micropython_ms_per_reading()
    rec.add(f"blocks.micropython_wasm_ms_per_reading.n{DEFAULT}", mp[DEFAULT], "ms",
            baseline="kind-1 record per reading (same run)", baseline_value=mp[1],
            note="whole logger wake per reading under MicroPython wasm (x86, not an ESP32): "
                 "the signature, paid once per block, is most of it")
    print()
    print(table(rs))
    stale = []
    if splice(MD.read_text(), table(rs)) != MD.read_text():
        stale.append(str(MD.relative_to(ROOT)))
    if not SVG.exists() or SVG.read_text() != svg(rs):
        stale.append(str(SVG.relative_to(ROOT)))
    if stale:
        print("   stale: " + ", ".join(stale) + " (python -m bench.bench_blocks --write)")


def main(argv: list[str]) -> int:
    rs = rows()
    body, chart = table(rs), svg(rs)
    if "--write" in argv:
        MD.write_text(splice(MD.read_text(), body))
        SVG.write_text(chart)
        return 0
    if "--check" in argv:
        md = MD.read_text()
        bad = []
        if splice(md, body) != md:
            bad.append("hardware/power.md")
        if not SVG.exists() or SVG.read_text() != chart:
            bad.append("hardware/blocks.svg")
        if bad:
            print(" and ".join(bad) + " stale: run python -m bench.bench_blocks --write")
            return 1
        return 0
    sys.stdout.write(body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
