"""Attacks on the cloud API (cloud/app.py, traces.py, report.py, tags.py): SQL
injection, path traversal, reads across organisations, tokens without the
scope, all on SQLite and on a real PostgreSQL server.

The world is tests/cloud/test_api.py's: three organisations share one item's
trace (packhouse, carrier, distribution centre), and a fourth, "other", holds
tokens but sees none of it. One world per database serves the module. Every
refusal is a 4xx with ``{"error": code, "message": …}`` and the access log's
JSON line (logger ``coldtrace.cloud``) with the path and status.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from sqlalchemy import select

from cloud import db
from tests.attacks.registry import attack
from tests.cloud import cloudkit
from tests.cloud.cloudkit import Kit, LogPusher, make_kit
from tests.cloud.test_traces import three_orgs
from tests.protocol.scenario import UID, Scenario

PH_LOG = "packhouse.example/gw"
UIDX = UID.hex()


@dataclass
class World:
    kit: Kit
    tokens: dict[str, str]  # "packhouse" (read), "other" (read+admin), "push", "admin-only"

    def get(self, path: str, who: str | None = None, **kw: Any) -> Any:
        headers = {} if who is None else {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.kit.client.get(path, headers=headers, **kw)

    def snapshot(self) -> dict[str, str]:
        """A digest of every table's rows: what an injection would have changed."""
        out = {}
        with self.kit.engine.connect() as conn:
            for t in db.metadata.sorted_tables:
                rows = sorted(repr(tuple(r)) for r in conn.execute(select(t)))
                out[t.name] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        return out


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    database = None
    server = None
    if request.param == "postgresql":
        server = request.getfixturevalue("pg_server")
        database = server.new_database("attacks_api")
    kit = make_kit(tmp_path_factory.mktemp(f"api-{request.param}"), database)
    chain = three_orgs(kit)
    for s in (chain.packhouse, chain.carrier, chain.dc):
        assert LogPusher(kit, s).push(anchor_it=True).status_code == 200
    other = Scenario(registry_id="reg-other", origin="other.example/gw")
    kit.join("other", other, devices=["xx-*"], places=["xx:*"], gtins=[])
    kit.client.app.state.cloud.limiter.rate = 10**9  # type: ignore[attr-defined]
    tokens = {
        "packhouse": kit.token("packhouse", ["read"]),
        "other": kit.token("other", ["read", "admin"]),
        "push": kit.token("other", ["push"]),
        "ph-push": kit.token("packhouse", ["push"]),
        "admin-only": kit.token("packhouse", ["admin"]),
    }
    yield World(kit, tokens)
    kit.engine.dispose()
    cloudkit.OPEN[:] = [e for e in cloudkit.OPEN if e is not kit.engine]
    if server is not None:
        server.drop_database("attacks_api")


def refused(r: Any, statuses: tuple[int, ...], code: str | None = None) -> dict[str, Any]:
    """The error body of a refusal: one of ``statuses``, ``{"error", "message"}``."""
    assert r.status_code in statuses, (r.status_code, r.text[:300])
    body = r.json()
    assert isinstance(body, dict) and {"error", "message"} <= body.keys(), body
    if code is not None:
        assert body["error"] == code, body
    return body


# --- SQL injection ------------------------------------------------------------------------------

INJECTIONS = (
    "' OR '1'='1",
    "x'); DROP TABLE records; --",
    "1 UNION SELECT hash FROM tokens",
    "'||(SELECT raw FROM records LIMIT 1)||'",
    '" OR ""="',
    "L42' --",
    "%27%20OR%201%3D1",
)


@attack(
    "api-sql-injection",
    group="cloud API",
    attacker="anyone, or an organisation's reader",
    tries="SQL in path and query parameters (origin, uid, dl, lot, serial, gtin, limit, export "
    "lot/from/to) on SQLite and PostgreSQL",
    refused_by="HTTP 422 `bad_request` / `bad_uid` / `bad_export`, 404 `unknown_log` / "
    "`unknown_item`; a lot or serial without a space is a GS1 value: 200 with no items. "
    "Queries are bound, never built from text",
    recorded="HTTP status + error body; access log line (`coldtrace.cloud`, event `request`); "
    "every table's rows unchanged",
)
def test_sql_injection_changes_nothing_and_is_a_4xx(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    before = world.snapshot()
    answers: list[tuple[str, int]] = []
    with caplog.at_level(logging.INFO, logger="coldtrace.cloud"):
        for inj in INJECTIONS:
            for path, params, who in (
                (f"/v1/logs/{inj}", None, None),
                (f"/v1/logs/{inj}/records", None, "other"),
                (f"/v1/logs/{PH_LOG}/records", {"start": inj}, "packhouse"),
                (f"/v1/logs/{PH_LOG}/checkpoint", {"size": inj}, None),
                (f"/v1/traces/{inj}", None, "packhouse"),
                (f"/v1/traces/{UIDX}/bundle{inj}", None, "packhouse"),
                ("/v1/traces", {"dl": inj}, "packhouse"),
                ("/v1/traces", {"lot": inj}, "packhouse"),
                ("/v1/traces", {"serial": inj, "gtin": "09506000134352"}, "packhouse"),
                ("/v1/traces", {"lot": "L42", "gtin": inj}, "packhouse"),
                ("/v1/alarms", {"limit": inj}, "packhouse"),
                (f"/v1/traces/{UIDX}/export/fsma", {"lot": inj}, "packhouse"),
                (f"/v1/traces/{UIDX}/export/fsma", {"from": inj}, "packhouse"),
                ("/v1/public/trace", {"dl": f"/01/09506000134352/10/{inj}/21/7"}, None),
                (f"/01/09506000134352/10/{inj}/21/7", None, None),
            ):
                r = world.get(path, who, params=params)
                answers.append((path, r.status_code))
                search = path == "/v1/traces" and bool({"lot", "serial"} & set(params or {}))
                if search and r.status_code == 200:
                    # a GS1 value (no space: "x'--", "%27%20OR...") compared as text
                    assert r.json() == [], (params, r.text[:200])
                elif "json" in r.headers.get("content-type", ""):
                    refused(r, (404, 422))
                else:  # the consumer page: HTML
                    assert r.status_code in (404, 422), (path, r.status_code, r.text[:200])
                if search and " " in inj:
                    refused(r, (422,), "bad_request")  # outside GS1's character set 82
    assert world.snapshot() == before
    # the other organisation's reader still sees nothing of the packhouse's
    assert world.get(f"/v1/logs/{PH_LOG}/records", "other").status_code == 404
    # and the packhouse still reads its own: the tables are intact
    assert world.get(f"/v1/traces/{UIDX}", "packhouse").status_code == 200
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "coldtrace.cloud"]
    statuses = [x["status"] for x in logged if x.get("event") == "request"]
    assert statuses[: len(answers)] == [code for _, code in answers]  # each one logged
    assert sum(1 for _, code in answers if code == 200) <= 2 * len(INJECTIONS)


# --- path traversal ------------------------------------------------------------------------------


@attack(
    "api-path-traversal",
    group="cloud API",
    attacker="anyone, or an organisation's reader",
    tries="`../` and `%2e%2e%2f` in uids, log origins, export kinds and formats, report names, "
    "the page's static files",
    refused_by="HTTP 404 (`unknown_log`, `http_404`) or 422 (`bad_request`, `bad_uid`): ids are "
    "patterns, file names are made from the uid, never from the request",
    recorded="HTTP status + error body; access log line; no file's content in any answer",
)
def test_path_traversal_reads_no_file(world: World) -> None:
    secret_markers = ("root:x:0:0", "def create_app", "[cloud]", "BEGIN PRIVATE KEY")
    paths = [
        "/v1/traces/..%2f..%2f..%2fetc%2fpasswd",
        "/v1/traces/%2e%2e%2f%2e%2e%2fetc%2fpasswd/bundle",
        f"/v1/traces/{UIDX}/export/..%2f..%2f..%2fetc%2fpasswd",
        f"/v1/traces/{UIDX}/export/%2e%2e",
        f"/v1/traces/{UIDX}/export/epcis?format=..%2f..%2fcloud.toml",
        "/v1/traces/..%2f..%2fcloud.db/report.pdf",
        f"/v1/traces/{UIDX}%2f..%2f..%2ftags.key/report.pdf",
        "/v1/logs/..%2f..%2f..%2fetc%2fpasswd/records",
        "/v1/logs/%2e%2e/%2e%2e/tags.key",
        "/page/static/..%2f..%2fapp.py",
        "/page/static/%2e%2e/%2e%2e/app.py",
        "/page/static/..%2f..%2f..%2fcloud.toml",
        "/01/09506000134352/10/..%2f..%2f/21/7",
    ]
    for path in paths:
        r = world.get(path, "packhouse")
        assert r.status_code in (404, 422), (path, r.status_code, r.text[:200])
        assert not any(m in r.text for m in secret_markers), path
        if "json" in r.headers.get("content-type", ""):
            refused(r, (404, 422))
    # exports are named from the uid whatever the request held
    r = world.get(f"/v1/traces/{UIDX}/export/epcis", "packhouse")
    assert r.status_code == 200
    assert (
        r.headers["content-disposition"] == f'attachment; filename="coldtrace-{UIDX}-epcis.jsonld"'
    )


# --- across organisations ---------------------------------------------------------------------


def _own_paths() -> list[str]:
    return [
        f"/v1/traces/{UIDX}",
        f"/v1/traces/{UIDX}/bundle",
        f"/v1/traces/{UIDX}/export/epcis",
        f"/v1/traces/{UIDX}/export/fsma",
        f"/v1/traces/{UIDX}/report.pdf",
        f"/v1/traces/{UIDX}/decisions",
        "/v1/traces?dl=/01/09506000134352/10/L42/21/7",
        f"/v1/logs/{PH_LOG}/records",
    ]


@attack(
    "api-cross-org-read",
    group="cloud API",
    attacker="another organisation (a valid read token of its own)",
    tries="reads organisation A's trace, bundle, EPCIS and FSMA exports, release report, "
    "decisions and its log's device records",
    refused_by="HTTP 404 `unknown_item` / `unknown_log` (the same answer as for an item that "
    "does not exist)",
    recorded="HTTP status + error body; access log line",
)
def test_another_organisation_reads_nothing(world: World) -> None:
    for path in _own_paths():
        own = world.get(path, "packhouse")
        assert own.status_code == 200, (path, own.status_code, own.text[:200])
        r = world.get(path, "other")
        if path.startswith("/v1/traces?"):
            refused(r, (404,), "unknown_item")
            continue
        body = refused(r, (404,))
        assert body["error"] in ("unknown_item", "unknown_log") and set(body) == {
            "error",
            "message",
        }
        # the same answer as for an item or log that does not exist: no existence oracle
        ghost = path.replace(UIDX, "04ffffffffff01").replace(PH_LOG, "nobody.example/gw")
        other = world.get(ghost, "other")
        assert other.status_code == 404 and other.json()["error"] == body["error"]
        assert other.text.replace("nobody.example/gw", PH_LOG) == r.text
    # a search finds only what the caller may see
    r = world.get("/v1/traces", "other", params={"lot": "L42"})
    assert r.status_code == 200 and r.json() == []
    r = world.get("/v1/traces", "packhouse", params={"lot": "L42"})
    assert [x["uid"] for x in r.json()] == [UIDX]


@attack(
    "api-missing-scope",
    group="cloud API",
    attacker="a holder of a token without the scope (a gateway's push token, an admin-only one)",
    tries="reads traces, records, alarms and audit with a `push` token; reads with `admin` only; "
    "writes with `read`",
    refused_by="HTTP 403 `forbidden` (\"this token lacks the 'read' scope\"); 401 "
    "`unauthenticated` without or with an unknown token",
    recorded="HTTP status + error body; access log line",
)
def test_a_token_without_the_scope_is_refused(world: World) -> None:
    for who in ("push", "ph-push", "admin-only"):
        for path in [*_own_paths(), "/v1/alarms", "/v1/rejected", "/v1/orgs"]:
            body = refused(world.get(path, who), (403,), "forbidden")
            assert "lacks the 'read' scope" in body["message"], (who, path)
    for who in ("push", "packhouse"):
        r = world.kit.client.post(
            "/v1/orgs/packhouse/tokens",
            headers={"Authorization": f"Bearer {world.tokens[who]}"},
            json={"scopes": ["read", "admin"]},
        )
        assert "lacks the 'admin' scope" in refused(r, (403,), "forbidden")["message"]
        assert refused(world.get("/v1/audit", who), (403,), "forbidden")
    refused(world.get(f"/v1/traces/{UIDX}"), (401,), "unauthenticated")
    r = world.kit.client.get(f"/v1/traces/{UIDX}", headers={"Authorization": "Bearer ct_forged"})
    refused(r, (401,), "unauthenticated")


# --- schemathesis with an organisation's token ------------------------------------------------


@attack(
    "api-fuzz-authenticated",
    group="cloud API",
    attacker="an organisation's reader and admin sending generated requests",
    tries="every operation of the OpenAPI document with schemathesis-generated input, "
    "authenticated as another organisation (tests/cloud/test_api.py does it as the operator)",
    refused_by="a 4xx, never a 5xx; no answer holds another organisation's item or log",
    recorded="HTTP status + error body; access log line",
)
def test_generated_requests_as_another_organisation(world: World) -> None:
    token = world.tokens["other"]
    schema = schemathesis.openapi.from_asgi("/openapi.json", world.kit.client.app)
    failures: list[str] = []
    past_auth: dict[str, int] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        name = f"{op.method.upper()} {op.path}"
        if name == "DELETE /v1/tokens/{token_id}":
            continue  # it could revoke the fuzzing token itself (test_api.py fuzzes it)
        authed = any(p.name.lower() == "authorization" for p in op.headers)

        run_operation(op, name, authed, token, failures, past_auth)
    assert failures == []
    # the token was accepted: generated requests got past authentication
    assert len(past_auth) >= 15, past_auth


def run_operation(
    op: Any, name: str, authed: bool, token: str, failures: list[str], past_auth: dict[str, int]
) -> None:
    """Four generated requests to ``op`` (derandomized), with ``token``."""

    @given(case=op.as_strategy())
    @settings(
        max_examples=4,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: Any) -> None:
        # the generated `authorization` header parameter is replaced, not joined
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        case.headers = {**headers, "Authorization": f"Bearer {token}"}
        r = case.call()
        if r.status_code >= 500:
            failures.append(f"{name}: {r.status_code} {r.text[:200]}")
        if authed and r.status_code != 401:
            past_auth[name] = past_auth.get(name, 0) + 1
        if r.status_code < 300 and authed and (UIDX in r.text or PH_LOG in r.text):
            failures.append(f"{name}: leaked the packhouse's data")

    check()
