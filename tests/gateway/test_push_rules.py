"""The pusher's rules against a scripted cloud (httpx.MockTransport): a refused batch is
logged and retried slowly, never skipped; 409 re-reads the cloud's size; the backoff
grows from 1 s to retry_max with jitter; a forked log stops pushing with an alert."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import load_config
from gateway.evidence.store import CheckpointRow, SqlStore, StoredRecord, WriteBatch
from gateway.push import SLOW_RETRY, Pusher, PushStopped, _Retry
from protocol.checkpoint import Checkpoint, sign_checkpoint
from protocol.merkle import MerkleTree
from protocol.note import NoteSigner

ORIGIN = "coldtrace.test/rules"


def setup(tmp_path: Path, answer: Any) -> tuple[Pusher, SqlStore, list[dict[str, Any]]]:
    (tmp_path / "gateway.toml").write_text(
        f'[log]\norigin = "{ORIGIN}"\n[cloud]\nurl = "http://cloud.test"\n'
    )
    cfg = load_config(tmp_path / "gateway.toml")
    signer = NoteSigner.generate(ORIGIN)
    store = SqlStore(tmp_path / "g.db")
    raws = [bytes([i]) * 40 for i in range(5)]
    store.commit(
        WriteBatch(records=[StoredRecord(i, "d", i, 1, 1, 0, 2, 0, r) for i, r in enumerate(raws)])
    )
    tree = MerkleTree()
    tree.extend(raws)
    note = sign_checkpoint(Checkpoint(ORIGIN, 5, tree.root(5)), signer)
    store.add_checkpoint(CheckpointRow(5, tree.root(5), note, 0))
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        entry = {"method": request.method, "path": request.url.path}
        if request.method == "POST":
            entry["batch"] = json.loads(request.content)
        seen.append(entry)
        return answer(request, note)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    return Pusher(cfg, store, signer, client=client), store, seen


def status(size: int = 0, frozen: bool = False) -> httpx.Response:
    return httpx.Response(200, json={"size": size, "frozen": frozen, "checkpoint": None})


def test_a_refused_batch_is_logged_and_retried_slowly_never_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    refuse = {"on": True}

    def answer(request: httpx.Request, note: str) -> httpx.Response:
        if request.method == "GET":
            return status()
        if refuse["on"]:
            failure = {"subject": f"{ORIGIN}#3", "code": "unknown_key", "message": "who?"}
            return httpx.Response(
                422,
                json={"error": "unverified_records", "message": "1 check", "failures": [failure]},
            )
        return httpx.Response(
            200, json={"size": 5, "stored": 5, "duplicate": False, "checkpoint": note}
        )

    pusher, store, seen = setup(tmp_path, answer)
    with pytest.raises(_Retry) as err:
        pusher.round()
    assert err.value.delay == SLOW_RETRY and err.value.reason == "unverified_records"
    with caplog.at_level(logging.ERROR):
        assert pusher._failed(err.value) == SLOW_RETRY
    assert "unknown_key who?" in caplog.text
    assert pusher.cloud_size() == 0 and pusher.stats.failures == {"unverified_records": 1}
    refuse["on"] = False
    assert pusher.round()  # the same batch again, from record 0
    posts = [s["batch"] for s in seen if s["method"] == "POST"]
    assert posts[0] == posts[1] and posts[1]["first"] == 0 and len(posts[1]["records"]) == 5
    assert pusher.cloud_size() == 5 and not pusher.round()
    store.close()


def test_409_reads_the_cloud_size_again_and_the_backoff_grows_with_jitter(
    tmp_path: Path,
) -> None:
    def answer(request: httpx.Request, note: str) -> httpx.Response:
        if request.method == "GET":
            return status()
        return httpx.Response(409, json={"error": "out_of_order", "expected_first": 0})

    pusher, store, seen = setup(tmp_path, answer)
    with pytest.raises(_Retry) as err:
        pusher.round()
    assert err.value.delay is None and not pusher.synced
    with pytest.raises(_Retry):
        pusher.round()
    assert [s["method"] for s in seen] == ["GET", "POST", "GET", "POST"]
    random.seed(1)
    delays = [pusher._failed(_Retry("network", "down")) for _ in range(10)]
    for d, top in zip(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60], strict=True):
        assert top / 2 <= d <= top
    store.close()


def test_a_forked_log_stops_pushing_with_an_alert(tmp_path: Path) -> None:
    def answer(request: httpx.Request, note: str) -> httpx.Response:
        if request.method == "GET":
            return status()
        return httpx.Response(409, json={"error": "log_forked", "message": "two roots"})

    pusher, store, _ = setup(tmp_path, answer)
    alerts: list[tuple[str, str]] = []
    pusher.alert = lambda kind, message: alerts.append((kind, message))
    with pytest.raises(PushStopped):
        pusher.round()
    assert alerts == [("log_forked", "two roots")]
    assert json.loads(store.get_meta("cloud.frozen") or "{}")["kind"] == "log_forked"
    store.close()


def test_only_cosignatures_that_verify_reach_the_stored_note(tmp_path: Path) -> None:
    from gateway.push import merge_cosigned
    from protocol.checkpoint import cosign_checkpoint
    from protocol.note import WitnessSigner, parse_note

    pusher, store, _ = setup(tmp_path, lambda request, note: status())
    ours = store.checkpoint_at(5).note
    cloud, peer, stranger = (WitnessSigner.generate(f"w{i}.test/witness") for i in range(3))
    good = cosign_checkpoint(cosign_checkpoint(ours, cloud, 1), stranger, 1)
    assert merge_cosigned(store, pusher.signer, 5, good, [cloud.verifier(), peer.verifier()])
    names = [s.name for s in parse_note(store.checkpoint_at(5).note).signatures]
    assert names == [ORIGIN, "w0.test/witness"]  # the unknown key's line is left out
    forged = parse_note(cosign_checkpoint(ours, peer, 1))
    line = forged.signatures[-1]  # peer's name and key id, a bad signature
    forged.signatures[-1] = type(line)(line.name, line.key_id, bytes(8) + bytes(64))
    assert not merge_cosigned(store, pusher.signer, 5, forged.text(), [peer.verifier()])
    other = sign_checkpoint(Checkpoint(ORIGIN, 5, bytes(32)), pusher.signer)
    assert not merge_cosigned(store, pusher.signer, 5, other, [])  # another body: kept ours
    assert [s.name for s in parse_note(store.checkpoint_at(5).note).signatures] == names
    store.close()
