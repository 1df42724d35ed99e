"""``GET /v1/models`` and ``/v1/models/{id}`` per shape, for the key, through the gateway."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from metis.simulator import catalog
from tests.plugins.servers import GatewayServer
from tests.plugins.simulator import Simulator

RULES = """\
schema_version: 1
rules:
  - name: fast-alias
    when: {model: fast}
    use: anthropic:claude-haiku-4-5
    reason: alias
  - name: openai-only
    when: {model_in: [cheap-a, cheap-b], inbound_shape: openai}
    use: openai:gpt-4o-mini
    reason: alias for openai clients
"""


@pytest.fixture
def g(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator, metis_env: dict[str, str]
) -> GatewayServer:
    (Path(metis_env["METIS_HOME"]) / "routing.yaml").write_text(RULES)
    return gateway_factory(simulator.url)


def test_lists_per_shape_plus_routing_minus_forbidden(g: GatewayServer) -> None:
    _, secret = g.issue_key()
    oa = [m.id for m in g.openai(secret).models.list()]
    assert oa == [*catalog.OPENAI_MODELS, "fast", "cheap-a", "cheap-b"]
    assert not [m for m in oa if m.startswith("claude")]
    an = [m.id for m in g.anthropic(secret).models.list(limit=2)]  # pages of 2, auto-paged
    assert an == [*catalog.ANTHROPIC_MODELS, "fast"]
    assert not [m for m in an if m.startswith("gpt")]
    _, narrow = g.issue_key("narrow", allowed_models=["gpt-4o-mini", "fast", "claude-sonnet-4-6"])
    assert [m.id for m in g.openai(narrow).models.list()] == ["gpt-4o-mini", "fast"]
    assert [m.id for m in g.anthropic(narrow).models.list()] == ["claude-sonnet-4-6", "fast"]


def test_retrieve_in_both_shapes(g: GatewayServer, simulator: Simulator) -> None:
    _, secret = g.issue_key(allowed_models=["gpt-4o-mini", "claude-haiku-4-5", "fast"])
    m = g.openai(secret).models.retrieve("gpt-4o-mini")
    assert (m.id, m.object, m.owned_by) == ("gpt-4o-mini", "model", "system")
    a = g.anthropic(secret).models.retrieve("claude-haiku-4-5")
    assert a.id == "claude-haiku-4-5-20251001"  # the provider resolved the alias
    assert g.openai(secret).models.retrieve("fast").owned_by == "metis-routing"
    assert g.anthropic(secret).models.retrieve("fast").id == "fast"
    with pytest.raises(openai.NotFoundError) as exc:
        g.openai(secret).models.retrieve("gpt-4o")  # exists, but not for this key
    assert exc.value.code == "model_not_found"
    with pytest.raises(anthropic.NotFoundError):
        g.anthropic(secret).models.retrieve("claude-opus-4-1-20250805")
    _, anyone = g.issue_key("anyone")
    with pytest.raises(openai.NotFoundError):
        g.openai(anyone).models.retrieve("no-such-model")  # the provider's own 404
    assert simulator.calls() == []  # lookups are not billed
    r = httpx.get(g.url + "/v1/models/gpt-4o-mini", headers={"authorization": "Bearer gw_nope"})
    assert r.status_code == 401


def test_workspace_without_the_provider_lists_only_routed(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator, metis_env: dict[str, str]
) -> None:
    from sqlalchemy import delete

    from metis.db.tables import provider_credentials

    (Path(metis_env["METIS_HOME"]) / "routing.yaml").write_text(RULES)
    g = gateway_factory(simulator.url)
    with g.engine.begin() as c:
        c.execute(
            delete(provider_credentials).where(provider_credentials.c.provider == "anthropic")
        )
    _, secret = g.issue_key()
    assert [m.id for m in g.anthropic(secret).models.list()] == ["fast"]
