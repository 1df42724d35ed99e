"""POST /v1/ingest/usage over real HTTP: the happy path and the bad-input matrix."""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from metis import jsonutil
from metis.db.tables import usage_records
from metis.ingest import tokens
from metis.money import to_nanousd
from metis.server import create_app
from metis.timeutil import iso, utcnow
from metis.util.server_thread import ServerThread
from metis.workspaces import add_workspace


@dataclass
class PushEnv:
    http: httpx.Client
    engine: Engine
    token: str
    token_id: str
    workspace_id: str

    def push(self, items: list[dict[str, Any]], token: str | None = None) -> httpx.Response:
        return self.http.post(
            "/v1/ingest/usage",
            content=jsonutil.dumps({"items": items}),
            headers={
                "Authorization": f"Bearer {token or self.token}",
                "Content-Type": "application/json",
            },
        )

    def rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            q = select(usage_records).order_by(usage_records.c.dedupe_key)
            return [dict(r) for r in c.execute(q).mappings()]


@pytest.fixture
def env(metis_env: dict[str, str], engine: Engine) -> Iterator[PushEnv]:
    with engine.begin() as c:
        ws = add_workspace(c, "acme")
        tok, secret = tokens.create_token(c, "acme", "hermes-laptop")
    with ServerThread(create_app()) as srv, httpx.Client(base_url=srv.url, timeout=30) as http:
        yield PushEnv(http, engine, secret, tok.id, ws.id)


def item(key: str, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "idempotency_key": key,
        "time": iso(utcnow() - timedelta(minutes=5)),
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 1000,
        "output_tokens": 200,
        "cached_input_tokens": 100,
    }
    base.update(kw)
    return base


def test_push_stores_replays_and_revises(env: PushEnv) -> None:
    a = item("a", cost_usd="0.001234567", session_id="s1", correlation_id="chatcmpl-1")
    b = item("b", base_url="HTTP://127.0.0.1:9/v1/")
    r = env.push([a, b])
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": ["a", "b"], "unchanged": [], "revised": [], "rejected": []}
    rows = {row["dedupe_key"]: row for row in env.rows()}
    assert rows["a"]["cost_nanousd"] == 1_234_567
    assert rows["a"]["cost_source"] == "provider_reported"
    assert rows["a"]["source"] == "hermes_plugin" and rows["a"]["source_ref"] == env.token_id
    assert rows["a"]["session_id"] == "s1" and rows["a"]["correlation_id"] == "chatcmpl-1"
    assert rows["a"]["workspace_id"] == env.workspace_id
    assert rows["b"]["cost_source"] == "computed" and rows["b"]["cost_nanousd"] > 0
    assert rows["b"]["base_url"] == "http://127.0.0.1:9/v1"
    assert rows["b"]["granularity"] == "request"

    again = env.push([a, b])
    assert again.json()["unchanged"] == ["a", "b"]
    assert env.rows() == list(rows.values())  # nothing moved, not even updated_at

    a2 = dict(a, output_tokens=250)
    rev = env.push([a2])
    assert rev.json()["revised"] == ["a"]
    after = {row["dedupe_key"]: row for row in env.rows()}
    assert after["a"]["revision"] == 2 and after["a"]["output_tokens"] == 250
    assert after["b"] == rows["b"]


def test_cost_as_json_number_is_exact(env: PushEnv) -> None:
    body = (
        b'{"items": [{"idempotency_key": "n", "time": "%s", "provider": "openai", '
        b'"model": "gpt-4o", "cost_usd": 0.123456789}]}' % iso(utcnow()).encode()
    )
    r = env.http.post(
        "/v1/ingest/usage", content=body, headers={"Authorization": f"Bearer {env.token}"}
    )
    assert r.status_code == 200, r.text
    assert env.rows()[0]["cost_nanousd"] == to_nanousd(Decimal("0.123456789"))


def test_window_rollup_and_user_alias(env: PushEnv) -> None:
    from metis.db.tables import users

    with env.engine.begin() as c:
        c.execute(
            users.insert().values(
                id="usr_1", alias="ada", display_name="Ada", created_at=utcnow(), disabled=False
            )
        )
    now = utcnow()
    w = {
        "idempotency_key": "sess-1",
        "window_start": iso(now - timedelta(hours=2)),
        "window_end": iso(now - timedelta(hours=1)),
        "provider": "anthropic",
        "model": "claude-3-5-haiku-latest",
        "input_tokens": 10,
        "output_tokens": 5,
        "request_count": 3,
        "user": "ada",
    }
    unknown = item("u", user="nobody")
    r = env.push([w, unknown])
    assert r.status_code == 200, r.text
    rows = {row["dedupe_key"]: row for row in env.rows()}
    assert rows["sess-1"]["granularity"] == "session"
    assert rows["sess-1"]["user_id"] == "usr_1" and rows["sess-1"]["request_count"] == 3
    assert rows["u"]["user_id"] is None
    assert rows["u"]["metadata"] == {"user_alias": "nobody"}


BAD_ITEMS: list[tuple[str, dict[str, Any], str]] = [
    ("negative", item("x", input_tokens=-1), "input_tokens"),
    ("wrong-type", item("x", output_tokens="many"), "output_tokens"),
    ("float-tokens", item("x", output_tokens=1.5), "output_tokens"),
    ("bool-tokens", item("x", output_tokens=True), "output_tokens"),
    ("missing-model", {k: v for k, v in item("x").items() if k != "model"}, "model"),
    ("missing-key", {k: v for k, v in item("x").items() if k != "idempotency_key"}, "key"),
    ("missing-time", {k: v for k, v in item("x").items() if k != "time"}, "time"),
    ("unknown-field", item("x", colour="blue"), "unknown field"),
    ("future", item("x", time=iso(utcnow() + timedelta(days=400))), "future"),
    ("ancient", item("x", time="1970-01-01T00:00:00Z"), "2000"),
    ("bad-time", item("x", time="yesterday"), "time"),
    ("cache>input", item("x", input_tokens=10, cached_input_tokens=11), "exceed"),
    ("reasoning>output", item("x", output_tokens=1, reasoning_tokens=2), "exceed"),
    ("negative-cost", item("x", cost_usd="-1"), "cost_usd"),
    ("nan-cost", item("x", cost_usd="NaN"), "cost_usd"),
    ("bad-provider", item("x", provider="Open AI; DROP"), "provider"),
    ("time-and-window", item("x", window_start=iso(utcnow())), "not both"),
    # Text PostgreSQL cannot store (NUL) was a 500 there; control characters are refused too.
    ("nul-correlation-id", item("x", correlation_id="chatcmpl-\x00"), "correlation_id"),
    ("nul-session", item("x", session_id="s\x00"), "session_id"),
    ("nul-user", item("x", user="alice\x00"), "user"),
    ("control-base-url", item("x", base_url="http://gw\r\n/v1"), "base_url"),
    ("nul-service-tier", item("x", service_tier="\x00"), "service_tier"),
]


@pytest.mark.parametrize(("label", "bad", "reason"), BAD_ITEMS, ids=[b[0] for b in BAD_ITEMS])
def test_bad_item_is_rejected_alone(
    env: PushEnv, label: str, bad: dict[str, Any], reason: str
) -> None:
    assert env.push([item("before", input_tokens=700)]).status_code == 200
    stored = env.rows()
    r = env.push([item("good1"), bad, item("good2"), "not an object"])  # type: ignore[list-item]
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["accepted"] == ["good1", "good2"]
    assert [x["index"] for x in body["rejected"]] == [1, 3]
    assert reason in " ".join(body["rejected"][0]["reasons"])
    rows = env.rows()
    assert [x["dedupe_key"] for x in rows] == ["before", "good1", "good2"]
    assert rows[0] == stored[0]


def test_wrong_token_is_401_and_stores_nothing(env: PushEnv) -> None:
    for tok in ["mit_" + "x" * 43, "gw_nope", "Basic"]:
        r = env.push([item("a")], token=tok)
        assert r.status_code == 401
        assert r.json()["error"] == "unauthorized"
    r = env.http.post("/v1/ingest/usage", json={"items": [item("a")]})
    assert r.status_code == 401
    with env.engine.begin() as c:
        tokens.revoke_token(c, env.token_id)
    assert env.push([item("a")]).status_code == 401
    assert env.rows() == []


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b"[]", 400, "invalid_body"),
        (b'{"items": {}}', 400, "invalid_body"),
        (b'{"items": [], "extra": 1}', 400, "invalid_body"),
        (b'{"itemz": []}', 400, "invalid_body"),
    ],
)
def test_malformed_bodies(env: PushEnv, body: bytes, status: int, error: str) -> None:
    env.push([item("keep")])
    before = env.rows()
    r = env.http.post(
        "/v1/ingest/usage", content=body, headers={"Authorization": f"Bearer {env.token}"}
    )
    assert r.status_code == status and r.json()["error"] == error, r.text
    assert env.rows() == before


def test_oversized_body_and_too_many_items(env: PushEnv) -> None:
    env.push([item("keep")])
    before = env.rows()
    big = b'{"items": [' + b" " * (10 * 1024 * 1024) + b"]}"
    r = env.http.post(
        "/v1/ingest/usage", content=big, headers={"Authorization": f"Bearer {env.token}"}
    )
    assert r.status_code == 413 and "bytes" in r.json()["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: the stream limit applies
        yield b'{"items": ['
        for _ in range(20):
            yield b" " * 100_000
        yield b"]}"

    r = env.http.post(
        "/v1/ingest/usage", content=chunked(), headers={"Authorization": f"Bearer {env.token}"}
    )
    assert r.status_code == 413

    # 100k minimal items fit in no batch: the count limit answers (body limit first).
    many = b'{"items": [' + b",".join([b"{}"] * 100_000) + b"]}"
    r = env.http.post(
        "/v1/ingest/usage", content=many, headers={"Authorization": f"Bearer {env.token}"}
    )
    assert r.status_code == 413
    few_many = b'{"items": [' + b",".join([b"{}"] * 1001) + b"]}"
    r = env.http.post(
        "/v1/ingest/usage", content=few_many, headers={"Authorization": f"Bearer {env.token}"}
    )
    assert r.status_code == 413 and r.json()["error"] == "too_many_items"
    assert env.rows() == before


def test_full_batch_of_1000_is_accepted(env: PushEnv) -> None:
    items = [item(f"k{i:04d}", input_tokens=i + 100) for i in range(1000)]
    r = env.push(items)
    assert r.status_code == 200, r.text
    assert len(r.json()["accepted"]) == 1000
    assert len(env.rows()) == 1000


def test_openapi_documents_item_schema(env: PushEnv) -> None:
    doc = env.http.get("/openapi.json").json()
    op = doc["paths"]["/v1/ingest/usage"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/UsageBatch"
    )
    schema = doc["components"]["schemas"]["UsageItem"]
    assert schema["additionalProperties"] is False
    assert {"idempotency_key", "provider", "model"} <= set(schema["required"])
    assert schema["properties"]["input_tokens"]["minimum"] == 0


def test_token_settings_apply_to_pushed_items(env: PushEnv) -> None:
    """A token's via_gateway marks items without a base URL; its user backs unknown ones."""
    from metis.db.tables import ingest_activity
    from metis.identity.users import add_user
    from metis.ledger.reconcile import reconciled_cells

    with env.engine.begin() as c:
        ada = add_user(c, "Ada", alias="ada")
        bob = add_user(c, "Bob", alias="bob")
        tok, secret = tokens.create_token(c, "acme", "ada-hermes", via_gateway=True, user="ada")
    r = env.push(
        [
            item("a"),  # no base URL: the gateway's own traffic, Ada's
            item("b", base_url="https://api.openai.com/v1"),  # a direct call: counted
            item("c", user="bob"),  # names a known user: Bob
            item("d", user="someone-else"),  # unknown alias: kept, and Ada's
        ],
        token=secret,
    )
    assert r.status_code == 200, r.text
    rows = {x["dedupe_key"]: x for x in env.rows()}
    assert rows["a"]["base_url"] == "metis:gateway"
    assert rows["b"]["base_url"] == "https://api.openai.com/v1"
    assert (rows["a"]["user_id"], rows["b"]["user_id"]) == (ada.id, ada.id)
    assert rows["c"]["user_id"] == bob.id
    assert rows["d"]["user_id"] == ada.id
    assert rows["d"]["metadata"] == {"user_alias": "someone-else"}
    day = rows["a"]["usage_date"]
    with env.engine.connect() as c:
        (cell,) = reconciled_cells(c, day, day + timedelta(days=1), env.workspace_id, [])
        act = c.execute(select(ingest_activity)).mappings().one()
    assert cell.plugin_via_gateway.request_count == 3  # a, c, d name no base URL
    assert cell.plugin.request_count == 1  # b went straight to the provider
    assert (act["channel"], act["token_id"], act["records"], act["accepted"]) == (
        "push",
        tok.id,
        4,
        4,
    )
