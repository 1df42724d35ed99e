"""The real Claude Code CLI exporting its telemetry to Metis's OTLP receiver.

Claude Code (npm ``@anthropic-ai/claude-code``, pinned, see
tests/integrations/claude_code.py) runs twice per OTLP protocol
(``http/json``, ``http/protobuf``): (a) its inference through the gateway,
with an ingest token declared ``via_gateway`` (Claude Code's events carry no
base URL, and the gateway does not return the upstream's ``request-id`` yet,
so the token's setting is what says these calls are the gateway's own);
(b) straight to the simulator, with a plain token, the developer named by
``OTEL_RESOURCE_ATTRIBUTES=user.email=…``. Then the ledger must agree with the
simulator's ground truth: before a provider sync (gateway + direct telemetry
stand) and after it (the provider's figure stands, nothing unattributed, no
drift), no call counted twice, the direct calls attributed to the right user,
and the email stored nowhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, Text, cast, func, select

from metis.db.tables import events, usage_records
from metis.identity.users import add_user
from metis.ingest import tokens
from tests.integrations.claude_code import claude_bin, run_claude

EMAIL = "bob.direct@example.com"


@pytest.fixture(scope="module")
def claude() -> str:
    return claude_bin()


def _wait(pred: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _rows(engine: Engine, source: str, token_id: str | None = None) -> list[Any]:
    q = select(usage_records).where(usage_records.c.source == source)
    if token_id is not None:
        q = q.where(usage_records.c.source_ref == token_id)
    with engine.connect() as c:
        return list(c.execute(q).mappings())


def _reconciliation(url: str, admin: str) -> dict[str, Any]:
    r = httpx.get(
        url + "/analytics/reconciliation",
        params={"workspace": "w"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert r.status_code == 200, r.text
    (cell,) = [c for c in r.json()["cells"] if c["provider"] == "anthropic"]
    return cell  # type: ignore[no-any-return]


MEASURES = ("input_tokens", "cached_input_tokens", "cache_creation_input_tokens")
MEASURES += ("output_tokens", "cost_nanousd")


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http/json", "http/protobuf"])
def test_claude_code_via_gateway_and_direct_reconcile_to_ground_truth(
    protocol: str,
    claude: str,
    simulator: Any,
    gateway_factory: Any,
    cli: Any,
    engine: Engine,
    tmp_path: Path,
    fast_ingest: None,
) -> None:
    gw = gateway_factory(simulator.url)
    _, gw_secret = gw.issue_key("ada-claude", user="ada")
    with engine.begin() as c:
        bob = add_user(c, "Bob", alias="bob", email=EMAIL)
        via_tok, via_secret = tokens.create_token(
            c, gw.workspace_id, "ada-claude-via-gw", "otel", via_gateway=True, user="ada"
        )
        direct_tok, direct_secret = tokens.create_token(c, gw.workspace_id, "bob-claude", "otel")
    otel = gw.url + "/otel"

    # (a) through the gateway.
    run_claude(
        claude,
        tmp_path / "a",
        base_url=gw.url,
        api_key=gw_secret,
        otel_endpoint=otel,
        ingest_token=via_secret,
        protocol=protocol,
    )
    n_via = len(simulator.calls())
    assert n_via >= 1
    gw.flush()
    _wait(lambda: len(_rows(engine, "claude_code", via_tok.id)) == n_via, "via-gateway events")

    # (b) straight to the provider (the simulator).
    run_claude(
        claude,
        tmp_path / "b",
        base_url=simulator.anthropic_base_url,
        api_key=simulator.anthropic_key,
        otel_endpoint=otel,
        ingest_token=direct_secret,
        protocol=protocol,
        resource_attributes=f"user.email={EMAIL},team=platform",
    )
    n_direct = len(simulator.calls()) - n_via
    assert n_direct >= 1
    _wait(lambda: len(_rows(engine, "claude_code", direct_tok.id)) == n_direct, "direct events")
    gw.flush()

    truth = simulator.ground_truth()["providers"]["anthropic"]
    assert truth["requests"] == n_via + n_direct
    gateway_rows = _rows(engine, "gateway")
    via_rows = _rows(engine, "claude_code", via_tok.id)
    direct_rows = _rows(engine, "claude_code", direct_tok.id)
    assert len(gateway_rows) == n_via
    # Claude Code's events carry the provider's request id; the rows keep it.
    assert all(str(r["correlation_id"]).startswith("req_") for r in direct_rows)
    assert {r["base_url"] for r in via_rows} == {"metis:gateway"}
    assert {r["base_url"] for r in direct_rows} == {None}
    # Attribution: direct calls to Bob (by the telemetry's email), via-gateway copies to Ada.
    assert {r["user_id"] for r in direct_rows} == {bob.id}
    assert {r["user_id"] for r in via_rows} == {gateway_rows[0]["user_id"]}
    assert all(r["cost_source"] == "computed" for r in direct_rows + via_rows)

    admin = cli.ok("admin", "token", "create", "--name", "t").stdout.strip().splitlines()[-1]
    # Before provider data: the gateway's rows and the direct telemetry stand, exactly.
    cell = _reconciliation(gw.url, admin)
    assert cell["covered_by_provider"] is False
    src = cell["sources"]
    assert src["gateway"]["request_count"] == n_via
    assert src["plugin_via_gateway"]["request_count"] == n_via  # not counted again
    assert src["plugin"]["request_count"] == n_direct
    assert src["plugin_duplicate"]["request_count"] == 0
    for m in MEASURES:
        assert cell["reconciled"][m] == truth[m], m
    assert cell["reconciled"]["request_count"] == truth["requests"]

    # After the provider's own report: it stands, and all of it is attributed.
    cli.ok(
        "provider-key",
        "add",
        "-w",
        "w",
        "--provider",
        "anthropic",
        "--purpose",
        "usage_admin",
        "--base-url",
        simulator.url,
        input=simulator.anthropic_admin_key,
    )
    cli.ok("ingest", "sync", "--workspace", "w", "--days", "1")
    cell = _reconciliation(gw.url, admin)
    assert cell["covered_by_provider"] is True
    for m in MEASURES:
        assert cell["reconciled"][m] == truth[m], m
        assert cell["attributed"][m] == truth[m], m
        assert cell["unattributed"][m] == 0, m
    assert "drift" not in cell["flags"]

    # group_by=source: the new source beside the gateway; the reconciled view counts
    # only its direct calls (its copies of gateway calls are not counted again).
    def by_source(view: str) -> dict[str, Any]:
        r = httpx.get(
            gw.url + "/analytics/cost",
            params={"workspace": "w", "group_by": "source", "view": view},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert r.status_code == 200, r.text
        return {row["source"]: row for row in r.json()["data"]}

    raw = by_source("raw")
    assert raw["claude_code"]["call_count"] == n_via + n_direct
    assert raw["gateway"]["call_count"] == n_via
    rec = by_source("reconciled")
    assert rec["claude_code"]["call_count"] == n_direct
    assert rec["gateway"]["call_count"] == n_via
    assert sum(row["call_count"] for row in rec.values()) == truth["requests"]

    # The email was used to find Bob and stored nowhere.
    with engine.connect() as c:
        for table, col in ((usage_records, "metadata"), (events, "payload")):
            as_text = func.lower(cast(table.c[col], Text))
            hits = c.execute(select(func.count()).where(as_text.contains("example.com")))
            assert hits.scalar_one() == 0, table.name
