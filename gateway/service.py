"""``coldtrace gateway run``: the gateway process, wiring the parts together.

    MQTT (paho adapter) -> Pipeline (checks on a pool, batched commits)
        -> store (one transaction per batch) -> log (tree append)
        -> PUBACK to the broker, retained acks to the devices
        -> checkpoints every N s / M leaves -> ledger anchor

Everything after the commit happens on the ingest thread, in order: a PUBACK
or a device ack is never sent for a record that is not durably stored.
Registry records waiting in the outbox (registrations, bindings, profiles)
are logged at start and polled every second. When the gateway holds the
registry key and ``[registry] restate_interval`` is not 0, it restates every
binding and profile chain whose last statement is older than that interval
(docs/protocol.md §4.2), checking once a minute. A live status (rates,
backlog, connection, last checkpoint) is written to the store every two
seconds for ``coldtrace gateway status``.

With ``[cloud]`` a thread pushes the log to the cloud (gateway/push.py) and,
with ``[[witness.peers]]``, another witnesses the peers' logs through it
(gateway/witness.py); their alarms (a frozen log, a peer's fork) go through
:meth:`Gateway.raise_alert`.

A full disk (gateway/evidence/diskfull.py), at start, in ``recover()``, during
ingest or at shutdown, ends the gateway with one sentence naming the data
directory, the store and ledger closed, and exit status 75; quarantined
messages an operator released (``rejects --release``) are checked again with
the registry outbox, every second. Alert events are kept in the store (acknowledged
and escalated there); with ``[dashboard]`` the operator's web page
(gateway/dashboard.py) is served from a thread of this process.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from gateway.config import ConfigError, GatewayConfig
from gateway.evidence.checks import IngestSettings, check_chunk
from gateway.evidence.diskfull import EXIT_DISK_FULL, DiskFull, is_disk_full
from gateway.evidence.ingest import BatchOutcome, Ingestor, Pipeline
from gateway.evidence.ledger import LocalLedger
from gateway.evidence.log import GatewayLog
from gateway.evidence.quarantine import Quarantine, QuarantineLimits
from gateway.evidence.ratelimit import DeviceRateLimiter
from gateway.evidence.registry import Registry, RegistryError, RegistrySigner, Scopes
from gateway.evidence.store import SqlStore, connection_lost, open_store
from gateway.evidence.verifiers import make_verifier
from gateway.transport.mqtt import Inbound, MqttAdapter, MqttSettings
from protocol.keys import (
    b64d,
    ed25519_public_to_raw,
    load_ed25519_private_key,
    load_p256_private_key,
    p256_public_from_sec1,
    p256_public_to_sec1,
)
from protocol.note import NoteSigner
from protocol.trust import Scopes as TrustScopes
from protocol.trust import trust_document as protocol_trust_document

__all__ = ["AckScheduler", "Gateway", "registry_public_key", "run", "trust_document"]

log = logging.getLogger("coldtrace.gateway")


def load_log_signer(cfg: GatewayConfig) -> NoteSigner:
    try:
        text = cfg.log.key_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"no log key {cfg.log.key_file} (run `coldtrace gateway init`)") from None
    signer = NoteSigner.from_skey(text)
    if signer.name != cfg.log.origin:
        raise ConfigError(
            f"the log key is named {signer.name!r} but [log] origin is {cfg.log.origin!r}"
        )
    return signer


def registry_public_key(cfg: GatewayConfig) -> ec.EllipticCurvePublicKey:
    if cfg.registry.public_key:
        return p256_public_from_sec1(b64d(cfg.registry.public_key))
    if cfg.registry.key_file is not None and cfg.registry.key_file.exists():
        return load_p256_private_key(cfg.registry.key_file).public_key()
    raise ConfigError("[registry] needs public_key or key_file")


def open_ledger(cfg: GatewayConfig) -> Any:
    if cfg.ledger.backend == "evm":
        return open_evm_ledger(cfg)
    key = load_ed25519_private_key(cfg.ledger.key_file)
    return LocalLedger(cfg.ledger_path, cfg.ledger.id, key)


def registry_scopes(cfg: GatewayConfig) -> Scopes:
    r = cfg.registry
    others = tuple((a.id, a.gtins) for a in r.authorities)
    return Scopes(tuple(r.devices), tuple(r.places), tuple(r.gtins), others)


def authority_keys(cfg: GatewayConfig) -> dict[str, ec.EllipticCurvePublicKey]:
    """``[[registry.authorities]]``: id -> public key (checked by load_config)."""
    return {a.id: p256_public_from_sec1(b64d(a.key)) for a in cfg.registry.authorities}


def registry_signer(cfg: GatewayConfig, store: SqlStore) -> RegistrySigner | None:
    """A signer with the registry's private key, or None when ``key_file`` is absent."""
    key_file = cfg.registry.key_file
    if key_file is None or not key_file.exists():
        return None
    return RegistrySigner(
        store, cfg.registry.id, load_p256_private_key(key_file), scopes=registry_scopes(cfg)
    )


def trust_document(cfg: GatewayConfig) -> dict[str, Any]:
    """The trust file (§10, version 2) a verifier pins for this gateway's log:
    its log key, its registry with the registry's scopes, the other authorities
    whose profiles it logs (``[[registry.authorities]]``: gtins only), and its ledger."""
    signer = load_log_signer(cfg)
    r = cfg.registry
    scopes = TrustScopes(tuple(r.devices), tuple(r.places), tuple(r.gtins))
    return protocol_trust_document(
        logs=[(cfg.log.origin, signer.vkey)],
        registries={
            r.id: (p256_public_to_sec1(registry_public_key(cfg)), scopes),
            **{a.id: (b64d(a.key), TrustScopes((), (), a.gtins)) for a in r.authorities},
        },
        **ledger_pins(cfg),
    )


def mqtt_settings(cfg: GatewayConfig) -> MqttSettings:
    m = cfg.mqtt
    return MqttSettings(
        host=m.host,
        port=m.port,
        client_id=m.client_id or m.username or f"gw@{cfg.id}",
        username=m.username,
        password=m.secret(),
        keepalive=m.keepalive,
        tls_ca=None if m.tls_ca is None else str(m.tls_ca),
        tls_cert=None if m.tls_cert is None else str(m.tls_cert),
        tls_key=None if m.tls_key is None else str(m.tls_key),
        share_group=m.share_group,
    )


class AckScheduler:
    """Coalesces device acks: at most one per device per ``interval`` seconds."""

    def __init__(
        self,
        ack_for: Callable[[str, int], bytes | None],
        publish: Callable[[str, bytes], None],
        interval: float,
    ) -> None:
        self._ack_for = ack_for
        self._publish = publish
        self.interval = interval
        self._due: set[str] = set()
        self._last: dict[str, float] = {}
        self.sent = 0

    def mark(self, signers: set[str]) -> None:
        self._due |= signers

    def flush(self, now: float, *, force: bool = False) -> None:
        if not self._due:
            return
        done = []
        for signer in self._due:
            if not force and now - self._last.get(signer, 0.0) < self.interval:
                continue
            done.append(signer)
            msg = self._ack_for(signer, int(now))
            if msg is not None:
                self._publish(f"ct/v1/{signer}/ack", msg)
                self._last[signer] = now
                self.sent += 1
        self._due.difference_update(done)


def _closing_on_failure(init: Callable[..., None]) -> Callable[..., None]:
    """Close what a failed ``Gateway.__init__`` opened (store, ledger, log, verifier);
    a full disk becomes :class:`DiskFull` (one sentence, no traceback)."""

    @functools.wraps(init)
    def wrapper(self: Gateway, cfg: GatewayConfig, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, cfg, *args, **kwargs)
        except BaseException as exc:
            for name in ("pipeline", "log", "ledger", "store"):
                part = self.__dict__.get(name)
                closer = getattr(part, "stop" if name == "pipeline" else "close", None)
                if closer is not None:
                    try:
                        closer()
                    except Exception:
                        log.debug("closing %s after a failed start", name, exc_info=True)
            if is_disk_full(exc) and not isinstance(exc, DiskFull):
                raise DiskFull(cfg.data_dir) from None
            raise

    return wrapper


class Gateway:
    """One running gateway; ``start()``, then ``stop()`` (or ``run()`` until a signal)."""

    @_closing_on_failure
    def __init__(
        self,
        cfg: GatewayConfig,
        *,
        on_records: Callable[[BatchOutcome], None] | None = None,
    ) -> None:
        self.cfg = cfg
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.store: SqlStore = open_store(cfg)
        self.ledger = open_ledger(cfg)
        self.log = GatewayLog(
            self.store,
            cfg.tree_dir,
            load_log_signer(cfg),
            ledger=self.ledger,
            checkpoint_interval=cfg.log.checkpoint_interval,
            checkpoint_leaves=cfg.log.checkpoint_leaves,
        )
        if self.log.recovered["rolled_back"] or self.log.recovered["rolled_forward"]:
            log.info("log recovered: %s", self.log.recovered)
        self.registry = Registry(
            {cfg.registry.id: registry_public_key(cfg)},
            self.store.devices(),
            self.store.statement_heads(),
            registry_scopes(cfg),
            authority_keys(cfg),
        )
        self.signer = registry_signer(cfg, self.store)
        if self.ledger.backend == "evm":
            self.ledger.alert = self.raise_alert
        ing = cfg.ingest
        self.settings = IngestSettings(
            future_skew=ing.future_skew,
            holdover_skew=ing.holdover_skew,
            min_time=ing.min_time,
            ack_interval=ing.ack_interval,
        )
        self.ingestor = Ingestor(
            self.store,
            self.registry,
            gateway_id=cfg.id,
            settings=self.settings,
            append_to_log=self.log.append,
            quarantine=Quarantine(self.store, quarantine_limits(cfg)),
        )
        if self.ingestor.next_leaf != self.log.size:
            raise RuntimeError("store and log disagree after recovery")
        self.pipeline = Pipeline(
            self.ingestor,
            verifier=make_verifier(ing.verify_mode, ing.verify_workers, self.settings),
            batch_size=ing.batch_size,
            batch_wait=ing.batch_wait,
            on_committed=self._committed,
            idle=self._periodic,
            limiter=DeviceRateLimiter(ing.device_rate, ing.device_burst),
        )
        from gateway.ota import GatewayOta

        # signed firmware updates (docs/protocol.md §5.4): offers and chunk requests
        self.ota = GatewayOta(cfg.data_dir, cfg.id, self.store.ack_keys,
                              lambda topic, msg: self.mqtt.publish(topic, msg, retain=False))
        settings = mqtt_settings(cfg)
        settings.extra_topics = (*settings.extra_topics, "+/fwreq")
        self.mqtt = MqttAdapter(
            settings,
            self._feed,
            backlog=self.pipeline.backlog,
            max_backlog=ing.max_backlog,
        )
        self.acks = AckScheduler(self.ingestor.ack_for, self.mqtt.publish, ing.ack_interval)
        self.alerts = on_records if on_records is not None else self._alert_listener()
        self.influx = self._influx_sink()  # optional copy for dashboards, None when off
        self.on_records = self._record_hooks()
        self.metrics: Any = None
        self.dashboard: Any = None  # gateway/dashboard.py's server, with [dashboard]
        self.last_status: dict[str, Any] = {}
        self.started = time.time()
        self._next_outbox = 0.0
        self._next_ota = 0.0
        self._next_restate = 0.0
        self._next_status = 0.0
        self._rate_mark = (time.time(), 0)
        self.rate = 0.0
        self._stopped = threading.Event()
        self.exit_code = 0  # what run() returns once stopped (EXIT_DISK_FULL: the disk filled)
        self.store_lost: BaseException | None = None  # why run() stopped: the database went away
        self.outages = StoreOutages()  # the database outages this process rode out (D38)
        self.pusher: Any = None  # gateway/push.py, with [cloud]
        self.witness: Any = None  # gateway/witness.py, with [cloud] and [[witness.peers]]
        if cfg.cloud is not None:
            from gateway.push import Pusher

            self.pusher = Pusher(cfg, self.store, self.log.signer, alert=self.raise_alert)
            if cfg.witness.peers:
                from gateway.witness import Witness

                self.witness = Witness(cfg, self.store, alert=self.raise_alert)

    def _alert_listener(self) -> Any:
        """gateway/alerts.py's listener for this configuration (None if unavailable)."""
        try:
            from gateway.alerts import AlertConfigError, listener_from_config
        except ImportError:
            return None

        try:
            return listener_from_config(
                self.cfg,
                publish=lambda topic, payload: self.mqtt.publish(topic, payload, retain=False),
                place_of=self.registry.place_of,  # the registry's current bindings
                store=self.store,  # alerts table: the dashboard's, escalation's
            )
        except AlertConfigError as exc:
            raise ConfigError(str(exc)) from None

    def _influx_sink(self) -> Any:
        """gateway/influx.py's sink for ``[influx]``, or None when the section is absent.

        It also receives the alert events when the alert listener is the default one."""
        if self.cfg.influx is None:
            return None
        try:
            from gateway.influx import sink_from_config
        except ImportError as exc:
            raise ConfigError(str(exc)) from None
        try:
            sink = sink_from_config(self.cfg, place_of=self.registry.place_of)
        except ImportError as exc:  # the influxdb-client package is an optional extra
            raise ConfigError(str(exc)) from None
        if sink is not None and hasattr(self.alerts, "publish") and hasattr(self.alerts, "engine"):
            from gateway.alerts import fan_out

            self.alerts.publish = fan_out(self.alerts.publish, sink.alert)
        return sink

    def _record_hooks(self) -> Callable[[BatchOutcome], None] | None:
        """The on_records hooks (alerts, InfluxDB) as one; each failure logged on its own."""
        hooks = [h for h in (self.alerts, self.influx) if h is not None]
        if len(hooks) <= 1:
            return hooks[0] if hooks else None

        def call_all(outcome: BatchOutcome) -> None:
            for hook in hooks:
                try:
                    hook(outcome)
                except Exception:
                    log.exception("record listener %r failed", hook)

        return call_all

    def raise_alert(self, kind: str, message: str) -> None:
        """An alarm that is not about a device (the cloud froze the log, a peer's log
        forked): logged, listed by ``coldtrace gateway status`` and published like the
        other alerts (MQTT ``ct/v1/gw/{id}/alerts``, webhook) when the listener is on."""
        log.error("ALARM %s: %s", kind, message)
        self.ingestor.alarms.append(f"{kind}: {message}")
        publish = getattr(self.alerts, "publish", None)
        if publish is None:
            return
        from gateway.alerts import AlertEvent

        now = int(time.time())
        event = AlertEvent(
            kind=kind,
            phase="start",
            id=f"{kind}:{self.cfg.log.origin}:{now}",
            device=self.cfg.id,
            time=now,
            start=now,
            raised=now,
            reason=message[:500],
        )
        try:
            publish(event)
        except Exception:
            log.exception("publishing alert %s failed", kind)

    def _metrics_stats(self) -> dict[str, Any]:
        return self.last_status  # computed on the ingest thread; only read here

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        if self.cfg.dashboard is not None:  # first: a port in use stops the start cleanly
            from gateway.dashboard import serve_dashboard

            self.dashboard = serve_dashboard(self.cfg)
        self._drain_outbox()
        self._write_status()
        self.pipeline.start()
        self.mqtt.start()
        if self.cfg.metrics.port:
            from gateway.metrics import serve_metrics

            self.metrics = serve_metrics(
                self.cfg.metrics.port, self._metrics_stats, host=self.cfg.metrics.host
            )
        if self.pusher is not None:
            self.pusher.start()
        if self.witness is not None:
            self.witness.start()
        log.info(
            "gateway %s started: log %s at %d leaves",
            self.cfg.id,
            self.cfg.log.origin,
            self.log.size,
        )

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        for part in (self.pusher, self.witness):
            if part is not None:
                part.stop()
        if self.metrics is not None:
            self.metrics.close()
        if self.dashboard is not None:
            self.dashboard.close()
        self.mqtt.stop()
        self.pipeline.stop()
        if self.pipeline.error is None and self.store_lost is None:
            self._guard("the final checkpoint", self._final_checkpoint)
        elif is_disk_full(self.pipeline.error):
            self._disk_full()
        if not (
            self.exit_code == EXIT_DISK_FULL
            or is_disk_full(self.pipeline.error)
            or self.store_lost is not None
        ):
            try:
                self._write_status(stopped=True)
            except Exception:  # the store may be what failed
                log.exception("could not write the final status")
        if self.alerts is not None and hasattr(self.alerts, "close"):
            self.alerts.close()
        if self.influx is not None:
            try:
                self.influx.close()  # flush what is queued (bounded wait)
            except Exception:
                log.exception("closing the InfluxDB sink failed")
        for part in (self.log, self.ledger, self.store):
            self._guard(f"closing {type(part).__name__}", part.close)

    def run(self, done: threading.Event | None = None) -> int:
        """Run until SIGINT/SIGTERM (or until ``done`` is set); return the exit status.

        When the connection to the store's PostgreSQL server is lost, the gateway
        stops (nothing uncommitted is acknowledged) with :attr:`store_lost` set:
        :func:`run` waits for the server and starts a new one (D38)."""
        if done is None:
            done = threading.Event()
            _on_signals(done.set)
        try:
            self.start()
        except Exception as exc:
            if self._lost_store(exc):  # the database went away while starting
                return 1
            if not is_disk_full(exc):
                raise
            self._disk_full()
            self.stop()
            return EXIT_DISK_FULL
        while not done.wait(0.5):
            if self.pipeline.error is not None:
                if self._lost_store(self.pipeline.error):
                    return 1
                if not is_disk_full(self.pipeline.error):
                    log.error("ingest failed: %s", self.pipeline.error)
                self.stop()
                return EXIT_DISK_FULL if is_disk_full(self.pipeline.error) else 1
        self.stop()
        return self.exit_code

    def _lost_store(self, exc: BaseException) -> bool:
        """If ``exc`` is the PostgreSQL connection lost: stop (acking nothing more) with
        :attr:`store_lost` set, for :func:`run` to wait for the server (D38)."""
        if self.store.dialect != "postgresql" or not connection_lost(exc):
            return False
        self.store_lost = exc
        self.stop()
        return True

    # --- on the ingest thread -----------------------------------------------------------

    def _committed(self, outcome: BatchOutcome) -> None:
        for gen, mids in outcome.mids.items():
            self.mqtt.ack(gen, mids)
        if outcome.ack_due:
            self.acks.mark(outcome.ack_due)
        if self.on_records is not None and (outcome.accepted or outcome.presence):
            try:
                self.on_records(outcome)
            except Exception:
                log.exception("record listener failed")
        self._periodic()

    def _feed(self, msgs: list[Any]) -> None:
        """The MQTT sink: firmware chunk requests to gateway/ota.py (PUBACKed at once,
        nothing to store), everything else to the pipeline."""
        rest = []
        for m in msgs:
            if m.topic.endswith("/fwreq"):
                try:
                    self.ota.handle(m.topic, m.payload)
                except Exception:
                    log.exception("firmware chunk request on %s", m.topic)
                if m.mid:
                    self.mqtt.ack(m.gen, [m.mid])
            else:
                rest.append(m)
        if rest:
            self.pipeline.feed(rest)

    def _periodic(self) -> None:
        now = time.time()
        self.acks.flush(now)
        if now >= self._next_ota:
            self._next_ota = now + 1.0
            try:
                self.ota.poll()
            except Exception:
                log.exception("sending firmware offers failed")
        if self.log.due(now):
            cp = self.log.checkpoint()
            if cp is not None:
                log.info("checkpoint %d signed and anchored", cp.size)
                self.save_alert_state()
        if now >= self._next_restate:
            self._next_restate = now + 60.0
            self._restate()
        if now >= self._next_outbox:
            self._next_outbox = now + 1.0
            self._drain_outbox()
            self._drain_commands()
        if now >= self._next_status:
            self._next_status = now + 2.0
            self._write_status()
            if self.alerts is not None and hasattr(self.alerts, "tick"):
                try:
                    self.alerts.tick()
                except Exception:
                    log.exception("alert tick failed")

    def _restate(self) -> None:
        """Restate the chains whose last statement is older than restate_interval."""
        interval = self.cfg.registry.restate_interval
        if self.signer is None or interval <= 0:
            return
        try:
            done = self.signer.restate_due(interval)
        except RegistryError as exc:
            log.error("restating statement chains failed: %s", exc)
            return
        if done:
            log.info("restated %d statement chain(s) older than %d s", len(done), interval)
            self._next_outbox = 0.0  # log them now

    def _drain_commands(self) -> None:
        """Publish the device commands (§5.3) the command line queued
        (gateway/commands.py: ``coldtrace gateway calibrate``)."""
        if not self.mqtt.connected.is_set():
            return
        from gateway.commands import CommandSpool

        try:
            n = CommandSpool(self.cfg.data_dir).drain(
                lambda topic, raw: self.mqtt.publish(topic, raw, retain=False)
            )
        except OSError as exc:
            log.error("publishing device commands failed: %s", exc)
            return
        if n:
            log.info("published %d device command(s)", n)

    def _drain_outbox(self) -> None:
        pending = self.store.outbox_pending()
        if not pending:
            self._drain_released()
            return
        now = time.time()
        msgs = [
            Inbound(f"outbox/{self.cfg.registry.id}", raw, 0, 0, now, outbox_id=i)
            for i, raw in pending
        ]
        results = check_chunk(msgs, self.registry, int(now), self.settings)
        self.ingestor.process(results)
        if self.log.due(now + self.log.interval):
            self.log.checkpoint()
        self._drain_released()

    def status(self) -> dict[str, Any]:
        now = time.time()
        t0, n0 = self._rate_mark
        accepted = self.ingestor.totals["accepted"]
        if now - t0 >= 1.0:
            self.rate = (accepted - n0) / (now - t0)
            self._rate_mark = (now, accepted)
        last = self.log.last
        anchor = self.log.last_anchor
        return {
            "gateway": self.cfg.id,
            "time": int(now),
            "uptime": int(now - self.started),
            "connected": self.mqtt.connected.is_set(),
            "mqtt": dict(self.mqtt.stats),
            "ingest_rate": round(self.rate, 1),
            "backlog": self.pipeline.backlog(),
            "tree_size": self.log.size,
            "session": dict(self.ingestor.totals),
            "acks_sent": self.acks.sent,
            "last_checkpoint": None
            if last is None
            else {"size": last.size, "time": last.time, "root": last.root.hex()},
            "last_anchor": None
            if anchor is None
            else {
                "size": anchor.size,
                "time": anchor.time,
                "backend": anchor.backend,
            },
            "alarms": list(self.ingestor.alarms)[-10:],
            "quarantine": self._quarantine_stats(),
            "verify_restarts": getattr(self.pipeline.verifier, "restarts", 0),
            "store_outages": self.outages.count,
            "store_outage_seconds": round(self.outages.seconds, 1),
        }

    def _write_status(self, *, stopped: bool = False) -> None:
        status = self.status()
        if stopped:
            status["stopped"] = True  # `status` and `trace` see at once that it is gone
        self.store.set_meta("status", json.dumps(status))
        presence = self.store.presence()
        devices = self.registry.devices.values()
        status["rejects"] = self.store.reject_counts()
        status["devices"] = {
            "online": sum(1 for s, _ in presence.values() if s == "online"),
            "offline": sum(1 for s, _ in presence.values() if s == "offline"),
            "registered": sum(1 for d in devices if d.state == 1),
            "revoked": sum(1 for d in devices if d.state == 2),
            "bound": len(self.registry.places_of()),  # monitoring a place now (bindings)
        }
        engine = getattr(self.alerts, "engine", None)
        if engine is not None:
            status["alerts_active"] = len(engine.active())
        if self.influx is not None:
            status["influx"] = self.influx.stats()
        if self.pusher is not None:
            status["cloud"] = self.pusher.stats.as_dict()
        if self.witness is not None:
            status["witness"] = self.witness.stats.as_dict()
        if self.ledger.backend == "evm":
            status["evm"] = self.ledger.status()  # queue and health, for the metrics
        self.last_status = status

    # --- the quarantine, a full disk (docs/decisions.md D29) ------------------------------

    def _drain_released(self) -> None:
        """Check again the quarantined messages ``rejects --release`` sent back, as if
        they had just arrived on their topic: each is accepted (and acked to its
        device) or quarantined again with its new reason."""
        pending = self.store.released_pending(self.cfg.ingest.batch_size)
        if not pending:
            return
        now = time.time()
        msgs = [Inbound(topic, raw, 0, 0, now, release_id=i) for i, topic, raw in pending]
        outcome = self.ingestor.process(check_chunk(msgs, self.registry, int(now), self.settings))
        log.info(
            "released quarantine: %d message(s) checked again, %d accepted, %d refused again",
            len(msgs),
            len(outcome.accepted),
            outcome.rejected,
        )
        if outcome.ack_due:
            self.acks.mark(outcome.ack_due)
        if self.on_records is not None and outcome.accepted:
            try:
                self.on_records(outcome)
            except Exception:
                log.exception("record listener failed")

    def _quarantine_stats(self) -> dict[str, Any]:
        stats = self.ingestor.quarantine.stats()
        limiter = self.pipeline.limiter
        stats["rate_limited"] = dict(limiter.limited) if limiter is not None else {}
        return stats

    def _final_checkpoint(self) -> None:
        self.acks.flush(time.time(), force=True)
        self.log.checkpoint()

    def _disk_full(self) -> None:
        """Say once that the disk is full; ``run()`` then exits with EXIT_DISK_FULL."""
        if self.exit_code != EXIT_DISK_FULL:
            self.exit_code = EXIT_DISK_FULL
            log.error("%s", DiskFull(self.cfg.data_dir))

    def _guard(self, what: str, step: Callable[[], None]) -> None:
        """Run a shutdown step; a failure is reported and the shutdown goes on."""
        try:
            step()
        except Exception as exc:
            if is_disk_full(exc):
                self._disk_full()
            else:
                log.exception("%s failed", what)
                self.exit_code = self.exit_code or 1

    def save_alert_state(self) -> None:
        """Keep the alert engine's state with each checkpoint (gateway/alerts.py): a
        restart, even a kill -9, continues the open alarms instead of losing them."""
        save = getattr(self.alerts, "save", None)
        if save is not None:
            save()


def quarantine_limits(cfg: GatewayConfig) -> QuarantineLimits:
    q = cfg.quarantine
    return QuarantineLimits(max_bytes=q.max_bytes, max_rows=q.max_rows, keep_bytes=q.keep_bytes)


def _on_signals(handler: Callable[[], None]) -> None:
    def _signal(signum: int, frame: Any) -> None:
        handler()

    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)


class StoreOutages:
    """The store's database outages a gateway process rode out: how many, how long."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0


#: Waits between two attempts to reach the store's database again, s (doubling).
RECONNECT_FIRST, RECONNECT_MAX = 0.5, 15.0


def run(
    cfg: GatewayConfig,
    *,
    first: float = RECONNECT_FIRST,
    longest: float = RECONNECT_MAX,
) -> int:
    """``coldtrace gateway run``: the gateway until SIGINT/SIGTERM; return the exit status.

    It rides out a lost connection to the store's PostgreSQL server (a server
    restart, a network cut; docs/decisions.md D38): the gateway that met it
    stops without acknowledging anything it did not commit (the broker keeps
    those messages for the gateway's session, the devices keep their records),
    one line says so, and a new gateway is started as soon as the server
    answers, trying after ``first`` s, then twice as long each time up to
    ``longest`` s. The new one recovers the log from the store as after a crash
    (gateway/evidence/log.py) and the broker hands it what was not acknowledged.
    ``coldtrace gateway status`` and the metrics count the outages
    (``store_outages``, ``store_outage_seconds``). Problems at the first start
    still end the command (the configuration may be wrong)."""
    done = threading.Event()
    _on_signals(done.set)
    outages = StoreOutages()
    gw = Gateway(cfg)
    while True:
        gw.outages = outages
        code = gw.run(done)
        if gw.store_lost is None or done.is_set():
            return code
        again = _reconnect(cfg, gw.store.display, gw.store_lost, outages, done, first, longest)
        if again is None:
            return 0  # stopped while waiting: nothing taken was left unacknowledged
        gw = again


def _reconnect(
    cfg: GatewayConfig,
    display: str,
    why: BaseException,
    outages: StoreOutages,
    done: threading.Event,
    first: float,
    longest: float,
) -> Gateway | None:
    """A new gateway once the store's database answers again; None if ``done`` first."""
    log.error(
        "lost the connection to %s (%s): nothing uncommitted was acknowledged; "
        "reconnecting with backoff (docs/decisions.md D38)",
        display,
        _first_line(why),
    )
    outages.count += 1
    began = time.monotonic()
    delay, attempts = first, 0
    while not done.wait(delay):
        attempts += 1
        try:
            gw = Gateway(cfg)
        except Exception as exc:
            if not connection_lost(exc):
                raise
            log.debug("the database is still unreachable: %s", _first_line(exc))
            delay = min(2 * delay, longest)
            continue
        took = time.monotonic() - began
        outages.seconds += took
        log.warning(
            "the database is reachable again after %.1f s (%d attempt(s)): resuming", took, attempts
        )
        return gw
    outages.seconds += time.monotonic() - began
    return None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]


# --- the EVM ledger backend (gateway/evidence/evm.py, docs/evm.md) -----------------


def open_evm_ledger(cfg: GatewayConfig, *, start: bool = True) -> Any:
    """The EVM backend of ``[ledger.evm]``; its problems at start are ConfigErrors."""
    from gateway.evidence.evm import EvmLedger
    from gateway.evidence.ledger import LedgerError

    evm = cfg.ledger.evm
    assert evm is not None  # load_config checked it
    path = cfg.ledger.path if cfg.ledger.path is not None else cfg.data_dir / "evm-ledger.db"
    try:
        return EvmLedger(evm, path, start=start)
    except LedgerError as exc:
        raise ConfigError(str(exc)) from None


def ledger_pins(cfg: GatewayConfig) -> dict[str, Any]:
    """The trust file's ``ledgers`` arguments: the local ledger's key, or the EVM
    (chain id, contract) pair once the contract is deployed."""
    from protocol.trust import EvmLedger as EvmPin

    if cfg.ledger.backend == "evm":
        evm = cfg.ledger.evm
        if evm is None or not evm.contract:
            raise ConfigError(
                "[ledger.evm] has no contract yet: run `coldtrace gateway ledger deploy`"
            )
        return {"evm": [EvmPin(evm.chain_id, evm.contract.lower())]}
    ledger_key = load_ed25519_private_key(cfg.ledger.key_file).public_key()
    return {"ledgers": {cfg.ledger.id: ed25519_public_to_raw(ledger_key)}}
