"""The API as a whole: organisations are isolated on every endpoint, bad input is a clear
4xx and never a 500 (schemathesis over the OpenAPI document, bounded), the public
endpoints are rate-limited, and operator actions are audited."""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.cloud.cloudkit import Kit, LogPusher, make_kit
from tests.cloud.test_traces import three_orgs
from tests.protocol.scenario import UID, Scenario

# public by design: what verifiers need, gateways' signed pushes, witnesses' self-
# authenticating cosignatures, and the consumer page a tag's Digital Link opens
PUBLIC_TAGS = {"public", "gateways", "witnesses", "service", "consumers"}


@pytest.fixture
def world(tmp_path) -> tuple[Kit, dict[str, str]]:
    kit = make_kit(tmp_path)
    c = three_orgs(kit)
    for s in (c.packhouse, c.carrier, c.dc):
        assert LogPusher(kit, s).push(anchor_it=True).status_code == 200
    other = Scenario(registry_id="reg-other", origin="other.example/gw")
    kit.join("other", other, devices=["xx-*"], places=["xx:*"], gtins=[])
    tokens = {
        "packhouse": kit.token("packhouse", ["read", "admin"]),
        "other": kit.token("other", ["read", "push", "admin"]),
    }
    return kit, tokens


def _fill(path: str, tokens_id: int) -> str:
    values = {
        "origin": "packhouse.example/gw",
        "uid": UID.hex(),
        "org": "packhouse",
        "kind": "epcis",
        "token_id": str(tokens_id),
    }
    return re.sub(r"\{(\w+)(?::path)?\}", lambda m: values[m.group(1)], path)


def test_no_organisation_reads_or_changes_another_on_any_endpoint(world) -> None:
    kit, tokens = world
    packhouse_token_id = kit.client.get(
        "/v1/audit", headers={"Authorization": f"Bearer {tokens['packhouse']}"}
    ).json()
    assert isinstance(packhouse_token_id, list)
    spec = kit.client.app.openapi()  # type: ignore[attr-defined]
    stranger = {"Authorization": f"Bearer {tokens['other']}"}
    tried = 0
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if PUBLIC_TAGS & set(op.get("tags", [])):
                continue
            url = _fill(path, 1)
            body = None
            if method == "post":
                body = {
                    "/v1/orgs/{org}/tokens": {"scopes": ["read", "admin"]},
                    "/v1/orgs/{org}/logs": {"vkey": "x+00000000+AAAA"},
                    "/v1/orgs/{org}/registries": {"id": "reg-x", "key": "AAAA"},
                    "/v1/orgs/{org}/ledgers": {"id": "x", "key": "AAAA"},
                    "/v1/orgs/{org}/witnesses": {"vkey": "x+00000000+AAAA"},
                    "/v1/orgs": {"name": "intruder"},
                    "/v1/traces/{uid}/decision": {"decision": "release", "name": "Mallory"},
                    "/v1/tags": {  # a tag for another organisation: refused
                        "uid": "04A1B2C3D4E5F6",
                        "item": "/01/09506000134352/21/1",
                        "organisation": "packhouse",
                    },
                }[path]
            r = kit.client.request(method.upper(), url, headers=stranger, json=body)
            tried += 1
            text = r.text
            if r.status_code < 300:
                # only its own things: nothing of the packhouse's
                assert "packhouse" not in text and UID.hex() not in text, (method, url, text)
            else:
                assert r.status_code in (403, 404, 422), (method, url, r.status_code, text)
    assert tried >= 12
    # and the packhouse does see its own
    own = kit.client.get(
        f"/v1/traces/{UID.hex()}", headers={"Authorization": f"Bearer {tokens['packhouse']}"}
    )
    assert own.status_code == 200


def test_tokens_are_scoped_hashed_and_revocable(world) -> None:
    kit, tokens = world
    read_only = kit.token("packhouse", ["read"])
    h = {"Authorization": f"Bearer {read_only}"}
    assert kit.client.get("/v1/audit", headers=h).status_code == 403
    assert kit.client.get("/v1/alarms", headers=h).status_code == 200
    from sqlalchemy import select

    from cloud import db

    with kit.engine.connect() as conn:
        stored = [bytes(r.hash) for r in conn.execute(select(db.tokens.c.hash))]
    assert all(read_only.encode() not in s for s in stored)
    admin = {"Authorization": f"Bearer {tokens['packhouse']}"}
    made = kit.client.post("/v1/orgs/packhouse/tokens", headers=admin, json={"scopes": ["read"]})
    assert made.status_code == 201
    tid = made.json()["id"]
    assert kit.client.delete(f"/v1/tokens/{tid}", headers=admin).status_code == 200
    revoked = {"Authorization": f"Bearer {made.json()['token']}"}
    assert kit.client.get("/v1/alarms", headers=revoked).status_code == 401
    actions = [a["action"] for a in kit.client.get("/v1/audit", headers=admin).json()]
    assert "token.revoke" in actions and "token.add" in actions
    assert kit.client.get("/v1/alarms").status_code == 401


def test_public_endpoints_are_rate_limited(tmp_path) -> None:
    kit = make_kit(tmp_path)
    kit.client.app.state.cloud.limiter.rate = 5  # type: ignore[attr-defined]
    codes = [kit.client.get("/v1/logs").status_code for _ in range(8)]
    assert codes[:5] == [200] * 5 and codes[-1] == 429


def _schema_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Kit, str]:
    kit = make_kit(tmp_path_factory.mktemp("schemathesis"))
    c = three_orgs(kit)
    for s in (c.packhouse, c.carrier, c.dc):
        assert LogPusher(kit, s).push(anchor_it=True).status_code == 200
    kit.client.app.state.cloud.limiter.rate = 10**9  # type: ignore[attr-defined]
    return kit, kit.operator


def test_every_endpoint_answers_bad_input_with_a_4xx_never_a_500(tmp_path_factory) -> None:
    """schemathesis generates requests from the OpenAPI document (bounded: 15 per
    operation, derandomized), with the operator's token; none may get a 5xx."""
    kit, token = _schema_world(tmp_path_factory)
    schema = schemathesis.openapi.from_asgi("/openapi.json", kit.client.app)
    failures: list[str] = []
    calls: list[int] = []
    operations = 0
    refused_token: dict[str, list[int]] = {}  # operations that take a token: their answers
    # revoking tokens goes last: a generated DELETE /v1/tokens/1 revokes the operator's own
    # token, and every request after it was a 401 that tested nothing past authentication
    ops = sorted(
        (r.ok() for r in schema.get_all_operations()),
        key=lambda o: o.method.upper() == "DELETE" and o.path == "/v1/tokens/{token_id}",
    )
    for operation in ops:
        operations += 1
        if any(p.name.lower() == "authorization" for p in operation.headers):
            refused_token[f"{operation.method.upper()} {operation.path}"] = []

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case) -> None:
            # the generated `authorization` header parameter is replaced, not joined
            headers = {
                k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"
            }
            case.headers = {**headers, "Authorization": f"Bearer {token}"}
            response = case.call()
            calls.append(response.status_code)
            op = f"{case.operation.method.upper()} {case.operation.path}"
            refused_token.get(op, []).append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.text[:300]}")

        check()
    assert operations >= 20
    assert len(calls) >= 10 * operations  # hypothesis really ran
    assert failures == []
    # the token really authenticated: every operation that takes one got past it
    assert len(refused_token) >= 15
    assert [(op, codes) for op, codes in refused_token.items() if set(codes) <= {401}] == []
