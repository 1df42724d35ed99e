"""The official OpenTelemetry OpenAI instrumentation exporting GenAI spans to Metis.

An app (tests/integrations/otel_openai_app.py, its own process) wraps the
official ``openai`` SDK with ``opentelemetry-instrumentation-openai-v2`` and
exports its spans with the OTLP/HTTP exporter to ``/otel/v1/traces``: once
calling the simulator directly (an ingest token bound to its developer),
once through the gateway (a token declared ``via_gateway``). The ledger then
equals the simulator's ground truth, before and after a provider sync, with
nothing counted twice, and the direct calls attributed.

With the ``openai`` SDK 3.x the instrumentation (2.4b0) cannot read the
client's base URL (the SDK's URL type is no longer httpx's), so its spans
carry no ``server.address``; its chat spans do carry ``gen_ai.response.id``,
equal to the gateway's record of the same call, but embeddings responses have
no id. The token's ``via_gateway`` is therefore what keeps every via-gateway
span from counting again. Matching by response id and by server address is
covered with hand-made spans in tests/ingest/otel/test_receiver_reconcile.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from metis.db.tables import usage_records
from metis.identity.users import add_user
from metis.ingest import tokens

APP = Path(__file__).with_name("otel_openai_app.py")
MEASURES = ("input_tokens", "cached_input_tokens", "output_tokens", "cost_nanousd")


def _run_app(traces_url: str, token: str, base_url: str, api_key: str, n: int) -> list[str]:
    p = subprocess.run(
        [sys.executable, str(APP), traces_url, token, base_url, api_key, str(n)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    ids: list[str] = json.loads(p.stdout.strip().splitlines()[-1])["response_ids"]
    return ids


def _wait(pred: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _cells(url: str, admin: str) -> dict[str, dict[str, Any]]:
    r = httpx.get(
        url + "/analytics/reconciliation",
        params={"workspace": "w"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert r.status_code == 200, r.text
    return {c["model"]: c for c in r.json()["cells"] if c["provider"] == "openai"}


def _sum(cells: dict[str, dict[str, Any]], part: str, measure: str) -> int:
    total = 0
    for c in cells.values():
        node = c
        for key in part.split("."):
            node = node[key]
        total += int(node[measure])
    return total


@pytest.mark.slow
def test_openai_instrumentation_spans_reconcile_to_ground_truth(
    simulator: Any,
    gateway_factory: Any,
    cli: Any,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    fast_ingest: None,
) -> None:
    monkeypatch.delenv("METIS_GATEWAY_URLS", raising=False)
    gw = gateway_factory(simulator.url)
    _, gw_secret = gw.issue_key("carol-app", user="carol")
    with engine.begin() as c:
        dave = add_user(c, "Dave", alias="dave")
        direct_tok, direct_secret = tokens.create_token(
            c, gw.workspace_id, "dave-app", "otel", user="dave"
        )
        via_tok, via_secret = tokens.create_token(
            c, gw.workspace_id, "carol-app", "otel", via_gateway=True
        )
    traces = gw.url + "/otel/v1/traces"

    direct_ids = _run_app(traces, direct_secret, simulator.openai_base_url, simulator.openai_key, 2)
    via_ids = _run_app(traces, via_secret, gw.url + "/v1", gw_secret, 2)
    n = len(simulator.calls())
    assert n == 2 * 5  # per run: 2 chat + 2 streamed chat + 1 embeddings
    assert len(direct_ids) == len(via_ids) == 4
    gw.flush()

    def spans(token_id: str) -> list[Any]:
        with engine.connect() as c:
            q = select(usage_records).where(
                usage_records.c.source == "otel_genai", usage_records.c.source_ref == token_id
            )
            return list(c.execute(q).mappings())

    _wait(lambda: len(spans(direct_tok.id)) + len(spans(via_tok.id)) == n, "all spans")
    direct, via = spans(direct_tok.id), spans(via_tok.id)
    assert len(direct) == len(via) == n // 2
    assert {r["correlation_id"] for r in direct} == {*direct_ids, None}  # embeddings: no id
    assert {r["metadata"]["operation"] for r in direct} == {"chat", "embeddings"}
    assert {r["user_id"] for r in direct} == {dave.id}  # the token's developer
    assert all(r["base_url"] in (None, simulator.url) for r in direct)
    assert {r["base_url"] for r in via} <= {"metis:gateway", gw.url}
    with engine.connect() as c:
        gw_ids = set(
            c.execute(
                select(usage_records.c.correlation_id).where(usage_records.c.source == "gateway")
            ).scalars()
        )
    assert set(via_ids) <= gw_ids  # the spans' response ids are the gateway's correlation ids

    admin = cli.ok("admin", "token", "create", "--name", "t").stdout.strip().splitlines()[-1]
    truth = simulator.ground_truth()["providers"]["openai"]
    assert truth["requests"] == n
    cells = _cells(gw.url, admin)
    assert _sum(cells, "sources.gateway", "request_count") == n // 2
    assert _sum(cells, "sources.plugin_via_gateway", "request_count") == n // 2
    assert _sum(cells, "sources.plugin", "request_count") == n // 2
    for m in MEASURES:
        assert _sum(cells, "reconciled", m) == truth[m], m
    assert _sum(cells, "reconciled", "request_count") == truth["requests"]

    cli.ok(
        "provider-key",
        "add",
        "-w",
        "w",
        "--provider",
        "openai",
        "--purpose",
        "usage_admin",
        "--base-url",
        simulator.url,
        input=simulator.openai_admin_key,
    )
    cli.ok("ingest", "sync", "--workspace", "w", "--days", "1")
    cells = _cells(gw.url, admin)
    assert cells and all(c["covered_by_provider"] for c in cells.values())
    for m in ("input_tokens", "output_tokens", "cost_nanousd"):
        assert _sum(cells, "reconciled", m) == truth[m], m
        assert _sum(cells, "attributed", m) == truth[m], m
        assert _sum(cells, "unattributed", m) == 0, m
        assert _sum(cells, "drift", m) == 0, m
