"""Telemetry rows in reconciliation and attribution: the same classes as any plugin row.

A gateway row and a GenAI span of the same call (same ``gen_ai.response.id``)
are one call: the span is ``plugin_duplicate``; a span whose
``server.address``/``server.port`` is this gateway's URL is
``plugin_via_gateway``; a token declared ``via_gateway`` makes every item
without a base URL (Claude Code, Codex) the gateway's own traffic. Users come
from the telemetry's email, else its account id as an alias, else the token's
user; the email is stored nowhere.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Text, cast, func, select

from metis.db.tables import usage_records
from metis.identity.users import add_user
from metis.ledger.reconcile import reconciled_cells
from tests.analytics.seed import rec, write
from tests.ingest.otel.conftest import JSON, Otlp
from tests.ingest.otel.fixtures import CODEX, GENAI, spans_of


def _cells(o: Otlp, provider: str, urls: list[str], from_raw: bool = False) -> dict[str, object]:
    with o.engine.connect() as c:
        days = c.execute(select(func.min(usage_records.c.usage_date))).scalar_one()
        cells = reconciled_cells(
            c, days, days + timedelta(days=1), o.workspace_id, urls, from_raw=from_raw
        )
    return {x.model: x for x in cells if x.provider == provider}


def test_gateway_twins_by_response_id_and_by_server_address(otlp: Otlp) -> None:
    chat = next(s for s in spans_of(GENAI / "semconv_traces.json") if s.name == "chat gpt-4o")
    at = chat.time
    assert at is not None
    with otlp.engine.begin() as c:  # the gateway's own record of the same call
        write(
            c,
            [
                rec(
                    at=at,
                    cost=1,
                    ws_id=otlp.workspace_id,
                    model="gpt-4o",
                    input_tokens=1200,
                    cached=1024,
                    output_tokens=250,
                    correlation_id="chatcmpl-golden-1",
                )
            ],
        )
    r = otlp.post("traces", (GENAI / "semconv_traces.json").read_bytes(), JSON)
    assert r.status_code == 200 and r.json() == {}
    for from_raw in (False, True):
        cell = _cells(otlp, "openai", [], from_raw)["gpt-4o"]
        assert cell.plugin_duplicate.request_count == 1  # type: ignore[attr-defined]
        assert cell.plugin.request_count == 0  # type: ignore[attr-defined]
        assert cell.reconciled.input_tokens == 1200  # type: ignore[attr-defined]
        # With the gateway's URL configured the same span is recognised by its address.
        cell = _cells(otlp, "openai", ["http://METIS.internal:8080/v1"], from_raw)["gpt-4o"]
        assert cell.plugin_via_gateway.request_count == 1  # type: ignore[attr-defined]
        assert cell.plugin_duplicate.request_count == 0  # type: ignore[attr-defined]
        emb = _cells(otlp, "openai", [], from_raw)["text-embedding-3-small"]
        assert emb.plugin.request_count == 1  # type: ignore[attr-defined]  # direct: counted


def test_via_gateway_token_and_user_resolution(otlp: Otlp) -> None:
    with otlp.engine.begin() as c:
        erin = add_user(c, "Erin", alias="erin", email="Erin.Ops@Example.com")
        carol = add_user(c, "Carol", alias="carol")
        dave = add_user(c, "Dave", alias="dave")
    _, carol_tok = otlp.token_for("carol-codex", via_gateway=True, user="carol")
    _, dave_tok = otlp.token_for("dave-agents", user="dave")

    r = otlp.post("logs", (CODEX / "logs.json").read_bytes(), JSON, token=carol_tok)
    assert r.status_code == 200
    codex_rows = otlp.rows("codex")
    assert len(codex_rows) == 2
    assert {x["base_url"] for x in codex_rows} == {"metis:gateway"}
    # The telemetry's email matches no user: the token's user; the account id is kept.
    assert {x["user_id"] for x in codex_rows} == {carol.id}
    assert {x["metadata"]["account_id"] for x in codex_rows} == {"acct_codex_dev_1"}
    (model,) = {x["model"] for x in codex_rows}  # genai-prices' id for gpt-5.1-codex
    cell = _cells(otlp, "openai", [])[model]
    assert cell.plugin_via_gateway.request_count == 2  # type: ignore[attr-defined]
    assert cell.reconciled.request_count == 0  # type: ignore[attr-defined]

    r = otlp.post("traces", (GENAI / "semconv_traces.json").read_bytes(), JSON, token=dave_tok)
    assert r.status_code == 200
    users = {x["model_raw"]: x["user_id"] for x in otlp.rows("otel_genai")}
    assert users["gpt-4o-2024-08-06"] == erin.id  # resource email, any case
    assert users["text-embedding-3-small"] == erin.id
    assert users["claude-sonnet-4-5"] == erin.id  # span user.id = the alias "erin"
    assert users["claude-haiku-4-5"] == dave.id  # no identity: the token's user
    assert all(x["base_url"] != "metis:gateway" for x in otlp.rows("otel_genai"))

    with otlp.engine.connect() as c:
        text = func.lower(cast(usage_records.c.metadata, Text))
        n = c.execute(select(func.count()).where(text.contains("example.com"))).scalar_one()
    assert n == 0
