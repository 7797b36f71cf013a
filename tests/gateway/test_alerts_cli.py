"""``coldtrace gateway alerts`` (gateway/alerts_cli.py) and the profile ``gateway init`` picks."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.alerts import AlertEvent
from gateway.alerts_cli import parse_since
from gateway.config import load_config
from gateway.evidence.store import open_store
from gateway.profiles import ProfileBook
from protocol.cli import main as coldtrace

ROOT = Path(__file__).resolve().parents[2]

# --- gateway init: temperature alarms are never silently off ------------------------------------


def test_init_without_a_terminal_defaults_to_chilled_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert coldtrace(["gateway", "init", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Temperature alarms: profile chilled (0.00 to 4.00 °C" in out
    assert "[alerts]" in out and "gateway.toml" in out  # how to change it
    cfg = load_config(tmp_path / "gateway.toml")
    book = ProfileBook.from_config(cfg.alerts)
    assert book.default == "chilled"
    assert book.for_place("any/place") is not None and book.for_place("x").high == 400


@pytest.mark.parametrize(
    ("flag", "default", "said"),
    [
        ("pharma", "pharma", "profile pharma (2.00 to 8.00 °C"),
        ("frozen", "frozen", "profile frozen (at most -18.00 °C"),
        ("none", None, "Temperature alarms are OFF (--profile none)"),
    ],
)
def test_init_takes_the_profile_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, default: str | None, said: str
) -> None:
    assert coldtrace(["gateway", "init", "--dir", str(tmp_path), "--profile", flag]) == 0
    assert said in capsys.readouterr().out
    cfg = load_config(tmp_path / "gateway.toml")
    assert ProfileBook.from_config(cfg.alerts).default == default


def test_init_refuses_an_unknown_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        coldtrace(["gateway", "init", "--dir", str(tmp_path), "--profile", "tropical"])
    assert exit_.value.code == 2
    assert "invalid choice: 'tropical'" in capsys.readouterr().err
    assert not (tmp_path / "gateway.toml").exists()


def test_init_on_a_terminal_asks_for_the_profile(tmp_path: Path) -> None:
    """A real pseudo-terminal: the question, a wrong answer asked again, then frozen."""
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "protocol.cli", "gateway", "init", "--dir", str(tmp_path)],
        stdin=child,
        stdout=child,
        stderr=child,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    os.close(child)
    seen = b""

    def read_until(marker: bytes, timeout: float = 30.0) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            assert time.monotonic() < deadline, f"no {marker!r} in {seen!r}"
            if select.select([main], [], [], 0.5)[0]:
                try:
                    seen += os.read(main, 4096)
                except OSError:
                    break

    try:
        read_until(b"profile [chilled]: ")
        assert b"pharma   2.00 to 8.00" in seen
        os.write(main, b"tropical\n")
        read_until(b"Please answer one of: frozen, chilled, pharma, none.")
        os.write(main, b"frozen\n")
        read_until(b"Temperature alarms: profile frozen")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(main)
    cfg = load_config(tmp_path / "gateway.toml")
    assert ProfileBook.from_config(cfg.alerts).default == "frozen"


# --- gateway alerts ----------------------------------------------------------------------------

NOW = int(time.time())


@pytest.fixture
def gwdir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A gateway directory whose store holds three alerts: one open and acknowledged,
    one ended two days ago, one offline alarm still open."""
    assert coldtrace(["gateway", "init", "--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    cfg = load_config(tmp_path / "gateway.toml")
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(cfg)
    open_exc = AlertEvent(
        kind="excursion",
        phase="start",
        id=f"excursion/tl-1/0/high/{NOW - 3600}",
        device="tl-1",
        channel=0,
        place="wh-7/room-1",
        profile="chilled",
        side="high",
        time=NOW - 1800,
        start=NOW - 3600,
        raised=NOW - 1800,
        reason="delay",
        clock_unset=True,
    )
    old = AlertEvent(
        kind="excursion",
        phase="end",
        id=f"excursion/tl-2/0/low/{NOW - 3 * 86400}",
        device="tl-2",
        channel=0,
        side="low",
        time=NOW - 2 * 86400,
        start=NOW - 3 * 86400,
        end=NOW - 2 * 86400,
        raised=NOW - 3 * 86400,
        reason="cumulative",
        cause="in_range",
    )
    offline = AlertEvent(
        kind="offline",
        phase="start",
        id=f"offline/tl-3/{NOW - 7200}",
        device="tl-3",
        time=NOW - 600,
        start=NOW - 7200,
        raised=NOW - 600,
        reason="missed_uploads",
        interval=900,
    )
    for e in (open_exc, old, offline):
        store.record_alert(e.to_dict())
    assert store.acknowledge_alert(open_exc.id, "Dana", "door closed")
    store.close()
    return tmp_path


def test_alerts_lists_open_and_recent_alerts_as_a_table(
    gwdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert coldtrace(["gateway", "alerts", "-c", str(gwdir / "gateway.toml")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    head = "ID DEVICE / PLACE KIND REASON START END ACKED BY"
    assert lines[0].split() == head.split()
    by_device = {line.split()[1]: line for line in lines[1:4]}
    assert set(by_device) == {"tl-1", "tl-2", "tl-3"}
    assert "wh-7/room-1" in by_device["tl-1"] and "high (delay), device clock unset" in out
    assert by_device["tl-1"].split()[-2:] == ["open", "Dana"]
    assert "no upload (every 900 s)" in by_device["tl-3"] and by_device["tl-3"].split()[-2:] == [
        "open",
        "-",
    ]
    assert "low (cumulative); ended: in_range" in by_device["tl-2"]
    assert "3 alert(s), 2 open." in out
    assert "Traceback" not in out


def test_alerts_open_since_and_json(gwdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = str(gwdir / "gateway.toml")
    assert coldtrace(["gateway", "alerts", "-c", conf, "--open", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["device"] for r in rows) == ["tl-1", "tl-3"]
    assert all(r["ended"] is None for r in rows)
    ack = next(r for r in rows if r["device"] == "tl-1")
    assert (ack["acked_by"], ack["comment"], ack["event"]["clock_unset"]) == (
        "Dana",
        "door closed",
        True,
    )
    assert coldtrace(["gateway", "alerts", "-c", conf, "--since", "1d", "--json"]) == 0
    assert sorted(r["device"] for r in json.loads(capsys.readouterr().out)) == ["tl-1", "tl-3"]
    assert coldtrace(["gateway", "alerts", "-c", conf, "--since", "3d", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
    assert coldtrace(["gateway", "alerts", "-c", conf, "--limit", "1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


def test_alerts_says_clearly_what_is_wrong(
    gwdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = str(gwdir / "gateway.toml")
    assert coldtrace(["gateway", "alerts", "-c", conf, "--since", "last tuesday"]) == 2
    err = capsys.readouterr().err
    assert "--since 'last tuesday' is neither a duration (2h, 30m, 1d) nor a date" in err
    assert "Traceback" not in err
    empty = tmp_path / "empty"
    assert coldtrace(["gateway", "init", "--dir", str(empty)]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        coldtrace(["gateway", "alerts", "-c", str(empty / "gateway.toml")])
    assert exit_.value.code == 2
    assert "no database" in capsys.readouterr().err


def test_parse_since_reads_durations_and_dates() -> None:
    assert parse_since("2h", 10_000) == 10_000 - 7200
    assert parse_since("30m", 10_000) == 10_000 - 1800
    assert parse_since("2026-12-07", 0) == 1796601600
    assert parse_since("2026-12-07T10:00:00Z", 0) == 1796601600 + 36000
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since("yesterday", 0)
