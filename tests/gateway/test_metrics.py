"""Prometheus exposition (gateway/metrics.py), checked through a real HTTP GET on loopback.

The parser below is written from the text format 0.0.4 description
(prometheus.io/docs/instrumenting/exposition_formats) and is strict: it
refuses anything the format does not allow, so "parses back" means "a
Prometheus server would read it".
"""

from __future__ import annotations

import math
import re
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from gateway.metrics import CONTENT_TYPE, render, serve_metrics

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
VALUE = r"[-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|Inf|NaN)"
SAMPLE = re.compile(rf"({NAME})(?:\{{(.*)\}})? ({VALUE})(?: (-?[0-9]+))?")
LABEL_PAIR = re.compile(rf'({LABEL})="((?:[^"\\\n]|\\\\|\\"|\\n)*)"(,|$)')

Key = tuple[str, frozenset[tuple[str, str]]]


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], value)


def parse(text: str) -> tuple[dict[Key, float], dict[str, str], dict[str, str]]:
    """samples {(name, labels): value}, types {family: type}, helps {family: text}."""
    assert text == "" or text.endswith("\n"), "the exposition ends with a newline"
    samples: dict[Key, float] = {}
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    seen_families: list[str] = []
    current: str | None = None
    for line in text.splitlines():
        assert line, "no empty lines"
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            assert re.fullmatch(NAME, name) and name not in helps, line
            helps[name] = unescape(doc)
            current = name
            continue
        if line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name == current and name not in types, f"TYPE out of place: {line}"
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), line
            types[name] = kind
            seen_families.append(name)
            continue
        assert not line.startswith("#"), f"unknown comment {line!r}"
        m = SAMPLE.fullmatch(line)
        assert m, f"not a sample line: {line!r}"
        name, label_text, value = m.group(1), m.group(2), m.group(3)
        assert name == current and name in types, f"sample before its TYPE: {line}"
        labels: list[tuple[str, str]] = []
        pos = 0
        while label_text and pos < len(label_text):
            lm = LABEL_PAIR.match(label_text, pos)
            assert lm, f"bad labels in {line!r}"
            labels.append((lm.group(1), unescape(lm.group(2))))
            pos = lm.end()
        assert len({k for k, _ in labels}) == len(labels), f"repeated label in {line}"
        key = (name, frozenset(labels))
        assert key not in samples, f"duplicate sample {line}"
        samples[key] = float(value.replace("Inf", "inf").replace("NaN", "nan"))
    assert len(seen_families) == len(set(seen_families))
    return samples, types, helps


def get(url: str, method: str = "GET") -> tuple[int, str, str]:
    request = urllib.request.Request(url, method=method)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as e:
        try:
            return e.code, e.headers["Content-Type"], e.read().decode()
        finally:
            e.close()


NOW = 1_790_000_100.0

FULL: dict[str, Any] = {
    "gateway": "wh-7",
    "time": 1_790_000_000,
    "uptime": 3600,
    "connected": True,
    "ingest_rate": 15234.5,
    "backlog": 212,
    "tree_size": 1_234_567,
    "session": {"accepted": 1_234_000, "duplicates": 17, "bad_signature": 3},
    "rejects": {"bad_signature": 3, "unknown_key": 2, "malformed_record": 1},
    "devices": {
        "online": ["tl-1", "tl-2", "tl-3"],
        "offline": ["tl-9"],
        "registered": 4,
        "revoked": 1,
    },
    "last_checkpoint": {"size": 1_234_000, "time": 1_790_000_090, "root": "ab" * 32},
    "last_anchor": {"size": 1_230_000, "time": 1_790_000_040, "backend": "local"},
    "acks_sent": 98_000,
    "mqtt": {"received": 1_234_020, "acked": 1_234_017, "connects": 1},
    "alerts_active": 2,
    "broker_dropped": 0,
    "store_outages": 2,
    "store_outage_seconds": 12.5,
    "alarms": ["conflict tl-1 seq 4"],  # not a metric: ignored
}


def L(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


EXPECTED: dict[Key, float] = {
    ("coldtrace_gateway_info", L(gateway="wh-7")): 1,
    ("coldtrace_uptime_seconds", L()): 3600,
    ("coldtrace_broker_connected", L()): 1,
    ("coldtrace_ingest_rate_records_per_second", L()): 15234.5,
    ("coldtrace_ingest_backlog_records", L()): 212,
    ("coldtrace_log_size_leaves", L()): 1_234_567,
    ("coldtrace_records_total", L(outcome="accepted")): 1_234_000,
    ("coldtrace_records_total", L(outcome="duplicate")): 17,
    ("coldtrace_rejects_total", L(reason="bad_signature")): 3,
    ("coldtrace_rejects_total", L(reason="unknown_key")): 2,
    ("coldtrace_rejects_total", L(reason="malformed_record")): 1,
    ("coldtrace_devices", L(state="online")): 3,
    ("coldtrace_devices", L(state="offline")): 1,
    ("coldtrace_devices", L(state="registered")): 4,
    ("coldtrace_devices", L(state="revoked")): 1,
    ("coldtrace_checkpoint_size_leaves", L()): 1_234_000,
    ("coldtrace_checkpoint_timestamp_seconds", L()): 1_790_000_090,
    ("coldtrace_checkpoint_age_seconds", L()): 10.0,
    ("coldtrace_anchor_size_leaves", L(backend="local")): 1_230_000,
    ("coldtrace_anchor_timestamp_seconds", L(backend="local")): 1_790_000_040,
    ("coldtrace_anchor_age_seconds", L(backend="local")): 60.0,
    ("coldtrace_acks_sent_total", L()): 98_000,
    ("coldtrace_mqtt_events_total", L(event="received")): 1_234_020,
    ("coldtrace_mqtt_events_total", L(event="acked")): 1_234_017,
    ("coldtrace_mqtt_events_total", L(event="connects")): 1,
    ("coldtrace_alerts_active", L()): 2,
    ("coldtrace_broker_dropped_messages_total", L()): 0,
    ("coldtrace_store_outages_total", L()): 2,
    ("coldtrace_store_outage_seconds_total", L()): 12.5,
}


def test_full_stats_over_http_parse_back_exactly() -> None:
    with serve_metrics(0, lambda: FULL, clock=lambda: NOW) as server:
        status, ctype, body = get(server.url)
    assert status == 200
    assert ctype == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    samples, types, helps = parse(body)
    assert samples == EXPECTED
    for name, kind in types.items():
        assert kind == ("counter" if name.endswith("_total") else "gauge"), name
        assert helps[name]
    # Integers print as integers (no 1.234e+06 for a counter).
    assert 'coldtrace_records_total{outcome="accepted"} 1234000\n' in body
    assert "coldtrace_ingest_rate_records_per_second 15234.5\n" in body


def test_missing_keys_leave_their_metrics_out() -> None:
    assert render({}) == ""
    samples, _, _ = parse(render({"backlog": 0, "connected": False}))
    assert samples == {
        ("coldtrace_ingest_backlog_records", L()): 0,
        ("coldtrace_broker_connected", L()): 0,
    }


def test_rejects_come_from_the_core_session_counter_when_not_given() -> None:
    stats = {"session": {"accepted": 10, "duplicates": 1, "bad_signature": 2, "conflict": 1}}
    samples, _, _ = parse(render(stats))
    assert samples == {
        ("coldtrace_records_total", L(outcome="accepted")): 10,
        ("coldtrace_records_total", L(outcome="duplicate")): 1,
        ("coldtrace_rejects_total", L(reason="bad_signature")): 2,
        ("coldtrace_rejects_total", L(reason="conflict")): 1,
    }


def test_label_values_and_help_are_escaped() -> None:
    nasty = 'wh "7"\\north\nwing'
    samples, _, _ = parse(render({"gateway": nasty, "rejects": {'a"b\\c': 1}}))
    assert samples[("coldtrace_gateway_info", L(gateway=nasty))] == 1
    assert samples[("coldtrace_rejects_total", L(reason='a"b\\c'))] == 1


def test_special_float_values() -> None:
    samples, _, _ = parse(render({"ingest_rate": math.inf, "backlog": math.nan}))
    assert samples[("coldtrace_ingest_rate_records_per_second", L())] == math.inf
    assert math.isnan(samples[("coldtrace_ingest_backlog_records", L())])


def test_ages_grow_with_the_scrape_time() -> None:
    stats = {"last_checkpoint": {"size": 5, "time": 1000}}
    now = [1005.0]
    with serve_metrics(0, lambda: stats, clock=lambda: now[0]) as server:
        first = parse(get(server.url)[2])[0][("coldtrace_checkpoint_age_seconds", L())]
        now[0] = 1065.5
        second = parse(get(server.url)[2])[0][("coldtrace_checkpoint_age_seconds", L())]
    assert (first, second) == (5.0, 65.5)


def test_other_paths_404_and_a_failing_stats_fn_500_without_killing_the_server() -> None:
    calls = [0]

    def flaky() -> dict[str, Any]:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("store locked")
        return {"backlog": 1}

    with serve_metrics(0, flaky) as server:
        assert get(server.url.replace("/metrics", "/"))[0] == 404
        assert get(server.url)[0] == 500
        status, _, body = get(server.url + "?x=1")
        head = get(server.url, method="HEAD")
    assert status == 200 and parse(body)[0] == {("coldtrace_ingest_backlog_records", L()): 1}
    assert head[0] == 200 and head[2] == ""


def test_concurrent_scrapes() -> None:
    gate = threading.Barrier(8, timeout=10)

    def slow_stats() -> dict[str, Any]:
        gate.wait()  # all eight requests are inside stats_fn at once
        return FULL

    with serve_metrics(0, slow_stats, clock=lambda: NOW) as server, ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda _: get(server.url), range(8)))
    assert all(status == 200 and parse(body)[0] == EXPECTED for status, _, body in results)


def test_parser_refuses_what_prometheus_refuses() -> None:
    """The strict parser above is itself checked on broken expositions."""
    for bad in (
        "coldtrace_x 1\n",  # sample without TYPE
        '# HELP a x\n# TYPE a gauge\na{b="c"} 1',  # no final newline
        "# HELP a x\n# TYPE a gauge\na{b=c} 1\n",  # unquoted label value
        "# HELP a x\n# TYPE a gauge\na 1,5\n",  # not a number
        "# HELP a x\n# TYPE a gauge\na 1\na 2\n",  # duplicate sample
    ):
        with pytest.raises(AssertionError):
            parse(bad)
