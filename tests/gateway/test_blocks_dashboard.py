"""The dashboard page with reading blocks, in a real browser (Playwright + Debian's
chromium, as tests/gateway/test_dashboard.py): a block that arrives over the live
stream shows as one row per reading, each at its own time, although its readings
share one leaf of the log."""

from __future__ import annotations

import time

from protocol.record import ReadingBlock, make_record, pack_block
from tests.gateway.devices import SimDevice, chain_link
from tests.gateway.test_dashboard import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, Scene, api, scene

__all__ = ["scene"]  # the fixture, from test_dashboard


def block(dev: SimDevice, start: int, temps: list[int]) -> bytes:
    """The device's next record: a reading block (§2.8) of ``temps`` from ``start``."""
    t, _ = pack_block(temps)
    with dev._lock:
        p = ReadingBlock(boot=dev.boot, seq=dev.seq, time=start, tq=dev.tq, prev=dev.prev,
                         ivl=300, temps=t, batt=2990)
        raw = make_record(p, dev.id, dev.key)
        dev.unacked[dev.seq] = raw
        dev.seq += 1
        dev.prev = chain_link(raw)
    return raw


def test_in_a_browser_a_block_arrives_live_as_one_row_per_reading(scene: Scene) -> None:
    from playwright.sync_api import expect, sync_playwright

    s = scene
    s.publish(s.tl, s.tl.reading(temp=450))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(s.base + "/")
            expect(page.locator("#conn")).to_have_text("Live", timeout=15000)
            expect(page.locator("#t-readings tbody tr", has_text="4.50 °C")).to_have_count(1)
            start = (int(time.time()) - 900) // 300 * 300
            s.publish(s.tl, block(s.tl, start, [461, 462, 463]))
            for v in ("4.61 °C", "4.62 °C", "4.63 °C"):
                expect(page.locator("#t-readings tbody tr", has_text=v)).to_have_count(
                    1, timeout=15000
                )
            times = page.locator("#t-readings tbody tr time").evaluate_all(
                "els => els.map(e => e.getAttribute('datetime'))"
            )
            want = {time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + 300 * i))
                    for i in range(3)}
            assert want <= {t[:19] for t in times}  # each at its own time
            page.screenshot(path=str(ARTIFACTS / "06-block-readings.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()
    rows = [r for r in api(s, "/api/readings") if r["device"] == "tl-1"]
    assert [(r["temp"], r.get("i")) for r in rows][-3:] == [(461, 0), (462, 1), (463, 2)]
