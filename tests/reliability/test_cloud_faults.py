"""Fault suite, the cloud: restarted during a gateway's push, and pushes replayed.

Devices -> Mosquitto -> a gateway -> a real cloud served by uvicorn on loopback
(tests/gateway/cloudenv.py). The cloud is stopped and started again on the same
port while the gateway pushes - once with a request in flight (answered before
the cloud goes, as uvicorn does on SIGTERM), once after a push whose answer was
lost (the cloud stored it; its answer came after the gateway stopped waiting) -
with records still arriving. Then pushes the cloud received are sent again byte for byte: the same
signed request again, and older ones after newer ones. The cloud answers each
``200`` with ``duplicate: true, stored: 0`` (idempotent: nothing stored twice);
a captured request replayed after its signature's time window (``MAX_SKEW``,
300 s) is refused ``401 bad_signature``. At the end: every record published is
stored once, in the gateway's log and in the cloud; the gateway's idea of the
cloud's size is the cloud's; the checkpoints are consistent; the cloud's trace
verdict equals an undisturbed run's.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx
import pytest

from cloud import db
from cloud.push import PushRefused, ingest
from gateway.evidence.store import open_store
from protocol.push import MAX_SKEW
from tests.gateway.cloudenv import CloudServer
from tests.gateway.conftest import make_broker, make_gateway  # noqa: F401 (fixtures)
from tests.gateway.devices import wait_for
from tests.gateway.env import ORIGIN
from tests.gateway.logcheck import check_log_and_ledger
from tests.gateway.test_push import caught_up, gateway_state, more_readings, with_cloud
from tests.gateway.test_trace import Scenario
from tests.reliability.cloudcheck import (
    check_cloud,
    check_devices,
    finish_trace,
    reference_verdict,
    scenario_devices,
    verdict_shape,
    write_counts,
)
from tests.soak import scale

RESTARTS = scale(2, 10)  # each: a restart mid-push, and one after an answer was lost


def test_cloud_restarts_mid_push_and_replayed_pushes_store_each_record_once(
    make_broker,  # noqa: F811
    make_gateway,  # noqa: F811
    tmp_path: Path,
) -> None:
    reference = reference_verdict(make_broker, make_gateway, tmp_path / "reference")
    s = Scenario(make_broker, make_gateway)
    env = s.env
    cloud = CloudServer(tmp_path / "cloud")
    cloud.join("acme", env.cfg)
    with_cloud(env, cloud.url, timeout="2")
    cloud.recorded = []
    # A push stays in flight long enough for the cloud to stop under it.
    cloud.push_delay = 0.2
    cloud.answer_delay = 0.3
    cloud.start()
    gw = env.start_gateway()
    rng = random.Random(12)
    try:
        env.connect(*scenario_devices(s))
        s.run_day()
        k = cut = lost = 0
        for _ in range(RESTARTS):
            # (1) Stopped while a push is in flight (answered first, as uvicorn does on
            # SIGTERM); records keep arriving while the cloud is away.
            more_readings(s, k, 10)  # a new checkpoint to push
            k += 10
            wait_for(lambda: cloud.in_flight > 0, 30, "a push under way")
            time.sleep(rng.uniform(0.0, 0.4))
            cut += cloud.in_flight > 0
            cloud.stop()
            more_readings(s, k, 5)
            k += 5
            cloud.start()  # the same port, the same database
            # (2) The answer lost: the cloud stores the push, its answer comes after the
            # gateway gave up waiting (timeout 2 s), and the cloud restarts.
            timeouts = gw.pusher.stats.failures.get("timeout", 0)
            size = cloud.size(ORIGIN)
            cloud.answer_delay = 3.0
            more_readings(s, k, 10)
            k += 10
            wait_for(lambda n=size: cloud.size(ORIGIN) > n, 30, "the push stored")
            wait_for(
                lambda n=timeouts: gw.pusher.stats.failures.get("timeout", 0) > n,
                30,
                "the gateway's wait for the answer timed out",
            )
            lost += 1
            cloud.stop()
            cloud.answer_delay = 0.3
            more_readings(s, k, 5)
            k += 5
            cloud.start()
        wait_for(lambda: caught_up(env, cloud), 60, "the gateway caught up with the cloud")
        pusher = gw.pusher.stats
        # The gateway resumes where the cloud is: its recorded size is the cloud's.
        assert gateway_state(env)[3] == cloud.size(ORIGIN) == gateway_state(env)[0]
        assert cut >= 1, "no restart came while a push was in flight"
        held = cloud.count(db.records, ORIGIN)
        received = len(cloud.recorded)

        # Replays: every push the cloud received, sent again newest first (an older
        # push after a newer one), each with its original signature.
        answers: dict[int, int] = {}
        for path, body, auth in reversed(cloud.recorded[:]):
            r = httpx.post(
                cloud.url + path, content=body, headers={"Authorization": auth}, timeout=30
            )
            assert r.status_code == 200, r.text
            doc = r.json()
            assert doc["stored"] == 0 and doc["size"] == cloud.size(ORIGIN), doc
            assert doc["duplicate"] is True, doc
            answers[r.status_code] = answers.get(r.status_code, 0) + 1
        assert cloud.count(db.records, ORIGIN) == held
        # The same request captured and replayed after its time window: refused.
        path, body, auth = cloud.recorded[-1]
        when = int(auth.split("time=")[1].split(",")[0])
        state = cloud.app.state.cloud
        with pytest.raises(PushRefused) as late:
            ingest(
                cloud.engine,
                state.mirrors,
                state.witness,
                ORIGIN,
                path,
                body,
                auth,
                now=when + MAX_SKEW + 1,
            )
        assert (late.value.status, late.value.code) == (401, "bad_signature")
        assert "more than 300 s" in late.value.message
        assert cloud.count(db.records, ORIGIN) == held

        verdict = finish_trace(s, cloud, tmp_path)
        pusher_failures = dict(pusher.failures)
        pusher_duplicates = pusher.duplicates  # answers "duplicate" to the gateway itself
        # Each lost answer: the gateway pushed the same batch again, told "duplicate".
        assert pusher_duplicates >= lost
    finally:
        gw.stop()
        cloud.stop()
    devices = check_devices(env, scenario_devices(s))
    store = open_store(env.cfg)
    try:
        check_log_and_ledger(env.cfg, store, 100)
    finally:
        store.close()
    in_cloud = check_cloud(env, cloud)
    assert verdict_shape(verdict, s.t0) == reference
    assert verdict["verdict"] == "PASS"
    write_counts(
        "cloud_restart_and_replay",
        **devices,
        **in_cloud,
        lost=devices["published"] - devices["stored"],
        duplicates=in_cloud["cloud_duplicates"],
        restarts=2 * RESTARTS,
        restarts_mid_push=cut,
        answers_lost=lost,
        pushes_received=received,
        replay_answers=answers,
        late_replay=f"{late.value.status} {late.value.code}",
        pusher_failures=pusher_failures,
        pusher_duplicate_answers=pusher_duplicates,
        verdict=verdict["verdict"],
    )
