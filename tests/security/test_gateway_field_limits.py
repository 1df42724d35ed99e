"""The gateway bounds what it stores at the edge (issue 19 item 2, the gateway half).

The red-team input: "A key without caps sent three POSTs with random 5 MB model
names; upstream answered 404, Metis recorded each anyway (usage record, rollups,
events): the SQLite file grew from 27 MB to 249 MB". Now such a name is refused
with a 400 in the provider's error shape naming ``model``, before anything is
forwarded or stored; a name within the limit that the upstream refuses is
recorded, with every stored field bounded.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from metis.db.tables import events, usage_records, usage_rollups_daily
from metis.security.fields import ID_MAX, MODEL_MAX
from tests.plugins.servers import GatewayServer
from tests.plugins.simulator import Simulator

FIVE_MB = 5 * 1024 * 1024


@pytest.fixture
def g(gateway_factory: Callable[..., GatewayServer], simulator: Simulator) -> GatewayServer:
    return gateway_factory(simulator.url)


def _counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as c:
        return tuple(  # type: ignore[return-value]
            c.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (usage_records, usage_rollups_daily, events)
        )


def _post(g: GatewayServer, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    return httpx.post(f"{g.url}{path}", json=body, headers=headers, timeout=60)


def test_five_megabyte_model_names_are_refused_and_store_nothing(
    g: GatewayServer, simulator: Simulator
) -> None:
    _, secret = g.issue_key()  # no caps, as in the issue
    g.flush()
    before = _counts(g.engine)
    oa = {"authorization": f"Bearer {secret}"}
    an = {"x-api-key": secret, "anthropic-version": "2023-06-01"}
    msgs = [{"role": "user", "content": "hi"}]
    for path, headers, extra in (
        ("/v1/chat/completions", oa, {"messages": msgs}),
        ("/v1/responses", oa, {"input": "hi"}),
        ("/v1/embeddings", oa, {"input": "hi"}),
        ("/v1/messages", an, {"messages": msgs, "max_tokens": 5}),
    ):
        name = secrets.token_hex(FIVE_MB // 2)
        r = _post(g, path, {"model": name, **extra}, headers)
        assert r.status_code == 400, path
        err = r.json()["error"]
        assert err["message"] == f"model: longer than {MODEL_MAX} characters ({FIVE_MB})"
        if headers is oa:
            assert err["type"] == "invalid_request_error" and err["param"] == "model"
        else:
            assert r.json()["type"] == "error" and err["type"] == "invalid_request_error"
        assert len(r.content) < 1000  # the name is not echoed
    # a control character in a short name is refused the same way
    r = _post(g, "/v1/chat/completions", {"model": "gpt-4o\n", "messages": msgs}, oa)
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    assert "control characters" in r.json()["error"]["message"]
    g.flush()
    assert _counts(g.engine) == before  # no record, rollup or event
    assert simulator.calls() == []
    # the longest name allowed passes the edge (the simulator has no such model: 404)
    longest = "x" * MODEL_MAX
    r = _post(g, "/v1/chat/completions", {"model": longest, "messages": msgs}, oa)
    assert r.status_code == 404


def test_a_call_refused_upstream_is_recorded_with_bounded_fields(g: GatewayServer) -> None:
    _, secret = g.issue_key()
    oa = {"authorization": f"Bearer {secret}"}
    name = "m" * MODEL_MAX
    r = _post(g, "/v1/chat/completions", {"model": name, "messages": []}, oa)
    assert r.status_code in (400, 404)
    g.flush()
    with g.engine.connect() as c:
        [rec] = c.execute(select(usage_records)).mappings().all()
    assert rec["status"] == "upstream_error" and rec["cost_nanousd"] == 0
    assert len(rec["model_raw"]) <= MODEL_MAX and len(rec["model"]) <= MODEL_MAX
    assert rec["correlation_id"] is None or len(rec["correlation_id"]) <= ID_MAX
